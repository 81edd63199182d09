"""smtpd/data.py: end of DATA, dot-stuffing, bare CR/LF/NUL hygiene, size (tables)."""

from __future__ import annotations

import re
import pytest
from hypothesis import given, strategies as st

from edgemail.smtpd.data import DataCollector, received_header, summarise

END = b"\r\n.\r\n"

# body as sent (before the final CRLF.CRLF), lenient result, strict refusal naming
HYGIENE = [
    ("plain", b"a\r\nb", b"a\r\nb\r\n", None),
    ("bare LF mid-line", b"a\nb", b"a\r\nb\r\n", "bare LF"),
    ("bare LF line start", b"a\r\n\nb", b"a\r\n\r\nb\r\n", "bare LF"),
    ("bare LF before CRLF", b"a\n\r\nb", b"a\r\n\r\nb\r\n", "bare LF"),
    ("bare CR mid-line", b"a\rb", b"a b\r\n", "bare CR"),
    ("bare CR at end of line", b"a\r\r\nb", b"a \r\nb\r\n", "bare CR"),
    ("bare CR line start", b"\ra", b" a\r\n", "bare CR"),
    ("NUL mid-line", b"a\x00b", b"ab\r\n", "NUL"),
    ("NUL alone", b"\x00", b"\r\n", "NUL"),
    ("NUL in header", b"Subject: x\x00y\r\n\r\nz", b"Subject: xy\r\n\r\nz\r\n", "NUL"),
    ("CR.CR smuggle", b"a\r.\rMAIL FROM:<x@y>", b"a . MAIL FROM:<x@y>\r\n", "bare CR"),
    ("last line bare LF", b"a\nb\n", b"a\r\nb\r\n\r\n", "bare LF"),
    ("bare LF dot-stuffed", b"a\n..b", b"a\r\n.b\r\n", "bare LF"),
]

# a final dot with a bare LF before or after it (QA-4): the end of DATA on a LAN listener (sendmail's
# non-strict rule, bare LF being a line end there); on a strict one no end at all (SMTP smuggling)
BARE_LF_ENDS = [
    ("LF.LF", b"a\n.\n"), ("CRLF.LF", b"a\r\n.\n"), ("LF.CRLF", b"a\n.\r\n"), ("first line .LF", b".\n"),
]


def collect(body: bytes, *, strict: bool, limit: int = 10_000, chunks=None) -> DataCollector:
    c = DataCollector(strict=strict, limit=limit)
    stream = body + END + b"QUIT\r\n"
    pieces = chunks(stream) if chunks else [stream]
    for i, piece in enumerate(pieces):
        if c.feed(piece):
            rest = c.leftover + b"".join(pieces[i + 1:])
            break
    else:
        raise AssertionError("end of DATA not seen")
    assert rest == b"QUIT\r\n", f"got leftover {rest!r}"
    return c


@pytest.mark.parametrize("name,body,lenient,offence", HYGIENE, ids=[h[0] for h in HYGIENE])
def test_lenient_normalises(name, body, lenient, offence):
    c = collect(body, strict=False)
    assert c.refusal is None
    got = c.message()
    assert got == lenient, f"got {got!r}, want {lenient!r}"
    assert b"\x00" not in got and got.replace(b"\r\n", b"").count(b"\r") == 0 \
        and got.replace(b"\r\n", b"").count(b"\n") == 0


@pytest.mark.parametrize("name,body,lenient,offence", HYGIENE, ids=[h[0] for h in HYGIENE])
def test_strict_refuses(name, body, lenient, offence):
    c = collect(body, strict=True)
    if offence is None:
        assert c.refusal is None and c.message() == lenient
    else:
        assert c.refusal == f"550 5.6.0 Message contains {offence}; lines must end with CRLF"
        assert c.message() == b""


def test_dot_stuffing_removed_at_every_line_start_lan_and_crlf_only_strict():
    c = collect(b"..a\r\n.b\r\nx\n..y", strict=False)
    assert c.message() == b".a\r\nb\r\nx\r\n.y\r\n"
    c = collect(b"..a\r\n.b\r\nx", strict=True)
    assert c.message() == b".a\r\nb\r\nx\r\n"


@pytest.mark.parametrize("name,end", BARE_LF_ENDS, ids=[e[0] for e in BARE_LF_ENDS])
@pytest.mark.parametrize("split", [None, 1, 2])
def test_a_bare_lf_around_the_final_dot_ends_data_on_lan_listeners(name, end, split):
    c = DataCollector(strict=False, limit=1000)
    stream = end + b"QUIT\n"
    pieces = [stream] if split is None else [stream[:len(end) - split], stream[len(end) - split:]]
    done = [c.feed(p) for p in pieces]
    assert done[-1] and not any(done[:-1]), done
    assert c.refusal is None and c.message() == (b"a\r\n" if end.startswith(b"a") else b"")
    assert c.leftover == b"QUIT\r\n"


@pytest.mark.parametrize("name,end", BARE_LF_ENDS, ids=[e[0] for e in BARE_LF_ENDS])
def test_a_bare_lf_around_the_final_dot_does_not_end_data_on_strict_listeners(name, end):
    c = DataCollector(strict=True, limit=1000)
    assert not c.feed(end + b"MAIL FROM:<x@y>\r\n")
    assert c.feed(b"\r\n.\r\n") and c.refusal.startswith("550 5.6.0 Message contains bare LF")


