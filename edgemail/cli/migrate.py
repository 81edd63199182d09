"""cli/migrate.py - what a sendmail configuration becomes in edgemail (CORE).

NAME
    migrate - migrate(items, Inputs) -> Plan (edgemail.toml's keys, each with
    where it came from, and a note for everything read)

DESCRIPTION
    The second half of ``edgemail import``: mcread.py's items (the same for
    a .mc and a .cf) and crontab jobs become settings, each remembered with
    the line it came from; every item that has no place in edgemail gets a
    ``dropped`` note saying why.  migrateroutes.finish() then adds what
    needs every option read first (domains, routes, listeners, the link,
    the dial policy's rules from the crontab), and importrender.py turns
    the Plan into the two files' text.

    Carried over: DeliveryMode (always "deferred"; another mode is named),
    SMART_HOST / DS / FEATURE(msp) -> SmartHost and the "*" route,
    DialDelay, MinQueueAge, Timeout.* (sendmail's default units: minutes,
    hours for queuewarn, days for queuereturn), MaxMessageSize,
    MinFreeBlocks, MaxQueueRunSize, QueueSortOrder, the connection cache,
    the work factors, LogLevel, PrivacyOptions (known words), RunAsUser,
    LOCAL_DOMAIN / Cw -> local_domains with "local" routes, AliasFile ->
    [local] aliases, DAEMON_OPTIONS -> [[listen]], the $j host name;
    HostStatusDirectory and HoldExpensive say what edgemail always does.
    Mailer flags: the outbound route is always expensive (edgemail dials
    by its policy, never because mail arrives: sendmail's F=e with
    HoldExpensive); F=Z on the mailer the route uses (relay for a smart
    host, else the SMTP mailers) sets dialdelay.
    The crontab's queue runs, ETRN scripts (their server becomes [link]
    etrn_host, their domains etrn_domains) and fetchmail (poll) become
    dial.policy rules at the same times, in the zone the cron ran in.

    Guesses, named in the notes: the link is brought up with Debian's
    pon/poff ([link] mode "external"), since a .mc does not say how the
    line comes up; no LAN may relay until lan_networks says which
    (sendmail's access db is not read); without DAEMON_OPTIONS the daemon
    listens as sendmail's MTA did, on 0.0.0.0:25.

NEVER
    Reads a file or the clock; each value is checked by the configuration
    loader (``from_dict``, on a fragment) before it is kept, so what the
    Plan holds passes ``edgemail config check``.

FAILURES
    None: what cannot be carried over is a ``dropped`` note.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from edgemail.cli.mcread import Item
from edgemail.config.model import (
    PRIVACY_EFFECT,
    PRIVACY_GOAWAY,
    PRIVACY_NOT_CARRIED,
    PRIVACY_WORDS,
    QUEUE_SORT_ORDERS,
)

#: sendmail option -> (edgemail key, kind, sendmail's default unit for a bare number)
OPTIONS = {
    "DialDelay": ("DialDelay", "duration", "s"), "MinQueueAge": ("MinQueueAge", "duration", "m"),
    "ConnectionCacheTimeout": ("ConnectionCacheTimeout", "duration", "s"),
    **{k: (k, "int", "") for k in ("MaxQueueRunSize", "MaxMessageSize", "MinFreeBlocks", "ConnectionCacheSize",
                                   "RecipientFactor", "ClassFactor", "RetryFactor", "LogLevel")},
    "RunAsUser": ("RunAsUser", "str", ""),
}
#: Timeout.* names edgemail has
TIMEOUTS = ("connect", "iconnect", "initial", "helo", "mail", "rcpt", "datainit", "datablock", "datafinal",
            "rset", "quit", "misc", "command", "control", "hoststatus",
            *(f"{k}{u}" for k in ("queuewarn", "queuereturn") for u in ("", ".urgent", ".normal", ".non-urgent")))
WHY = {
    "confTRUSTED_USER": "edgemail trusts root, its own user and group; there are no trusted users",
    "confDEF_USER_ID": "the daemon's user is systemd's User=edgemail (or RunAsUser)",
    "confAUTO_REBUILD": "the aliases are a text file: newaliases checks it and the daemon reads it again",
    "confUSERDB_SPEC": "there is no user database", "UUCP_MAILER_MAX": "there is no UUCP",
    "confAUTH_OPTIONS": "edgemail offers no SMTP AUTH: LAN hosts relay by lan_networks",
    "confAUTH_MECHANISMS": "edgemail offers no SMTP AUTH", "TRUST_AUTH_MECH": "edgemail offers no SMTP AUTH",
    "confBIND_OPTS": "DNS is asked only in queue runs, as [dns] says",
    "confQUEUE_LA": "there are no load-average limits", "percpu_QueueLA": "there are no load-average limits", "confREFUSE_LA": "there are no load-average limits",
    "STATUS_FILE": "there is no statistics file: the log lines carry the figures",
    "PROCMAIL_MAILER_PATH": "local mail goes to Maildirs ([local] maildir) or by LMTP (a route)",
    "DATABASE_MAP_TYPE": "edgemail reads no sendmail maps",
    "Timeout.ident": "edgemail makes no IDENT queries", "QueueDirectory":
    "edgemail's queue is its own ([spool] directory): run sendmail's queue empty before the switch",
    "$=w file": "the names in that file are not read: add them to local_domains",
    "use_cw_file": "the names in local-host-names are not read: add them to local_domains",
    "mailertable": "write its per-domain routes in [routes]", "virtusertable": "write it as aliases",
    "access_db": "relaying is by lan_networks and local_domains", "local_procmail":
    "local mail goes to Maildirs ([local] maildir) or by LMTP", "smrsh": "program delivery is off "
    "unless [local] allow_program_targets", "authinfo": "write the smart host's login to SmartHostAuthFile",
    "OSTYPE": "its file is not read (sendmail's paths)", "DOMAIN": "its file is not read: import its settings too",
    "MASQUERADE_AS": "edgemail does not rewrite addresses", "MASQUERADE_DOMAIN": "edgemail does not rewrite addresses",
    "DM": "edgemail does not rewrite addresses (masquerading)", "DR": "there is no relay for unqualified names",
    "DH": "there is no mail hub: local mail is delivered here",
    "Cm": "relaying is by lan_networks", "Fm": "relaying is by lan_networks", "CR": "relaying is by lan_networks",
    "Fw": "the names in that file are not read: add them to local_domains",
}
_SILENT = {"VERSIONID", "divert", "include", "undefine", "ifdef", "define"}
_PORTS = {"smtp": 25, "submission": 587, "smtps": 465}


@dataclass(frozen=True)
class Inputs:
    """What the import is told besides the files."""

    source: str                        #: the .mc/.cf's name, for "from FILE:LINE"
    crontab: str = ""                  #: the crontab's name ("" = none given)
    zone: str = "UTC"                  #: the zone cron ran in
    domains: tuple[str, ...] = ()      #: --domain
    lan: tuple[str, ...] = ()          #: --lan
    hostname: str = ""                 #: this machine's name (a fallback local domain)
    queue_interval: float = 0.0        #: sendmail -qTIME's interval (seconds), 0 = none


@dataclass
class Plan:
    """What the import writes, each value with where it came from."""

    top: dict[str, tuple[object, str]] = field(default_factory=dict)
    timeouts: dict[str, tuple[object, str]] = field(default_factory=dict)
    listeners: list[tuple[dict, str]] = field(default_factory=list)
    routes: list[tuple[str, object, str]] = field(default_factory=list)
    local: dict[str, tuple[object, str]] = field(default_factory=dict)
    link: dict[str, tuple[object, str]] = field(default_factory=dict)
    rules: list[tuple[str, list[str], list[str]]] = field(default_factory=list)   #: fields, actions, sources
    zone: str = "UTC"
    carried: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    domains: list[tuple[str, str]] = field(default_factory=list)                   #: (domain, from)
    flags: dict[str, list[tuple[str, str]]] = field(default_factory=dict)          #: mailer -> (change, from)
    smarthost: tuple[str, str, str] | None = None                                  #: (mailer, host, from)
    mode: str = ""


def check(fragment: dict) -> str | None:
    """The loader's complaint about a config FRAGMENT, or None: each value is kept only if it passes."""
    from edgemail.config.loader import from_dict
    from edgemail.errors import ConfigError
    try:
        from_dict({"hostname": "import.invalid", "local_domains": ["import.invalid"], **fragment})
    except ConfigError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def where(inputs: Inputs, it: Item) -> str:
    return f"{inputs.source}:{it.line}" if it.line else inputs.source


