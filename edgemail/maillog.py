"""maillog.py - every line edgemail writes to the mail log, and the log set-up.

Like qmail-log(5), this docstring lists every line; each line has one
formatting function below, so the format lives in one place and tests can
assert on it.  A line starts with the queue id (or ``NOQUEUE``, ``daemon``,
``spool``, ``control``, ``link``), then ``key=value`` pairs joined by ``, ``
(sendmail's and Postfix's format).  No timestamp: journald or syslog adds
one.  Values that come from peers (HELO names, addresses, reply text) are
passed through ``clean()``: control characters are escaped, so one log
event is always one line.  Message bodies and AUTH secrets are never logged.

Loggers: ``edgemail.smtpd``, ``edgemail.runner``, ``edgemail.spool``,
``edgemail.control``, ``edgemail.daemon``, ``link``.

Lines (sendmail LogLevel at which each appears in brackets):

  QID: from=<ADDR>, size=N, class=C, nrcpts=N, msgid=<ID>, proto=P, relay=R   [5]
        a message was committed to the spool (``received()``); proto is
        ESMTP/SMTP/ESMTPA or ``local`` (sendmail/control socket), relay the
        client as ``[ip]:port`` or ``localhost (uid N)``.
  QID: to=<ADDR>, delay=D, xdelay=X, mailer=M, pri=P, relay=R, dsn=X.Y.Z, stat=S   [8/9]
        one delivery attempt for one recipient (``delivery()``); delays in
        sendmail's ``[D+]HH:MM:SS``; stat is ``Sent (...)``, ``Deferred: ...``
        or the bounce reason.  Written by the runner.
  NOQUEUE: reject=CODE X.Y.Z TEXT, cmd=CMD, arg=ARG, relay=[ip]:port   [4]
        an SMTP command was refused (``reject()``): relaying denied, size,
        recipient limits, bare LF on a strict listener...
  NOQUEUE: connect from [ip]:port, listener=NAME   [12]
  NOQUEUE: lost connection after CMD from [ip]:port   [2]
  NOQUEUE: too many errors after CMD from [ip]:port   [2]
  NOQUEUE: timeout waiting for input from [ip]:port after CMD   [2]
  NOQUEUE: connection refused, relay=[ip]:port, reply=REPLY   [4]
        session limits (max_sessions, per client) refused a connection.
  NOQUEUE: internal error after CMD from [ip]:port   [1]
        our bug: answered 451 4.3.0, traceback logged once, session goes on.
  QID: maildrop import, file=NAME   [5]
        a message ``sendmail`` left in maildrop/ while the daemon was down.
  spool: recovered entries=N, tmp_removed=N, corrupt=N, maildrop=N   [1]
  spool: corrupt queue file moved to corrupt/, file=NAME, reason=TEXT   [1]
  control: queue run requested: filters=LIST   [5]
  control: bad request: REASON   [4]
  daemon: starting, version=V, config=PATH   [1]
  daemon: ready, listeners=NAME=[ip]:port ..., control=PATH, queued=N   [1]
  daemon: stopping, reason=SIGNAL   [1]
  daemon: stopped   [1]
  daemon: warning: TEXT   [1]

The link manager's lines (``link: state=...``) are listed in the link
package's manager module.

Set-up (``setup()``): one handler on stderr, the bare line (journald adds the unit and time); when
stderr is journald's (``$JOURNAL_STREAM`` set) each line gets the ``<N>``
syslog priority prefix journald understands.  Optionally a syslog handler
on /dev/log with facility mail.  sendmail's LogLevel maps to Python levels:
0 -> ERROR, 1-4 -> WARNING, 5-11 -> INFO, 12+ -> DEBUG (connections).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

from .envelope import Envelope

NOQUEUE = "NOQUEUE"

_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\\": "\\\\"}


def clean(text: object) -> str:
    """Peer-supplied text made safe for one log line (no CR/LF/controls)."""
    s = str(text)
    if s.isprintable() and "\\" not in s:
        return s
    return "".join(_ESCAPES.get(c) or (c if c.isprintable() else f"\\x{ord(c):02x}") for c in s)


def _pairs(*pairs: tuple[str, object]) -> str:
    return ", ".join(f"{k}={clean(v)}" for k, v in pairs if v is not None)


def duration(seconds: float) -> str:
    """sendmail's delay format: ``HH:MM:SS`` or ``D+HH:MM:SS``; negatives clamp to 0."""
    s = max(0, int(round(seconds)))
    days, s = divmod(s, 86400)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}+{text}" if days else text


# ------------------------------------------------------------------ messages

