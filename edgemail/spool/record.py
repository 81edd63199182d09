"""record.py - the queue file format: typed, length-prefixed, checksummed records.

NAME
    record - encode and decode queue files and maildrop files (pure; no I/O)

DESCRIPTION
    A queue file is a sequence of frames.  Every frame is

        type (1 byte) | length (4 bytes, big-endian) | payload | crc32 (4 bytes)

    and the CRC-32 covers type, length and payload, so a flipped bit anywhere
    is seen.  As in Postfix's mail_stream.c, the first record names the format
    and version and the message part must end with an explicit END record, so
    a file cut short is never taken for a whole one:

        V  "EDGEMAIL <version> <kind>"    kind: "queue" or "maildrop"
        I  queue id ("" in a maildrop file: the daemon assigns one on import)
        T  creation time, POSIX seconds (repr of a float)
        P  sendmail priority at creation (decimal; RetryFactor is added per attempt)
        E  envelope scalars (JSON object: mail_from, ret, envid, body, ...)
        R  the recipients (JSON array of [address, orcpt, sorted NOTIFY values])
        D  the message data (headers + body, CRLF), bytes as they are
        X  END: the number of records before it (decimal)

    After END comes the state log: U records appended one at a time, each a
    JSON object with any of
        "r": {address: [status, dsn, reply text, relay, time]}  attempt results
        "a": attempts made (absolute)      "n": next attempt time (POSIX s)
        "h": held (bool)                   "w": delay warning sent (bool)
    Later records override earlier ones, field by field and recipient by
    recipient (``apply``).  Only the last U record can be torn by a crash (the
    store appends one and fsyncs before the next); a last record that is cut
    short or fails its CRC is ignored and reported as ``torn`` so the store can
    truncate it away.  A bad record with anything after it is corruption.

INVARIANTS
    decode(encode(x)) == x.  Every proper prefix of the message part is
    rejected.  Decoding arbitrary bytes returns a QueueFile or raises
    CorruptQueueFile, nothing else.

NEVER
    Reads files, reads clocks, or logs: the store does that (store.py).
"""

from __future__ import annotations

import json
import math
import struct
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from edgemail.envelope import Attempt, Envelope, RcptStatus, Recipient
from edgemail.errors import CorruptQueueFile

VERSION = 1
KIND_QUEUE = "queue"
KIND_MAILDROP = "maildrop"
_VERSION_BYTES = str(VERSION).encode("ascii")

_HEAD = struct.Struct(">cI")
_CRC = struct.Struct(">I")
FRAME_OVERHEAD = _HEAD.size + _CRC.size

_MESSAGE_TYPES = frozenset(b"VITPERDX")
_SCALARS = {  # envelope field -> accepted JSON types
    "mail_from": (str,), "ret": (str, type(None)), "envid": (str, type(None)),
    "body": (str, type(None)), "smtputf8": (bool,), "size": (int,),
    "precedence": (int,), "msgid": (str,), "proto": (str,), "client": (str,),
    "helo": (str,), "auth": (str,), "arrived": (float, int),
}


@dataclass(frozen=True)
class StateUpdate:
    """One appended U record.  None / empty means "unchanged"."""

    results: dict[str, Attempt] = field(default_factory=dict)
    attempts: int | None = None
    next_attempt: float | None = None
    held: bool | None = None
    warned: bool | None = None


@dataclass(frozen=True)
class QueueFile:
    """A decoded queue or maildrop file."""

    kind: str
    qid: str
    created: float
    priority: int
    envelope: Envelope
    data: bytes
    updates: tuple[StateUpdate, ...] = ()
    #: bytes up to the end of the last good record (the store truncates to it)
    length: int = 0
    #: the last state record was cut short or failed its CRC and was ignored
    torn: bool = False


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """What the store keeps in memory for one queued message (docs/interfaces.md)."""

    qid: str
    envelope: Envelope
    created: float
    size: int
    priority: int
    attempts: int
    next_attempt: float
    held: bool
    rcpt_status: dict[str, RcptStatus]
    last_reply: Mapping[str, str]
    warned: bool
    #: the last Attempt per recipient (relay, dsn, time), for mailq and DSNs
    last_attempt: Mapping[str, Attempt] = field(default_factory=lambda: NOTHING_YET)

    @property
    def done(self) -> bool:
        """Every recipient is final (sent, bounced or expired): the entry can go."""
        return all(s.final for s in self.rcpt_status.values())


