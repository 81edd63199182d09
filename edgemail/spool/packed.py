"""packed.py - one queue entry as one immutable bytes object (pure; no I/O).

NAME
    packed - pack(entry, words) -> bytes; unpack(blob, words) -> QueueEntry

DESCRIPTION
    The in-memory index (index.py) keeps each QueueEntry packed, not as the
    dozen Python objects a QueueEntry is (the entry, its Envelope, a tuple
    of Recipients, the rcpt_status dict...: ~700 B each, issue 15).  A blob
    is

        HEAD:  created (f64) | next_attempt (f64) | size (i64) | flags (u8)
        TIMER: the entry's DSN timer, a monotonic deadline (f64; inf: none)
        LEN:   the length of LISTED (u32)
        LISTED: marshal (version 4) of what mailq prints besides HEAD: sender,
               recipients, their status, the last replies and attempts
        REST:  marshal of the other fields

    HEAD is what the hot readers (the link's demand, timers) need without
    unpacking REST: ``head(blob)``.  Strings that repeat from message to
    message (senders, recipient addresses, client, HELO, protocol, BODY,
    RET, AUTH) are kept once in Words, a table with a count per string, and
    REST holds their numbers; strings of one message (Message-ID, ENVID,
    ORCPT, replies) are in REST itself.  marshal is the stdlib's fastest
    codec of plain tuples, and reads back exactly what it wrote.

    TIMER is no part of the QueueEntry: the runner's retry loop keeps its
    timers there (index.Timers) rather than in a dict of its own (~70 B a
    message); a put keeps it.

    Flags: HELD, WARNED, URGENT (Envelope.urgency, for the demand) and two
    bits a reader may set on a packed entry (MARK_KNOWN, MARK_YES: the
    link's "needs the line" answer, mtaport.py), cleared whenever the entry
    is put again.

INVARIANT
    unpack(pack(e, words), words) == e, for every QueueEntry e (Attempt.extra
    included, though it does not take part in ==).
"""

from __future__ import annotations

import marshal
import struct
from array import array
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from edgemail.envelope import Attempt, Envelope, RcptStatus, Recipient
from edgemail.spool.record import NOTHING_YET, QueueEntry

HEAD = struct.Struct("<ddqB")
TIMER = struct.Struct("<d")
LISTED = struct.Struct("<I")
LISTED_AT = HEAD.size + TIMER.size
REST_AT = LISTED_AT + LISTED.size
NO_TIMER = float("inf")
HELD, WARNED, URGENT, MARK_KNOWN, MARK_YES = 1, 2, 4, 8, 16
MARKS = MARK_KNOWN | MARK_YES

_STATUS = tuple(RcptStatus)
_CODE = {s: i for i, s in enumerate(_STATUS)}


class Words:
    """Strings kept once, by number, with a count of the entries using each."""

    def __init__(self) -> None:
        self._number: dict[str, int] = {}
        self.words: list[str] = []
        self._uses = array("L")
        self._free: list[int] = []

    def add(self, word: str | None) -> int | None:
        if word is None:
            return None
        n = self._number.get(word)
        if n is None:
            if self._free:
                n = self._free.pop()
                self.words[n] = word
                self._uses[n] = 0
            else:
                n = len(self.words)
                self.words.append(word)
                self._uses.append(0)
            self._number[word] = n
        self._uses[n] += 1
        return n

    def drop(self, n: int | None) -> None:
        if n is None:
            return
        self._uses[n] -= 1
        if not self._uses[n]:
            del self._number[self.words[n]]
            self.words[n] = ""
            self._free.append(n)

    def clear(self) -> None:
        self.__init__()      # type: ignore[misc]

    def __len__(self) -> int:
        return len(self._number)


def flags_of(entry: QueueEntry) -> int:
    return ((HELD if entry.held else 0) | (WARNED if entry.warned else 0)
            | (URGENT if entry.envelope.precedence > 0 else 0))


def pack(entry: QueueEntry, words: Words, timer: float = NO_TIMER) -> bytes:
    """ENTRY (and TIMER) as one bytes object; its repeating strings are added to WORDS."""
    env, add = entry.envelope, words.add
    rcpts = tuple((add(r.address), r.orcpt, tuple(sorted(r.notify)) if r.notify else None)
                  for r in env.recipients)
    addresses = list(dict.fromkeys(r.address for r in env.recipients))
    if list(entry.rcpt_status) == addresses:
        status: object = bytes(_CODE[s] for s in entry.rcpt_status.values())
    else:
        status = tuple((add(a), _CODE[s]) for a, s in entry.rcpt_status.items())
    last = None
    if entry.last_reply or entry.last_attempt:
        last = (tuple(entry.last_reply.items()),
                tuple((a, (_CODE[t.status], t.dsn, t.text, t.relay, t.at, _plain(t.extra)))
                      for a, t in entry.last_attempt.items()))
    listed: Any = (add(env.mail_from), rcpts, status, last)
    rest: Any = (entry.priority, entry.attempts, add(env.ret), env.envid, add(env.body),
                 env.smtputf8, env.size, env.precedence, env.msgid, add(env.proto),
                 add(env.client), add(env.helo), add(env.auth), env.arrived)
    first = marshal.dumps(listed, 4)
    return (HEAD.pack(entry.created, entry.next_attempt, entry.size, flags_of(entry))
            + TIMER.pack(timer) + LISTED.pack(len(first)) + first + marshal.dumps(rest, 4))


_PLAIN = (str, int, float, bool, type(None))


def _plain(extra: dict) -> dict | None:
    """EXTRA as marshal keeps it: its plain values (the queue file keeps none
    of it, and it takes no part in ==; a put must never fail)."""
    if not extra:
        return None
    return {k: v for k, v in extra.items() if type(k) is str and type(v) in _PLAIN} or None


