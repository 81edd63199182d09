"""The connection rate limit on the real daemon (smtpd.client_connection_rate_limit):
an outside client's connections past the limit are told 421 4.7.0 and closed, a
LAN client's never are.  The daemon and its clients run in a network namespace of
the test's own, where 198.51.100.25 (outside every lan_networks) and 192.168.1.1
(inside them) are addresses on lo: a client there is outside or LAN by its source
address, on real sockets, with nothing leaving the namespace."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from daemon_harness import Daemon, wait_for, write_config

pytestmark = pytest.mark.timeout(90)
OUTSIDE, LAN = "198.51.100.25", "192.168.1.1"

CLIENT = r'''
import json, socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = []
for _ in range(n):
    with socket.create_connection((host, port), timeout=10, source_address=(host, 0)) as s:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        rest = b""
        try:                    # a refused connection may be gone already (EPIPE, RST)
            s.sendall(b"QUIT\r\n")
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                rest += chunk
        except OSError:
            pass
        out.append([data.decode(), rest.decode()])
print(json.dumps(out))
'''


@pytest.fixture
def ns(netns_iface):
    n = netns_iface("emrate0")
    n.ip("link", "set", "lo", "up")
    for address in (OUTSIDE, LAN):
        n.ip("addr", "add", f"{address}/32", "dev", "lo")
    return n


def sessions(ns, host: str, port: int, n: int) -> list[list[str]]:
    """N sessions one after another from HOST to HOST:PORT inside NS: [banner, what followed QUIT]."""
    r = subprocess.run(["ip", "netns", "exec", ns.ns, sys.executable, "-c", CLIENT, host, str(port), str(n)],
                       capture_output=True, timeout=60, check=True)
    return json.loads(r.stdout)


def test_the_daemon_refuses_an_outside_client_over_its_rate_not_a_lan_client(ns, tmp_path):
    cfg = write_config(tmp_path, {
        "smtpd": {"client_connection_rate_limit": 3, "connection_rate_time_unit": "1h"},
        "listen": [{"name": "wan", "address": OUTSIDE, "port": 0, "strict": True, "greet_pause": 0},
                   {"name": "lan", "address": LAN, "port": 0, "strict": False}]})
    d = Daemon(cfg, prefix=["ip", "netns", "exec", ns.ns])
    try:
        status = d.start()
        ports = {item.split("=")[0]: int(item.rsplit(":", 1)[1]) for item in status["listeners"]}
        outside = sessions(ns, OUTSIDE, ports["wan"], 5)
        lan = sessions(ns, LAN, ports["lan"], 10)
        wait_for(lambda: d.log.read_text().count("too many connections") >= 2, "the refusals logged", d.log)
    finally:
        d.stop()
    assert [b for b, _ in outside[:3]] == ["220 gw.edge.example ESMTP edgemail\r\n"] * 3, outside
    assert all(q.startswith("221 ") for _, q in outside[:3]), outside
    refusal = f"421 4.7.0 gw.edge.example Error: too many connections from {OUTSIDE}\r\n"
    assert outside[3:] == [[refusal, ""]] * 2, "421, then closed: QUIT is never read"
    assert all(b.startswith("220 ") for b, _ in lan), "LAN clients are exempt"
    log = d.log.read_text()
    assert log.count(f"NOQUEUE: connection refused, relay=[{OUTSIDE}]:") == 2, log[-2000:]