def test_empty_message():
    c = DataCollector(strict=True, limit=100)
    assert c.feed(b".\r\n") and c.message() == b"" and c.refusal is None


@pytest.mark.parametrize("strict", [True, False])
def test_too_big_is_refused_after_the_end(strict):
    c = collect(b"x" * 50 + b"\r\n" + b"y" * 60, strict=strict, limit=100)
    assert c.refusal.startswith("552 5.3.4 ") and c.message() == b""


def test_size_exactly_at_limit_is_accepted():
    c = collect(b"x" * 98, strict=True, limit=100)
    assert c.refusal is None and c.size == 100


def test_line_longer_than_limit_does_not_hold_memory_and_cannot_end_data():
    c = DataCollector(strict=True, limit=100)
    assert not c.feed(b"x" * 500)
    assert len(c._buf) <= 101
    assert not c.feed(b".\r\n")          # ends the long line, is not the end marker
    assert c.feed(b".\r\n")
    assert c.refusal.startswith("552 5.3.4")


@given(st.lists(st.integers(1, 40), max_size=30))
def test_chunking_does_not_matter(cuts):
    body = b"H: v\r\n\r\n..dot\na\rb\x00c\r\n" * 5 + b"end"
    whole = collect(body, strict=False)
    stream = body + END + b"QUIT\r\n"

    def chunks(s):
        out, i = [], 0
        for n in cuts:
            if i < len(s):
                out.append(s[i:i + n])
                i += n
        return out + ([s[i:]] if i < len(s) else [])
    pieces = collect(body, strict=False, chunks=chunks)
    assert pieces.message() == whole.message() and pieces.size == whole.size


def test_summarise_headers():
    msg = (b"Received: a\r\nreceived: b\r\nMessage-ID:\r\n <id@x.example>\r\n"
           b"PRECEDENCE:  List \r\n\r\nReceived: body\r\n")
    facts = summarise(msg)
    assert facts.hops == 2 and facts.msgid == "id@x.example" and facts.precedence == "List"


def test_received_header_sanitises_helo():
    h = received_header(helo="evil\r\n(x); y", ip="192.0.2.1", hostname="gw.example",
                        proto="ESMTP", rcpt="u@example.org", when=0)
    assert h.startswith(b"Received: from evil___x___y ([192.0.2.1])\r\n\tby gw.example (edgemail) with ESMTP\r\n\tfor <u@example.org>;\r\n\t")
    assert h.endswith(b"\r\n") and h.count(b"\r\n") == 4


def reference(stream: bytes, *, strict: bool, limit: int):
    """The rules, one CRLF line at a time: (message, size, refusal, leftover); lenient: every bare
    LF read as CRLF first."""
    if not strict:
        stream = re.sub(rb"(?<!\r)\n", b"\r\n", stream)
    lines, size, refusal, rest = [], 0, None, stream
    while True:
        line, _, rest = rest.partition(b"\r\n")
        if line == b".":
            break
        line = line[1:] if line.startswith(b".") else line
        size += len(line) + 2
        if refusal:
            continue
        if size > limit:
            refusal, lines = "552", []
            continue
        bad = [c for c in (b"\r", b"\n", b"\x00") if c in line]
        if bad and strict:
            refusal, lines = "550", []
            continue
        lines.append(line.replace(b"\x00", b"").replace(b"\r", b" ").replace(b"\n", b"\r\n"))
    return b"".join(x + b"\r\n" for x in lines), size, refusal, rest


CLEAN = [b"a", b"bc", b".", b"..", b"\r\n", b"\r\n.", b"\r\n.."]


@given(st.lists(st.sampled_from(CLEAN), max_size=60),
       st.lists(st.tuples(st.integers(0, 60), st.sampled_from([b"\r", b"\n", b"\x00"])), max_size=2),
       st.booleans(), st.integers(5, 400), st.integers(1, 50))
def test_blocks_agree_with_the_line_rules(parts, bad, strict, limit, cut):
    """Whole blocks or small chunks, the result is the line-by-line rule's."""
    for at, char in bad:
        parts.insert(min(at, len(parts)), char)
    body = b"".join(parts)
    stream = body + END + b"MAIL FROM:<x@y>\r\n"
    want, size, refusal, rest = reference(stream, strict=strict, limit=limit)
    for pieces in ([stream], [stream[i:i + cut] for i in range(0, len(stream), cut)]):
        c = DataCollector(strict=strict, limit=limit)
        for i, piece in enumerate(pieces):
            if c.feed(piece):
                break
        got_rest = c.leftover + b"".join(pieces[i + 1:])
        if not strict:
            got_rest = re.sub(rb"(?<!\r)\n", b"\r\n", got_rest)   # the reader's business after the end
        if max(len(x) for x in stream.split(b"\r\n")) > limit:
            continue                     # an over-long line: its own test above
        assert (c.refusal or "")[:3] == (refusal or "") and got_rest == rest
        assert c.size == size and c.message() == (b"" if refusal else want)
