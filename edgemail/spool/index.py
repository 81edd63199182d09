"""index.py - the spool's in-memory index: one QueueEntry per queued message.

NAME
    index - what is queued, answered from memory (mailq, queue runs)

DESCRIPTION
    Index maps a qid to its QueueEntry (record.py).  It is filled by
    recovery.py at start-up from the files alone and changed only when a
    change is settled, on the event loop thread (jobs.py InFlight), after
    its fsyncs: what the index says is on disk.

INTERFACE
    The store and its parts use only get, entries, put, discard, clear, len
    and `in`, so that the compact index of issue 15 (memory that does not
    grow ~2.3 KB per queued message) can replace this one class without
    touching them.

NEVER
    Does I/O or knows where a file lives: entries() and get() are memory only.
"""

from __future__ import annotations

from edgemail.spool.record import QueueEntry


class Index:
    """qid -> QueueEntry, in memory."""

    def __init__(self) -> None:
        self._entries: dict[str, QueueEntry] = {}

    def get(self, qid: str) -> QueueEntry:
        """Raises KeyError for a qid not queued."""
        return self._entries[qid]

    def entries(self) -> list[QueueEntry]:
        return list(self._entries.values())

    def put(self, entry: QueueEntry) -> None:
        self._entries[entry.qid] = entry

    def discard(self, qid: str) -> None:
        self._entries.pop(qid, None)

    def clear(self) -> None:
        self._entries.clear()

    def __contains__(self, qid: object) -> bool:
        return qid in self._entries

    def __len__(self) -> int:
        return len(self._entries)
