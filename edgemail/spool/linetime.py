"""spool/linetime.py - the time the line was up or could have been (pure core).

NAME
    linetime - LineTime: LinkUpTime plus the spans a call or a dial vouches for

SYNOPSIS
    lt = LineTime(vouch_s=7200)         # retry.offline_after
    lt.up(t); lt.down(t)                # link events (wall time), as LinkUpTime
    lt.tried(t, placed=True)            # a dial reached the network (BUSY, NO CARRIER, ...)
    lt.tried(t, placed=False)           # it did not (modem silent or gone, NO DIALTONE, setup)
    lt.line_since(created, now)         # seconds Timeout.queuewarn/queuereturn count
    lt.counting(now)                    # does that age grow now

DESCRIPTION
    With ``retry.count_offline_time = false`` a message's age for
    Timeout.queuewarn / queuereturn is the time the line was up, or could
    have been: the link had evidence the line works.  Evidence is a call
    (from link-up to VOUCH_S after its end) or a dial that reached the
    network and failed there (BUSY, NO CARRIER, NO ANSWER, no carrier in
    time: from the attempt to VOUCH_S after it).  A dial that did not get
    that far (the modem silent, its device gone, NO DIALTONE, a setup that
    cannot run) ends the vouched span at once: hours in which the link could
    not even try (a broken or unplugged modem) do not count, and neither
    does time more than VOUCH_S after the last evidence (the link stopped
    trying).  Between calls of a healthy line the policy dials at least as
    often as VOUCH_S (etc/dial.policy: hourly at the least), so there the
    age is the wall-clock age.

    ``intervals`` (link-up, LinkUpTime's) and ``vouched`` are plain data the
    runner persists (linkup.json, version 2); ``rebase`` moves both with a
    wall-clock step.

NEVER
    Reads a clock or a file: every time is passed in.
"""

from __future__ import annotations

from typing import Iterable

from edgemail.spool.schedule import LinkUpTime, rebase

#: a call or a dial that reached the network vouches for the line this long (retry.offline_after)
DEFAULT_VOUCH_S = 2 * 3600.0


class LineTime(LinkUpTime):
    """Link-up intervals plus the spans the line could have been up (the module's page)."""

    def __init__(self, intervals: Iterable[tuple[float, float]] = (), up_since: float | None = None, *,
                 vouched: Iterable[tuple[float, float]] = (), vouch_s: float = DEFAULT_VOUCH_S) -> None:
        super().__init__(intervals, up_since)
        self.vouched: list[tuple[float, float]] = sorted(tuple(v) for v in vouched)   # type: ignore[misc]
        self.vouch_s = vouch_s

    def down(self, now: float) -> None:
        """A call ended: the line worked, so it vouches for itself from now on."""
        was_up = self.up_since is not None
        super().down(now)
        if was_up:
            self._vouch(now)

    def tried(self, now: float, *, placed: bool) -> None:
        """A dial attempt's result: PLACED (it reached the network) vouches for
        the line; else the line cannot be used, from now on."""
        if placed:
            self._vouch(now)
        else:
            self._revoke(now)

    def _vouch(self, now: float) -> None:
        end = now + self.vouch_s
        if self.vouched and self.vouched[-1][1] >= now:
            start, old = self.vouched[-1]
            self.vouched[-1] = (start, max(old, end))
        else:
            self.vouched.append((now, end))

    def _revoke(self, now: float) -> None:
        self.vouched = [(s, min(e, now)) for s, e in self.vouched if s < now]

    def counting(self, now: float) -> bool:
        """The age grows now: the link is up, or a span vouches for NOW."""
        return self.up_since is not None or any(s <= now < e for s, e in self.vouched)

    def line_since(self, t0: float, now: float) -> float:
        """Seconds in [T0, NOW] the line was up or vouched for (each second once)."""
        spans = list(self.intervals) + list(self.vouched)
        if self.up_since is not None:
            spans.append((self.up_since, now))
        clipped = sorted((max(s, t0), min(e, now)) for s, e in spans if min(e, now) > max(s, t0))
        total, reach = 0.0, t0
        for s, e in clipped:
            if e > reach:
                total += e - max(s, reach)
                reach = e
        return total

    def prune(self, before: float) -> None:
        super().prune(before)
        self.vouched = [(s, e) for s, e in self.vouched if e > before]

    def rebase(self, step: float) -> None:
        super().rebase(step)
        self.vouched = [(rebase(s, step), rebase(e, step)) for s, e in self.vouched]


__all__ = ["LineTime", "DEFAULT_VOUCH_S"]
