"""spool - the durable queue: record.py (the file format, pure) and store.py
(the only writer of the spool directory; its parts: writer.py, recovery.py,
maildrop.py, fileio.py, and the commit helpers syncpool.py and syncer.py)."""

from edgemail.spool.store import QueueEntry, RecoveryReport, Store, write_maildrop

__all__ = ["Store", "QueueEntry", "RecoveryReport", "write_maildrop"]
