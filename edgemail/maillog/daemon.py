"""maillog/daemon.py - the lines about the spool's recovery, the control
socket and the daemon's life (start, ready, reload, stop).

The catalogue (edgemail/maillog/__init__.py, section "Spool, control socket,
daemon") lists each line with its LogLevel; each function here makes exactly
one of them.  Loggers: ``edgemail.spool``, ``edgemail.control``,
``edgemail.daemon``.

Never: logs (callers do), or names a secret: control requests are logged by
what was wrong with them, never by their contents.
"""

from __future__ import annotations

from edgemail.maillog.text import clean, pairs


def recovered(*, entries: int, tmp_removed: int, corrupt: int, maildrop: int) -> str:
    return "spool: recovered " + pairs(("entries", entries), ("tmp_removed", tmp_removed),
                                       ("corrupt", corrupt), ("maildrop", maildrop))


def stale_tmp(count: int) -> str:
    return f"spool: removed {count} stale file(s) from tmp/"


def corrupt_file(name: str, moved_to: str, reason: object) -> str:
    return f"{clean(name)}: moved to corrupt/{clean(moved_to)}: {clean(reason)}"


def queue_run_requested(filters: list[str]) -> str:
    return f"control: queue run requested: filters={clean(','.join(filters) or 'none')}"


def bad_request(reason: str) -> str:
    return f"control: bad request: {clean(reason)}"


def control_internal_error(op: str) -> str:
    return f"control: internal error in op {clean(op)}"


def starting(version: str, config: str) -> str:
    return "daemon: starting, " + pairs(("version", version), ("config", config))


def ready(listeners: list[str], control: str, queued: int) -> str:
    return "daemon: ready, " + pairs(("listeners", " ".join(listeners) or "none"),
                                     ("control", control), ("queued", queued))


def running_as(identity: str) -> str:
    return f"daemon: running as {clean(identity)}"


def stopping(reason: str) -> str:
    return f"daemon: stopping, reason={clean(reason)}"


def stopped() -> str:
    return "daemon: stopped"


def warning(text: str) -> str:
    return f"daemon: warning: {clean(text)}"


def reloaded(reason: str, *, aliases: int, policy: str, restart_needed: list[str],
             tls: int | None = None, auth_users: int | None = None) -> str:
    return "daemon: reloaded, " + pairs(("reason", reason), ("aliases", aliases),
                                        ("policy", policy or "none"), ("tls", tls),
                                        ("auth_users", auth_users),
                                        ("restart_needed", ",".join(restart_needed) or "none"))


def reload_failed(reason: str, error: object) -> str:
    return f"daemon: reload failed, reason={clean(reason)}: {clean(error)}"
