"""cli/spoolview.py - the queue as it stands on disk, read-only: what
``mailq``, ``sendmail -bp`` and ``edgemail queue list`` show while the
daemon is down (Postfix's showq in stand-alone mode does the same).

Owns: ``read_spool(spool_dir, retry_factor) -> DiskQueue`` (the queue/ and
hold/ files decoded with the spool's own record format, and the maildrop/
files ``sendmail`` left while the daemon was down), ``print_disk_mailq``
and ``disk_rows`` (the same text and rows the daemon sends:
daemon/listing.py formats both), ``NoAccess``.

Who may: the queue files are the daemon's (0600/0640 in 0750 folders), so
root, the daemon's user and (for files written since the spool's folders
became 0750) its group.  Anyone else gets ``NoAccess`` naming the owner
and what to do instead; maildrop/ (1733) may be listed by root and its
owner only, and that is said when it cannot be.

Never: writes, renames, truncates or locks anything: a torn last state
record is skipped as the daemon's recovery would cut it, a damaged file
is counted and left where it is (the daemon moves it to corrupt/ when it
starts), a file that vanishes while being read (the daemon started) is
skipped.  Never follows a symlink or opens a FIFO planted in maildrop/.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace

from edgemail.errors import CorruptQueueFile


class NoAccess(Exception):
    """This user may not read the queue's files; str() says why and what to do."""


@dataclass
class DiskQueue:
    """The spool as read: entries oldest first, the maildrop's, what was damaged."""

    directory: str
    entries: list = field(default_factory=list)
    drops: list = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)
    #: why maildrop/ was not listed ("" when it was)
    drops_unseen: str = ""
    #: files in corrupt/ (damaged, kept for inspection)
    corrupt: int = 0


def read_spool(spool_dir: str, retry_factor: int = 0) -> DiskQueue:
    """Raises NoAccess when queue/ or hold/ or a file in them cannot be read by us."""
    out = DiskQueue(os.path.abspath(spool_dir))
    seen: set[str] = set()
    for sub in ("queue", "hold"):
        for name in _names(out.directory, sub):
            entry = _entry(os.path.join(out.directory, sub, name), "queue", retry_factor, out)
            if entry is not None and entry.qid == name and name not in seen and not entry.done:
                seen.add(name)
                out.entries.append(entry)
    _read_drops(out, retry_factor)
    out.entries.sort(key=lambda e: (e.created, e.qid))
    try:
        out.corrupt = len(os.listdir(os.path.join(out.directory, "corrupt")))
    except OSError:
        pass                                 # never started, or not ours to list: nothing to count
    return out


def _names(directory: str, sub: str) -> list[str]:
    from edgemail.envelope import is_queue_id
    try:
        return sorted(n for n in os.listdir(os.path.join(directory, sub)) if is_queue_id(n))
    except FileNotFoundError:
        return []                            # never started: nothing queued
    except PermissionError:
        raise NoAccess(_who_may(directory)) from None


def _entry(path: str, kind: str, retry_factor: int, out: DiskQueue):
    """The QueueEntry of the file at PATH, or None (gone, damaged: counted)."""
    from edgemail.spool import record
    from edgemail.spool.maildrop import _read_drop as read_regular   # never through a symlink or a FIFO
    try:
        qf = record.decode(read_regular(path), kind=kind)
    except FileNotFoundError:
        return None                          # moved or done while we looked
    except PermissionError:
        if kind == "maildrop":
            out.damaged.append(path)         # a drop we may not read: its owner's 0600
            return None
        raise NoAccess(_who_may(out.directory)) from None
    except (CorruptQueueFile, OSError) as exc:
        out.damaged.append(f"{path} ({exc})")
        return None
    return record.entry_from(qf, retry_factor=retry_factor)


def _read_drops(out: DiskQueue, retry_factor: int) -> None:
    directory = os.path.join(out.directory, "maildrop")
    try:
        names = sorted(n for n in os.listdir(directory) if not n.startswith("."))
    except FileNotFoundError:
        return
    except PermissionError:
        out.drops_unseen = f"{directory} may be listed by root and its owner only"
        return
    for name in names:
        entry = _entry(os.path.join(directory, name), "maildrop", retry_factor, out)
        if entry is not None:
            out.drops.append(replace(entry, qid=name.rpartition(".")[2][:14] or name[:14]))


def _who_may(directory: str) -> str:
    import grp
    import pwd
    try:
        st = os.stat(directory)
        owner, group = pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name
    except (OSError, KeyError):
        owner, group = "the daemon's user", "its group"
    who = "root" if owner == "root" else f"root, {owner} (its owner)"
    return (f"the queue in {directory} may be read only by {who} and group {group}; "
            f"uid {os.geteuid()} is none of them: run mailq as one of them, or start the daemon "
            "(systemctl start edgemail), which lists the queue to every user")


# ---------------------------------------------------------------- as mailq and queue list print it

HEADER = "-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n"


def _section(out, title: str, directory: str, entries: list) -> None:
    from edgemail.daemon.listing import mailq_entry
    out.write(title + "\n")
    if not entries:
        out.write(f"\t\t{directory} is empty\n\t\tTotal requests: 0\n")
        return
    out.write(f"\t\t{directory} ({len(entries)} request{'s' if len(entries) != 1 else ''})\n{HEADER}")
    for e in entries:
        out.write(mailq_entry(e))
    out.write(f"\t\tTotal requests: {len(entries)}\n")


def print_disk_mailq(q: DiskQueue, out=None) -> None:
    """sendmail's mailq with its MSP queue: the maildrop first, then the queue."""
    out = out or sys.stdout
    if q.drops or not q.drops_unseen:
        _section(out, "Maildrop status (queued when the daemon starts)...", os.path.join(q.directory, "maildrop"),
                 q.drops)
    _section(out, "Queue status...", q.directory, q.entries)
    from edgemail.daemon.listing import corrupt_line
    out.write(corrupt_line(q.directory, q.corrupt))


def disk_rows(q: DiskQueue) -> list[dict]:
    """The JSON objects of ``queue list --json``, maildrop files marked ``"maildrop": true``."""
    from edgemail.daemon.listing import row, row_object
    return ([{**row_object(row(e)), "maildrop": True} for e in q.drops]
            + [row_object(row(e)) for e in q.entries])


def notes(q: DiskQueue) -> list[str]:
    """What stderr says about a listing from disk."""
    lines = [f"the daemon is not running: the queue as it stands in {q.directory}, read-only"]
    if q.drops_unseen:
        lines.append(f"maildrop/ not shown: {q.drops_unseen}")
    lines += [f"damaged, left for the daemon to move to corrupt/: {d}" for d in q.damaged]
    return lines
