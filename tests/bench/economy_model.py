"""economy_model.py - the link-economy world on virtual time (bench helper, pure).

NAME
    economy_model - a discrete-event model of an office's mail over a 56k
    dial-up line, and three ways of running the line: edgemail's policy core,
    the seed's cron recipe, and background delivery with pppd demand dialing.

SYNOPSIS
    world = Params()                          # every physical assumption, stated
    load = workload(world, seed=1)            # a reproducible office week
    run_edgemail(world, load, policy_text)    -> Result
    run_recipe(world, load)                   -> Result
    run_background(world, load)               -> Result

THE WORLD (Params; defaults are the benchmark's)
    Week      Mon 2024-03-04 00:00 .. Mon 2024-03-11 00:00 Europe/Berlin (no
              DST change inside).  The run goes on after the week until every
              message is delivered; those calls count.
    Outgoing  out_per_day mails per weekday, submission times uniform over
              office hours (Mon-Fri 08:00-18:00 local); sizes log-normal,
              median size_median bytes, sigma size_sigma; a share urgent_share
              carries Precedence: urgent.
    Inbound   in_per_day mails per weekday reach the ISP: in_office_share of
              them uniform over office hours, the rest uniform over the other
              14 hours; on Sat/Sun in_weekend_per_day uniform over the day.
              Same size distribution.
    Line      one serial pipe: goodput bytes/s for message bytes (56 kbit/s
              minus PPP/IP/TCP/SMTP overhead), rtt seconds per SMTP round
              trip.  An SMTP session costs 3 round trips (connect+banner, EHLO,
              QUIT), each message 4 more (MAIL, RCPT, DATA, end of data; no
              PIPELINING) plus size/goodput.  ETRN is one 4-round-trip session;
              the ISP starts pushing what it holds isp_push_delay seconds after
              it, in one session, if the line is still up then.  Dialing takes
              dial_s (dial, train, PPP) before the line carries anything.
    Inbound   the ISP is backup MX: mail reaching it while the line is down is
              held until an ETRN; mail reaching it while the line is up goes
              straight through (the senders reach the primary MX).
    Hang-up   after idle seconds with nothing on the pipe (pppd's idle option,
              or the policy's idle_hangup); edgemail also stops at max_connect
              (no new transfer starts, the line drops when the pipe is empty).
    Cost      a call is counted when dialing starts; connected time runs from
              the start of dialing to hang-up (the line is busy all that time).
    Not modelled: failed dials, carrier loss, DNS, V.42bis compression,
    concurrent transfers (the pipe is shared and serial both ways).

STRATEGIES
    edgemail    link.policy's real should_dial(now, demand), asked at every
                submission, at each hang-up and at the next_at it returns;
                on link-up: one queue run (a session for all waiting mail,
                urgent mail first), then ETRN; mail submitted while up goes at
                once, urgent mail ahead of every transfer not yet started (the
                runner's urgent first: delivery/queuerun.py urgent_arrived;
                the transfer in progress is not cut).
    recipe      the seed: cron `sendmail -q` at :00 and the ETRN script at :01
                every hour, plus every 15 minutes Mon-Fri 08:00-17:45; pppd
                demand dialing brings the line up for either (a queue run with
                an empty queue makes no traffic and does not dial); sendmail in
                DeliveryMode=deferred sends only at queue runs, even while up.
    background  sendmail background delivery + pppd demand dialing: each
                submission connects at once (dialing if the line is down), one
                SMTP session per message; inbound by the recipe's hourly ETRN
                (cron :01 every hour, every day).

NEVER
    Sleeps, reads the clock or touches the network: time is a float of seconds
    since the week's start; the only randomness is a seeded random.Random.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from link import policy as policy_core

ZONE = ZoneInfo("Europe/Berlin")
WEEK_START = datetime(2024, 3, 4, tzinfo=ZONE)          # a Monday
DAY = 86400.0
DRAIN_DAYS = 2

# The seed's cron table, read with the policy core's crontab parser (the
# action words only label which command each line runs).
RECIPE_CRON = """
timezone Europe/Berlin
0        0-7,18-23  * * mon-fri  queue-run
1        0-7,18-23  * * mon-fri  etrn
0        *          * * sat,sun  queue-run
1        *          * * sat,sun  etrn
*/15     8-17       * * mon-fri  queue-run
1-59/15  8-17       * * mon-fri  etrn
"""
BACKGROUND_CRON = """
timezone Europe/Berlin
1        *     * * *        etrn
"""


@dataclass(frozen=True)
class Params:
    days: int = 7
    out_per_day: int = 120
    urgent_share: float = 0.05
    in_per_day: int = 200
    in_office_share: float = 0.70
    in_weekend_per_day: int = 60
    size_median: float = 20_000.0
    size_sigma: float = 0.8
    office: tuple[int, int] = (8, 18)        #: local hours [start, end)
    goodput: float = 5_000.0                 #: message bytes per second
    rtt: float = 0.13
    dial_s: float = 20.0
    pppd_idle_s: float = 120.0
    isp_push_delay: float = 5.0
    holidays: tuple[int, ...] = ()           #: weekdays (day index) with no office: weekend traffic
    burst: tuple[int, float, int] = (0, 0.0, 0)   #: (day, local hour, messages) sent in that hour


@dataclass
class Msg:
    t: float                                 #: submitted (out) / reached the ISP (in)
    size: int
    urgent: bool = False
    done: float | None = None                #: delivered at the other end


@dataclass(frozen=True)
class Load:
    outgoing: tuple[Msg, ...]
    incoming: tuple[Msg, ...]


@dataclass
class Session:
    dial: float
    up: float | None = None
    end: float | None = None
    why: str = ""


@dataclass
class Result:
    name: str
    sessions: list[Session]
    outgoing: list[Msg]
    incoming: list[Msg]
    days: int
    notes: dict = field(default_factory=dict)


# --- the workload -------------------------------------------------------------

def workload(p: Params, seed: int = 1) -> Load:
    """A reproducible week of traffic: same seed, same messages."""
    rng = random.Random(seed)
    size = lambda: int(min(p.size_median * math.exp(rng.gauss(0.0, p.size_sigma)), 10e6))
    o0, o1 = (h * 3600.0 for h in p.office)
    out: list[Msg] = []
    inc: list[Msg] = []
    for d in range(p.days):
        base = local_offset(d)
        if _weekday(d) and d not in p.holidays:
            out += [Msg(base(rng.uniform(o0, o1)), size(), rng.random() < p.urgent_share)
                    for _ in range(p.out_per_day)]
            n_office = round(p.in_per_day * p.in_office_share)
            inc += [Msg(base(rng.uniform(o0, o1)), size()) for _ in range(n_office)]
            for _ in range(p.in_per_day - n_office):      # the other hours, uniformly
                x = rng.uniform(0.0, DAY - (o1 - o0))
                inc.append(Msg(base(x if x < o0 else x + (o1 - o0)), size()))
        else:
            inc += [Msg(base(rng.uniform(0.0, DAY)), size()) for _ in range(p.in_weekend_per_day)]
    bday, bhour, bcount = p.burst
    out += [Msg(local_offset(bday)(rng.uniform(bhour * 3600.0, bhour * 3600.0 + 3600.0)), size(),
                rng.random() < p.urgent_share) for _ in range(bcount)]
    return Load(tuple(sorted(out, key=lambda m: m.t)), tuple(sorted(inc, key=lambda m: m.t)))


def _weekday(d: int) -> bool:
    return (WEEK_START + timedelta(days=d)).weekday() < 5


def local_offset(d: int):
    """Seconds-of-local-day on day d -> seconds since the week's start."""
    midnight = datetime.combine((WEEK_START + timedelta(days=d)).date(), datetime.min.time(), ZONE)
    start = (midnight - WEEK_START).total_seconds()
    return lambda s: start + s


