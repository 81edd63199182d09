"""delivery/hoststatus.py - which hosts failed lately (sendmail's HostStatusDirectory).

NAME
    hoststatus - host status cache: pure decisions + one small persisted file

DESCRIPTION
    After a connection to a host fails, the runner skips that host for the
    rest of the queue run and, across runs, until Timeout.hoststatus has
    passed since the failure (sendmail guide 2.4: "skipped during a queue
    run if there has been a recent failure").  Unlike sendmail, the whole
    cache is cleared on every link-up (``clear()``): failures seen while the
    line was down or flapping say nothing about the hosts, and sendmail's
    stale cache is what blocks the flush after dialing (users work around it
    with ``-OTimeout.hoststatus=0m``).

    ``HostStatusCache`` is the core: ``record(host, now, ok, ...)``,
    ``skip(host, now, timeout, run=...)``, ``purge(now, timeout)`` (what
    ``purgestat`` does: removes only expired entries, as the guide says),
    ``clear()``, and ``hoststat(now)`` (sendmail's -bh listing).  ``now`` is
    wall time passed in.  A record newer than `now` (the wall clock went
    back) is treated as expired: untrusted data never holds mail back.

    ``HostStatusStore(path)`` persists the cache as one JSON file in the
    spool directory (``hoststat.json``), written atomically: tmp file,
    fsync, rename, fsync of the directory.  It is small (one entry per host
    we talked to) and written at the end of a run and on clear/purge.

NEVER
    Connects, resolves, or decides anything but "skip this host now?".

FAILURES
    ``HostStatusStore.load`` returns an empty cache (and ``problem`` says
    why) for a missing or unreadable file; ``save`` raises OSError.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace

from link.fileio import write_atomically

HEADER = "-------------- Hostname ---------- How long ago ---------Results---------"
FILE_NAME = "hoststat.json"


@dataclass(frozen=True)
class HostStatus:
    """The last transaction with one host."""

    host: str
    #: wall time of the last attempt
    last: float
    ok: bool
    #: enhanced status ("4.4.1") and the reply or reason, one line
    dsn: str = ""
    text: str = ""
    #: the queue run that recorded it (skip for the rest of that run)
    run: str = ""


def _interval(seconds: float) -> str:
    """sendmail's pintvl(brief): [D+]HH:MM:SS."""
    s = int(max(0.0, seconds))
    days, s = divmod(s, 86400)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}+{text}" if days else text


@dataclass
class HostStatusCache:
    """Host name (lower case) -> HostStatus."""

    entries: dict[str, HostStatus] = field(default_factory=dict)

    def record(self, host: str, now: float, ok: bool, *, dsn: str = "", text: str = "",
               run: str = "") -> HostStatus:
        st = HostStatus(host.lower(), now, ok, dsn, " ".join(text.split()), run)
        self.entries[st.host] = st
        return st

    def get(self, host: str) -> HostStatus | None:
        return self.entries.get(host.lower())

    @staticmethod
    def expired(st: HostStatus, now: float, timeout: float) -> bool:
        age = now - st.last
        return age < 0 or age >= timeout

    def skip(self, host: str, now: float, timeout: float, *, run: str = "") -> bool:
        """Skip `host`: it failed in this run, or less than `timeout` ago."""
        st = self.get(host)
        if st is None or st.ok:
            return False
        if run and st.run == run:
            return True
        return not self.expired(st, now, timeout)

    def purge(self, now: float, timeout: float) -> list[str]:
        """purgestat: drop expired entries; return the hosts dropped."""
        gone = sorted(h for h, st in self.entries.items() if self.expired(st, now, timeout))
        for h in gone:
            del self.entries[h]
        return gone

    def clear(self) -> int:
        """Link-up: forget everything.  Returns how many entries were dropped."""
        n = len(self.entries)
        self.entries.clear()
        return n

    def hoststat(self, now: float, *, width: int = 0) -> str:
        """The -bh / hoststat listing; `width` > 0 truncates the results column."""
        lines = [HEADER]
        for h in sorted(self.entries):
            st = self.entries[h]
            result = "OK" if st.ok else " ".join(x for x in (st.dsn, st.text) if x) or "Deferred"
            if width > 0:
                result = result[:width]
            lines.append(f" {h:<39} {_interval(now - st.last):>12} {result}")
        return "\n".join(lines) + "\n"

    # -- (de)serialisation

    def to_json(self) -> str:
        return json.dumps({"version": 1, "hosts": [asdict(st) for st in self.entries.values()]},
                          indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "HostStatusCache":
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("not a version 1 host status file")
        cache = cls()
        for item in data.get("hosts", []):
            st = HostStatus(**item)
            cache.entries[st.host.lower()] = replace(st, host=st.host.lower())
        return cache


class HostStatusStore:
    """The cache on disk: one JSON file, replaced atomically."""

    def __init__(self, spool_dir: str, name: str = FILE_NAME) -> None:
        self.directory = spool_dir
        self.path = os.path.join(spool_dir, name)
        self.problem = ""

    def load(self) -> HostStatusCache:
        try:
            with open(self.path, encoding="utf-8") as f:
                return HostStatusCache.from_json(f.read())
        except FileNotFoundError:
            return HostStatusCache()
        except (OSError, ValueError, TypeError) as exc:
            self.problem = f"{self.path}: unreadable host status, starting empty: {exc}"
            return HostStatusCache()

    def save(self, cache: HostStatusCache) -> None:
        write_atomically(self.path, cache.to_json())