def said(inputs: Inputs, it: Item) -> str:
    """Where an item is and what it says, on one line: ``sendmail.mc:12 define(...)``."""
    return f"{where(inputs, it)} {' '.join(it.text.split())}"


def _drop(plan: Plan, inputs: Inputs, it: Item, why: str) -> None:
    seen = f" ({it.note})" if it.note and it.note not in why else ""
    plan.dropped.append(f"{where(inputs, it)}: {' '.join(it.text.split())}{seen}: {why}")


def _keep(plan: Plan, section: dict, key: str, value, inputs: Inputs, it: Item, fragment: dict) -> None:
    problem = check(fragment)
    if problem:
        _drop(plan, inputs, it, f"not carried over: {problem}")
        return
    section[key] = (value, said(inputs, it))
    plan.carried.append(f"{where(inputs, it)}: {it.text} -> {key} = {value!r}")


def _duration(value: str, unit: str) -> str:
    v = value.strip().lower()
    return f"{v}{unit}" if v.replace(".", "", 1).isdigit() and unit else v


def _option(plan: Plan, inputs: Inputs, it: Item) -> None:
    name, v = it.name, it.value.strip()
    if name in OPTIONS:
        key, kind, unit = OPTIONS[name]
        value: object = _duration(v, unit) if kind == "duration" else (int(v) if kind == "int" and v.isdigit() else v)
        _keep(plan, plan.top, key, value, inputs, it, {key: value})
    elif name.startswith("Timeout."):
        _timeout(plan, inputs, it, name[len("Timeout."):], v)
    elif name in _SPECIAL_OPTIONS:
        _SPECIAL_OPTIONS[name](plan, inputs, it)
    else:
        _drop(plan, inputs, it, WHY.get(name, WHY.get(it.args[0] if it.args else "", f"edgemail has no {name}")))


