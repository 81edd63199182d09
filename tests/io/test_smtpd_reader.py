"""The SMTP listener's own reader: command lines over the limits, input
that arrives while a commit waits, and a client that ends its input early."""

from __future__ import annotations

import asyncio
import socket

from edgemail.smtpd.protocol import EdgeSMTP
from tests.io.smtpd_helpers import Raw, make_store, running
from tests.io.test_smtpd_limits import HEAD, Faulty


async def test_command_lines_over_the_limits_are_refused_and_the_session_goes_on(example_config):
    cfg = example_config()
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        assert (await c.cmd("EHLO c")).startswith("250")
        over_command = await c.cmd("MAIL FROM:<" + "a" * 1100 + "@edge.example>")
        await c.send(b"NOOP " + b"x" * (3 * EdgeSMTP.line_length_limit))   # no end of line yet
        await asyncio.sleep(0.2)
        held = max(len(s._input) for s in smtpd._sessions)
        await c.send(b"yyy\r\nMAIL FROM:<a@edge.example>\r\n")
        over_buffer, after = await c.reply(), await c.reply()
        await c.close()
    assert over_command == "500 5.5.2 Command line too long"
    assert held <= EdgeSMTP.line_length_limit, held
    assert over_buffer == "500 5.5.2 Command line too long"
    assert after == "250 2.1.0 Sender <a@edge.example> OK"


async def test_input_that_waits_for_a_commit_is_bounded_and_answered_in_order(example_config):
    cfg = example_config()
    gate = asyncio.Event()
    store = Faulty(make_store(cfg.spool_dir), gate=gate)
    noops = 4000
    line = b"NOOP " + b"n" * 500 + b"\r\n"
    async with running(cfg, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        for cmd in HEAD + ("DATA",):
            await c.cmd(cmd)
        sending = asyncio.create_task(c.send(b"x\r\n.\r\n" + line * noops + b"QUIT\r\n"))
        await asyncio.sleep(0.5)                  # the commit waits; so does all that came after
        held = max(len(s._input) for s in smtpd._sessions)
        gate.set()
        replies = [await c.reply() for _ in range(noops + 2)]
        await sending
        await c.close()
    assert held <= EdgeSMTP.held_input_limit + EdgeSMTP.line_length_limit, held
    assert replies[0].startswith("250 2.0.0 ") and replies[0].split()[2] == store.committed[0]
    assert replies[1:-1] == ["250 2.0.0 OK"] * noops
    assert replies[-1].startswith("221")


async def test_a_client_that_ends_its_input_gets_every_reply_then_the_close(example_config):
    cfg = example_config()
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        r, w = await asyncio.open_connection("127.0.0.1", smtpd.port)
        c = Raw(r, w)
        banner = await c.reply()
        await c.send("EHLO c\r\nMAIL FROM:<a@edge.example>\r\nRCPT TO:<b@edge.example>\r\n"
                     "DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        w.get_extra_info("socket").shutdown(socket.SHUT_WR)
        replies = [await c.reply() for _ in range(6)]
        end = await asyncio.wait_for(r.read(), 10)
        w.close()
    assert banner.startswith("220 ")
    assert [x[:3] for x in replies] == ["250", "250", "250", "354", "250", "221"], replies
    assert end == b""
