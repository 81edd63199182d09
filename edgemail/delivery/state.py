"""delivery/state.py - small pieces the Runner keeps: queue items as the schedule
reads them, run tallies, the link-up time file, the connection cache reset,
the set of background tasks.

DESCRIPTION
    ``TaskSet`` keeps the Runner's background tasks (cheap deliveries, the
    sweep's checks, ETRN's runs) until they are done: ``spawn(coro)``,
    ``await idle()`` (tests, shutdown), ``len()``.  A bug in one is logged
    with its traceback (runner_internal_error) and goes no further: one
    message never stops the daemon.

NEVER
    Decides anything; the file functions are the only I/O (linkup.json in the
    spool: write_atomically).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Coroutine

from edgemail import maillog
from edgemail.delivery.port import RunReport, is_cut
from edgemail.envelope import Attempt, Envelope, RcptStatus
from edgemail.spool import schedule
from edgemail.spool.linetime import DEFAULT_VOUCH_S, LineTime
from edgemail.spool.record import QueueEntry
from link.fileio import write_atomically

log = logging.getLogger("edgemail.runner")


@dataclass
class Item:
    """A queue entry as spool.schedule reads it (last_attempt as one time); a
    snapshot made for one selection (plain fields: schedule.QueueItem)."""

    qid: str
    envelope: Envelope
    created: float
    priority: int
    attempts: int
    next_attempt: float
    held: bool
    rcpt_status: dict[str, RcptStatus]
    last_attempt: float | None


def item(e: QueueEntry) -> Item:
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


def load_linkup(path: str, vouch_s: float = DEFAULT_VOUCH_S) -> LineTime:
    """linkup.json (version 1: link-up intervals; 2: and the vouched spans)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return LineTime([tuple(i) for i in data.get("intervals", [])], data.get("up_since"),
                        vouched=[tuple(v) for v in data.get("vouched", [])], vouch_s=vouch_s)
    except FileNotFoundError:
        return LineTime(vouch_s=vouch_s)
    except (OSError, ValueError, TypeError) as exc:
        log.warning(maillog.runner_warning(f"{path} unreadable, link-up time starts empty: {exc}"))
        return LineTime(vouch_s=vouch_s)


def save_linkup(path: str, lut: LineTime) -> None:
    write_atomically(path, json.dumps({"version": 2, "intervals": lut.intervals, "up_since": lut.up_since,
                                       "vouched": lut.vouched}))


class TaskSet:
    """Background tasks, kept until done (see the module docstring)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(_guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def idle(self) -> None:
        """Wait until no task is left (those spawned meanwhile included)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def _guard(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        return await coro
    except asyncio.CancelledError:
        raise
    except Exception:      # one message never stops the daemon
        log.exception(maillog.runner_internal_error())