def _timeout(plan: Plan, inputs: Inputs, it: Item, name: str, v: str) -> None:
    if name not in TIMEOUTS:
        _drop(plan, inputs, it, WHY.get(f"Timeout.{name}", f"edgemail has no Timeout.{name}"))
        return
    unit = "h" if name.startswith("queuewarn") else "d" if name.startswith("queuereturn") else "m"
    value = _duration(v, unit)
    _keep(plan, plan.timeouts, name, value, inputs, it, {"Timeout": {name: value}})


def _delivery_mode(plan: Plan, inputs: Inputs, it: Item) -> None:
    mode = {"d": "deferred", "q": "queue", "b": "background", "i": "interactive"}.get(it.value.strip()[:1].lower(), "")
    plan.mode = mode or it.value
    plan.top["DeliveryMode"] = ("deferred", said(inputs, it))
    if mode == "deferred":
        plan.carried.append(f"{where(inputs, it)}: {it.text} -> DeliveryMode = 'deferred'")
    else:
        _drop(plan, inputs, it, f"edgemail always defers ({mode or it.value!r} is not carried over): mail "
                                "for the Internet waits for the dial policy, local and LAN mail goes at once")


def _privacy(plan: Plan, inputs: Inputs, it: Item) -> None:
    """Each word: what it does here (carried), or why it does nothing (named)."""
    words = [w.strip().lower() for w in it.value.split(",") if w.strip()]
    unknown = [w for w in words if w not in PRIVACY_WORDS]
    if unknown:
        _drop(plan, inputs, it, f"PrivacyOptions {', '.join(unknown)}: unknown to edgemail")
    expanded = [*dict.fromkeys(w for x in words for w in ([x, *sorted(PRIVACY_GOAWAY)] if x == "goaway" else [x]))]
    for w in expanded:
        if w in PRIVACY_NOT_CARRIED:
            _drop(plan, inputs, it, f"PrivacyOptions {w}: {PRIVACY_NOT_CARRIED[w]}")
        elif w in PRIVACY_EFFECT:
            plan.carried.append(f"{where(inputs, it)}: PrivacyOptions {w} -> {PRIVACY_EFFECT[w]}")
    known = ",".join(w for w in words if w in PRIVACY_WORDS)
    if known:
        _keep(plan, plan.top, "PrivacyOptions", known, inputs, it, {"PrivacyOptions": known})


