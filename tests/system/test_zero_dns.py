"""Invariant 1: starting the daemon, accepting over SMTP and submitting with
`sendmail` make no DNS query and no name resolution of any kind.

Every process under test (the daemon and each `sendmail`) runs with
tests/system/nodns/sitecustomize.py: a lookup of a name (getaddrinfo of a
non-numeric host, gethostbyname, gethostbyaddr, getfqdn, getnameinfo
without NI_NUMERICHOST) is recorded in a file and fails; dnspython's
default resolver and the config's [dns] point at a UDP server here that
counts every packet.  The first two tests show that the probes do detect
lookups, so a 0 in the third means something."""

from __future__ import annotations

import os
import smtplib
import socket
import subprocess
import sys
import threading

import pytest

from daemon_harness import NODNS, cli, start

pytestmark = pytest.mark.timeout(90)


class CountingDNS:
    """A UDP 'nameserver' on 127.0.0.1 that counts packets and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.queries.append(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def dns_probe(tmp_path):
    server = CountingDNS()
    log = tmp_path / "lookups.log"
    env = {"PYTHONPATH": f"{NODNS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "EDGEMAIL_NODNS_LOG": str(log), "EDGEMAIL_NODNS_PORT": str(server.port)}
    yield server, log, env
    server.close()


def _lookups(log) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_probe_records_name_lookups(dns_probe):
    _, log, env = dns_probe
    code = "import socket\nfor f in (socket.getfqdn, lambda: socket.getaddrinfo('mx.example.net', 25)):\n" \
           "    try: f()\n    except OSError: pass\nsocket.getaddrinfo('127.0.0.1', 25)\n"
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, timeout=30)
    found = _lookups(log)
    assert len(found) == 2 and "getfqdn" in found[0] and "mx.example.net" in found[1], found


def test_probe_counts_dnspython_queries(dns_probe):
    server, _, env = dns_probe
    code = ("import dns.resolver, dns.exception\ntry: dns.resolver.resolve('example.net', 'MX', lifetime=0.3)\n"
            "except dns.exception.DNSException: pass\n")
    subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, check=True, timeout=30)
    assert len(server.queries) >= 1


def test_startup_smtp_and_sendmail_make_no_lookups(tmp_path, dns_probe):
    server, log, env = dns_probe
    daemon = start(tmp_path, {"dns": {"nameservers": ["127.0.0.1"], "port": server.port}}, env=env)
    try:
        with smtplib.SMTP("127.0.0.1", daemon.port, local_hostname="till-3.lan", timeout=10) as s:
            for n in range(25):
                s.sendmail("till-3@edge.example", ["alice@example.net", "bob@edge.example"],
                           f"Subject: smtp {n}\r\n\r\nbody {n}\r\n")
        for n in range(25):
            r = cli(daemon, "sendmail", "-t", "-i", env=env,
                    input=f"To: ops@example.org\nSubject: local {n}\n\nbody {n}\n".encode())
            assert r.returncode == 0, r.stderr
        assert "Total requests: 50" in cli(daemon, "mailq", env=env).stdout.decode()
    finally:
        assert daemon.stop() == 0
    assert _lookups(log) == [], "name lookups made:\n" + "\n".join(_lookups(log))
    assert server.queries == [], f"{len(server.queries)} DNS queries reached the counting server"
