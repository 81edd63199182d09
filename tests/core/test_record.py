"""record.py: tables for the format's rules, hypothesis for round-trip,
truncation and garbage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgemail.envelope import Attempt, Envelope, RcptStatus, Recipient
from edgemail.errors import CorruptQueueFile
from edgemail.spool import record
from edgemail.spool.record import StateUpdate, frame

ENV = Envelope(
    mail_from="shop@example.org",
    recipients=(Recipient("a@example.net", "rfc822;a@example.net", frozenset({"FAILURE", "DELAY"})),
                Recipient("b@example.com")),
    ret="HDRS", envid="QQ314159", body="8BITMIME", smtputf8=True, size=12, precedence=-60,
    msgid="1@till-3", proto="ESMTPA", client="[192.0.2.20]:50312", helo="till-3",
    auth="shop", arrived=1_700_000_000.25)
DATA = b"Subject: hi\r\n\r\nbody\r\n"
ATT = Attempt(RcptStatus.DEFERRED, "4.4.2", "link lost: NO CARRIER", "none", 1_700_000_100.0)


def encoded(updates=()):
    blob = record.encode(ENV, DATA, qid="f344MXxp018717", created=1_700_000_001.0, priority=1234)
    return blob + b"".join(record.encode_update(u) for u in updates)


def test_round_trip_fixed():
    qf = record.decode(encoded([StateUpdate({"a@example.net": ATT}, attempts=1, next_attempt=5.0)]))
    assert (qf.kind, qf.qid, qf.created, qf.priority) == ("queue", "f344MXxp018717", 1_700_000_001.0, 1234)
    assert qf.envelope == ENV
    assert qf.data == DATA
    assert qf.updates == (StateUpdate({"a@example.net": ATT}, attempts=1, next_attempt=5.0),)
    assert not qf.torn


def replace_record(blob: bytes, rtype: bytes, payload: bytes) -> bytes:
    """Re-frame the file with one record's payload swapped (checksums stay right)."""
    out, pos = [], 0
    for t, body, _, end in record._frames(blob, 0):
        out.append(frame(t, payload if t == rtype else body))
        pos = end
    return b"".join(out) + blob[pos:]


GOOD = encoded()
END_AT = len(GOOD)


