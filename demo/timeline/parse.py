"""timeline/parse.py - log lines and world events -> Events (CORE).

NAME
    parse - pairs(text); _Parser(isp_peers).line(t, text) -> Event | None;
    _world(WorldEvent) -> Event | None; LOCAL_MAILERS

DESCRIPTION
    ``pairs`` reads the ``key=value, key=value`` tail of a daemon log line
    (values may hold ", ").  ``_Parser`` turns one log line into one Event,
    remembering per queue id how the message came in (sendmail, SMTP, or
    pushed by one of `isp_peers`) and its size, so that a delivery line
    lands in the right lane with the right label; it also remembers whether
    the line is connected, and which ETRNs this call already showed.
    ``_world`` turns what hardware-sim reported (mail held at the ISP, the
    ISP DNS's query count) into Events.  The lines understood are listed in
    the package docstring (timeline/__init__.py).

INVARIANTS
    An ETRN logged by both the MTA (``etrn: ...``) and the link
    (``link: etrn=...``) is one Event per call (same argument and reply
    code); a new CONNECT forgets them.  A delivery of a message pushed by
    the ISP is in lane "in", every other mail in lane "out".

NEVER
    Raises for a line it does not understand: it returns None.  Reads
    clocks or files: times come in with the lines.
"""

from __future__ import annotations

import re

from demo.timeline.events import Event, WorldEvent

LOCAL_MAILERS = ("local", "maildir", "lmtp")


# ------------------------------------------------------------------ parsing

_PAIR = re.compile(r"(\w[\w.]*)=(.*?)(?=, \w[\w.]*=|$)")
_QID_LINE = re.compile(r"^(?P<qid>[A-Za-z0-9]+): (?P<rest>(?:from|to)=.*)$")


def pairs(text: str) -> dict[str, str]:
    """``a=1, b=x, y`` -> {"a": "1", "b": "x, y"} (values may hold ", ")."""
    return {m.group(1): m.group(2) for m in _PAIR.finditer(text)}


def _host(relay: str) -> str:
    """``[10.64.0.1]:4000`` -> 10.64.0.1; ``mx.example[198.51.100.10]:25`` -> mx.example."""
    if relay.startswith("["):
        return relay[1:].split("]", 1)[0]
    return relay.split("[", 1)[0].split(" ", 1)[0]


def _kb(size: str | int) -> str:
    n = int(size) if str(size).isdigit() else 0
    return f"{n} B" if n < 1000 else f"{n / 1000:.1f} kB"


