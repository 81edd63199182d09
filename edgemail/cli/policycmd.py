"""cli/policycmd.py - the dial policy without a daemon: ``edgemail policy
check`` and ``edgemail link explain --offline``.

Synopsis::

    edgemail policy check [FILE]                     every error as FILE:LINE: FIELD: problem (exit 78),
                                                     or a summary of the rules, windows and settings
    edgemail link explain --offline [--at TIME] [--policy FILE]
             [--queued N] [--oldest AGE] [--urgent N] [--calls-today N] [--minutes-today M]
             [--last-dial TIME]

Owns: reading a policy file before it is deployed, with link.policy's
public core only (``parse()``, ``Policy.should_dial``, ``Policy.explain``):
``every_error`` (the grammar is one line at a time, so each line is parsed
alone and every bad line is named, not only the first), ``summary``,
``next_dial`` (steps the core from decision to decision until it would
dial: the time of the next call, not only of the next question) and
``parse_at``.  FILE defaults to the configuration's ``[link] policy``.

What ``explain --offline`` assumes about the queue, since no daemon tells
it: by default one message waiting for the link, just queued (``--queued
1 --oldest 0s``), none urgent, no call yet today and no earlier dial; the
message ages as the stepping moves on, the day's budget use starts again
at local midnight, and nothing else happens meanwhile (no new mail, no
call).  The assumptions are printed with the answer.  TIME is ISO 8601
(``2024-06-03T07:50``, ``2024-06-03 07:50+02:00``) or ``HH:MM`` (today);
without a UTC offset it is read in the policy's zone.

Never: talks to the daemon, writes a file or reads the clock beyond one
``now`` taken by the caller.

Fails: a bad policy exits 78 naming every bad line; an unreadable file 78;
a bad TIME, AGE or count 64.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from datetime import datetime, timedelta, timezone

from link import durations
from link.policy import Decision, Demand, Policy, PolicyError, parse

from edgemail.cli.base import EX_CONFIG, EX_OK, Exit, UsageError, err, load_config
from edgemail.cli.show import print_json

#: decisions ``next_dial`` follows before it gives up (each one is a later time)
MAX_STEPS = 400


def every_error(text: str, file: str) -> list[PolicyError]:
    """Every bad line of a policy file (each line of the grammar stands alone)."""
    errors = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            parse("\n" * (n - 1) + line, file=file, whole=False)
        except PolicyError as exc:
            errors.append(exc)
    if not errors:
        try:
            parse(text, file=file)
        except PolicyError as exc:          # the whole file refused what no line alone did
            errors.append(exc)
    return errors


def read_policy(path: str) -> tuple[Policy, str]:
    """The parsed policy and its text; every error said on stderr, then Exit(78)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        err("edgemail", f"{path}: cannot read the dial policy: {getattr(exc, 'strerror', None) or exc}")
        raise Exit(EX_CONFIG) from None
    errors = every_error(text, path)
    for e in errors:
        print(str(e), file=sys.stderr)
    if errors:
        raise Exit(EX_CONFIG)
    return parse(text, file=path), text


def _settings_words(policy: Policy) -> list[str]:
    s = policy.settings

    def d(seconds: float) -> str:
        return durations.describe(seconds) if seconds else "off"
    words = [f"hang up after {durations.describe(s.idle_hangup_s)} of quiet",
            f"calls last at most {durations.describe(s.max_connect_s)}",
            "budget " + (f"{s.calls_per_day} calls" if s.calls_per_day else "unlimited calls") + " and "
            + (f"{s.minutes_per_day:g} minutes" if s.minutes_per_day else "unlimited minutes") + " a day",
            f"dial when {s.dial_when_queued} messages wait" if s.dial_when_queued else "no queue-size threshold",
            f"dial when the oldest waits {d(s.dial_when_oldest_s)}" if s.dial_when_oldest_s else "no age threshold",
            "urgent mail dials at once" if s.urgent_immediate else "urgent mail waits for the rules",
            f"a rule missed by less than {durations.describe(s.catchup_s)} still dials",
            f"no redial within {durations.describe(s.redial_gap_s)} of the last dial",
            "rules count from the last call (schedule = relative)" if s.relative else "rules fire at their times"]
    return words + _economy_words(policy)