# --- frames -----------------------------------------------------------------

def frame(rtype: bytes, payload: bytes) -> bytes:
    """One record: type, length, payload, CRC-32 of all three."""
    head = _HEAD.pack(rtype, len(payload))
    return head + payload + _CRC.pack(zlib.crc32(payload, zlib.crc32(head)))


def _frames(buf: bytes, pos: int):
    """Yield (type, payload, start, end) per record; a bad record yields
    (None, reason, start, len(buf) or end) and stops."""
    size = len(buf)
    while pos < size:
        if size - pos < FRAME_OVERHEAD:
            yield None, "record cut short", pos, size
            return
        rtype, length = _HEAD.unpack_from(buf, pos)
        end = pos + _HEAD.size + length + _CRC.size
        if end > size:
            yield None, "record cut short", pos, size
            return
        body = buf[pos + _HEAD.size:end - _CRC.size]
        (crc,) = _CRC.unpack_from(buf, end - _CRC.size)
        if crc != zlib.crc32(body, zlib.crc32(buf[pos:pos + _HEAD.size])):
            yield None, "bad checksum", pos, end
            return
        yield rtype, body, pos, end
        pos = end


# --- encoding ---------------------------------------------------------------

def _json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii")


def encode_envelope(env: Envelope) -> list[bytes]:
    scalars = {name: getattr(env, name) for name in _SCALARS}
    rcpts = [[r.address, r.orcpt, sorted(r.notify)] for r in env.recipients]
    return [frame(b"E", _json(scalars)), frame(b"R", _json(rcpts))]


def encode(env: Envelope, data: bytes, *, qid: str = "", created: float = 0.0,
           priority: int = 0, kind: str = KIND_QUEUE) -> bytes:
    """The message part of a queue file (or a whole maildrop file), END included."""
    records = [
        frame(b"V", f"EDGEMAIL {VERSION} {kind}".encode("ascii")),
        frame(b"I", qid.encode("ascii")),
        frame(b"T", repr(float(created)).encode("ascii")),
        frame(b"P", str(int(priority)).encode("ascii")),
        *encode_envelope(env),
        frame(b"D", bytes(data)),
    ]
    records.append(frame(b"X", str(len(records)).encode("ascii")))
    return b"".join(records)


def encode_update(update: StateUpdate) -> bytes:
    """One U record, to append after END."""
    obj: dict = {}
    if update.results:
        obj["r"] = {addr: [a.status.value, a.dsn, a.text, a.relay, float(a.at)]
                    for addr, a in update.results.items()}
    for key, value in (("a", update.attempts), ("n", update.next_attempt),
                       ("h", update.held), ("w", update.warned)):
        if value is not None:
            obj[key] = value
    return frame(b"U", _json(obj))


# --- decoding ---------------------------------------------------------------

def _corrupt(what: str, pos: int) -> CorruptQueueFile:
    return CorruptQueueFile(f"{what} at byte {pos}")


