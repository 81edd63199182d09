"""QA-9, slowloris on real sockets: a client that sends one byte just inside
Timeout.command is cut by the whole-line deadline, a session that lasts is cut
by max_session_time, and one client's sessions never fill the listener for
others (max_sessions_per_client).  Short configured timeouts; the assertions
are on the replies, never on how long anything took."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.io.smtpd_helpers import Raw, make_store, running

pytestmark = pytest.mark.timeout(60)


async def connect_from(port: int, source: str) -> Raw:
    """A client whose address is SOURCE (another loopback address: another client)."""
    r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    c = Raw(r, w)
    c.banner = await c.reply()
    return c


async def dribble(c: Raw, data: bytes, every: float) -> None:
    """One byte at a time; stops quietly when the server has closed."""
    for byte in data:
        try:
            await c.send(bytes([byte]))
        except ConnectionError:
            return
        await asyncio.sleep(every)


async def test_a_command_line_dribbled_inside_the_read_timeout_is_cut(example_config, caplog):
    caplog.set_level(logging.INFO, logger="edgemail.smtpd")
    cfg = example_config(Timeout={"command": "2s"})
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        # 60 bytes, one every 0.1 s: every read is well inside 2 s, the line is not
        sender = asyncio.create_task(dribble(c, b"EHLO " + b"s" * 53 + b"\r\n", 0.1))
        cut, end = await c.reply(), await c.reply()
        sender.cancel()
        await c.close()
    assert cut == "421 4.4.2 gw.edge.example Error: command line time limit exceeded", cut
    assert end == "<EOF>", "the line was never answered"
    assert "command line time limit exceeded for [127.0.0.1]" in caplog.text


async def test_a_later_command_dribbled_is_cut_too(example_config):
    cfg = example_config(Timeout={"command": "2s"})
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        assert (await c.cmd("NOOP")).startswith("250")
        sender = asyncio.create_task(dribble(c, b"NOOP " + b"x" * 60 + b"\r\n", 0.1))
        cut = await c.reply()
        sender.cancel()
        await c.close()
    assert cut.startswith("421 4.4.2") and "command line time limit" in cut


async def test_commands_answered_in_time_are_never_cut_by_the_line_deadline(example_config):
    """Each line restarts the deadline: many quick commands outlast Timeout.command."""
    cfg = example_config(Timeout={"command": "1s"})
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        replies = []
        for _ in range(12):               # about 1.2 s of NOOPs, each well inside its deadline
            replies.append(await c.cmd("NOOP"))
            await asyncio.sleep(0.1)
        await c.close()
    assert all(r.startswith("250") for r in replies), replies


async def test_a_session_that_lasts_is_cut_at_max_session_time(example_config, caplog):
    caplog.set_level(logging.INFO, logger="edgemail.smtpd")
    cfg = example_config(smtpd={"max_session_time": "1s"})
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        replies = []
        while not replies or replies[-1].startswith("250"):
            replies.append(await c.cmd("NOOP"))
            await asyncio.sleep(0.1)
        end = await c.reply()
        await c.close()
    assert replies[-1] == "421 4.4.2 gw.edge.example Error: session time limit exceeded", replies
    assert end == "<EOF>" and "session time limit exceeded for [127.0.0.1]" in caplog.text


async def test_one_clients_slow_sessions_never_fill_the_listener(example_config):
    """max_sessions_per_client (Postfix's smtpd_client_connection_count_limit): the slow client's
    extra connection is refused, another client is served meanwhile, and once the deadline has cut
    the slow sessions their client is served again."""
    cfg = example_config(smtpd={"max_sessions": 4, "max_sessions_per_client": 2}, Timeout={"command": "2s"})
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        slow = [await connect_from(smtpd.port, "127.0.0.2") for _ in range(2)]
        senders = [asyncio.create_task(dribble(c, b"EHLO " + b"s" * 80 + b"\r\n", 0.1)) for c in slow]
        third = await connect_from(smtpd.port, "127.0.0.2")
        other = await connect_from(smtpd.port, "127.0.0.3")
        assert third.banner.startswith("421 4.3.2 gw.edge.example Too many sessions from your address")
        assert other.banner.startswith("220 ") and (await other.cmd("EHLO other")).startswith("250")
        cut = [await c.reply() for c in slow]
        for task in senders:
            task.cancel()
        for c in (*slow, third, other):
            await c.close()
        for _ in range(200):                       # the cut sessions' slots are given back
            if smtpd.active == 0:
                break
            await asyncio.sleep(0.01)
        again = await connect_from(smtpd.port, "127.0.0.2")
        await again.close()
    assert all(x.startswith("421 4.4.2") and "command line time limit" in x for x in cut), cut
    assert again.banner.startswith("220 ")