def when(t: float) -> datetime:
    """Virtual seconds -> aware datetime (UTC)."""
    return (WEEK_START + timedelta(seconds=t)).astimezone(timezone.utc)


def seconds(at: datetime) -> float:
    return (at - WEEK_START).total_seconds()


# --- the event loop and the line -------------------------------------------

class Sim:
    """A heap of (time, seq, callback); time only moves forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list = []
        self._seq = 0

    def at(self, t: float, fn) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(t, self.now), self._seq, fn))

    def run(self, until: float, stop=lambda: False) -> None:
        """Run the events due before `until`, or fewer: stop as soon as stop() is true."""
        while self._heap and self._heap[0][0] < until and not stop():
            self.now, _, fn = heapq.heappop(self._heap)
            fn()


class Line:
    """The modem line: down -> dialing -> up -> down; a serial pipe while up."""

    def __init__(self, sim: Sim, p: Params, idle_s: float, max_connect_s: float = math.inf,
                 on_up=None, on_down=None, plan=None, on_quiet=None) -> None:
        self.sim, self.p, self.idle_s, self.max_connect_s = sim, p, idle_s, max_connect_s
        self.on_up, self.on_down = on_up, on_down
        #: (connected, quiet since) -> hang-up time; pppd's idle timer by default
        self.plan = plan or (lambda up, quiet: quiet + idle_s)
        self.on_quiet = on_quiet             #: told (hang-up time) whenever the plan is made
        self.state = "down"
        self.sessions: list[Session] = []
        self.busy_until = 0.0
        self.items: list[list] = []          #: [start, end, msg or None] on the pipe, in order

    @property
    def up(self) -> bool:
        return self.state == "up" and self.sim.now - self.sessions[-1].dial < self.max_connect_s

    def dial(self, why: str) -> None:
        if self.state != "down":
            return
        self.state = "dialing"
        self.sessions.append(Session(self.sim.now, why=why))
        self.sim.at(self.sim.now + self.p.dial_s, self._connected)

    def _connected(self) -> None:
        self.state = "up"
        self.sessions[-1].up = self.busy_until = self.sim.now
        self._arm_idle()
        if self.on_up:
            self.on_up()

    def transfer(self, duration: float, done=None, msg=None) -> float:
        """Put `duration` seconds of traffic on the pipe; returns when it ends
        (MSG, when given, is delivered then: its done time moves if urgent
        mail goes ahead of it)."""
        assert self.state == "up"
        start = max(self.sim.now, self.busy_until)
        end = self.busy_until = start + duration
        self.items = [it for it in self.items if it[1] > self.sim.now] + [[start, end, msg]]
        if done:
            self.sim.at(end, done)
        self._arm_idle()
        return end

    def jump(self, duration: float, msg) -> float:
        """Urgent mail (edgemail's runner: urgent first): MSG's `duration`
        goes after the transfer in progress, ahead of every one not started
        (their messages are delivered that much later); returns its end."""
        assert self.state == "up"
        now = self.sim.now
        self.items = [it for it in self.items if it[1] > now]
        at = self.items[0][1] if self.items and self.items[0][0] <= now else now
        for it in self.items:
            if it[0] >= at:
                it[0] += duration
                it[1] += duration
                if it[2] is not None:
                    it[2].done = it[1]
        self.items.append([at, at + duration, msg])
        self.items.sort(key=lambda it: it[0])
        self.busy_until = max(self.busy_until, now) + duration
        msg.done = at + duration
        self._arm_idle()
        return at + duration

    def _arm_idle(self) -> None:
        session = self.sessions[-1]
        limit = session.dial + self.max_connect_s
        hangup = self.plan(session.up, self.busy_until)
        self.sim.at(min(hangup, max(limit, self.busy_until)), self._check_idle)
        if self.on_quiet:
            self.on_quiet(hangup)

    def _check_idle(self) -> None:
        if self.state != "up" or self.sim.now < self.busy_until:
            return
        if self.sim.now >= self.plan(self.sessions[-1].up, self.busy_until) or not self.up:
            self.state = "down"
            self.sessions[-1].end = self.sim.now
            if self.on_down:
                self.on_down()


# --- SMTP costs on the pipe -------------------------------------------------

SESSION_RTTS, MESSAGE_RTTS, ETRN_RTTS = 3, 4, 4


def session_seconds(p: Params, msgs) -> float:
    """One SMTP session carrying `msgs`: 3 + 4 per message round trips + bytes."""
    return (SESSION_RTTS + MESSAGE_RTTS * len(msgs)) * p.rtt + sum(m.size for m in msgs) / p.goodput


def send(line: Line, msgs: list[Msg]) -> None:
    """One SMTP session for `msgs`; each message is delivered when its DATA ends."""
    p = line.p
    for k, m in enumerate(msgs):
        m.done = line.transfer((SESSION_RTTS * p.rtt if k == 0 else 0.0)
                               + MESSAGE_RTTS * p.rtt + m.size / p.goodput, msg=m)


def send_urgent_first(line: Line, msgs: list[Msg]) -> None:
    """edgemail's runner: urgent mail first in the run, and urgent mail sent
    while the pipe is busy goes ahead of every transfer not started (its own
    session: 3 + 4 round trips and its bytes)."""
    p = line.p
    urgent = [m for m in msgs if m.urgent]
    for m in urgent:
        line.jump(session_seconds(p, [m]), m)
    send(line, [m for m in msgs if not m.urgent])


class Isp:
    """The ISP as backup MX: holds inbound while the line is down, pushes after ETRN."""

    def __init__(self, sim: Sim, line: Line) -> None:
        self.sim, self.line, self.held = sim, line, []
        self.etrns = 0
        self.pushes_missed = 0

    def arrive(self, m: Msg) -> None:
        if self.line.up:
            send(self.line, [m])                # straight to the primary MX
        else:
            self.held.append(m)

    def etrn(self) -> None:
        """Our ETRN session; the ISP's queue run connects back after isp_push_delay."""
        self.etrns += 1
        end = self.line.transfer(ETRN_RTTS * self.line.p.rtt)
        self.sim.at(end + self.line.p.isp_push_delay, self._push)

    def _push(self) -> None:
        if not self.held:
            return
        if not self.line.up:
            self.pushes_missed += 1
            return
        batch, self.held = self.held, []
        send(self.line, batch)


def _feed(sim: Sim, load: Load, submit, isp: Isp) -> tuple[list[Msg], list[Msg]]:
    out = [Msg(m.t, m.size, m.urgent) for m in load.outgoing]      # fresh copies per run
    inc = [Msg(m.t, m.size) for m in load.incoming]
    for m in out:
        sim.at(m.t, lambda m=m: submit(m))
    for m in inc:
        sim.at(m.t, lambda m=m: isp.arrive(m))
    return out, inc


def _cron(sim: Sim, text: str, horizon: float, handlers: dict) -> None:
    """Schedule each crontab line's runs up to `horizon` with the policy core's next_due."""
    table = policy_core.parse(text, file="<cron>")
    for rule in table.rules:
        (action,) = rule.actions
        t = table.next_due(when(-1.0), rule)
        while t is not None and seconds(t) < horizon:
            sim.at(seconds(t), handlers[action])
            t = table.next_due(t, rule)


def _finish(sim: Sim, p: Params, line: Line, name: str, out, inc, **notes) -> Result:
    """Run the week, then on (at most DRAIN_DAYS) until all is delivered and the line is down."""
    sim.run(p.days * DAY)
    drained = lambda: line.state == "down" and all(m.done is not None for m in out + inc)
    sim.run((p.days + DRAIN_DAYS) * DAY, drained)
    if line.state != "down":
        line.sessions[-1].end = sim.now
    return Result(name, line.sessions, out, inc, p.days, notes)


# --- strategy 1: edgemail's policy core ---------------------------------------

def run_edgemail(p: Params, load: Load, policy_text: str, *, file: str = "<policy>") -> Result:
    pol = policy_core.parse(policy_text, file=file)
    s = pol.settings
    sim = Sim()
    queue: list[Msg] = []
    ledger: dict = {}                                 # local date -> [calls, minutes]
    checks: set[float] = set()
    reasons: list[str] = []
    last: dict = {"dial": None, "poll": None, "unit_polls": 0}

    def day_of(t: float):
        return pol.local(when(t)).date()

    def on_up() -> None:
        batch, queue[:] = list(queue), []
        send_urgent_first(line, batch)                # the queue run, urgent mail first
        isp.etrn()                                    # then ETRN, as the link-up sequence does

    def on_down() -> None:
        sess = line.sessions[-1]
        ledger.setdefault(day_of(sess.dial), [0, 0.0])[1] += (sess.end - sess.dial) / 60.0
        check()

    def plan(up: float, quiet: float) -> float:       # link.policy's chargehup (idle_hangup without it)
        return seconds(pol.hangup_at(when(up), when(quiet)))

    def on_quiet(hangup: float) -> None:              # one more ETRN in the paid unit
        demand = policy_core.Demand(queued=len(queue), last_dial=last["dial"], last_poll=last["poll"])
        due = pol.next_poll(when(sim.now), demand)
        t = pol.unit_poll_at(when(line.sessions[-1].up), when(hangup), due)
        if t is not None and seconds(t) > sim.now:
            sim.at(seconds(t), lambda: unit_poll(hangup, due))

    def unit_poll(hangup: float, due) -> None:
        if line.state == "up" and sim.now >= line.busy_until and plan(line.sessions[-1].up, line.busy_until) == hangup:
            last["unit_polls"] += 1
            last["poll"] = due                        # it stands in for that poll
            isp.etrn()

    def check() -> None:
        checks.discard(sim.now)
        if line.state != "down":
            return
        used = ledger.get(day_of(sim.now), [0, 0.0])
        demand = policy_core.Demand(
            queued=len(queue), oldest_age_s=sim.now - queue[0].t if queue else 0.0,
            urgent=sum(m.urgent for m in queue), calls_today=used[0], minutes_today=used[1],
            last_dial=last["dial"], last_poll=last["poll"])
        d = pol.should_dial(when(sim.now), demand)
        if d.dial:
            last["dial"] = when(sim.now)
            ledger.setdefault(day_of(sim.now), [0, 0.0])[0] += 1
            reasons.append(d.reason.split(" '")[0].split("(")[0].strip())
            line.dial(d.reason)
        elif d.next_at is not None:
            t = seconds(d.next_at)
            if t not in checks:
                checks.add(t)
                sim.at(t, check)

    def submit(m: Msg) -> None:
        if line.up:
            send_urgent_first(line, [m])              # urgent: ahead of what is not started
        else:
            queue.append(m)
            check()

    line = Line(sim, p, s.idle_hangup_s, s.max_connect_s, on_up, on_down, plan, on_quiet)
    isp = Isp(sim, line)
    out, inc = _feed(sim, load, submit, isp)
    sim.at(0.0, check)
    res = _finish(sim, p, line, "edgemail", out, inc)
    res.notes.update(dial_reasons={r: reasons.count(r) for r in sorted(set(reasons))},
                     pushes_missed=isp.pushes_missed, idle_s=s.idle_hangup_s, unit_polls=last["unit_polls"])
    return res


# --- strategy 2: the seed's cron recipe ---------------------------------------

def run_recipe(p: Params, load: Load) -> Result:
    sim = Sim()
    queue: list[Msg] = []
    pending = {"batch": [], "etrn": False}

    def on_up() -> None:
        send(line, pending["batch"])
        pending["batch"] = []
        if pending["etrn"]:
            pending["etrn"] = False
            isp.etrn()

    def queue_run() -> None:                          # cron: sendmail -q
        if not queue:
            return
        batch, queue[:] = list(queue), []
        if line.up:
            send(line, batch)
        else:
            pending["batch"] += batch
            line.dial("sendmail -q")

    def etrn() -> None:                               # cron: the ETRN script
        if line.up:
            isp.etrn()
        else:
            pending["etrn"] = True
            line.dial("etrn")

    line = Line(sim, p, p.pppd_idle_s, on_up=on_up)
    isp = Isp(sim, line)
    out, inc = _feed(sim, load, queue.append, isp)
    _cron(sim, RECIPE_CRON, (p.days + DRAIN_DAYS) * DAY, {"queue-run": queue_run, "etrn": etrn})
    return _finish(sim, p, line, "recipe", out, inc, pushes_missed=isp.pushes_missed,
                   idle_s=p.pppd_idle_s)


# --- strategy 3: background delivery + pppd demand dialing ---------------------

def run_background(p: Params, load: Load) -> Result:
    sim = Sim()
    waiting: list[Msg] = []
    pending_etrn = [False]

    def on_up() -> None:
        for m in waiting:                             # one SMTP session per message
            send(line, [m])
        waiting.clear()
        if pending_etrn[0]:
            pending_etrn[0] = False
            isp.etrn()

    def submit(m: Msg) -> None:
        if line.up:
            send(line, [m])
        else:
            waiting.append(m)
            line.dial("message")

    def etrn() -> None:
        if line.up:
            isp.etrn()
        else:
            pending_etrn[0] = True
            line.dial("etrn")

    line = Line(sim, p, p.pppd_idle_s, on_up=on_up)
    isp = Isp(sim, line)
    out, inc = _feed(sim, load, submit, isp)
    _cron(sim, BACKGROUND_CRON, (p.days + DRAIN_DAYS) * DAY, {"etrn": etrn})
    return _finish(sim, p, line, "background", out, inc, pushes_missed=isp.pushes_missed,
                   idle_s=p.pppd_idle_s)


# --- figures ----------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return math.nan
    v = sorted(values)
    return v[max(0, math.ceil(q / 100.0 * len(v)) - 1)]


def call_cost(r: Result, tariff, zone=ZONE) -> float:
    """What the result's calls cost on a link.tariff Tariff (from connect to hang-up)."""
    return sum(tariff.cost(when(x.up), x.end - x.up, zone) for x in r.sessions if x.up is not None)


def figures(r: Result, tariffs: dict | None = None) -> dict:
    """calls/day, connected minutes/day, cost/day per tariff, latency p50/p95 in minutes
    (out, in, urgent out), undelivered counts."""
    lat_urgent = [m.done - m.t for m in r.outgoing if m.done is not None and m.urgent]
    costs = {f"cost_{name}_per_day": call_cost(r, t) / r.days for name, t in (tariffs or {}).items()}
    lat_out = [m.done - m.t for m in r.outgoing if m.done is not None]
    lat_in = [m.done - m.t for m in r.incoming if m.done is not None]
    connected = sum(s.end - s.dial for s in r.sessions)
    return {
        "calls_per_day": len(r.sessions) / r.days,
        "connected_min_per_day": connected / 60.0 / r.days,
        "out_p50_min": percentile(lat_out, 50) / 60.0, "out_p95_min": percentile(lat_out, 95) / 60.0,
        "in_p50_min": percentile(lat_in, 50) / 60.0, "in_p95_min": percentile(lat_in, 95) / 60.0,
        "urgent_p50_min": percentile(lat_urgent, 50) / 60.0, "urgent_p95_min": percentile(lat_urgent, 95) / 60.0,
        **costs,
        "undelivered_out": sum(m.done is None for m in r.outgoing),
        "undelivered_in": sum(m.done is None for m in r.incoming),
        "calls": len(r.sessions), "messages_out": len(r.outgoing), "messages_in": len(r.incoming),
    }