class _Parser:
    """Log lines -> Events; remembers per queue id how the message came in."""

    def __init__(self, isp_peers: tuple[str, ...]) -> None:
        self.isp_peers = isp_peers
        self.kind: dict[str, str] = {}      # qid -> submit-smtp | submit-sendmail | inbound
        self.size: dict[str, str] = {}
        self.connected = False
        self.etrns: set[tuple[str, str]] = set()   # the MTA and the link both log an ETRN: once

    def line(self, t: float, text: str) -> Event | None:
        m = _QID_LINE.match(text)
        if m:
            return self._mail(t, m.group("qid"), pairs(m.group("rest")))
        p = pairs(text)
        if text.startswith("link: "):
            return self._link(t, p)
        if text.startswith("runner: queue run start"):
            return Event(t, f"queue run starts: {p.get('selected', '?')} message(s), reason {p.get('reason', '?')}",
                         "queue-run", "line")
        if text.startswith("runner: queue run end"):
            return Event(t, "queue run done: " + text.split("end, ", 1)[-1], None, "line")
        if text.startswith("etrn: "):
            return self._etrn(t, p.get("arg", "?"), p.get("reply", ""))
        if text.startswith("daemon: ready"):
            return Event(t, f"daemon ready, line down, {p.get('queued', '?')} queued", "ready", "line")
        return None

    def _mail(self, t: float, qid: str, p: dict[str, str]) -> Event | None:
        if "from" in p:
            return self._received(t, qid, p)
        if "to" not in p:
            return None
        to, size = p["to"], _kb(self.size.get(qid, "0"))
        lane = "in" if self.kind.get(qid) == "inbound" else "out"
        dsn, mailer = p.get("dsn", ""), p.get("mailer", "")
        addr = to.strip("<>")
        if not dsn.startswith("2"):
            word = "deferred" if dsn.startswith("4") else "bounced"
            return Event(t, f"{qid} {word}: {to} {p.get('stat', '')}", None, lane, qid, "failed", addr)
        if mailer in LOCAL_MAILERS:
            return Event(t, f"{qid} delivered to the Maildir of {to}, {size}",
                         "maildir" if lane == "in" else None, lane, qid,
                         "delivered" if lane == "in" else "local", addr)
        return Event(t, f"{qid} sent: {to} via {_host(p.get('relay', '?'))}, {size}",
                     "sent-out", lane, qid, "delivered", addr)

    def _received(self, t: float, qid: str, p: dict[str, str]) -> Event:
        relay, size = p.get("relay", ""), p.get("size", "0")
        self.size[qid] = size
        if p.get("proto") == "local":
            kind, how = "submit-sendmail", "sendmail -t"
        elif _host(relay) in self.isp_peers:
            kind, how = "inbound", f"pushed by the ISP {_host(relay)}"
        else:
            kind, how = "submit-smtp", f"SMTP from {_host(relay)}"
        self.kind[qid] = kind
        return Event(t, f"{qid} queued ({how}): {p.get('from', '<>')}, {_kb(size)}",
                     kind, "in" if kind == "inbound" else "out", qid, "queued")

    def _link(self, t: float, p: dict[str, str]) -> Event | None:
        state, reason = p.get("state"), p.get("reason", "")
        if state == "DIALING" and "result" in p:
            return Event(t, f"modem: {p['result']} (number {p.get('number', '?')})", None, "line")
        if state == "DIALING":
            return Event(t, f"policy says dial: {reason}", "dial", "line")
        if state == "CONNECTED":
            self.connected, self.etrns = True, set()
            return Event(t, f"modem: CONNECT {p.get('speed', '')} (number {p.get('number', '?')})",
                         "connect", "line")
        if state == "UP":
            self.connected = True
            return Event(t, f"{reason.split('-up', 1)[0] or 'interface'} up {reason[reason.find('('):]}",
                         "ppp-up", "line")
        if state == "HANGING_UP":
            return Event(t, f"hang-up: {reason}", "idle-hangup" if reason == "idle" else None, "line")
        if state == "IDLE" and self.connected:
            self.connected = False
            return Event(t, f"line down ({reason})", "down", "line", mark="hangup")
        if state in ("CONNECTING", "BACKOFF"):
            self.connected = self.connected or state == "CONNECTING"
            return Event(t, f"link {state.lower()}: {reason}", None, "line")
        if "etrn" in p:
            return self._etrn(t, p["etrn"], p.get("reply", ""))
        if p.get("call") == "ended":
            return Event(t, f"call ended: {p.get('connect', '?')} up, sent {p.get('sent', '?')} B, "
                            f"received {p.get('rcvd', '?')} B", None, "line", mark="hangup")
        if "hangup" in p:
            return Event(t, f"modem on-hook ({p['hangup']})", None, "line", mark="hangup")
        return None

    def _etrn(self, t: float, arg: str, reply: str) -> Event | None:
        key = (arg.lstrip("@#"), reply[:3])
        if key in self.etrns:
            return None
        self.etrns.add(key)
        ok = reply[:3] in ("250", "251", "252", "253")
        return Event(t, f"ETRN {arg}: {reply}", "etrn" if ok else None, "line", mark="etrn")


def _world(ev: WorldEvent) -> Event | None:
    if ev.source == "isp" and ev.event == "held":
        rcpts = ", ".join(ev.fields.get("rcpts", [])) or ev.fields.get("rcpt", "?")
        return Event(ev.t, f"the ISP holds mail for {rcpts} (our line is down)", "held-at-isp", "in",
                     str(ev.fields.get("id", "isp")), "queued", rcpts)
    if ev.source == "dns" and ev.event == "count":
        n = int(ev.fields.get("count", -1))
        down = ev.fields.get("line") == "down"
        return Event(ev.t, f"DNS queries so far: {n}" + (" (line down)" if down else ""),
                     "no-dns" if down and n == 0 else None, "note")
    return None
