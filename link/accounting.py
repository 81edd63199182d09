"""accounting.py - calls, connected minutes and bytes per day, kept across restarts.

NAME
    accounting - Ledger(path, zone, tariff).record_call(...); usage(now); budget_left(...);
    recent(n)

DESCRIPTION
    Owns the link's state file (config `link.state_file`, JSON).  Each
    connected call is added to the local day (in the policy's zone) on which
    it started, whole: a call from 23:50 to 00:20 counts 30 minutes on the
    first day.  Per call it keeps the connect time and the bytes each way,
    from the interface's netlink counters or from pppd's ip-down environment
    (CONNECT_TIME, BYTES_SENT, BYTES_RCVD: `from_ip_down_env`).  usage(now)
    answers the policy's budget questions; a call still in progress is
    counted when `active_since` is given.  Days older than `keep_days` are
    dropped when the file is written.
    Cost: each call is priced when it is recorded, by the policy's tariff
    (link.tariff: the `tariff` lines of dial.policy) from its real connect
    time and length, and added to its call record and its day; the last
    `keep_calls` calls are kept for `edgemail status`.  No tariff: cost 0.

INVARIANTS
    The file on disk is always complete: written to a temporary file in the
    same directory, fsynced, renamed over the old one, directory fsynced.
    A record_call() that returned is durable.

FAILURES
    An unreadable or malformed state file is renamed to `<path>.corrupt` with a
    warning and the ledger starts empty: losing the budget count must not
    stop mail.  OSError from writing propagates (the caller logs it).
    from_ip_down_env raises ValueError naming the variable.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import TypeVar
from zoneinfo import ZoneInfo

from link import linklog
from link.fileio import write_atomically
from link.tariff import Tariff

log = logging.getLogger("link")
VERSION = 1
N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Usage:
    calls: int = 0
    seconds: float = 0.0
    bytes_sent: int = 0
    bytes_rcvd: int = 0
    cost: float = 0.0

    @property
    def minutes(self) -> float:
        return self.seconds / 60.0

    def plus(self, seconds: float, sent: int = 0, rcvd: int = 0, calls: int = 1, cost: float = 0.0) -> Usage:
        return Usage(self.calls + calls, self.seconds + seconds, self.bytes_sent + sent, self.bytes_rcvd + rcvd,
                     round(self.cost + cost, 6))


@dataclass(frozen=True)
class CallRecord:
    start: str                  #: ISO 8601, aware
    connect_s: float
    bytes_sent: int
    bytes_rcvd: int
    number: str = ""
    cause: str = ""
    cost: float = 0.0


def from_ip_down_env(env: Mapping[str, str]) -> tuple[float, int, int]:
    """(connect_s, bytes_sent, bytes_rcvd) from pppd's ip-down environment."""
    return (_env_number(env, "CONNECT_TIME", float), _env_number(env, "BYTES_SENT", int),
            _env_number(env, "BYTES_RCVD", int))


def _env_number(env: Mapping[str, str], name: str, kind: Callable[[str], N]) -> N:
    raw = env.get(name, "0")
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"ip-down environment: {name}={raw!r} is not a number") from None
    if value < 0:
        raise ValueError(f"ip-down environment: {name}={raw!r} is negative")
    return value


class Ledger:
    def __init__(self, path: str, zone: ZoneInfo | str = "UTC", *, keep_days: int = 62,
                 tariff: Tariff | None = None, keep_calls: int = 20) -> None:
        self.path = path
        self.zone = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
        self.keep_days, self.keep_calls = keep_days, keep_calls
        self.tariff = tariff or Tariff()
        self.days: dict[str, Usage] = {}
        self.calls: list[CallRecord] = []
        self.last_call: CallRecord | None = None
        self._load()

    # --- queries -----------------------------------------------------------------

    def day_of(self, t: datetime) -> date:
        return t.astimezone(self.zone).date()

    def usage(self, now: datetime, *, active_since: datetime | None = None) -> Usage:
        """Today's (local day of `now`) usage, counting a call in progress."""
        u = self.days.get(self.day_of(now).isoformat(), Usage())
        if active_since is not None and self.day_of(active_since) == self.day_of(now):
            u = u.plus(max((now - active_since).total_seconds(), 0.0))
        return u

    def budget_left(self, now: datetime, calls_per_day: int, minutes_per_day: float,
                    *, active_since: datetime | None = None) -> tuple[int | None, float | None]:
        """Calls and minutes left today; None where the budget is unlimited (0)."""
        u = self.usage(now, active_since=active_since)
        calls = max(calls_per_day - u.calls, 0) if calls_per_day else None
        minutes = max(minutes_per_day - u.minutes, 0.0) if minutes_per_day else None
        return calls, minutes

    # --- updates -----------------------------------------------------------------

    def record_call(self, start: datetime, connect_s: float, bytes_sent: int = 0, bytes_rcvd: int = 0,
                    *, number: str = "", cause: str = "") -> CallRecord:
        """Add one finished call and write the file (durable on return)."""
        if start.tzinfo is None:
            raise ValueError("record_call: start must be an aware datetime")
        key = self.day_of(start).isoformat()
        cost = self.tariff.cost(start, connect_s, self.zone)
        self.days[key] = self.days.get(key, Usage()).plus(max(connect_s, 0.0), bytes_sent, bytes_rcvd, cost=cost)
        self.last_call = CallRecord(start.isoformat(), connect_s, bytes_sent, bytes_rcvd, number, cause, cost)
        self.calls = (self.calls + [self.last_call])[-self.keep_calls:]
        self._prune(self.day_of(start))
        self._save()
        return self.last_call

    def recent(self, n: int = 5) -> list[CallRecord]:
        """The last `n` calls, oldest first (each with its cost)."""
        return self.calls[-n:] if n > 0 else []

    def _prune(self, today: date) -> None:
        oldest = (today - timedelta(days=self.keep_days)).isoformat()
        self.days = {k: v for k, v in self.days.items() if k >= oldest}

    # --- the file ------------------------------------------------------------------

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            if data.get("version") != VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {VERSION}")
            self.days = {k: Usage(**v) for k, v in data["days"].items()}
            date.fromisoformat(min(self.days, default="2000-01-01"))
            last = data.get("last_call")
            self.last_call = CallRecord(**last) if last else None
            self.calls = [CallRecord(**c) for c in data.get("calls", [])]
        except FileNotFoundError:
            return
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            bad = self.path + ".corrupt"
            os.replace(self.path, bad)
            log.warning(linklog.state_file_corrupt(self.path, e, bad))
            self.days, self.last_call, self.calls = {}, None, []

    def _save(self) -> None:
        data = {"version": VERSION, "days": {k: asdict(v) for k, v in sorted(self.days.items())},
                "last_call": asdict(self.last_call) if self.last_call else None,
                "calls": [asdict(c) for c in self.calls]}
        write_atomically(self.path, json.dumps(data, indent=1))
