"""spool - the durable queue: record.py (the file format, pure) and store.py
(the only writer of the spool directory)."""

from edgemail.spool.store import QueueEntry, RecoveryReport, Store, write_maildrop

__all__ = ["Store", "QueueEntry", "RecoveryReport", "write_maildrop"]
