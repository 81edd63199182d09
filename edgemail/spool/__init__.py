"""spool - the durable queue: record.py (the file format, pure) and store.py
(the only writer of the spool directory; its parts: writer.py, recovery.py,
maildrop.py, fileio.py, and the commit helpers syncpool.py and syncer.py)."""

from edgemail.spool.maildrop import write_maildrop
from edgemail.spool.record import QueueEntry
from edgemail.spool.recovery import RecoveryReport
from edgemail.spool.store import Store

__all__ = ["Store", "QueueEntry", "RecoveryReport", "write_maildrop"]