def _sort_order(plan: Plan, inputs: Inputs, it: Item) -> None:
    order = it.value.strip().lower()
    if order in QUEUE_SORT_ORDERS:
        _keep(plan, plan.top, "QueueSortOrder", order, inputs, it, {"QueueSortOrder": order})
    else:
        _drop(plan, inputs, it, f"QueueSortOrder {it.value!r}: edgemail sorts by {', '.join(QUEUE_SORT_ORDERS)}")


def _alias_file(plan: Plan, inputs: Inputs, it: Item) -> None:
    files = [f.strip() for f in it.value.split(",") if f.strip()]
    plain = [f.split(":", 1)[-1] if f.split(":", 1)[0] in ("hash", "dbm", "btree", "text") else f for f in files]
    paths = [p for p in plain if p.startswith("/")]
    if paths:
        _keep(plan, plan.local, "aliases", paths[0], inputs, it, {"local": {"aliases": paths[0]}})
    if len(paths) != len(files):
        _drop(plan, inputs, it, "only one aliases file, a text file, is read: " +
              ", ".join(f for f, p in zip(files, plain) if p != (paths[0] if paths else None)))


def _note(text: str):
    def handler(plan: Plan, inputs: Inputs, it: Item) -> None:
        plan.carried.append(f"{where(inputs, it)}: {it.text} -> {text}")
    return handler


def _hostname(plan: Plan, inputs: Inputs, it: Item) -> None:
    _keep(plan, plan.top, "hostname", it.value, inputs, it, {"hostname": it.value})


_SPECIAL_OPTIONS = {
    "DeliveryMode": _delivery_mode, "PrivacyOptions": _privacy, "QueueSortOrder": _sort_order,
    "AliasFile": _alias_file, "$j": _hostname,
    "HostStatusDirectory": _note("host status is always kept, in the spool (hoststat.json), for Timeout.hoststatus"),
    "HoldExpensive": _note("always so: routes marked expensive wait for the link"),
}


# ---------------------------------------------------------------- the other items

def _feature(plan: Plan, inputs: Inputs, it: Item) -> None:
    if it.name in ("msp", "nullclient") and it.value:
        plan.smarthost = plan.smarthost or ("relay", it.value.strip(), said(inputs, it))
    else:
        _drop(plan, inputs, it, WHY.get(it.name, "edgemail has no such feature"))


def _mailer(plan: Plan, inputs: Inputs, it: Item) -> None:
    if it.name in ("smtp", "local", "procmail"):
        where_to = {"smtp": "the \"*\" route", "local": "local delivery", "procmail": "local delivery"}[it.name]
        plan.carried.append(f"{where(inputs, it)}: {it.text} -> {where_to}")
    else:
        _drop(plan, inputs, it, f"edgemail has no {it.name} mailer")


