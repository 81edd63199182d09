"""Invariant 1: starting the listener and accepting 50 messages makes no name
lookup of any kind (no getfqdn for the greeting, no PTR for the client)."""

from __future__ import annotations

import asyncio
import ipaddress
import smtplib
import socket

from tests.io.smtpd_helpers import Raw, make_store, running


def numeric(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    try:
        ipaddress.ip_address(str(host).split("%")[0])
        return True
    except ValueError:
        return False


def forbid_name_lookups(monkeypatch) -> list:
    lookups: list = []

    def guard(name, real, always=False):
        def wrapper(*args, **kw):
            host = args[0] if args else kw.get("host")
            if always or not numeric(host):
                lookups.append((name, args))
                raise socket.gaierror(socket.EAI_NONAME, f"name lookup forbidden in this test: {name}{args!r}")
            return real(*args, **kw)
        monkeypatch.setattr(socket, name, wrapper)

    guard("getaddrinfo", socket.getaddrinfo)
    guard("gethostbyname", socket.gethostbyname)
    guard("gethostbyname_ex", socket.gethostbyname_ex)
    guard("gethostbyaddr", socket.gethostbyaddr, always=True)     # PTR
    guard("getfqdn", socket.getfqdn, always=True)
    real_getnameinfo = socket.getnameinfo

    def getnameinfo(sockaddr, flags):
        if not flags & socket.NI_NUMERICHOST:
            lookups.append(("getnameinfo", sockaddr))
            raise socket.gaierror(socket.EAI_NONAME, "reverse lookup forbidden in this test")
        return real_getnameinfo(sockaddr, flags)
    monkeypatch.setattr(socket, "getnameinfo", getnameinfo)
    return lookups


def test_the_guard_works(monkeypatch):
    lookups = forbid_name_lookups(monkeypatch)
    socket.getaddrinfo("127.0.0.1", 25)
    for call in (lambda: socket.getfqdn(), lambda: socket.gethostbyname("example.org"),
                 lambda: socket.getaddrinfo("localhost", 25), lambda: socket.gethostbyaddr("127.0.0.1")):
        try:
            call()
        except socket.gaierror:
            pass
    assert len(lookups) == 4


def smtplib_send(port):
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.lan", timeout=10) as s:
        s.sendmail("a@edge.example", ["b@edge.example"], b"Subject: x\r\n\r\nvia smtplib\r\n")


async def test_start_and_50_submissions_make_no_name_lookup(example_config, monkeypatch):
    lookups = forbid_name_lookups(monkeypatch)
    cfg = example_config()
    store = make_store(cfg.spool_dir)
    committed = []
    async with running(cfg, store, on_commit=committed.append) as smtpd:

        async def client(n):
            c = await Raw.connect(smtpd.port)
            assert c.banner.startswith("220 gw.edge.example"), c.banner
            await c.cmd("EHLO client.lan")
            for i in range(n):
                for line in ("MAIL FROM:<a@edge.example>", "RCPT TO:<b@edge.example>",
                             "RCPT TO:<c@far.example>", "DATA"):
                    assert (await c.cmd(line))[0] in "23", line
                assert (await c.cmd(f"Subject: {i}\r\n\r\nbody {i}\r\n.")).startswith("250 2.0.0")
            await c.cmd("QUIT")
            await c.close()

        await asyncio.gather(*(client(12) for _ in range(4)))
        await asyncio.to_thread(smtplib_send, smtpd.port)
        await asyncio.to_thread(smtplib_send, smtpd.port)
    assert len(committed) == 50
    assert lookups == [], f"name lookups made: {lookups}"
