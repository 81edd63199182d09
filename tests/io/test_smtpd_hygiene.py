"""Bare CR, bare LF and NUL in DATA over a real socket: a strict listener
refuses, a LAN listener normalises; `\\n.\\n` and `\\r.\\r` never end DATA, so
nothing after them runs as a command; whatever is queued carries none."""

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


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lan"])
@pytest.mark.parametrize("name,body", CASES, ids=[c[0] for c in CASES])
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