def _macro(plan: Plan, inputs: Inputs, it: Item) -> None:
    if it.name not in _SILENT:
        _drop(plan, inputs, it, WHY.get(it.name, "edgemail has no equivalent"))


def _unread(plan: Plan, inputs: Inputs, it: Item) -> None:
    if it.name == "machinery":
        plan.dropped.append(f"{inputs.source}: {it.value}: the .cf's rewriting machinery, not read "
                            "(edgemail routes by [routes])")
    else:
        _drop(plan, inputs, it, f"not understood{': ' + it.note if it.note else ''}")


def _smarthost(plan: Plan, inputs: Inputs, it: Item) -> None:
    """SMART_HOST / DS: "[mailer:]host" (sendmail's relay mailer when none is named)."""
    value = it.value.strip()
    head, sep, tail = value.partition(":")
    mailer, host = (head, tail) if sep and re.fullmatch(r"[a-z][a-z0-9]*", head) else ("relay", value)
    plan.smarthost = (mailer, host, said(inputs, it))


def _flags(plan: Plan, inputs: Inputs, it: Item) -> None:
    plan.flags.setdefault(it.name, []).append((it.value, said(inputs, it)))


def _domain(plan: Plan, inputs: Inputs, it: Item) -> None:
    plan.domains.append((it.value.lower().rstrip("."), said(inputs, it)))


def _daemon(plan: Plan, inputs: Inputs, it: Item) -> None:
    fields = {k.strip().lower()[:1]: v.strip() for k, _, v in (p.partition("=") for p in it.value.split(","))}
    family = fields.get("f", "inet").lower()
    port_text = fields.get("p", "smtp").lower()
    port = _PORTS.get(port_text, int(port_text) if port_text.isdigit() else -1)
    address = fields.get("a", "") or ("::" if family == "inet6" else "0.0.0.0")
    name = fields.get("n", "") or f"daemon{len(plan.listeners) + 1}"
    try:
        ipaddress.ip_address(address)
    except ValueError:
        _drop(plan, inputs, it, f"Addr={address}: a listener needs a numeric address (no DNS at start-up)")
        return
    if port < 0 or family not in ("inet", "inet6"):
        _drop(plan, inputs, it, f"Port={port_text}, Family={family}: edgemail listens on TCP ports of inet/inet6")
        return
    plan.listeners.append(({"name": name, "address": address, "port": port}, said(inputs, it)))
    plan.carried.append(f"{where(inputs, it)}: {it.text} -> [[listen]] {name} [{address}]:{port}")
    if not fields.get("a"):
        plan.carried.append(f"{where(inputs, it)}: no Addr= means every address, as sendmail: {address}")
    if fields.get("m"):
        _drop(plan, inputs, it, f"Modifiers={fields['m']}: not carried over (no AUTH, no per-listener options)")


HANDLERS = {"option": _option, "feature": _feature, "mailer": _mailer, "macro": _macro, "unread": _unread,
            "smarthost": _smarthost, "flags": _flags, "domain": _domain, "daemon": _daemon,
            "define": lambda plan, inputs, it: _drop(plan, inputs, it, WHY.get(it.name, "edgemail has no equivalent")),
            "class": lambda plan, inputs, it: _drop(plan, inputs, it, WHY.get(it.name, "a class of the .cf's "
                                                    "rules: not read (an ISP's customer domains become "
                                                    "hold routes in edgemail)"))}


def migrate(items: list[Item], inputs: Inputs) -> Plan:
    """The Plan for these items (the options; migrateroutes.finish() does the rest)."""
    plan = Plan(zone=inputs.zone)
    for it in items:
        HANDLERS[it.kind](plan, inputs, it)
    if "DeliveryMode" not in plan.top:
        plan.top["DeliveryMode"] = ("deferred", "always (sendmail's default was background: deliver at once)")
        plan.carried.append(f"{inputs.source}: no DeliveryMode (sendmail's default: background) -> always "
                            "deferred: mail for the Internet waits for the dial policy")
    return plan
