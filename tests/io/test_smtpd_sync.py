"""The listener's boundary over real sockets (issue 16 §1, §2, §10, §13): the
exact hostile bytes, the replies they get, and what the spool holds after.

  * the stuffed DATA, the early talker, EHLO pipelined, on a strict listener;
  * the refused DATA with a message behind it, on a LAN listener;
  * RFC 2920 pipelining still working on both;
  * bare LF command lines on a strict listener;
  * the bad-syntax log line naming the bad line;
  * MAIL reading the free space afresh (a tmpfs the test mounts: root)."""

from __future__ import annotations

import asyncio
import logging
import subprocess

import pytest

from edgemail.spool.room import Room
from edgemail.spool.store import Store
from tests.io.smtpd_helpers import Raw, make_store, running

TXN = b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@edge.example>\r\nDATA\r\n"
MESSAGE = b"Subject: t\r\n\r\nbody\r\n.\r\n"


def listen(strict: bool, **extra) -> list[dict]:
    return [{"name": "t", "address": "127.0.0.1", "port": 0, "strict": strict, "greet_pause": 0, **extra}]


async def read_all(c: Raw) -> str:
    """Every reply until the server closes."""
    lines = []
    while True:
        reply = await c.reply()
        lines.append(reply)
        if reply.endswith("<EOF>"):
            return "\n".join(lines)


def queued(store: Store) -> int:
    return len(store.entries())


@pytest.fixture
def strict(example_config):
    return example_config(listen=listen(True))