@pytest.mark.parametrize("blob, why", [
    (b"", "empty"),
    (GOOD[:-1], "END cut"),
    (GOOD[:END_AT - record.FRAME_OVERHEAD - 1], "no END"),
    (replace_record(GOOD, b"V", b"EDGEMAIL 2 queue"), "version 2"),
    (replace_record(GOOD, b"V", b"POSTFIX 1 queue"), "not ours"),
    (replace_record(GOOD, b"V", b"EDGEMAIL 1 spool"), "unknown kind"),
    (replace_record(GOOD, b"X", b"99"), "END count"),
    (replace_record(GOOD, b"T", b"nan"), "nan time"),
    (replace_record(GOOD, b"P", b"x"), "bad priority"),
    (replace_record(GOOD, b"E", b"{}"), "empty envelope"),
    (replace_record(GOOD, b"E", b"[" * 100000), "deep JSON"),
    (replace_record(GOOD, b"R", b'[["a", null, "FAILURE"]]'), "notify not a list"),
    (replace_record(GOOD, b"R", b'["a", null, []]'), "recipient not a list"),
    (b"".join(frame(t, b) for t, b, _, _ in record._frames(GOOD, 0) if t not in (b"R", b"X"))
     + frame(b"X", b"6"), "no recipients record"),
    (replace_record(GOOD, b"I", b"\xff"), "non-ascii qid"),
    (GOOD[:5] + bytes([GOOD[5] ^ 1]) + GOOD[6:], "bit flip in version"),
    (GOOD + frame(b"D", b"x"), "data record after END"),
    (GOOD + frame(b"Q", b"x") + record.encode_update(StateUpdate(held=True)), "unknown record in log"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_rejected(blob, why):
    with pytest.raises(CorruptQueueFile):
        record.decode(blob)


def test_envelope_type_confusion_rejected():
    scalars = json.loads(record.encode_envelope(ENV)[0][5:-4])
    for name, bad in [("size", True), ("smtputf8", 1), ("mail_from", None), ("arrived", "1")]:
        blob = replace_record(GOOD, b"E", json.dumps({**scalars, name: bad}).encode())
        with pytest.raises(CorruptQueueFile):
            record.decode(blob)


def test_kind_checked():
    drop = record.encode(ENV, DATA, kind=record.KIND_MAILDROP)
    assert record.decode(drop, kind="maildrop").kind == "maildrop"
    with pytest.raises(CorruptQueueFile, match="expected a queue file"):
        record.decode(drop, kind="queue")


def test_torn_last_update_ignored_middle_one_rejected():
    u1, u2 = StateUpdate(attempts=1), StateUpdate(attempts=2)
    blob = encoded([u1, u2])
    qf = record.decode(blob[:-3])
    assert qf.updates == (u1,) and qf.torn and qf.length == len(encoded([u1]))
    flipped = bytearray(encoded([u1, u2]))
    flipped[END_AT + 6] ^= 0x40          # inside u1's payload, u2 follows
    with pytest.raises(CorruptQueueFile, match="bad checksum"):
        record.decode(bytes(flipped))


def test_entry_replay():
    done = Attempt(RcptStatus.SENT, "2.0.0", "250 ok", "mx[203.0.113.5]", 7.0)
    qf = record.decode(encoded([
        StateUpdate({"a@example.net": ATT}, attempts=1, next_attempt=100.0),
        StateUpdate(held=True, warned=True),
        StateUpdate({"b@example.com": done}, attempts=2, held=False)]))
    e = record.entry_from(qf, retry_factor=90000)
    assert e.attempts == 2 and e.priority == 1234 + 2 * 90000
    assert e.next_attempt == 100.0 and not e.held and e.warned
    assert e.rcpt_status == {"a@example.net": RcptStatus.DEFERRED, "b@example.com": RcptStatus.SENT}
    assert e.last_reply == {"a@example.net": ATT.text, "b@example.com": "250 ok"}
    assert e.last_attempt["b@example.com"].relay == "mx[203.0.113.5]"
    assert not e.done
    e = record.apply(e, StateUpdate({"a@example.net": done}), retry_factor=90000)
    assert e.done and e.attempts == 2


def test_fresh_entry_is_due_at_creation():
    e = record.entry_from(record.decode(GOOD))
    assert e.next_attempt == 1_700_000_001.0 and e.attempts == 0 and e.size == len(DATA)
    assert set(e.rcpt_status.values()) == {RcptStatus.QUEUED}


# --- properties -------------------------------------------------------------

text = st.text(max_size=20)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
recipients = st.builds(Recipient, text, st.none() | text,
                       st.frozensets(st.sampled_from(["SUCCESS", "FAILURE", "DELAY", "NEVER"])))
envelopes = st.builds(
    Envelope, text, st.lists(recipients, max_size=4).map(tuple),
    ret=st.none() | st.sampled_from(["FULL", "HDRS"]), envid=st.none() | text,
    body=st.none() | st.sampled_from(["7BIT", "8BITMIME"]), smtputf8=st.booleans(),
    size=st.integers(0, 2**40), precedence=st.integers(-100, 100), msgid=text, proto=text,
    client=text, helo=text, auth=text, arrived=finite)
attempts = st.builds(Attempt, st.sampled_from(list(RcptStatus)), text, text, text, finite)
updates = st.builds(StateUpdate, st.dictionaries(text, attempts, max_size=3),
                    st.none() | st.integers(0, 1000), st.none() | finite,
                    st.none() | st.booleans(), st.none() | st.booleans())


@settings(deadline=None)
@given(envelopes, st.binary(max_size=200), st.lists(updates, max_size=3),
       st.sampled_from([record.KIND_QUEUE, record.KIND_MAILDROP]))
def test_round_trip(env, data, ups, kind):
    blob = record.encode(env, data, qid="x", created=3.5, priority=-7, kind=kind)
    blob += b"".join(record.encode_update(u) for u in ups)
    qf = record.decode(blob)
    assert (qf.envelope, qf.data, qf.updates, qf.kind) == (env, data, tuple(ups), kind)
    assert qf.length == len(blob) and not qf.torn


@settings(max_examples=30, deadline=None)
@given(envelopes, st.binary(max_size=64), st.lists(updates, min_size=1, max_size=3))
def test_every_truncation(env, data, ups):
    head = record.encode(env, data)
    logs = [record.encode_update(u) for u in ups]
    blob = head + b"".join(logs)
    for cut in range(len(head)):
        with pytest.raises(CorruptQueueFile):
            record.decode(blob[:cut])
    for cut in range(len(head), len(blob)):
        qf = record.decode(blob[:cut])   # a cut in the log keeps a prefix of it
        assert list(qf.updates) == ups[:len(qf.updates)]
        assert qf.length == len(head) + sum(len(x) for x in logs[:len(qf.updates)])


@settings(max_examples=30, deadline=None)
@given(st.lists(updates, max_size=2), st.data())
def test_bit_flip_never_gives_wrong_values(ups, data):
    blob = encoded(ups)
    pos = data.draw(st.integers(0, len(blob) - 1))
    bit = data.draw(st.integers(0, 7))
    damaged = blob[:pos] + bytes([blob[pos] ^ (1 << bit)]) + blob[pos + 1:]
    try:
        qf = record.decode(damaged)
    except CorruptQueueFile:
        return
    assert pos >= END_AT, "damage in the message part went unnoticed"
    assert (qf.envelope, qf.data) == (ENV, DATA)
    assert list(qf.updates) == ups[:len(qf.updates)] and qf.torn


def decodes_or_corrupt(decoder, blob: bytes) -> None:
    """The decoder may accept the bytes or raise CorruptQueueFile; anything else fails."""
    try:
        decoder(blob)
    except CorruptQueueFile:
        pass


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_garbage_only_raises_corrupt(blob):
    decodes_or_corrupt(record.decode, blob)


@settings(deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(b"VITPERDXU")), st.binary(max_size=40)), max_size=12))
def test_well_framed_garbage_only_raises_corrupt(recs):
    decodes_or_corrupt(record.decode, b"".join(frame(bytes([t]), p) for t, p in recs))


