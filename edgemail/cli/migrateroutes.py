"""cli/migrateroutes.py - where and when mail goes after an import (CORE).

NAME
    migrateroutes - finish(plan, jobs, inputs): local domains, routes,
    listeners, relaying, mailboxes, the link and the dial policy's rules

DESCRIPTION
    migrate.py carries the sendmail options over one by one; what is left
    needs them all read first:

    - local_domains: --domain, then LOCAL_DOMAIN / Cw names (localhost
      names last), then $j or this machine's name when it has a domain;
      each becomes a "local" route.
    - the "*" route: "smarthost" with SmartHost when a smart host was
      given (and passes the loader), else "mx"; always expensive; dialdelay
      when its mailer has F=Z, or when DialDelay is set and no mailer has
      F=Z (sendmail before 8.12 applied DialDelay to every connection: here
      it applies to the route that needs the link, never to the LAN).
    - listeners: as DAEMON_OPTIONS said, else sendmail's MTA on 0.0.0.0:25;
      lan_networks from --lan only.
    - [link]: mode "external" with Debian's pon/poff, the policy file
      dial.policy beside the config, the ETRN server and domains of the
      crontab's ETRN line.
    - the rules: one per cron time (lines with the same five fields share a
      rule), action queue-run (sendmail -q), etrn (ETRN script) or poll
      (fetchmail); without any, one from --queue-interval (sendmail -qTIME),
      else hourly.  Each rule is checked by link.policy.parse first.

NEVER
    Reads a file or the clock.

FAILURES
    ValueError when no local domain can be told (none in the file, no
    --domain, a host name without a domain): the caller says so, exit 65.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from link.policy import PolicyError, parse

from edgemail.cli.mcread import CronJob
from edgemail.cli.migrate import Inputs, Plan, check

_SMTP_MAILERS = ("smtp", "esmtp", "smtp8", "dsmtp", "relay")
#: what mailers the import reads flags of; the others' flags are named as not carried over
_KNOWN_MAILERS = (*_SMTP_MAILERS, "local", "prog")


def finish(plan: Plan, jobs: list[CronJob], inputs: Inputs) -> None:
    _local_domains(plan, inputs)
    _outbound_route(plan, inputs)
    for name, changes in plan.flags.items():
        if name not in _KNOWN_MAILERS:
            plan.dropped.append(f"{changes[0][1]}: mailer {name}: its routing is in the .cf's rules, not "
                                "read (an ISP's customer domains become hold routes in edgemail)")
    _listeners(plan, inputs)
    plan.local.setdefault("maildir", ("/var/mail/%u/Maildir", "edgemail's default: sendmail's local mailer "
                                      "wrote mbox files in /var/mail; each user gets a Maildir here"))
    plan.link.update({"mode": ("external", "a guess: bring the line up with Debian's pon, down with poff"),
                      "up_command": (["pon"], "pppd's peer file is /etc/ppp/peers/provider"),
                      "down_command": (["poff"], ""), "interface": ("ppp0", ""),
                      "policy": ("dial.policy", "written beside this file")})
    _rules(plan, jobs, inputs)


def _local_domains(plan: Plan, inputs: Inputs) -> None:
    found = [(d, f"--domain {d}") for d in inputs.domains] + plan.domains
    host = str(plan.top["hostname"][0]) if "hostname" in plan.top else inputs.hostname
    if "." in host:
        found.append((host.lower(), f"$j, this host's name {host}"))
    first: dict[str, str] = {}
    for d, src in found:
        first.setdefault(d, src)
    ordered = sorted(first.items(), key=lambda kv: kv[0].startswith("localhost"))
    domains = []
    for d, src in ordered:
        problem = check({"local_domains": [d]})
        if problem:
            plan.dropped.append(f"{src}: local domain {d!r}: {problem}")
        else:
            domains.append(d)
    if not [d for d in domains if not d.startswith("localhost")]:
        raise ValueError("cannot tell the local domain: the file has no LOCAL_DOMAIN (Cw) and this host's "
                         f"name {host!r} has no domain; give --domain DOMAIN")
    plan.top["local_domains"] = (domains, "LOCAL_DOMAIN / Cw / --domain / $j")
    for d, src in ordered:
        if d in domains:
            plan.routes.append((d, "local", src))


def mailer_flags(plan: Plan, mailer: str) -> tuple[set[str], list[str]]:
    """A mailer's flags after every change read (sendmail's defaults have neither e nor Z)."""
    flags: set[str] = set()
    sources = []
    for change, src in plan.flags.get(mailer, []):
        op, letters = (change[0], change[1:]) if change[:1] in "=+-" else ("=", change)
        flags = set(letters) if op == "=" else flags | set(letters) if op == "+" else flags - set(letters)
        sources.append(src)
    return flags, sources


def _route_flags(plan: Plan, mailer: str) -> tuple[set[str], list[str]]:
    if mailer == "relay" and "relay" not in plan.flags:
        mailer = "smtp"                   # RELAY_MAILER_FLAGS undefined: SMTP_MAILER_FLAGS apply
    if mailer in ("smtp", "esmtp"):
        a, b = mailer_flags(plan, "smtp"), mailer_flags(plan, "esmtp")
        return a[0] | b[0], a[1] + b[1]
    return mailer_flags(plan, mailer)


def _outbound_route(plan: Plan, inputs: Inputs) -> None:
    mailer, kind = "esmtp", "mx"
    if plan.smarthost:
        mailer, host, src = plan.smarthost
        problem = check({"SmartHost": host, "routes": {"*": "smarthost"}})
        if problem:
            plan.dropped.append(f"{src}: not carried over: {problem}; mail for the Internet goes by MX")
            mailer = "esmtp"
        else:
            kind = "smarthost"
            plan.top["SmartHost"] = (host, src)
            plan.carried.append(f"{src} -> SmartHost = {host!r}, route \"*\" = smarthost")
    flags, sources = _route_flags(plan, mailer)
    why = "F=e" if "e" in flags else "no F=e, but edgemail dials by its policy only, never because mail arrives"
    dialdelay, dd_why = "Z" in flags, "F=Z" if "Z" in flags else "no F=Z"
    if not dialdelay and "DialDelay" in plan.top and not any("Z" in mailer_flags(plan, m)[0] for m in plan.flags):
        dialdelay, dd_why = True, "DialDelay is set and no mailer has F=Z (sendmail before 8.12 applied it to " \
                                  "every connection): here to the route that needs the link only"
    plan.routes.append(("*", {"route": kind, "expensive": True, "dialdelay": dialdelay},
                        f"mailer {mailer}: expensive: {why}; dialdelay: {dd_why}"))
    plan.carried.append(f"{', '.join(sources) or inputs.source}: route \"*\" expensive ({why}), dialdelay "
                        f"{'on' if dialdelay else 'off'} ({dd_why})")


def _listeners(plan: Plan, inputs: Inputs) -> None:
    if not plan.listeners:
        plan.listeners.append(({"name": "MTA", "address": "0.0.0.0", "port": 25},
                               "no DAEMON_OPTIONS: sendmail's MTA listened on every address, port 25"))
        plan.dropped.append(f"{inputs.source}: sendmail's default MSA on port 587 is not carried over: "
                            "add a [[listen]] for it if clients submit there")
    lan = [n for n in inputs.lan if check({"lan_networks": [n]}) is None]
    plan.top["lan_networks"] = (lan, "--lan" if lan else "none: only loopback may relay")
    if not lan:
        plan.dropped.append(f"{inputs.source}: who may relay (access db, RELAY_DOMAIN, relay_entire_domain) is "
                            "not read: only loopback relays until lan_networks names the LAN (--lan NET)")


# ---------------------------------------------------------------- the dial policy

def _rules(plan: Plan, jobs: list[CronJob], inputs: Inputs) -> None:
    for job in jobs:
        where = f"{inputs.crontab}:{job.line}: {job.text}"
        if job.kind == "zone":
            _zone(plan, job.args[0], where)
        elif job.kind in ("queue-run", "etrn", "poll"):
            _job_rule(plan, job, where)
        else:
            plan.dropped.append(f"{where}: not a queue run, ETRN or fetch: stays in cron")
    if not plan.rules:
        _default_rule(plan, inputs)


def _zone(plan: Plan, zone: str, where: str) -> None:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        plan.dropped.append(f"{where}: unknown zone {zone!r}: the rules are read in {plan.zone}")
        return
    plan.zone = zone


def _job_rule(plan: Plan, job: CronJob, where: str) -> None:
    fields = " ".join(job.fields)
    try:
        parse(f"{fields} {job.kind}")
    except PolicyError as exc:
        plan.dropped.append(f"{where}: not carried over: {exc.field}: {exc.problem}")
        return
    add_rule(plan, fields, job.kind, where)
    if job.kind == "queue-run" and job.args:
        plan.dropped.append(f"{where}: -q{' -q'.join(job.args)}: a rule's queue run is of the whole queue")
    if job.kind == "poll":
        plan.dropped.append(f"{where}: the rule dials; fetchmail still fetches: run it from /etc/ppp/ip-up.d")
    if job.kind == "etrn":
        _etrn(plan, job, where)


def add_rule(plan: Plan, fields: str, action: str, source: str) -> None:
    for rule_fields, actions, sources in plan.rules:
        if rule_fields == fields:
            if action not in actions:
                actions.append(action)
            if source not in sources:
                sources.append(source)
            return
    plan.rules.append((fields, [action], [source]))


def _etrn(plan: Plan, job: CronJob, where: str) -> None:
    from edgemail.config.loader import smart_host
    if not job.args:
        plan.dropped.append(f"{where}: no ETRN server named: set [link] etrn_host")
        return
    server, domains = job.args[0], list(job.args[1:])
    try:
        smart_host(server)
    except ValueError as exc:
        plan.dropped.append(f"{where}: ETRN server {server!r}: {exc}")
        return
    known = plan.top["local_domains"][0]
    assert isinstance(known, list)
    local = [d for d in known if not d.startswith("localhost")]
    plan.link["etrn_host"] = (server, where)
    plan.link["etrn_domains"] = (domains or local, where if domains else "the local domains")


def _default_rule(plan: Plan, inputs: Inputs) -> None:
    actions = "queue-run etrn" if "etrn_host" in plan.link else "queue-run"
    if inputs.queue_interval:
        fields, note = interval_fields(inputs.queue_interval)
        source = f"sendmail -q{int(inputs.queue_interval // 60)}m (--queue-interval){note}"
    else:
        fields, source = "0 * * * *", "no queue run found (no --crontab, no --queue-interval): hourly"
        plan.dropped.append(f"{inputs.source}: no queue-run schedule found: dial.policy dials hourly; edit it")
    for action in actions.split():
        add_rule(plan, fields, action, source)


def interval_fields(seconds: float) -> tuple[str, str]:
    """sendmail -qTIME's interval as cron fields, and a note when cron cannot say it exactly."""
    m = max(round(seconds / 60), 1)
    if m < 60:
        return f"*/{m} * * * *", "" if 60 % m == 0 else f": cron steps start again each hour (:00, :{m:02d}...)"
    h = m // 60
    if m % 60 == 0 and h < 24:
        return f"0 */{h} * * *", "" if 24 % h == 0 else f": cron steps start again each day (00:00, {h:02d}:00...)"
    return "0 0 * * *", f": {m} minutes is more than cron's hours can step: once a day"
