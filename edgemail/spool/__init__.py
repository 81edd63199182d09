"""spool - the durable queue: record.py (the file format, pure) and store.py
(the only writer of the spool directory; it owns its parts as collaborators:
layout.py, index.py, room.py, jobs.py, writer.py, recovery.py, maildrop.py,
and the commit helpers syncpool.py and syncer.py; store.py MODULES)."""

from edgemail.spool.maildrop import write_maildrop
from edgemail.spool.record import QueueEntry
from edgemail.spool.recovery import RecoveryReport
from edgemail.spool.store import Store

__all__ = ["Store", "QueueEntry", "RecoveryReport", "write_maildrop"]
