"""maillog/messages.py - the lines about one message: received, delivered,
reported, imported, or found unreadable.

The catalogue (edgemail/maillog/__init__.py, section "Messages") lists each
line with its LogLevel; each function here makes exactly one of them and is
named after it there.  Loggers: ``edgemail.smtpd`` and ``edgemail.spool``
(received, imported, spool writer), ``edgemail.runner`` (delivery, DSN).

Never: logs (callers do, with the line made here), or writes a message body
or AUTH data into a line.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgemail.envelope import Envelope
from edgemail.maillog.text import addresses, clean, duration, pairs


def received(qid: str, env: Envelope, *, relay: str | None = None) -> str:
    """The line for a message committed to the spool."""
    return f"{qid}: " + pairs(
        ("from", f"<{env.mail_from}>"), ("size", env.size), ("class", env.precedence),
        ("nrcpts", env.nrcpts), ("msgid", f"<{env.msgid}>" if env.msgid else None),
        ("proto", env.proto), ("relay", relay if relay is not None else (env.client or "localhost")))


def delivery(qid: str, to: str, *, delay: float, xdelay: float, mailer: str, pri: int,
             relay: str, dsn: str, stat: str) -> str:
    """One delivery attempt for one recipient (written by the runner)."""
    return f"{qid}: " + pairs(
        ("to", f"<{to}>"), ("delay", duration(delay)), ("xdelay", duration(xdelay)),
        ("mailer", mailer), ("pri", pri), ("relay", relay), ("dsn", dsn), ("stat", stat))


def dsn_queued(qid: str, kind: str, report: str, recipients: Iterable[str]) -> str:
    return f"{qid}: dsn={clean(kind)}, report={report}, to={addresses(recipients)}"


def dsn_not_queued(qid: str, kind: str, reason: object) -> str:
    return f"{qid}: dsn={clean(kind)}, status=not queued ({clean(reason)})"


def dsn_dropped(qid: str, recipients: Iterable[str], reason: object) -> str:
    return f"{qid}: to={addresses(recipients)}, status=dropped (double bounce failed: {clean(reason)})"


def queue_file_unreadable(qid: str, reason: object) -> str:
    return f"{qid}: queue file unreadable, moved to corrupt/: {clean(reason)}"


def queue_file_gone(qid: str) -> str:
    return f"{qid}: queue file gone (removed by hand?), dropped from the queue"


def maildrop_import(qid: str, name: str) -> str:
    return f"{qid}: imported from maildrop/{clean(name)}"


def hook_failed(qid: str, hook: str) -> str:
    return f"{qid}: {clean(hook)} hook failed"


def spool_writer_error(qid: str) -> str:
    return f"{qid}: internal error in spool writer"


def commit_helpers_unavailable(reason: object) -> str:
    return f"spool: commit helpers unavailable, committing on threads: {clean(str(reason))}"