def _economy_words(policy: Policy) -> list[str]:
    """Chargehup and big mail, when they do something."""
    s, out = policy.settings, []
    if s.chargehup and policy.tariff.has_units:
        out.append(f"chargehup: hang up {durations.describe(s.chargehup_margin_s)} before the next unit"
                   + (f", one more ETRN in it when a poll is due within {durations.describe(s.unit_poll_s)}"
                      if s.unit_poll_s else ""))
    if s.big_mail:
        out.append(f"mail of {s.big_mail} bytes or more waits for a cheap window unless urgent")
    return out


def summary(policy: Policy, file: str) -> str:
    """What a good policy file says, for people."""
    lines = [f"{file}: OK: {len(policy.rules)} rule(s), {len(policy.windows)} forbidden window(s), "
             f"timezone {policy.zone.key}"]
    lines += [f"  line {r.line:<4} {r.text}" for r in policy.rules]
    lines += [f"  forbid {w.text}" for w in policy.windows]
    lines += [f"  cheap {w.text}" for w in policy.cheap]
    lines += [f"  tariff {p.text}" for p in policy.tariff.prices]
    lines.append("settings: " + "; ".join(_settings_words(policy)))
    return "\n".join(lines) + "\n"


def policy_json(policy: Policy, file: str) -> dict:
    return {"file": file, "timezone": policy.zone.key,
            "rules": [{"line": r.line, "text": r.text, "actions": sorted(r.actions)} for r in policy.rules],
            "forbidden": [w.text for w in policy.windows], "settings": asdict(policy.settings),
            "tariff": [p.text for p in policy.tariff.prices], "cheap": [w.text for w in policy.cheap]}


def policy_check(args: argparse.Namespace) -> int:
    """``edgemail policy check [FILE]``."""
    path = args.file or _configured_policy(args)
    policy, _ = read_policy(path)
    if getattr(args, "json", False):
        print_json(policy_json(policy, path))
    else:
        sys.stdout.write(summary(policy, path))
    return EX_OK


def _configured_policy(args: argparse.Namespace) -> str:
    cfg = load_config(getattr(args, "config", None), "edgemail")
    if not cfg.link.policy:
        err("edgemail", f"{cfg.path}: [link] policy names no dial policy file: give FILE")
        raise Exit(EX_CONFIG)
    return cfg.link.policy


# ---------------------------------------------------------------- explain --offline