def received(qid: str, env: Envelope, *, relay: str | None = None) -> str:
    """The line for a message committed to the spool."""
    return f"{qid}: " + _pairs(
        ("from", f"<{env.mail_from}>"), ("size", env.size), ("class", env.precedence),
        ("nrcpts", env.nrcpts), ("msgid", f"<{env.msgid}>" if env.msgid else None),
        ("proto", env.proto), ("relay", relay if relay is not None else (env.client or "localhost")))


def delivery(qid: str, to: str, *, delay: float, xdelay: float, mailer: str, pri: int,
             relay: str, dsn: str, stat: str) -> str:
    """One delivery attempt for one recipient (written by the runner)."""
    return f"{qid}: " + _pairs(
        ("to", f"<{to}>"), ("delay", duration(delay)), ("xdelay", duration(xdelay)),
        ("mailer", mailer), ("pri", pri), ("relay", relay), ("dsn", dsn), ("stat", stat))


def reject(reply: str, *, cmd: str, arg: str | None, relay: str, qid: str = NOQUEUE) -> str:
    """An SMTP command refused; `reply` is the full reply text (``554 5.7.1 ...``)."""
    return f"{qid}: " + _pairs(("reject", reply), ("cmd", cmd), ("arg", arg), ("relay", relay))


def connect(peer: str, listener: str) -> str:
    return f"{NOQUEUE}: connect from {clean(peer)}, listener={clean(listener)}"


def lost_connection(peer: str, after: str) -> str:
    return f"{NOQUEUE}: lost connection after {clean(after)} from {clean(peer)}"


def too_many_errors(peer: str, after: str) -> str:
    return f"{NOQUEUE}: too many errors after {clean(after)} from {clean(peer)}"


def timeout(peer: str, after: str) -> str:
    return f"{NOQUEUE}: timeout waiting for input from {clean(peer)} after {clean(after)}"


def refused(peer: str, reply: str) -> str:
    return f"{NOQUEUE}: connection refused, relay={clean(peer)}, reply={clean(reply)}"


def internal_error(peer: str, after: str) -> str:
    return f"{NOQUEUE}: internal error after {clean(after)} from {clean(peer)}"


def maildrop_import(qid: str, name: str) -> str:
    return f"{qid}: maildrop import, file={clean(name)}"


# ------------------------------------------------------------------ spool, control, daemon

def recovered(*, entries: int, tmp_removed: int, corrupt: int, maildrop: int) -> str:
    return "spool: recovered " + _pairs(("entries", entries), ("tmp_removed", tmp_removed),
                                        ("corrupt", corrupt), ("maildrop", maildrop))


def corrupt_file(name: str, reason: str) -> str:
    return "spool: corrupt queue file moved to corrupt/, " + _pairs(("file", name), ("reason", reason))


def queue_run_requested(filters: list[str]) -> str:
    return f"control: queue run requested: filters={clean(','.join(filters) or 'none')}"


def bad_request(reason: str) -> str:
    return f"control: bad request: {clean(reason)}"


def starting(version: str, config: str) -> str:
    return "daemon: starting, " + _pairs(("version", version), ("config", config))


def ready(listeners: list[str], control: str, queued: int) -> str:
    return "daemon: ready, " + _pairs(("listeners", " ".join(listeners) or "none"),
                                      ("control", control), ("queued", queued))


def stopping(reason: str) -> str:
    return f"daemon: stopping, reason={clean(reason)}"


def stopped() -> str:
    return "daemon: stopped"


def warning(text: str) -> str:
    return f"daemon: warning: {clean(text)}"


# ------------------------------------------------------------------ set-up

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


def setup(log_level: int = 9, *, stream=None, syslog: bool = False,
          syslog_address: str = "/dev/log") -> logging.Logger:
    """Configure the ``edgemail`` and ``link`` loggers; returns ``edgemail``'s.

    Idempotent: handlers installed by an earlier call are replaced.
    """
    stream = stream if stream is not None else sys.stderr
    handlers: list[logging.Handler] = []
    h = logging.StreamHandler(stream)
    fmt = "%(message)s"
    h.setFormatter(_JournalFormatter(fmt) if os.environ.get("JOURNAL_STREAM") else logging.Formatter(fmt))
    handlers.append(h)
    if syslog:
        sh = logging.handlers.SysLogHandler(address=syslog_address,
                                            facility=logging.handlers.SysLogHandler.LOG_MAIL)
        sh.ident = f"edgemail[{os.getpid()}]: "
        sh.setFormatter(logging.Formatter("%(message)s"))
        handlers.append(sh)
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
    # aiosmtpd logs every session at INFO with its own format: keep only its warnings.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return logging.getLogger("edgemail")
