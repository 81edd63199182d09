"""maillog/isp.py - the lines of ISP mode (ETRN and ATRN served) and of the ODMR client.

The catalogue (edgemail/maillog/__init__.py, section "ISP mode and ODMR")
lists each line with its LogLevel; each function here makes exactly one of
them.  Loggers: ``edgemail.runner`` (the flushes), ``edgemail.odmr`` (our
ODMR call to the ISP).

Never: logs (callers do), or names a secret (the AUTH user is named, never
its password).
"""

from __future__ import annotations

from collections.abc import Iterable

from edgemail.maillog.text import NOQUEUE, clean, pairs


def etrn_flush(node: str, ip: str, user: str | None, customers: Iterable[str], reply: str) -> str:
    return f"{NOQUEUE}: " + pairs(("etrn", node), ("relay", f"[{ip}]"), ("auth", user or None),
                                  ("customers", ",".join(c or "lan" for c in customers)), ("reply", reply))


def atrn_turned(node: str, relay: str, user: str, customers: Iterable[str]) -> str:
    return f"{NOQUEUE}: " + pairs(("atrn", node), ("relay", relay), ("auth", user),
                                  ("customers", ",".join(customers)), ("reply", "250 reversing"))


def odmr_result(relay: str, domains: Iterable[str], code: int, text: str, result: str) -> str:
    return (f"odmr: relay={clean(relay)}, domains={clean(','.join(domains))}, reply={code} {clean(text)}, "
            f"result={result}")


def odmr_push_ended(relay: str, messages: int, reason: str) -> str:
    return "odmr: " + pairs(("relay", relay), ("push", "ended"), ("messages", messages), ("reason", reason))