def parse_at(text: str | None, policy: Policy, now: datetime) -> datetime:
    """--at TIME -> an aware instant; naive times are read in the policy's zone.  Raises UsageError."""
    if not text or text == "now":
        return now
    try:
        if len(text) <= 5 and ":" in text:
            hh, mm = (int(x) for x in text.split(":"))
            local = now.astimezone(policy.zone)
            return local.replace(hour=hh, minute=mm, second=0, microsecond=0)
        t = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--at takes a time such as 2024-06-03T07:50 or 07:50 (read in the policy's zone "
                         f"{policy.zone.key}), got {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=policy.zone)


def next_dial(policy: Policy, at: datetime, demand: Demand) -> tuple[datetime, Decision] | None:
    """When the policy would next dial from AT, if the queue stays as DEMAND says
    (the mail ages; the budget use starts again at local midnight).  None: never
    (within MAX_STEPS decisions)."""
    t, day = at, policy.local(at).date()
    for _ in range(MAX_STEPS):
        if policy.local(t).date() != day:
            demand = replace(demand, calls_today=0, minutes_today=0.0)
            day = policy.local(t).date()
        aged = replace(demand, oldest_age_s=demand.oldest_age_s + (t - at).total_seconds()) \
            if demand.queued else demand
        d = policy.should_dial(t, aged)
        if d.dial:
            return t, d
        if d.next_at is None or d.next_at <= t:
            return None
        t = d.next_at
    return None


def _count(text: str, what: str) -> int:
    if not text.isdigit():
        raise UsageError(f"{what} takes a whole number >= 0, got {text!r}")
    return int(text)


def demand_of(args: argparse.Namespace, policy: Policy, now: datetime) -> Demand:
    """The queue and budget use ``explain --offline`` assumes (options, else its defaults)."""
    try:
        oldest = durations.parse(args.oldest)
        minutes = float(args.minutes_today)
    except ValueError as exc:
        raise UsageError(f"--oldest/--minutes-today: {exc}") from None
    last = parse_at(args.last_dial, policy, now) if args.last_dial else None
    return Demand(queued=_count(args.queued, "--queued"), oldest_age_s=oldest, urgent=_count(args.urgent, "--urgent"),
                  calls_today=_count(args.calls_today, "--calls-today"), minutes_today=minutes, last_dial=last)


def _stamp(t: datetime, policy: Policy) -> str:
    return t.astimezone(policy.zone).strftime("%a %Y-%m-%d %H:%M %Z")


def assumptions(d: Demand, policy: Policy) -> str:
    mail = (f"{d.queued} message(s) waiting for the link, the oldest {durations.describe(d.oldest_age_s)} old"
            if d.queued else "no mail waiting for the link")
    last = f"last dial {_stamp(d.last_dial, policy)}" if d.last_dial else "no earlier dial"
    return (f"{mail}, {d.urgent or 'none'} urgent; {d.calls_today} call(s) and {d.minutes_today:g} minute(s) "
            f"used today; {last}; no new mail meanwhile")


def explain_offline(args: argparse.Namespace) -> int:
    """``edgemail link explain --offline``: what the policy would do at TIME, without a daemon."""
    path = args.policy or _configured_policy(args)
    policy, _ = read_policy(path)
    now = datetime.now(timezone.utc)
    at = parse_at(args.at, policy, now)
    demand = demand_of(args, policy, at)
    found = next_dial(policy, at, demand)
    if getattr(args, "json", False):
        print_json(_explain_json(policy, path, at, demand, found))
        return EX_OK
    print(f"policy:     {path} (timezone {policy.zone.key})")
    print(f"at:         {_stamp(at, policy)}")
    print(f"assuming:   {assumptions(demand, policy)}")
    print(f"then:       {policy.explain(at, demand)}")
    if found is None:
        print("next dial:  none: the policy would not dial for this queue")
    else:
        t, d = found
        wait = "now" if t == at else f"in {durations.describe(round((t - at).total_seconds()))}"
        print(f"next dial:  {_stamp(t, policy)} ({wait}) because {d.reason}; actions {' '.join(sorted(d.actions))}")
    return EX_OK


def _explain_json(policy: Policy, path: str, at: datetime, demand: Demand, found) -> dict:
    """The offline answer for programs; times in the policy's zone."""
    def iso(t: datetime | None) -> str | None:
        return t.astimezone(policy.zone).isoformat() if t else None
    d = policy.should_dial(at, demand)
    nxt = None if found is None else {"at": iso(found[0]), "reason": found[1].reason,
                                      "actions": sorted(found[1].actions)}
    assumed = {**asdict(demand), "last_dial": iso(demand.last_dial)}
    return {"policy": path, "at": iso(at), "assumed": assumed, "next_dial": nxt,
            "decision": {"dial": d.dial, "reason": d.reason, "ask_again_at": iso(d.next_at)}}


def offline_options(p: argparse.ArgumentParser) -> None:
    """The options of ``link explain`` that only --offline reads."""
    p.add_argument("--offline", action="store_true",
                   help="ask the policy file, not the daemon (none needed); the queue is assumed: one "
                   "message just queued, unless the options below say otherwise")
    p.add_argument("--at", metavar="TIME", help="with --offline: the moment to ask about: ISO 8601 or HH:MM, "
                   "in the policy's zone unless an offset is given (default: now)")
    p.add_argument("--policy", metavar="FILE", help="with --offline: this policy file (default: [link] policy)")
    p.add_argument("--queued", default="1", metavar="N", help="with --offline: messages waiting for the link (1)")
    p.add_argument("--oldest", default="0s", metavar="AGE", help="with --offline: age of the oldest at TIME (0s)")
    p.add_argument("--urgent", default="0", metavar="N", help="with --offline: urgent messages among them (0)")
    p.add_argument("--calls-today", default="0", metavar="N", help="with --offline: calls made today (0)")
    p.add_argument("--minutes-today", default="0", metavar="M", help="with --offline: minutes connected today (0)")
    p.add_argument("--last-dial", metavar="TIME", help="with --offline: when the last dial was (default: none)")
