"""index.py - the spool's in-memory index: one packed entry per queued message.

NAME
    index - what is queued, answered from memory (mailq, queue runs)

DESCRIPTION
    Index maps a qid to its QueueEntry (record.py), kept packed: one bytes
    object per message (packed.py), its repeating strings stored once
    (packed.Words), and get() unpacks an entry equal to the one put.  It is
    filled by recovery.py at start-up from the files alone and changed only
    when a change is settled, on the event loop thread (jobs.py InFlight),
    after its fsyncs: what the index says is on disk.

    Why packed bytes and not a sqlite cache: the index must say exactly
    what is on disk after each fsync and answer get() on the event loop
    without I/O; a dict of immutable blobs does both with no second copy to
    keep in step, in ~300 B a message with its dict slot and qid (the
    bench's daemon at 100,000 queued: 56.8 MB PSS; ~900 B a message before,
    issue 15).

INTERFACE
    The store and its parts use get, entries, put, discard, clear, len and
    `in`.  Readers that need a few fields read them without unpacking a
    whole entry: heads() (qid, created, next_attempt, size, flags), marks() /
    set_marks() (a reader's two bits on an entry, cleared by put: the
    link's demand in daemon/mtaport.py), timer_items() / set_timer() (the
    runner's DSN timers, through Timers), and watch(fn): fn(qid, old, new)
    after every put and discard (old/new: the head tuple, or None), so a
    reader keeps counts without walking the queue.

NEVER
    Does I/O or knows where a file lives: entries() and get() are memory only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from edgemail.spool import packed
from edgemail.spool.record import QueueEntry

Head = tuple[float, float, int, int]
#: entries kept unpacked after a get()
RECENT = 8
Watcher = Callable[[str, "Head | None", "Head | None"], None]


class Index:
    """qid -> packed QueueEntry, in memory."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self.words = packed.Words()
        self._watchers: list[Watcher] = []
        self._recent: dict[str, tuple[bytes, QueueEntry]] = {}

    def get(self, qid: str) -> QueueEntry:
        """Raises KeyError for a qid not queued.  The last few entries got
        are kept unpacked (a commit's hooks get the same entry three times)."""
        blob = self._blobs[qid]
        hit = self._recent.get(qid)
        if hit is not None and hit[0] is blob:
            return hit[1]
        entry = packed.unpack(qid, blob, self.words)
        if len(self._recent) >= RECENT:
            del self._recent[next(iter(self._recent))]
        self._recent[qid] = (blob, entry)
        return entry

    def entries(self) -> list[QueueEntry]:
        unpack, words = packed.unpack, self.words
        return [unpack(qid, blob, words) for qid, blob in self._blobs.items()]

    def briefs(self, qids: list[str]) -> Iterator[tuple[str, tuple]]:
        """(qid, packed.brief) of each of QIDS still queued (what mailq prints)."""
        return packed.briefs(self._blobs, qids, self.words)

    def blob(self, qid: str) -> bytes:
        """QID's packed entry (packed.brief reads what mailq prints from it)."""
        return self._blobs[qid]

    def qids(self) -> list[str]:
        return list(self._blobs)

    def heads(self) -> Iterator[tuple[str, float, float, int, int]]:
        """(qid, created, next_attempt, size, flags) per entry (packed.HEAD: no unpacking)."""
        unpack = packed.HEAD.unpack_from
        for qid, blob in list(self._blobs.items()):
            yield (qid, *unpack(blob))

    def put(self, entry: QueueEntry) -> None:
        qid = entry.qid
        old = self._blobs.get(qid)
        timer = packed.NO_TIMER if old is None else packed.timer(old)
        blob = self._blobs[qid] = packed.pack(entry, self.words, timer)
        if old is not None:
            packed.drop_words(old, self.words)
        self._tell(qid, old, blob)

    def discard(self, qid: str) -> None:
        self._recent.pop(qid, None)
        old = self._blobs.pop(qid, None)
        if old is not None:
            packed.drop_words(old, self.words)
            self._tell(qid, old, None)

    def clear(self) -> None:
        qids = list(self._blobs)
        self._blobs.clear()
        self._recent.clear()
        self.words.clear()
        for qid in qids:
            for fn in self._watchers:
                fn(qid, None, None)

    def marks(self, qid: str) -> int:
        """QID's reader bits (packed.MARK_KNOWN, MARK_YES; 0 after a put)."""
        return self._blobs[qid][packed.HEAD.size - 1] & packed.MARKS

    def set_marks(self, qid: str, marks: int) -> None:
        self._replace(qid, packed.with_marks, marks)

    def _replace(self, qid: str, change, value) -> None:
        """QID's blob changed outside the entry (marks, timer); the same entry unpacked."""
        blob = self._blobs.get(qid)
        if blob is not None:
            new = self._blobs[qid] = change(blob, value)
            hit = self._recent.get(qid)
            if hit is not None and hit[0] is blob:
                self._recent[qid] = (new, hit[1])

    def timer_items(self) -> Iterator[tuple[str, float]]:
        """(qid, timer) of each entry with a timer (Timers)."""
        at, none = packed.timer, packed.NO_TIMER
        for qid, blob in list(self._blobs.items()):
            t = at(blob)
            if t != none:
                yield qid, t

    def set_timer(self, qid: str, deadline: float) -> None:
        self._replace(qid, packed.with_timer, deadline)

    def watch(self, fn: Watcher) -> None:
        """Call FN(qid, old head | None, new head | None) after each change."""
        self._watchers.append(fn)

    def _tell(self, qid: str, old: bytes | None, new: bytes | None) -> None:
        if self._watchers:
            before = None if old is None else packed.head(old)
            after = None if new is None else packed.head(new)
            for fn in self._watchers:
                fn(qid, before, after)

    def __contains__(self, qid: object) -> bool:
        return qid in self._blobs

    def __len__(self) -> int:
        return len(self._blobs)


class Timers:
    """The retry loop's DSN timers kept in the entries' blobs (packed.TIMER):
    the part of a dict[qid, deadline] that retryloop.RetryLoop uses.  A timer
    for a qid not queued is dropped (its entry is gone: nothing to decide)."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def __setitem__(self, qid: str, deadline: float) -> None:
        self.index.set_timer(qid, deadline)

    def __delitem__(self, qid: str) -> None:
        self.index.set_timer(qid, packed.NO_TIMER)

    def pop(self, qid: str, default: float | None = None) -> float | None:
        self.index.set_timer(qid, packed.NO_TIMER)
        return default

    def items(self) -> Iterator[tuple[str, float]]:
        return self.index.timer_items()

    def values(self) -> Iterator[float]:
        return (t for _, t in self.index.timer_items())
