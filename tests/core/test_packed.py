"""spool/packed.py and spool/index.py: a packed entry unpacks equal to the
entry put; the repeating strings are kept once and given back; a reader's
marks are cleared by a put; watchers see every change."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgemail.envelope import Attempt, Envelope, RcptStatus, Recipient
from edgemail.spool import packed, record
from edgemail.spool.index import Index
from edgemail.spool.record import StateUpdate

from tests.core.test_record import ENV, envelopes, finite, updates

QID = "f344MXxp018717"


def entry(env=ENV, ups=(), **kw):
    e = record.new_entry(QID, env, created=1_700_000_001.0, size=12, priority=1234)
    for u in ups:
        e = record.apply(e, u, retry_factor=90000)
    return e


@settings(deadline=None)
@given(envelopes.filter(lambda e: e.recipients), st.lists(updates, max_size=3), finite)
def test_unpack_equals_what_was_packed(env, ups, created):
    e = record.new_entry(QID, env, created=created, size=7, priority=-3)
    for u in ups:
        e = record.apply(e, u, retry_factor=90000)
    words = packed.Words()
    assert packed.unpack(QID, packed.pack(e, words), words) == e


def test_attempt_extra_kept_and_status_outside_the_envelope():
    extra = {"scope": "link", "next_hop_dsn": True}
    att = Attempt(RcptStatus.DEFERRED, "4.4.2", "NO CARRIER", "none", 5.0, extra=extra)
    e = entry(ups=[StateUpdate({"a@example.net": att, "x>y@example.org": att}, attempts=1,
                               next_attempt=9.0, held=True, warned=True)])
    words = packed.Words()
    got = packed.unpack(QID, packed.pack(e, words), words)
    assert got == e and got.held and got.warned and got.next_attempt == 9.0
    assert got.last_attempt["a@example.net"].extra == extra
    odd = Attempt(RcptStatus.SENT, "2.0.0", "ok", "mx", 6.0, extra={"scope": "message", "obj": object()})
    e2 = record.apply(e, StateUpdate({"a@example.net": odd}))
    assert packed.unpack(QID, packed.pack(e2, words), words).last_attempt["a@example.net"].extra == {
        "scope": "message"}                     # what marshal cannot keep is left out, the put never fails
    assert list(got.rcpt_status) == list(e.rcpt_status)


def test_words_are_shared_and_given_back():
    index = Index()
    for n in range(50):
        env = Envelope("shop@example.org", (Recipient("a@example.net"), Recipient("a@example.net")),
                       msgid=f"{n}@till", proto="ESMTP", client="[192.0.2.20]:50312", helo="till")
        index.put(record.new_entry(f"f344MXxp{n:06d}", env, created=1.0, size=1, priority=0))
    assert len(index.words) == 6            # sender, recipient, proto, client, helo, auth "": once each
    index.put(entry())                      # QID: a second message's words join
    for n in range(50):
        index.discard(f"f344MXxp{n:06d}")
    assert len(index) == 1 and index.get(QID) == entry()
    assert sorted(w for w in index.words.words if w) == sorted(
        {"shop@example.org", "a@example.net", "b@example.com", "HDRS", "8BITMIME", "ESMTPA",
         "[192.0.2.20]:50312", "till-3", "shop"})
    index.discard(QID)
    assert len(index.words) == 0


def test_marks_heads_and_watchers():
    index, seen = Index(), []
    index.watch(lambda qid, old, new: seen.append((qid, old, new)))
    e = entry()
    index.put(e)
    assert index.marks(QID) == 0
    index.set_marks(QID, packed.MARK_KNOWN | packed.MARK_YES)
    assert index.marks(QID) == packed.MARKS and index.get(QID) == e
    assert list(index.heads()) == [(QID, e.created, e.next_attempt, 12, packed.MARKS)]
    later = record.apply(e, StateUpdate(next_attempt=99.0, held=True))
    index.put(later)
    assert index.marks(QID) == 0 and index.get(QID) == later
    index.discard(QID)
    assert seen == [(QID, None, (e.created, e.next_attempt, 12, 0)),
                    (QID, (e.created, e.next_attempt, 12, packed.MARKS), (e.created, 99.0, 12, packed.HELD)),
                    (QID, (e.created, 99.0, 12, packed.HELD), None)]


def test_urgent_flag_follows_precedence():
    words = packed.Words()
    urgent = entry(Envelope("a@b", (Recipient("c@d"),), precedence=100))
    assert packed.head(packed.pack(urgent, words))[3] & packed.URGENT
    assert not packed.head(packed.pack(entry(), words))[3] & packed.URGENT


@settings(deadline=None)
@given(envelopes.filter(lambda e: e.recipients), st.lists(updates, max_size=3), st.booleans())
def test_mailq_text_from_the_packed_fields_equals_the_entrys(env, ups, held):
    from edgemail.daemon.listing import mailq_entry, packed_text
    e = record.new_entry(QID, env, created=1_700_000_061.5, size=7, priority=-3)
    for u in [*ups, StateUpdate(held=held)]:
        e = record.apply(e, u, retry_factor=90000)
    words = packed.Words()
    blob = packed.pack(e, words)
    assert packed_text(QID, packed.brief(blob, words)) == mailq_entry(e)
    assert list(packed.briefs({QID: blob}, [QID, "gone"], words)) == [(QID, packed.brief(blob, words))]



def test_timers_live_in_the_blob_and_survive_a_put():
    from edgemail.spool.index import Timers
    index = Index()
    timers = Timers(index)
    e = entry()
    index.put(e)
    timers["nobody"] = 5.0                      # not queued: dropped
    assert list(timers.items()) == []
    timers[QID] = 42.0
    index.set_marks(QID, packed.MARK_KNOWN)
    index.put(record.apply(e, StateUpdate(next_attempt=7.0)))
    assert list(timers.items()) == [(QID, 42.0)] and index.get(QID).next_attempt == 7.0
    del timers[QID]
    assert list(timers.values()) == [] and index.get(QID) == record.apply(e, StateUpdate(next_attempt=7.0))
