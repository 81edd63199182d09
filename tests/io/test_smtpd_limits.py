"""SMTP listener limits and failures: size, recipients, storage, per-read
timeout, bad commands, sessions, internal errors, 250 only after commit."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edgemail.errors import SpoolError, SpoolFull
from tests.io.smtpd_helpers import Raw, make_store, running
from tests.io.test_smtpd import raw_session

HEAD = ("EHLO c", "MAIL FROM:<a@edge.example>", "RCPT TO:<b@edge.example>")


class Faulty:
    """The real store with one fault injected at its edge."""

    def __init__(self, store, *, room=True, commit_error=None, gate=None):
        self.store, self.room, self.commit_error, self.gate = store, room, commit_error, gate
        self.committed = []

    def has_room(self, size=0, *, fresh=False):
        return self.room and self.store.has_room(size)

    async def commit(self, env, data):
        if self.gate is not None:
            await self.gate.wait()
        if self.commit_error is not None:
            raise self.commit_error
        qid = await self.store.commit(env, data)
        self.committed.append(qid)
        return qid


async def test_size_limit_at_mail_and_in_data(example_config):
    cfg = example_config(MaxMessageSize="1K")
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        out = await raw_session(smtpd.port, "EHLO c", "MAIL FROM:<a@edge.example> SIZE=1025",
                                "MAIL FROM:<a@edge.example> SIZE=500", "RCPT TO:<b@edge.example>",
                                "DATA", "x" * 600 + "\r\n" + "y" * 600 + "\r\n.", "NOOP")
    assert out[1] == "552 5.3.4 Message size exceeds fixed maximum message size (1024)"
    assert out[2].startswith("250 2.1.0") and out[4].startswith("354")
    assert out[5].startswith("552 5.3.4 "), out
    assert out[6].startswith("250 2.0.0"), "session goes on after 552"


async def test_recipients_per_message(example_config):
    cfg = example_config(smtpd={"MaxRecipientsPerMessage": 2})
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        out = await raw_session(smtpd.port, *HEAD, "RCPT TO:<c@edge.example>", "RCPT TO:<d@edge.example>",
                                "DATA", "x\r\n.")
    assert out[3].startswith("250") and out[4] == "452 4.5.3 Too many recipients"
    assert out[-1].startswith("250 2.0.0")


async def test_no_room_at_mail_and_before_commit(example_config):
    cfg = example_config()
    store = Faulty(make_store(cfg.spool_dir), room=False)
    async with running(cfg, store) as smtpd:
        out = await raw_session(smtpd.port, *HEAD)
        assert out[1] == "452 4.3.1 Insufficient system storage"
        store.room = True
        c = await Raw.connect(smtpd.port)
        for line in HEAD + ("DATA",):
            await c.cmd(line)
        store.room = False            # the disk filled up during DATA
        final = await c.cmd("x\r\n.")
        await c.close()
    assert final == "452 4.3.1 Insufficient system storage" and store.committed == []


@pytest.mark.parametrize("error,reply", [
    (SpoolFull("ENOSPC"), "452 4.3.1 Insufficient system storage"),
    (SpoolError("EIO"), "451 4.3.0 Error: queue file write error, try again later"),
])
async def test_spool_errors(example_config, caplog, error, reply):
    cfg = example_config()
    async with running(cfg, Faulty(make_store(cfg.spool_dir), commit_error=error)) as smtpd:
        out = await raw_session(smtpd.port, *HEAD, "DATA", "x\r\n.", "NOOP")
    assert out[-2] == reply and out[-1].startswith("250 2.0.0 OK")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == (1 if isinstance(error, SpoolFull) is False else 0)


async def test_internal_error_answers_451_logs_once_and_the_session_goes_on(example_config, caplog):
    def check_rcpt(addr):
        raise RuntimeError("routing table broken")
    cfg = example_config()
    async with running(cfg, make_store(cfg.spool_dir), check_rcpt=check_rcpt) as smtpd:
        out = await raw_session(smtpd.port, *HEAD, "NOOP")
    assert out[2] == "451 4.3.0 Error: internal error, try again later" and out[3].startswith("250")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info and "after RCPT from [127.0.0.1]" in errors[0].getMessage()


async def test_check_rcpt_refusal(example_config):
    cfg = example_config()
    hook = lambda a: "550 5.1.1 <%s>... User unknown" % a if a.startswith("nobody@") else None  # noqa: E731
    async with running(cfg, make_store(cfg.spool_dir), check_rcpt=hook) as smtpd:
        out = await raw_session(smtpd.port, *HEAD, "RCPT TO:<nobody@edge.example>")
    assert out[2].startswith("250") and out[3] == "550 5.1.1 <nobody@edge.example>... User unknown"


async def test_250_only_after_commit_returned(example_config):
    cfg = example_config()
    gate = asyncio.Event()
    store = Faulty(make_store(cfg.spool_dir), gate=gate)
    async with running(cfg, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        for line in HEAD + ("DATA",):
            await c.cmd(line)
        await c.send("x\r\n.\r\n")
        early = asyncio.create_task(c.reply())
        await asyncio.sleep(0.3)
        assert not early.done(), "a reply came before the commit returned"
        gate.set()
        final = await early
        await c.close()
    assert final.startswith("250 2.0.0 ") and final.split()[2] == store.committed[0]


async def test_slow_but_moving_data_is_not_cut_and_a_stall_is(example_config):
    cfg = example_config(Timeout={"command": "1s"})
    store = make_store(cfg.spool_dir)
    async with running(cfg, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        for line in HEAD + ("DATA",):
            await c.cmd(line)
        for i in range(20):               # 4 s of DATA, a piece every 0.2 s
            await c.send(f"line {i} ".encode() * 3 + (b"\r\n" if i % 3 == 2 else b""))
            await asyncio.sleep(0.2)
        final = await c.cmd("\r\n.")
        assert final.startswith("250 2.0.0 "), final
        stalled = await c.reply()         # now say nothing for > 1 s
        after = await c.reply()
        await c.close()
    assert stalled == "421 4.4.2 gw.edge.example Error: timeout exceeded" and after == "<EOF>"
    data = store.read_data(final.split()[2])
    assert b"line 19 line 19 line 19 \r\n" in data


async def test_too_many_bad_commands(example_config, caplog):
    cfg = example_config(smtpd={"max_bad_commands": 3})
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        out = [await c.cmd(x) for x in ("EHLO c", "BOGUS", "RCPT TO:<x@y.example>")]
        last = [await c.cmd("MAIL FROM:<bad"), await c.reply(), await c.reply()]
        await c.close()
    assert out[1].startswith("500 5.5.2") and out[2].startswith("503 5.5.1")
    assert last[0].startswith("501 5.1.7")
    assert last[1:] == ["421 4.7.0 gw.edge.example Error: too many errors", "<EOF>"]
    assert any("too many errors after MAIL from [127.0.0.1]" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("limits", [{"max_sessions": 2}, {"max_sessions_per_client": 2}])
async def test_session_limits(example_config, limits):
    cfg = example_config(smtpd=limits)
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        first = [await Raw.connect(smtpd.port) for _ in range(2)]
        third = await Raw.connect(smtpd.port)
        assert third.banner.startswith("421 4.3.2 gw.edge.example Too many sessions"), third.banner
        assert await third.reply() == "<EOF>"
        await third.close()
        await first[0].cmd("QUIT")
        await first[0].close()
        await asyncio.sleep(0.1)
        fourth = await Raw.connect(smtpd.port)
        assert fourth.banner.startswith("220 "), "a slot freed by QUIT is reused"
        for c in (first[1], fourth):
            await c.close()


async def test_close_tells_open_sessions_421_and_closes_them(example_config, caplog):
    caplog.set_level("INFO", logger="edgemail.smtpd")
    cfg = example_config()
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        assert (await c.cmd("EHLO c")).startswith("250")
        assert smtpd.active == 1
        await smtpd.close()
        told, end = await c.reply(), await c.reply()
        await c.close()
        await asyncio.sleep(0)
        assert smtpd.active == 0
    assert told == "421 4.3.2 gw.edge.example Service shutting down" and end == "<EOF>"
    assert any("lost connection after EHLO from [127.0.0.1]" in r.getMessage() for r in caplog.records)


async def _closed_after(example_config, caplog, *lines: str) -> tuple[list[str], list[str]]:
    """LINES on a real socket, then the client closes without QUIT: the
    replies, and the listener's lost-connection lines once the session is over."""
    caplog.set_level("INFO", logger="edgemail.smtpd")
    cfg = example_config()
    store = make_store(cfg.spool_dir)
    async with running(cfg, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        out = [await c.cmd(line) for line in lines]
        await c.close()
        while smtpd.active:             # the server's side of the close
            await asyncio.sleep(0)
    lost = [r.getMessage() for r in caplog.records if "lost connection" in r.getMessage()]
    return out, lost


async def test_a_close_after_an_accepted_message_is_logged_after_end_of_message(example_config, caplog):
    out, lost = await _closed_after(example_config, caplog, *HEAD, "DATA", "Subject: s\r\n\r\nhi\r\n.")
    assert out[-1].startswith("250 2.0.0"), out
    assert len(lost) == 1, lost
    assert lost[0].startswith("NOQUEUE: lost connection after END-OF-MESSAGE from [127.0.0.1]:"), \
        "the message was accepted: the log must not say the connection was lost in DATA"


async def test_a_close_in_the_middle_of_the_body_is_logged_after_data_content(example_config, caplog):
    out, lost = await _closed_after(example_config, caplog, *HEAD, "DATA")
    assert out[-1].startswith("354"), out
    assert len(lost) == 1 and lost[0].startswith("NOQUEUE: lost connection after DATA content from [127.0.0.1]:")
