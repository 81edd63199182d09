"""Routes in disguise, our own names and literals, unqualified addresses
(issue 16 §4-7, QA-3): the bytes on a real socket to the listener on
127.0.0.1, the replies, and what the real spool then holds.  A second
[[listen]] entry at 192.168.1.1 is configured but never bound: it makes
[192.168.1.1] one of our literals without sending a packet off loopback."""

from __future__ import annotations

import pytest

from edgemail.address import ROUTED_REFUSAL
from edgemail.delivery.routing import Router
from tests.io.smtpd_helpers import Raw, make_store, running

LISTEN = [{"name": "lan", "address": "127.0.0.1", "port": 0, "strict": False},
          {"name": "isp", "address": "127.0.0.1", "port": 0, "strict": True, "greet_pause": 0},
          {"name": "office", "address": "192.168.1.1", "port": 25}]

ROUTED = ["ann%far.example@edge.example", "far.example!ann@edge.example", '"ann@far.example"@edge.example',
          "ann%far.example@[127.0.0.1]", "ann%far.example@[192.168.1.1]", "ann%far.example@localhost",
          "ann%far.example@gw.edge.example"]


@pytest.fixture
def cfg(example_config):
    return example_config(listen=LISTEN)


async def dialogue(port: int, *lines: str) -> list[str]:
    c = await Raw.connect(port)
    try:
        return [await c.cmd(line) for line in lines]
    finally:
        await c.close()


def queued(store) -> list[tuple[str, list[str], bytes]]:
    return [(e.envelope.mail_from, [r.address for r in e.envelope.recipients], store.read_data(e.qid))
            for e in store.entries()]


@pytest.mark.parametrize("trusted", [True, False], ids=["lan-client", "outside-client"])
async def test_routes_in_disguise_are_refused_550_5_7_1_and_nothing_is_queued(cfg, trusted):
    store = make_store(cfg.spool_dir)
    router = Router(cfg)
    async with running(cfg, store, check_rcpt=router.check_rcpt, trust_loopback=trusted) as smtpd:
        out = await dialogue(smtpd.port, "EHLO c.example", "MAIL FROM:<x@far.example>",
                             *[f"RCPT TO:<{a}>" for a in ROUTED], "DATA", "QUIT")
    for address, reply in zip(ROUTED, out[2:-2]):
        assert reply == ROUTED_REFUSAL.replace("{a}", address), (address, reply)
    assert out[-2].startswith("503 5.5.1") and queued(store) == []


async def test_our_names_and_literals_take_mail_from_outside_clients_and_route_locally(cfg):
    store = make_store(cfg.spool_dir)
    router = Router(cfg)
    ours = ["postmaster@[192.168.1.1]", "root@[127.0.0.1]", "root@localhost", "root@gw.edge.example",
            "postmaster@[IPv6:::1]"]
    async with running(cfg, store, check_rcpt=router.check_rcpt, trust_loopback=False) as smtpd:
        out = await dialogue(smtpd.port, "EHLO c.example", "MAIL FROM:<x@far.example>",
                             *[f"RCPT TO:<{a}>" for a in ours], "RCPT TO:<root@[192.0.2.9]>",
                             "DATA", "Subject: t\r\n\r\nx\r\n.", "QUIT")
    assert out[2:7] == [f"250 2.1.5 Recipient <{a}> OK" for a in ours], out
    assert out[7] == "554 5.7.1 <root@[192.0.2.9]>... Relaying denied"
    assert out[9].startswith("250 2.0.0"), out
    [(_, rcpts, _)] = queued(store)
    assert rcpts == ours
    assert {d.kind for a in rcpts for d in router.route(a)} == {"local"}     # never the smart host


async def test_a_bare_postmaster_is_accepted_on_a_strict_listener_from_anyone(cfg):
    store = make_store(cfg.spool_dir)
    listener = cfg.listeners[1]
    async with running(cfg, store, listener=listener, check_rcpt=Router(cfg).check_rcpt,
                       trust_loopback=False) as smtpd:
        out = await dialogue(smtpd.port, "EHLO c.example", "MAIL FROM:<x@far.example>", "RCPT TO:<Postmaster>",
                             "DATA", "Subject: t\r\n\r\nx\r\n.", "QUIT")
    assert out[2] == "250 2.1.5 Recipient <Postmaster@edge.example> OK", out
    assert queued(store)[0][1] == ["Postmaster@edge.example"]


async def test_unqualified_addresses_are_completed_for_trusted_clients_only(cfg):
    store = make_store(cfg.spool_dir)
    async with running(cfg, store, check_rcpt=Router(cfg).check_rcpt) as smtpd:
        lan = await dialogue(smtpd.port, "EHLO c.example", "MAIL FROM:<root>", "RCPT TO:<ann>",
                             "DATA", "From: root\r\nTo: ann\r\n\r\nx\r\n.", "QUIT")
    async with running(cfg, store, check_rcpt=Router(cfg).check_rcpt, trust_loopback=False) as smtpd:
        outside = await dialogue(smtpd.port, "EHLO c.example", "MAIL FROM:<root>", "MAIL FROM:<x@far.example>",
                                 "RCPT TO:<ann>", "RCPT TO:<ann@edge.example>", "QUIT")
    assert lan[1:3] == ["250 2.1.0 Sender <root@edge.example> OK", "250 2.1.5 Recipient <ann@edge.example> OK"]
    assert outside[1] == ("553 5.1.3 Unqualified sender address: give user@domain "
                          "(only trusted clients may omit the domain)")
    assert outside[2].startswith("250 2.1.0")
    assert outside[3] == ("553 5.1.3 Unqualified recipient address: give user@domain "
                          "(only trusted clients may omit the domain)")
    assert outside[4].startswith("250 2.1.5")
    [(sender, rcpts, data)] = queued(store)          # the outside session never got to DATA
    assert (sender, rcpts) == ("root@edge.example", ["ann@edge.example"])
    # an SMTP client's header is never rewritten, even a trusted one's (QA-6: only local submission)
    assert data.endswith(b"\r\nFrom: root\r\nTo: ann\r\n\r\nx\r\n"), data