@settings(deadline=None)
@given(st.binary(max_size=60) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.sampled_from("rahnw"), kids, max_size=5),
    max_leaves=12).map(lambda obj: json.dumps(obj).encode()))
def test_garbage_state_record_only_raises_corrupt(payload):
    decodes_or_corrupt(record.decode_update, payload)


# ---------------------------------------------------------------- the index's memory (issue 15)

def _envelope_from_text(n: int) -> Envelope:
    """An envelope whose strings are fresh objects, as a session or a decode makes them."""
    return Envelope(mail_from="".join(["sender", "@lan.example"]),
                    recipients=(Recipient("".join(["someone", "@remote.example"])),),
                    proto="".join(["ES", "MTP"]), client="".join(["[10.0.0.2]:", "5000"]),
                    msgid=f"m{n}@lan.example", size=10)


def test_entries_share_the_words_that_repeat():
    """Two queued messages from one client to one recipient hold one copy of
    each address and of the client text; the entry equals what was committed."""
    a, b = (record.new_entry(f"q{n}", _envelope_from_text(n), created=1.0, size=10, priority=0)
            for n in range(2))
    assert a.envelope.mail_from is b.envelope.mail_from
    assert a.envelope.client is b.envelope.client and a.envelope.proto is b.envelope.proto
    assert a.envelope.recipients[0].address is b.envelope.recipients[0].address
    assert a.envelope.recipients[0].notify is b.envelope.recipients[0].notify
    assert a.envelope == _envelope_from_text(0) and a.envelope.msgid != b.envelope.msgid
    assert next(iter(a.rcpt_status)) is a.envelope.recipients[0].address


def test_an_entry_has_no_instance_dict():
    """slots: no per-entry __dict__ (about 100 bytes each, times 100,000 queued)."""
    e = record.new_entry("q1", _envelope_from_text(1), created=1.0, size=10, priority=0)
    for obj in (e, e.envelope, e.envelope.recipients[0]):
        assert not hasattr(obj, "__dict__")


def test_entries_before_their_first_attempt_share_one_read_only_empty_mapping():
    """No two empty dicts per queued message; the first attempt's results make new ones."""
    a, b = (record.new_entry(f"q{n}", _envelope_from_text(n), created=1.0, size=10, priority=0)
            for n in range(2))
    assert a.last_reply is b.last_reply is a.last_attempt is record.NOTHING_YET
    with pytest.raises(TypeError):
        a.last_reply["x"] = "y"                   # type: ignore[index]
    tried = record.apply(a, StateUpdate(results={"someone@remote.example": ATT}, attempts=1))
    assert tried.last_reply == {"someone@remote.example": ATT.text} and record.NOTHING_YET == {}
