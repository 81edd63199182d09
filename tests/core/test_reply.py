"""reply.py: multiline replies, enhanced codes, chunking invariance, malformed input."""

import pytest
from hypothesis import given, strategies as st

from edgemail.errors import RemoteProtocolError
from edgemail.smtpc.reply import Reply, ReplyParser

STREAM = (b"220 mx.example ESMTP ready\r\n"
          b"250-mx.example\r\n250-SIZE 1000\r\n250-PIPELINING\r\n250 DSN\r\n"
          b"550 5.1.1 <x@example.org>: no such user\r\n"
          b"421-4.3.2 going down\r\n421 4.3.2 bye\n"
          b"354 go ahead\r\n250\r\n")


def whole(data: bytes) -> list[Reply]:
    return ReplyParser().feed(data)


def test_parses_stream():
    got = whole(STREAM)
    assert [r.code for r in got] == [220, 250, 550, 421, 354, 250]
    assert got[1].lines == ("mx.example", "SIZE 1000", "PIPELINING", "DSN")
    assert got[2].enhanced == "5.1.1" and got[2].permanent and not got[2].temporary
    assert got[3].enhanced == "4.3.2" and got[3].temporary and got[3].text == "4.3.2 going down 4.3.2 bye"
    assert got[4].positive and got[0].enhanced is None
    assert got[5].lines == ("",)


@pytest.mark.parametrize("line,want", [
    (b"250 2.0.0 ok\r\n", "2.0.0"),
    (b"250 5.0.0 class disagrees\r\n", None),
    (b"451 4.7.10 long detail\r\n", "4.7.10"),
    (b"550 5.1.1x not a code\r\n", None),
    (b"250 ok\r\n", None),
], ids=["plain", "class-mismatch", "three-digit-detail", "glued", "none"])
def test_enhanced(line, want):
    (r,) = whole(line)
    assert r.enhanced == want, f"got {r.enhanced}, want {want}"
    assert r.dsn() == (want or f"{r.code // 100}.0.0")


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_chunking_invariant(cuts):
    p = ReplyParser()
    got = []
    edges = [0, *sorted(cuts), len(STREAM)]
    for a, b in zip(edges, edges[1:]):
        got += p.feed(STREAM[a:b])
    assert got == whole(STREAM)
    assert not p.pending


def test_byte_by_byte():
    p = ReplyParser()
    got = [r for i in range(len(STREAM)) for r in p.feed(STREAM[i:i + 1])]
    assert got == whole(STREAM)


@pytest.mark.parametrize("bad", [
    b"hello\r\n", b"25\r\n", b"099 low\r\n", b"600 high\r\n", b"250x bad sep\r\n",
    b"250-a\r\n251 b\r\n", b"2" * 5000,
], ids=["words", "short", "low", "high", "separator", "mixed-codes", "endless-line"])
def test_malformed(bad):
    p = ReplyParser()
    with pytest.raises(RemoteProtocolError):
        p.feed(bad)
    with pytest.raises(RemoteProtocolError):     # stays broken
        p.feed(b"250 ok\r\n")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_remote_protocol_error(data):
    try:
        ReplyParser().feed(data)
    except RemoteProtocolError:
        pass
