"""maillog/runs.py - the lines about queue runs, the SMTP client and DNS.

The catalogue (edgemail/maillog/__init__.py, section "Queue runs, SMTP
client, DNS") lists each line with its LogLevel; each function here makes
exactly one of them.  Logger: ``edgemail.runner`` (the runner, the MTA's
port to the link, the SMTP client and the MX resolver).

Never: logs (callers do), or puts credentials into a line (``no_auth`` and
``authfile_owner`` name the relay and the file, never what is in it).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from edgemail.maillog.text import clean, pairs


def run_start(run: str, reason: str, filters: Iterable[str], selected: int) -> str:
    return "runner: queue run start, " + pairs(
        ("run", run), ("reason", reason), ("filters", ",".join(filters) or "none"), ("selected", selected))


def run_end(*, selected: int, attempted: int, sent: int, deferred: int, bounced: int,
            cut: int = 0, stopped: str = "") -> str:
    return "runner: queue run end, " + pairs(
        ("selected", selected), ("attempted", attempted), ("sent", sent), ("deferred", deferred),
        ("bounced", bounced), ("cut", cut or None), ("stopped", stopped or None))


def link_up(*, cleared: int, nameservers: Iterable[str], info: Mapping[str, object]) -> str:
    return "runner: link up, " + pairs(
        ("hoststatus_cleared", cleared), ("nameservers", ",".join(nameservers) or "none"),
        *((k, v) for k, v in sorted(info.items()) if v))


def dialdelay(host: str, *, wait_s: float, after: str, link_coming: bool) -> str:
    wait = f"link-up, max={wait_s:g}s" if link_coming else f"{wait_s:g}s"
    return f"runner: dialdelay, host={clean(host)}, wait={wait}, after={clean(after)}"


def demand_unroutable(qid: str, reason: str) -> str:
    return f"{qid}: cannot route for the link demand: {clean(reason)}"


def runner_warning(text: str) -> str:
    return f"runner: warning: {clean(text)}"


def runner_internal_error() -> str:
    return "runner: internal error"


def delivery_internal_error(qid: str, error: object) -> str:
    return f"{qid}: internal error while delivering, dsn=4.3.0, deferred: {clean(error)}"


def clock_stepped(step_s: float, rebased: int) -> str:
    sign = "+" if step_s >= 0 else "-"
    return "runner: wall clock stepped, " + pairs(("step", f"{sign}{abs(step_s):.0f}s"),
                                                   ("rebased", rebased))


def authfile_owner(path: str, uid: int) -> str:
    return f"smtpc: warning: SmartHostAuthFile {clean(path)} is owned by uid {uid}, not root"


def no_auth(relay: str) -> str:
    return f"smtpc: relay={clean(relay)}, auth=none (no AUTH offered; sending without authentication)"


def dns_cache_unreadable(path: str, reason: object) -> str:
    return f"mx: warning: dns cache {clean(path)} unreadable ({clean(reason)}); starting empty"


def etrn_result(relay: str, arg: str, code: int, text: str, result: str) -> str:
    return f"etrn: relay={clean(relay)}, arg={clean(arg)}, reply={code} {clean(text)}, result={result}"
