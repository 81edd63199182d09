"""daemon/demand.py - what waits for the link, counted as the queue changes.

NAME
    demand - DemandCounts(index, needs_link, big_wait, clock): the figures of
    mtaport's QueueDemand, kept up to date by the index's watch() hook

DESCRIPTION
    The link's demand was a walk of the whole queue on each question, and
    each commit asks it (the port's watch() is kicked, the policy asks
    again): at 20,000 queued that was most of a submission's time (issue
    15).  Here the figures change with each put and discard the index
    reports, from the entries' packed heads (spool/packed.py: created,
    next_attempt, size, flags) and one routing answer per entry version,
    kept in the index's mark bits (MARK_KNOWN, MARK_YES), never in a
    per-entry object of ours.

    What "due" means depends on the time; the counts stay exact as long as
    no entry counted as later has become due (now < next_due), the clock
    has not gone back, the wall-clock minute is the same (big mail's cheap
    windows are minutes of the dial policy) and each change could be taken
    out exactly (the oldest due entry or the next due one leaving: their
    successor is not known).  Otherwise the next question recounts, once,
    from the heads: a walk that unpacks no entry except big ones.

NEVER
    Routes an entry twice for the same version, or raises for one bad
    entry (needs_link says why and answers False).
"""

from __future__ import annotations

from collections.abc import Callable

from edgemail.spool import packed

INF = float("inf")


class DemandCounts:
    """The QueueDemand figures (see the module docstring)."""

    def __init__(self, index, needs_link: Callable[[str], bool],
                 big_wait: Callable[[str, int, int], str], wall: Callable[[], float]) -> None:
        self.index, self._needs, self._big, self._wall = index, needs_link, big_wait, wall
        self.valid = False
        self.recounts = 0
        self.at = self.last = 0.0
        index.watch(self._changed)

    def figures(self) -> tuple[int, float | None, int, int, float | None, dict[str, str]]:
        """(due, oldest created of those, urgent of those, expensive, next_due, {big qid: why})."""
        now = self._wall()
        if not self._still(now):
            self._recount(now)
        return (self.due, self.oldest if self.due else None, self.urgent, self.expensive,
                None if self.next_due == INF else self.next_due, self.big)

    def _still(self, now: float) -> bool:
        still = (self.valid and now < self.next_due and now >= self.last
                 and int(now // 60) == int(self.at // 60))
        self.last = max(self.last, now) if still else now
        return still

    def _recount(self, now: float) -> None:
        self.recounts += 1
        self.at, self.due, self.urgent, self.expensive = now, 0, 0, 0
        self.oldest, self.next_due = INF, INF
        self.big: dict[str, str] = {}
        self.valid = True
        for qid, created, nxt, size, flags in self.index.heads():
            self._add(qid, created, nxt, size, flags, now)

    def _waits(self, qid: str, flags: int) -> bool:
        """Not held, and a recipient on an expensive route (routed once per version)."""
        if flags & packed.HELD:
            return False
        if flags & packed.MARK_KNOWN:
            return bool(flags & packed.MARK_YES)
        answer = self._needs(qid)
        self.index.set_marks(qid, packed.MARK_KNOWN | (packed.MARK_YES if answer else 0))
        return answer

    def _add(self, qid: str, created: float, nxt: float, size: int, flags: int, now: float) -> None:
        if not self._waits(qid, flags):
            return
        self.expensive += 1
        why = self._big(qid, size, flags)
        if why:
            self.big[qid] = why
        elif nxt <= now:
            self.due += 1
            self.urgent += 1 if flags & packed.URGENT else 0
            self.oldest = min(self.oldest, created)
        if nxt > now:
            self.next_due = min(self.next_due, nxt)

    def _take(self, qid: str, created: float, nxt: float, flags: int) -> bool:
        """Take out what an old version counted; False when it cannot be done exactly."""
        if flags & packed.HELD:
            return True
        if not flags & packed.MARK_KNOWN:
            return False
        if not flags & packed.MARK_YES:
            return True
        self.expensive -= 1
        if nxt >= self.next_due:                  # counted as later
            return nxt != self.next_due and qid not in self.big
        if self.big.pop(qid, None) is not None:
            return True
        self.due -= 1
        self.urgent -= 1 if flags & packed.URGENT else 0
        return created != self.oldest

    def _changed(self, qid: str, old, new) -> None:
        if not self.valid:
            return
        now = self._wall()
        if (old is None and new is None) or not self._still(now):
            self.valid = False
            return
        if old is not None and not self._take(qid, old[0], old[1], old[3]):
            self.valid = False
            return
        if new is not None:
            self._add(qid, new[0], new[1], new[2], new[3], now)