def _load_json(payload: bytes, pos: int):
    try:
        return json.loads(payload.decode("ascii"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _corrupt(f"bad JSON ({exc.__class__.__name__})", pos) from None


def _check(cond: bool, what: str, pos: int) -> None:
    if not cond:
        raise _corrupt(what, pos)


def _number(payload: bytes, kind, pos: int):
    try:
        value = kind(payload.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise _corrupt("bad number", pos) from None
    _check(math.isfinite(value), "bad number", pos)
    return value


def _is(value, types) -> bool:
    # bool is an int in Python; keep them apart
    return type(value) in types


def decode_envelope(scalars_payload: bytes, rcpt_payload: bytes, pos: int) -> Envelope:
    scalars = _load_json(scalars_payload, pos)
    _check(type(scalars) is dict and scalars.keys() == _SCALARS.keys(), "bad envelope record", pos)
    bad = [name for name, types in _SCALARS.items() if type(scalars[name]) not in types]
    if bad or not math.isfinite(scalars["arrived"]):
        raise _corrupt(f"bad envelope field {(bad or ['arrived'])[0]}", pos)
    scalars["arrived"] = float(scalars["arrived"])
    rcpts = _load_json(rcpt_payload, pos)
    _check(type(rcpts) is list and all(
        type(r) is list and len(r) == 3 and type(r[0]) is str and _is(r[1], (str, type(None)))
        and type(r[2]) is list and all(type(n) is str for n in r[2]) for r in rcpts),
        "bad recipient record", pos)
    return Envelope(recipients=tuple(Recipient(a, o, frozenset(n)) for a, o, n in rcpts),
                    **scalars)


def _decode_attempt(value, pos: int) -> Attempt:
    _check(type(value) is list and len(value) == 5, "bad attempt", pos)
    status, dsn, text, relay, at = value
    _check(all(type(v) is str for v in (status, dsn, text, relay))
           and _is(at, (float, int)) and math.isfinite(at), "bad attempt", pos)
    try:
        st = RcptStatus(status)
    except ValueError:
        raise _corrupt(f"unknown status {status!r}", pos) from None
    return Attempt(st, dsn, text, relay, float(at))


def decode_update(payload: bytes, pos: int = 0) -> StateUpdate:
    obj = _load_json(payload, pos)
    _check(type(obj) is dict and set(obj) <= {"r", "a", "n", "h", "w"}, "bad state record", pos)
    results = obj.get("r", {})
    _check(type(results) is dict, "bad state record", pos)
    attempts, nxt = obj.get("a"), obj.get("n")
    _check(attempts is None or (type(attempts) is int and attempts >= 0), "bad attempts", pos)
    _check(nxt is None or (_is(nxt, (float, int)) and math.isfinite(nxt)), "bad next attempt", pos)
    for flag in ("h", "w"):
        _check(obj.get(flag) is None or type(obj[flag]) is bool, "bad flag", pos)
    return StateUpdate(
        results={addr: _decode_attempt(v, pos) for addr, v in results.items()},
        attempts=attempts, next_attempt=None if nxt is None else float(nxt),
        held=obj.get("h"), warned=obj.get("w"))


def _message_part(buf: bytes):
    """Parse up to and including END; return (fields, end offset)."""
    got: dict[bytes, tuple[bytes, int]] = {}
    count = 0
    for rtype, body, start, end in _frames(buf, 0):
        if rtype is None:
            raise _corrupt(body, start)
        if count == 0 and rtype != b"V":
            raise _corrupt("no version record", start)
        if rtype[0] not in _MESSAGE_TYPES:
            raise _corrupt(f"unexpected record {rtype!r}", start)
        if rtype == b"X":
            _check(_number(body, int, start) == count, "END record count mismatch", start)
            return got, end
        if rtype in got:
            raise _corrupt(f"repeated record {rtype!r}", start)
        got[rtype] = (body, start)
        count += 1
    raise _corrupt("no END record", len(buf))


def _version(payload: bytes, pos: int, kind: str | None) -> str:
    parts = payload.split(b" ")
    _check(len(parts) == 3 and parts[0] == b"EDGEMAIL", "not an edgemail queue file", pos)
    if parts[1] != _VERSION_BYTES:
        raise _corrupt(f"unsupported version {parts[1]!r}", pos)
    got = parts[2].decode("ascii", "replace")
    if got not in (KIND_QUEUE, KIND_MAILDROP):
        raise _corrupt(f"unknown kind {got!r}", pos)
    if kind is not None and got != kind:
        raise _corrupt(f"expected a {kind} file, got {got}", pos)
    return got


def decode(buf: bytes, *, kind: str | None = None) -> QueueFile:
    """Decode a whole file.  Raises CorruptQueueFile (only) on any damage."""
    got, end = _message_part(buf)
    for rtype in (b"I", b"T", b"P", b"E", b"R", b"D"):
        _check(rtype in got, f"missing record {rtype!r}", end)
    version, at = got[b"V"]
    file_kind = _version(version, at, kind)
    try:
        qid = got[b"I"][0].decode("ascii")
    except UnicodeDecodeError:
        raise _corrupt("bad queue id", got[b"I"][1]) from None
    envelope = decode_envelope(got[b"E"][0], got[b"R"][0], got[b"E"][1])
    updates, length, torn = _state_log(buf, end)
    created = _number(got[b"T"][0], float, got[b"T"][1])
    priority = _number(got[b"P"][0], int, got[b"P"][1])
    return QueueFile(file_kind, qid, created, priority, envelope, got[b"D"][0],
                     updates, length, torn)


def _state_log(buf: bytes, pos: int) -> tuple[tuple[StateUpdate, ...], int, bool]:
    updates: list[StateUpdate] = []
    good = pos
    for rtype, body, start, end in _frames(buf, pos):
        if rtype is None:
            if end < len(buf):
                raise _corrupt(body, start)
            return tuple(updates), good, True     # torn last record: ignored
        _check(rtype == b"U", f"unexpected record {rtype!r} in state log", start)
        updates.append(decode_update(body, start))
        good = end
    return tuple(updates), good, False


# --- state ------------------------------------------------------------------

#: an entry's replies and attempts before its first attempt: one read-only
#: empty mapping shared by every such entry (two dicts less per queued message)
NOTHING_YET: Mapping = MappingProxyType({})

#: the envelope's words that repeat from message to message (issue 15: the index's memory)
_SHARED_WORDS = ("mail_from", "ret", "body", "proto", "client", "helo", "auth")
_NO_NOTIFY: frozenset[str] = frozenset()


def compact(envelope: Envelope) -> Envelope:
    """ENVELOPE with its repeating strings interned and empty NOTIFY sets
    shared, so that 100,000 queued entries hold one "ESMTP", one client
    text per connection, one copy of each sender and recipient address."""
    words: dict = {name: sys.intern(value) for name in _SHARED_WORDS
                   if type(value := getattr(envelope, name)) is str}
    rcpts = tuple(Recipient(sys.intern(r.address), r.orcpt, r.notify or _NO_NOTIFY)
                  for r in envelope.recipients)
    return replace(envelope, recipients=rcpts, **words)


def new_entry(qid: str, envelope: Envelope, *, created: float, size: int,
              priority: int) -> QueueEntry:
    """A just-committed message: every recipient queued, due at once."""
    envelope = compact(envelope)
    return QueueEntry(
        qid=qid, envelope=envelope, created=created, size=size, priority=priority,
        attempts=0, next_attempt=created, held=False,
        rcpt_status={r.address: RcptStatus.QUEUED for r in envelope.recipients},
        last_reply=NOTHING_YET, warned=False, last_attempt=NOTHING_YET)


def entry_from(qf: QueueFile, *, retry_factor: int = 0) -> QueueEntry:
    """The in-memory view of a decoded queue file, with its state log replayed."""
    entry = new_entry(qf.qid, qf.envelope, created=qf.created, size=len(qf.data),
                      priority=qf.priority)
    for update in qf.updates:
        entry = apply(entry, update, retry_factor=retry_factor)
    return entry


def apply(entry: QueueEntry, update: StateUpdate, *, retry_factor: int = 0) -> QueueEntry:
    """Fold one state record into an entry (what the store does after an append)."""
    changes: dict = {}
    if update.results:
        changes["rcpt_status"] = {**entry.rcpt_status,
                                  **{a: r.status for a, r in update.results.items()}}
        changes["last_reply"] = {**entry.last_reply,
                                 **{a: r.text for a, r in update.results.items()}}
        changes["last_attempt"] = {**entry.last_attempt, **update.results}
    if update.attempts is not None:
        changes["attempts"] = update.attempts
        changes["priority"] = entry.priority + (update.attempts - entry.attempts) * retry_factor
    for name in ("next_attempt", "held", "warned"):
        value = getattr(update, name)
        if value is not None:
            changes[name] = value
    return replace(entry, **changes)
