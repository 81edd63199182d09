"""maillog/handlers.py - where the lines go: ``setup()`` of the log.

Owns: the handlers of the ``edgemail`` and ``link`` loggers.  One handler on
stderr with the bare line (journald adds the unit and the time); when stderr
is journald's (``$JOURNAL_STREAM`` set) each line gets the ``<N>`` syslog
priority prefix journald understands.  Optionally a syslog handler on
/dev/log with facility mail and ident ``edgemail[PID]``.  sendmail's LogLevel
maps to Python levels (``python_level``): 0 -> ERROR, 1-4 -> WARNING, 5-11 ->
INFO, 12+ -> DEBUG (connections).  aiosmtpd's own ``mail.log`` logger is
turned down to WARNING (it logs every session in its own format).

Never: formats a line (the line functions do) or adds a timestamp.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO


def python_level(log_level: int) -> int:
    """sendmail LogLevel -> Python logging level."""
    if log_level <= 0:
        return logging.ERROR
    if log_level < 5:
        return logging.WARNING
    if log_level < 12:
        return logging.INFO
    return logging.DEBUG


class _JournalFormatter(logging.Formatter):
    """Prefix ``<N>`` (syslog priority) so journald files the line at the right level."""

    _PRIO = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self._PRIO.get(record.levelno, 6)}>" + super().format(record)


def _handlers(stream: TextIO, syslog: bool, syslog_address: str) -> list[logging.Handler]:
    fmt = "%(message)s"
    h = logging.StreamHandler(stream)
    h.setFormatter(_JournalFormatter(fmt) if os.environ.get("JOURNAL_STREAM") else logging.Formatter(fmt))
    handlers: list[logging.Handler] = [h]
    if syslog:
        from logging.handlers import SysLogHandler  # here: only the daemon needs it (mailq starts faster)
        sh = SysLogHandler(address=syslog_address, facility=SysLogHandler.LOG_MAIL)
        sh.ident = f"edgemail[{os.getpid()}]: "
        sh.setFormatter(logging.Formatter(fmt))
        handlers.append(sh)
    return handlers


def setup(log_level: int = 9, *, stream: TextIO | None = None, syslog: bool = False,
          syslog_address: str = "/dev/log") -> logging.Logger:
    """Configure the ``edgemail`` and ``link`` loggers; returns ``edgemail``'s.

    Idempotent: handlers installed by an earlier call are replaced.
    """
    handlers = _handlers(stream if stream is not None else sys.stderr, syslog, syslog_address)
    level = python_level(log_level)
    for name in ("edgemail", "link"):
        logger = logging.getLogger(name)
        for old in [x for x in logger.handlers if getattr(x, "_edgemail", False)]:
            logger.removeHandler(old)
        for x in handlers:
            x._edgemail = True  # type: ignore[attr-defined]
            logger.addHandler(x)
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return logging.getLogger("edgemail")
