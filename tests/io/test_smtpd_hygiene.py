"""Bare CR, bare LF and NUL in DATA over a real socket: a strict listener
refuses, a LAN listener normalises; on a strict listener `\\n.\\n` and
`\\r.\\r` never end DATA, so nothing after them runs as a command; on a LAN
listener a bare LF is a line end, the final dot's too (QA-4: the client is
answered, not left hanging); whatever is queued carries none of them."""

from __future__ import annotations

import pytest

from tests.io.smtpd_helpers import Raw, make_store, running

HEAD = ("EHLO c", "MAIL FROM:<a@edge.example>", "RCPT TO:<b@edge.example>", "DATA")

CASES = [
    ("bare LF in header", b"Subject: a\nX: b\r\n\r\nbody\r\n"),
    ("bare LF in body", b"Subject: a\r\n\r\nbo\ndy\r\n"),
    ("bare CR at line end", b"Subject: a\r\n\r\nbody\r\r\n"),
    ("NUL in body", b"Subject: a\r\n\r\nbo\x00dy\r\n"),
    ("LF.LF smuggling", b"Subject: a\r\n\r\nbody\n.\nMAIL FROM:<evil@x.example>\nRCPT TO:<v@far.example>\nDATA\nsmuggled\r\n"),
    ("CR.CR smuggling", b"Subject: a\r\n\r\nbody\r.\rMAIL FROM:<evil@x.example>\r\n"),
    ("LF.CRLF smuggling", b"Subject: a\r\n\r\nbody\n.\r\nMAIL FROM:<evil@x.example>\r\n"),
]


async def submit(port: int, body: bytes) -> list[str]:
    c = await Raw.connect(port)
    for line in HEAD:
        await c.cmd(line)
    await c.send(body + b".\r\n")
    out = [await c.reply(), await c.cmd("NOOP"), await c.cmd("QUIT")]
    await c.close()
    return out


#: on a LAN listener these end DATA at their bare LF dot: test_lan_listener_ends_data_at_a_bare_lf_dot
SMUGGLING = ("LF.LF smuggling", "LF.CRLF smuggling")
COMBOS = [pytest.param(strict, name, body, id=f"{name}-{'strict' if strict else 'lan'}")
          for name, body in CASES for strict in (True, False) if strict or name not in SMUGGLING]


@pytest.mark.parametrize("strict,name,body", COMBOS)
async def test_line_ending_hygiene(example_config, strict, name, body):
    cfg = example_config(listen=[{"name": "t", "address": "127.0.0.1", "port": 0, "strict": strict,
                                  "greet_pause": 0}])
    store = make_store(cfg.spool_dir)
    committed = []
    async with running(cfg, store, on_commit=committed.append) as smtpd:
        final, noop, quit_ = await submit(smtpd.port, body)
    # exactly one reply to the one DATA: nothing smuggled ran as a command
    assert noop.startswith("250 2.0.0") and quit_.startswith("221 2.0.0"), (final, noop, quit_)
    if strict:
        assert final.startswith("550 5.6.0 Message contains "), final
        assert committed == []
        return
    assert final.startswith("250 2.0.0 ") and len(committed) == 1
    data = store.read_data(committed[0])
    assert b"\x00" not in data
    assert b"\r" not in data.replace(b"\r\n", b""), data
    assert b"\n" not in data.replace(b"\r\n", b""), data
    assert store.get(committed[0]).envelope.size == len(data)
    assert store.get(committed[0]).envelope.nrcpts == 1


@pytest.mark.parametrize("end", [b"\n.\n", b"\r\n.\n", b"\n.\r\n"], ids=["LF.LF", "CRLF.LF", "LF.CRLF"])
async def test_lan_listener_ends_data_at_a_bare_lf_dot(example_config, end):
    """QA-4: a client writing LF line ends (its final dot too) gets its 250 and its message is
    queued, CRLF only; the next line is its next command."""
    cfg = example_config(listen=[{"name": "t", "address": "127.0.0.1", "port": 0, "greet_pause": 0}])
    store = make_store(cfg.spool_dir)
    committed = []
    async with running(cfg, store, on_commit=committed.append) as smtpd:
        c = await Raw.connect(smtpd.port)
        for line in HEAD:
            await c.send(line + "\n")
            await c.reply()
        await c.send(b"Subject: lf\n\n..dotted\nbody" + end)
        final = await c.reply()
        bye = await c.cmd("QUIT")
        await c.close()
    assert final.startswith("250 2.0.0 ") and bye.startswith("221"), (final, bye)
    assert store.read_data(committed[0]).endswith(b"\r\nSubject: lf\r\n\r\n.dotted\r\nbody\r\n")


@pytest.mark.parametrize("end", [b"\n.\n", b"\r\n.\n"], ids=["LF.LF", "CRLF.LF"])
async def test_strict_listener_keeps_its_end_of_data(example_config, end):
    """issue 16 §2: on a strict listener the same bytes end nothing; the CRLF.CRLF that follows
    ends the message, refused for its bare LF."""
    cfg = example_config(listen=[{"name": "t", "address": "127.0.0.1", "port": 0, "strict": True,
                                  "greet_pause": 0}])
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        for line in HEAD:
            await c.cmd(line)
        await c.send(b"Subject: lf\r\n\r\nbody" + end + b"MAIL FROM:<evil@x.example>\r\n.\r\n")
        final = await c.reply()
        noop = await c.cmd("NOOP")
        await c.close()
    assert final.startswith("550 5.6.0 Message contains bare LF") and noop.startswith("250"), final