def _rest(blob: bytes) -> tuple:
    """LISTED + REST, as one tuple."""
    view, (n,) = memoryview(blob), LISTED.unpack_from(blob, LISTED_AT)
    return marshal.loads(view[REST_AT:REST_AT + n]) + marshal.loads(view[REST_AT + n:])


def _listed(blob: bytes) -> tuple:
    return marshal.loads(memoryview(blob)[REST_AT:])     # what follows LISTED is ignored


def head(blob: bytes) -> tuple[float, float, int, int]:
    """(created, next_attempt, size, flags), without unpacking the rest."""
    return HEAD.unpack_from(blob)


def drop_words(blob: bytes, words: Words) -> None:
    """Give back the strings a blob numbered (it leaves the index)."""
    rest = _rest(blob)
    for n in (rest[0], rest[6], rest[8], *rest[13:17]):
        words.drop(n)
    for r in rest[1]:
        words.drop(r[0])
    if type(rest[2]) is tuple:
        for a, _ in rest[2]:
            words.drop(a)


def unpack(qid: str, blob: bytes, words: Words) -> QueueEntry:
    """The QueueEntry that pack() was given (equal to it)."""
    created, next_attempt, size, flags = HEAD.unpack_from(blob)
    (mail_from, rcpts, status, last, priority, attempts, ret, envid, body, smtputf8, env_size,
     precedence, msgid, proto, client, helo, auth, arrived) = _rest(blob)
    w = words.words
    recipients = tuple(Recipient(w[a], orcpt, frozenset(notify) if notify else _NO_NOTIFY)
                       for a, orcpt, notify in rcpts)
    env = Envelope(mail_from=w[mail_from], recipients=recipients, ret=_word(w, ret), envid=envid,
                   body=_word(w, body), smtputf8=smtputf8, size=env_size, precedence=precedence,
                   msgid=msgid, proto=w[proto], client=w[client], helo=w[helo], auth=w[auth],
                   arrived=arrived)
    if type(status) is bytes:
        addresses = dict.fromkeys(r.address for r in recipients)
        rcpt_status = {a: _STATUS[c] for a, c in zip(addresses, status)}
    else:
        rcpt_status = {w[a]: _STATUS[c] for a, c in status}
    last_reply, last_attempt = _last(last)
    return QueueEntry(qid=qid, envelope=env, created=created, size=size, priority=priority,
                      attempts=attempts, next_attempt=next_attempt, held=bool(flags & HELD),
                      rcpt_status=rcpt_status, last_reply=last_reply, warned=bool(flags & WARNED),
                      last_attempt=last_attempt)


_NO_NOTIFY: frozenset[str] = frozenset()


def _word(words: list[str], n: int | None) -> str | None:
    return None if n is None else words[n]


def _last(last):
    if last is None:
        return NOTHING_YET, NOTHING_YET
    replies, attempts = last
    return dict(replies), {a: Attempt(_STATUS[c], dsn, text, relay, at, extra or {})
                           for a, (c, dsn, text, relay, at, extra) in attempts}


def timer(blob: bytes) -> float:
    return TIMER.unpack_from(blob, HEAD.size)[0]


def with_timer(blob: bytes, deadline: float) -> bytes:
    """BLOB with its TIMER set to DEADLINE."""
    return blob[:HEAD.size] + TIMER.pack(deadline) + blob[LISTED_AT:]


def with_marks(blob: bytes, marks: int) -> bytes:
    """BLOB with its MARK bits set to MARKS."""
    flags = blob[HEAD.size - 1]
    return blob[:HEAD.size - 1] + bytes(((flags & ~MARKS) | marks,)) + blob[HEAD.size:]


def brief(blob: bytes, words: Words) -> tuple[bool, int, float, int, str, list | None, list[str]]:
    """What mailq prints of a packed entry, without building it: (held,
    size, created, flags, sender, rcpts, addresses).  RCPTS: [(address,
    status | None, last reply)] in envelope order, or None when the entry
    is as committed (never attempted, every recipient queued): then
    ADDRESSES, the recipients, is all there is to print."""
    created, _, size, flags = HEAD.unpack_from(blob)
    sender, rcpts, status, last = _listed(blob)
    w = words.words
    addresses = [w[r[0]] for r in rcpts]
    if last is None and type(status) is bytes and not status.strip(_QUEUED):
        return bool(flags & HELD), size, created, flags, w[sender], None, addresses
    if type(status) is bytes:
        states = dict(zip(dict.fromkeys(addresses), (_STATUS[c] for c in status)))
    else:
        states = {w[a]: _STATUS[c] for a, c in status}
    replies = dict(last[0]) if last is not None else {}
    listed = [(a, states.get(a), replies.get(a, "")) for a in addresses]
    return bool(flags & HELD), size, created, flags, w[sender], listed, addresses


_QUEUED = bytes((_CODE[RcptStatus.QUEUED],))


def briefs(blobs: Mapping[str, bytes], qids: Iterable[str], words: Words) -> Iterator[tuple[str, tuple]]:
    """(qid, brief(its blob)) for each of QIDS still in BLOBS: one loop, the
    usual entry (as committed) read inline (mailq of 100,000 entries)."""
    head, loads, w, queued = HEAD.unpack_from, marshal.loads, words.words, _QUEUED
    for qid in qids:
        blob = blobs.get(qid)
        if blob is None:
            continue
        sender, rcpts, status, last = loads(memoryview(blob)[REST_AT:])
        if last is None and type(status) is bytes and not status.strip(queued):
            created, _, size, flags = head(blob)
            yield qid, (flags & HELD != 0, size, created, flags, w[sender], None, [w[r[0]] for r in rcpts])
        else:
            yield qid, brief(blob, words)
