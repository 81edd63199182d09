"""The SMTP listener's own reader: command lines over the limits, input
that arrives while a commit waits, and a client that ends its input early."""

from __future__ import annotations

import asyncio
import socket

from hypothesis import HealthCheck, given, settings, strategies as st

from edgemail.smtpd.reader import LineReader
from edgemail.smtpd.session import SmtpSession
from tests.io.smtpd_helpers import Raw, make_store, running
from tests.io.test_smtpd_limits import HEAD, Faulty


async def test_command_lines_over_the_limits_are_refused_and_the_session_goes_on(example_config):
    cfg = example_config()
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        assert (await c.cmd("EHLO c")).startswith("250")
        over_command = await c.cmd("MAIL FROM:<" + "a" * 1100 + "@edge.example>")
        await c.send(b"NOOP " + b"x" * (3 * LineReader.line_length_limit))   # no end of line yet
        await asyncio.sleep(0.2)
        held = max(s.held for s in smtpd.admission.sessions)
        await c.send(b"yyy\r\nMAIL FROM:<a@edge.example>\r\n")
        over_buffer, after = await c.reply(), await c.reply()
        await c.close()
    assert over_command == "500 5.5.2 Command line too long"
    assert held <= LineReader.line_length_limit, held
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
        held = max(s.held for s in smtpd.admission.sessions)
        gate.set()
        replies = [await c.reply() for _ in range(noops + 2)]
        await sending
        await c.close()
    assert held <= SmtpSession.held_input_limit + LineReader.line_length_limit, held
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


# ---------------------------------------------------------------- chunking invariance

class _Transport:
    """The edge of this test: what the session writes, and flow control as no-ops."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closing = False

    def write(self, data: bytes) -> None:
        self.out += data

    def get_extra_info(self, key, default=None):
        return ("127.0.0.1", 40000) if key == "peername" else default

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def set_write_buffer_limits(self, *a, **k) -> None: ...
    def get_write_buffer_size(self) -> int: return 0


class _Spool:
    """A commit that completes on the next turn of the loop (the spool's own
    tests cover the disk); numbered so replies can be compared."""

    def __init__(self) -> None:
        self.n = 0

    def has_room(self, size=0, *, fresh=False) -> bool:
        return True

    async def commit(self, env, data) -> str:
        await asyncio.sleep(0)
        self.n += 1
        return f"Q{self.n:04d}"


STREAM = (b"EHLO c\r\nMAIL FROM:<a@edge.example>\r\nRCPT TO:<b@edge.example>\r\nDATA\r\n"
          b"Subject: one\r\n\r\nline\r\n..dot\r\nend.\r\n.\r\n"
          b"NOOP\r\nMAIL FROM:<bad\r\nRSET\r\nMAIL FROM:<c@edge.example> SIZE=10\r\n"
          b"RCPT TO:<d@edge.example>\r\nRCPT TO:<e@far.example>\r\nDATA\r\n\r\nbody\r\n.\r\n"
          b"BOGUS\r\nVRFY x\r\nHELP\r\nQUIT\r\n")


def _replies(example_config, chunks: list[bytes]) -> bytes:
    """One session fed CHUNKS; everything it wrote."""
    from edgemail.smtpd.listener import SmtpListener

    async def run() -> bytes:
        cfg = example_config()
        lst = SmtpListener(cfg, cfg.listeners[0], _Spool())
        session, t = SmtpSession(lst.services), _Transport()
        session.connection_made(t)
        for chunk in chunks:
            for _ in range(5):               # let waiting commands (tasks) answer
                await asyncio.sleep(0)
            session.data_received(chunk)
        for _ in range(50):
            if t.closing:
                break
            await asyncio.sleep(0)
        session.connection_lost(None)
        return bytes(t.out)
    return asyncio.run(run())


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=12, unique=True))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_replies_do_not_depend_on_how_the_input_is_cut(example_config, cuts):
    """The same commands, cut anywhere (inside a line, inside CR LF, inside
    the end of DATA): the same replies, in the same order."""
    whole = _replies(example_config, [STREAM])
    bounds = [0, *sorted(cuts), len(STREAM)]
    cut = _replies(example_config, [STREAM[a:b] for a, b in zip(bounds, bounds[1:])])
    assert cut == whole
    lines = whole.decode().splitlines()
    assert [ln[:3] for ln in lines if not ln.startswith("250-")] == [
        "220", "250", "250", "250", "354", "250",          # EHLO (last line), MAIL, RCPT, DATA, queued
        "250", "501", "250", "250", "250", "250", "354", "250",   # NOOP, bad MAIL, RSET, MAIL..queued
        "500", "252", "250", "221"]
    assert "250 2.0.0 Q0001 Message accepted" in whole.decode() and "Q0002" in whole.decode()