async def test_stuffed_data_on_a_strict_listener_is_554_and_nothing_queued(strict):
    store = make_store(strict.spool_dir)
    async with running(strict, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        assert (await c.cmd("EHLO c")).startswith("250")
        await c.send(TXN + MESSAGE + TXN + MESSAGE + b"QUIT\r\n")
        got = await read_all(c)
    assert got.splitlines()[:2] == ["250 2.1.0 Sender <a@x.example> OK", "250 2.1.5 Recipient <b@edge.example> OK"]
    assert "554 5.5.0 Error: SMTP protocol synchronization: command pipelining after DATA" in got
    assert "354" not in got and "221" not in got and got.endswith("<EOF>")
    assert queued(store) == 0


async def test_ehlo_pipelined_on_a_strict_listener_is_554(strict):
    store = make_store(strict.spool_dir)
    async with running(strict, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        await c.send(b"EHLO c\r\nMAIL FROM:<a@x.example>\r\n")
        got = await read_all(c)
    assert got.startswith("554 5.5.0") and got.endswith("<EOF>") and "250" not in got


async def test_the_early_talker_gets_554_before_any_greeting(example_config, caplog):
    cfg = example_config(listen=listen(True, greet_pause="1h"))
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        r, w = await asyncio.open_connection("127.0.0.1", smtpd.port)
        c = Raw(r, w)
        with caplog.at_level(logging.WARNING, logger="edgemail.smtpd"):
            await c.send(b"EHLO c\r\nMAIL FROM:<a@x.example>\r\n")
            got = await read_all(c)
    assert got == "554 5.5.0 Error: SMTP protocol synchronization: talked before the greeting\n<EOF>"
    assert "due to pre-greeting traffic" in caplog.text


async def test_a_client_that_waits_for_the_greeting_gets_it_after_the_pause(example_config):
    cfg = example_config(listen=listen(True, greet_pause="0.1s"))
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        assert c.banner.startswith("220 ")
        assert (await c.cmd("QUIT")).startswith("221")


@pytest.mark.parametrize("strict_listener", [True, False], ids=["strict", "lan"])
async def test_rfc2920_pipelining_still_works(example_config, strict_listener):
    cfg = example_config(listen=listen(strict_listener))
    store = make_store(cfg.spool_dir)
    async with running(cfg, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        await c.cmd("EHLO c")
        await c.send(TXN)
        replies = [await c.reply() for _ in range(3)]
        await c.send(MESSAGE + TXN)                 # the final dot, then the next group
        replies += [await c.reply() for _ in range(4)]
        await c.send(MESSAGE + b"QUIT\r\n")
        replies += [await c.reply() for _ in range(2)]
    assert [r[:3] for r in replies] == ["250", "250", "354", "250", "250", "250", "354", "250", "221"]
    assert queued(store) == 2


async def test_a_refused_data_with_a_message_behind_it_on_lan_is_554(example_config):
    cfg = example_config(listen=listen(False))
    store = make_store(cfg.spool_dir)
    async with running(cfg, store, trust_loopback=False) as smtpd:
        c = await Raw.connect(smtpd.port)
        await c.send(b"EHLO c\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<v@far.example>\r\nDATA\r\n"
                     b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<b@edge.example>\r\nDATA\r\nsmuggled\r\n.\r\n")
        got = await read_all(c)
    assert "554 5.7.1 <v@far.example>... Relaying denied" in got
    assert "554 5.5.0 Error: SMTP protocol synchronization: command pipelining after DATA" in got
    assert got.count("250 2.1.0") == 1 and "354" not in got
    assert queued(store) == 0


async def test_a_bare_lf_on_a_strict_listener_is_500_and_the_end_of_the_session(strict):
    """`NOOP\\nRCPT TO:<..>\\r\\n`: the bare LF is no line end, so the RCPT
    behind it is never run (it used to be, 250 and a message queued)."""
    store = make_store(strict.spool_dir)
    async with running(strict, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        await c.cmd("EHLO c")
        await c.cmd("MAIL FROM:<a@x.example>")
        await c.send(b"NOOP\nRCPT TO:<b@edge.example>\r\nDATA\r\n")
        got = await read_all(c)
    assert got.startswith("500 5.5.2 Error: bare LF or CR in command line"), got
    assert "250" not in got and "354" not in got and got.endswith("<EOF>"), got
    assert queued(store) == 0


@pytest.mark.parametrize("line", [b"MAIL FROM:<a@x.example>\rRCPT TO:<b@edge.example>\r\n"], ids=["bare-cr"])
async def test_bare_cr_commands_on_a_strict_listener_are_500_and_never_run(strict, line):
    store = make_store(strict.spool_dir)
    async with running(strict, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        await c.cmd("EHLO c")
        await c.send(line)
        refused = await c.reply()
        after = await c.cmd("RCPT TO:<b@edge.example>")
        await c.cmd("QUIT")
    assert refused == "500 5.5.2 Error: bare LF or CR in command line; lines must end with CRLF"
    assert after.startswith("503 5.5.1 Error: need MAIL command"), "the MAIL never ran"
    assert queued(store) == 0


async def test_the_bad_syntax_log_line_names_the_bad_line(strict, caplog):
    async with running(strict, make_store(strict.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        await c.cmd("EHLO c")
        await c.cmd("MAIL FROM:<previous@x.example>")
        with caplog.at_level(logging.WARNING, logger="edgemail.smtpd"):
            caplog.clear()
            assert (await c.cmd("\xe9VIL junk")).startswith("500 5.5.2 Error: bad syntax")
        await c.cmd("QUIT")
    (line,) = [r.getMessage() for r in caplog.records if "reject=" in r.getMessage()]
    assert "ruleset=check_cmd" in line and "junk" in line and "previous@x.example" not in line, line


# ---------------------------------------------------------------- free space at MAIL

@pytest.fixture
def small_fs(tmp_path):
    """An 8 MiB tmpfs of our own: the free space is ours to change."""
    mount = tmp_path / "fs"
    mount.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.root
async def test_mail_reads_the_free_space_afresh(example_config, small_fs):
    spool = small_fs / "spool"
    cfg = example_config(listen=listen(False), spool={"directory": str(spool)})
    store = Store(str(spool), min_free_blocks=4096)        # 4 MiB must stay free
    store.recover()
    store.room = Room(str(spool), 4096, monotonic=lambda: 0.0)   # a cached reading never ages
    assert store.has_room(), "8 MiB free: room, and that reading is cached"
    (small_fs / "filler").write_bytes(b"x" * (5 << 20))         # now 3 MiB free
    async with running(cfg, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        await c.cmd("EHLO c")
        mail = await c.cmd("MAIL FROM:<a@x.example>")
        await c.cmd("QUIT")
    assert mail == "452 4.3.1 Insufficient system storage", mail
    assert queued(store) == 0


@pytest.mark.parametrize("strict_listener", [True, False], ids=["strict", "lan"])
@pytest.mark.parametrize("request_line", [b"GET / HTTP/1.1", b"POST /cgi-bin/x HTTP/1.0",
                                          b"CONNECT mail.example:25 HTTP/1.1"])
async def test_an_http_request_ends_the_session_and_nothing_after_it_is_a_command(
        example_config, strict_listener, request_line):
    """A web page can make a browser POST to port 25 (cross-protocol): the
    request line ends the session, the body it carries is never run."""
    cfg = example_config(listen=listen(strict_listener))
    store = make_store(cfg.spool_dir)
    async with running(cfg, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        await c.send(request_line + b"\r\nHost: x\r\n\r\n" + b"HELO evil\r\n" + TXN + MESSAGE)
        got = await read_all(c)
    verb = request_line.split()[0].decode()
    assert got.splitlines() == [f"554 5.7.0 Error: {verb} is no SMTP command (an HTTP request?): goodbye",
                                    "<EOF>"], got
    assert queued(store) == 0
