"""delivery/state.py - small pieces the Runner keeps: queue items as the schedule
reads them, run tallies, the link-up time file, the connection cache reset.

NEVER
    Decides anything; the file functions are the only I/O (linkup.json in the
    spool: tmp file, fsync, rename).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from edgemail import maillog
from edgemail.delivery.port import RunReport, is_cut
from edgemail.envelope import Attempt, RcptStatus
from edgemail.spool import schedule
from link.fileio import write_atomically

log = logging.getLogger("edgemail.runner")


@dataclass(frozen=True)
class Item:
    """A queue entry as spool.schedule reads it (last_attempt as one time)."""

    qid: str
    envelope: object
    created: float
    priority: int
    attempts: int
    next_attempt: float
    held: bool
    rcpt_status: dict
    last_attempt: float | None


def item(e) -> Item:
    last = max((a.at for a in e.last_attempt.values()), default=None)
    return Item(e.qid, e.envelope, e.created, e.priority, e.attempts, e.next_attempt, e.held,
                 e.rcpt_status, last)


def tally(report: RunReport, attempts: dict[str, Attempt]) -> bool:
    """Count one message's attempts; True when the link was lost."""
    if attempts:
        report.attempted += 1
    lost = False
    for a in attempts.values():
        if is_cut(a):
            report.cut += 1
            lost = True
        elif a.status is RcptStatus.SENT:
            report.sent += 1
        elif a.status is RcptStatus.DEFERRED:
            report.deferred += 1
        else:
            report.bounced += 1
    return lost


def drop_connections(smtp) -> None:
    """Abort cached SMTP sessions (after a cut transfer their state is unknown)."""
    cache = getattr(smtp, "_cache", None)
    while cache:
        _, session = cache.popitem()
        session.abort()


def load_linkup(path: str) -> schedule.LinkUpTime:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return schedule.LinkUpTime([tuple(i) for i in data.get("intervals", [])], data.get("up_since"))
    except FileNotFoundError:
        return schedule.LinkUpTime()
    except (OSError, ValueError, TypeError) as exc:
        log.warning(maillog.runner_warning(f"{path} unreadable, link-up time starts empty: {exc}"))
        return schedule.LinkUpTime()


def save_linkup(path: str, lut: schedule.LinkUpTime) -> None:
    write_atomically(path, json.dumps({"version": 1, "intervals": lut.intervals, "up_since": lut.up_since}))
