"""cli/importrender.py - an import's Plan as the text of edgemail.toml and dial.policy (CORE).

NAME
    importrender - config_text(plan, header) and policy_text(plan, header)

DESCRIPTION
    Each value is written with a comment above it naming where it came from
    (``# sendmail.mc:12 define(`confDIAL_DELAY', `10s')``), so the file
    explains itself; the end of edgemail.toml lists what was not carried
    over, and why.  Values are TOML as the loader reads it: strings in
    double quotes (JSON escapes are TOML's), integers, booleans, arrays and
    inline tables.

NEVER
    Reads or writes a file, or decides anything: migrate.py and
    migrateroutes.py did.
"""

from __future__ import annotations

import json

from edgemail.cli.migrate import Plan

#: the order top-level keys are written in (the others follow as they were read)
_TOP_FIRST = ("hostname", "local_domains", "lan_networks", "DeliveryMode", "SmartHost", "DialDelay", "MinQueueAge")


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))


def _comment(source: str) -> list[str]:
    text = " ".join(str(source).split())
    return [f"# {text}"] if text else []


def _section(name: str, values: dict) -> list[str]:
    lines = ["", f"[{name}]"]
    for key, (value, source) in values.items():
        lines += _comment(source) + [f"{json.dumps(key) if '.' in key else key} = {toml_value(value)}"]
    return lines


def config_text(plan: Plan, header: list[str]) -> str:
    """edgemail.toml for PLAN; HEADER: the comment lines that open it."""
    lines = [f"# {h}" if h else "#" for h in header]
    order = [k for k in _TOP_FIRST if k in plan.top] + [k for k in plan.top if k not in _TOP_FIRST]
    for key in order:
        value, source = plan.top[key]
        lines += [""] + _comment(source) + [f"{key} = {toml_value(value)}"]
    if plan.timeouts:
        lines += _section("Timeout", plan.timeouts)
    for listener, source in plan.listeners:
        lines += ["", "[[listen]]"] + _comment(source)
        lines += [f"{k} = {toml_value(v)}" for k, v in listener.items()]
    lines += ["", "[routes]"]
    for pattern, value, source in plan.routes:
        lines += _comment(source) + [f"{json.dumps(pattern)} = {toml_value(value)}"]
    lines += _section("local", plan.local) + _section("link", plan.link)
    if plan.dropped:
        lines += ["", "# Not carried over:"] + [f"#   {' '.join(d.split())}" for d in plan.dropped]
    return "\n".join(lines) + "\n"


def policy_text(plan: Plan, header: list[str]) -> str:
    """dial.policy for PLAN's rules."""
    lines = [f"# {h}" if h else "#" for h in header]
    lines += ["#", "# Rules: crontab's five fields (minute hour day-of-month month day-of-week) and",
              "# what to do: queue-run (dial if mail waits for the link), etrn (dial and ask the",
              "# ISP for the mail it holds), poll (dial even when nothing waits).  The settings",
              "# (idle_hangup, budget, dial_when_queued, forbid ...) are explained in",
              "# etc/dial.policy; `edgemail policy check FILE` reads this file back.",
              "", f"timezone {plan.zone}"]
    for fields, actions, sources in plan.rules:
        lines.append("")
        for source in sources:
            lines += _comment(source)
        lines.append(f"{fields:24} {' '.join(actions)}")
    return "\n".join(lines) + "\n"
