"""cli/show.py - the daemon's replies in words, for people (``--json`` gives them as they came).

Owns: how ``edgemail status``, ``queue show``, ``link dial``, ``link
hangup`` and ``link hook`` read on a terminal: ``status_text(reply,
now)``, ``queue_show_text(reply, now)``, ``dial_text``, ``hangup_text``,
``hook_text``; and the small words they share: ``age(seconds)`` ("5m00s",
"2h05m"), ``moment(timestamp, now)`` (local time and how long ago or
ahead), ``print_json``.

Phases: the link's phase (queue run, ETRN, lingering) exists only while
the link is up; the link manager's status reply has none (null) in the
other states, and older daemons' resting value there (linger) is not shown
either.  A stop after a setup error (``stopped``: pppd's bad options, no
kernel PPP) is shown with what to fix.

Never: asks the daemon anything or prints: every function returns text
(pure; the caller passes ``now``).  A field a reply lacks reads as "-",
never as a traceback: replies of another version still print.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

#: the link's states in words (link.fsm.LinkState values)
LINK_STATES = {"down": "down", "dialing": "dialing", "connecting": "connecting (CONNECT, pppd negotiating)",
               "up": "up", "hanging-up": "hanging up", "backoff": "backing off after a failed dial",
               "none": "none (no link manager: [link] mode is \"none\")"}
#: the phases of a call while the link is up (link.fsm.Phase values)
PHASES = {"run": "queue run", "etrn": "waiting for the ETRN answers", "linger": "lingering until the line is quiet"}


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def age(seconds) -> str:
    s = int(seconds or 0)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def moment(stamp, now: float) -> str:
    """A wall-clock time (epoch seconds or ISO 8601) as local time, with how long ago or ahead."""
    try:
        t = datetime.fromisoformat(stamp).timestamp() if isinstance(stamp, str) else float(stamp)
    except (TypeError, ValueError):
        return str(stamp) if stamp else "-"
    text = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(t))
    return f"{text} ({age(now - t)} ago)" if t <= now else f"{text} (in {age(t - now)})"


# ---------------------------------------------------------------- status

def status_text(r: dict, now: float) -> str:
    """``edgemail status`` for people: the daemon, the queue and, with a link manager, the link."""
    listeners = ", ".join(r.get("listeners") or []) or "none"
    lines = [f"daemon:      pid {r.get('pid', '-')}, up {age(r.get('uptime_s'))}, version {r.get('version', '-')}",
             f"listening:   {listeners}; control socket {r.get('control', '-')}",
             _queue_line(r), _link_line(r.get("link") or {})]
    if "next" in r:
        lines += _link_details(r, now)
    return "\n".join(lines) + "\n"


def _queue_line(r: dict) -> str:
    q = r.get("queue")
    line = f"queue:       {r.get('queued', 0)} message(s), {r.get('held', 0)} held"
    if r.get("held_for_etrn"):
        line += f", {r['held_for_etrn']} kept for ETRN/ATRN"
    if isinstance(q, dict):
        line += (f"; {q.get('expensive', 0)} for the link, {q.get('due', 0)} due, "
                 f"oldest {age(q.get('oldest_age_s'))}, {q.get('urgent', 0)} urgent")
    return line


def _link_line(link: dict) -> str:
    state = str(link.get("state", "-"))
    line = f"link:        {LINK_STATES.get(state, state)}"
    if "mode" in link:
        line += f" (mode {link['mode']}, failed dials in a row {link.get('failed_dials', 0)})"
    if state == "up" and link.get("phase"):
        line += f"; {PHASES.get(link['phase'], link['phase'])}"
        holders = ", ".join(f"{k} ({n})" for k, n in (link.get("holders") or {}).items())
        if holders:
            line += f"; held up by {holders}"
        if link.get("inbound"):
            line += f"; {link['inbound']} ISP session(s) open"
    stop = link.get("stopped")
    if isinstance(stop, dict):
        line += f"; dialing stopped: {stop.get('text', '-')} (fix {stop.get('fix', '-')}, then reload)"
    return line


def _link_details(r: dict, now: float) -> list[str]:
    nxt = r.get("next") or {}
    if nxt.get("dial"):
        when = "now"
    else:
        when = f"at {moment(nxt['at'], now)}" if nxt.get("at") else "none planned"
    b = r.get("budget_left") or {}
    budget = ", ".join(f"{'unlimited' if b.get(k) is None else _num(b[k])} {k}" for k in ("calls", "minutes"))
    return [f"next dial:   {when} ({nxt.get('reason') or '-'})", f"budget left: {budget} today",
            "last ETRN:   " + _etrn(r.get("last_etrn"), now), "last call:   " + _call(r.get("last_call"), now),
            "cost:        " + _cost(r.get("cost"), now)]


def _cost(c, now: float) -> str:
    """Today's cost and the last calls' (the tariff of dial.policy, from real connect times)."""
    if not c:
        return "-"
    calls = "; ".join(f"{moment(x.get('start'), now)} {x.get('connect_s', 0):.0f}s {x.get('cost', 0):.2f}"
                      for x in c.get("recent", []))
    return f"{c.get('today', 0):.2f} today ({c.get('calls_today', 0)} call(s)); recent calls: {calls or 'none'}"


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _etrn(e, now: float) -> str:
    if not e:
        return "none"
    replies = "; ".join(f"{x.get('domain')} {x.get('code') or 'no answer'} {x.get('text', '')}".rstrip()
                        for x in e.get("replies", []))
    return f"{'accepted' if e.get('ok') else 'FAILED'} {moment(e.get('at'), now)}: {replies or '-'}"


def _call(c, now: float) -> str:
    if not c:
        return "none"
    return (f"{moment(c.get('start'), now)}, connected {c.get('connect_s', 0):.1f}s, "
            f"sent {c.get('bytes_sent', 0)} bytes, received {c.get('bytes_rcvd', 0)} bytes, "
            f"ended by {c.get('cause') or '-'}, cost {c.get('cost', 0):.2f}")


# ---------------------------------------------------------------- queue show

def queue_show_text(r: dict, now: float) -> str:
    """The envelope and the state of one message (``queue show``; the message follows it)."""
    nxt = r.get("next_attempt") or 0
    rows = [("queue id", r.get("qid")), ("from", f"<{r.get('from', '')}>"),
            ("size", f"{r.get('size', '-')} bytes"), ("queued", moment(r.get("created"), now)),
            ("client", f"{r.get('client') or '-'} ({r.get('proto') or '-'})"),
            ("message-id", f"<{r['msgid']}>" if r.get("msgid") else "-"), ("priority", r.get("priority")),
            ("attempts", f"{r.get('attempts', 0)}, next " + ("due now" if nxt <= now else moment(nxt, now))),
            ("held", "yes" if r.get("held") else "no")]
    lines = [f"{k + ':':13} {'-' if v is None else v}" for k, v in rows]
    rcpts = r.get("recipients") or []
    lines.append(f"{'recipients:':13} {len(rcpts)}")
    width = max((len(str(x.get("address", ""))) for x in rcpts), default=0) + 2
    for x in rcpts:
        line = f"  {'<' + str(x.get('address', '')) + '>':{width}}  {x.get('status', '-')}"
        lines.append(line + (f": {x['last_reply']}" if x.get("last_reply") else ""))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- link

def dial_text(r: dict) -> str:
    if r.get("dialing"):
        return f"dialing now, whatever the policy says (link {r.get('state', '-')}); `edgemail status` follows the call"
    return f"not dialing: {r.get('why') or 'link is ' + str(r.get('state', '-'))}"


def hangup_text(r: dict) -> str:
    if r.get("hangup"):
        return f"hanging up (link was {r.get('state', '-')})"
    return f"nothing to hang up: link is {r.get('state', '-')}"


def hook_text(event: str, r: dict) -> str:
    if "ignored" in r:
        return f"{event}: ignored: {r['ignored']}"
    if "message" in r:
        return f"{event}: {r['message']}"
    return f"{event}: link {r.get('state', '-')}" + ("" if r.get("changed") else " (no change)")
