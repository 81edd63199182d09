"""Link state machine: every table entry, ignored pairs, and scenarios on virtual time."""

from __future__ import annotations

import pytest

from link.fsm import FsmConfig, LinkFSM
from link.transitions import (TABLE, CarrierLost, ClearHostStatus, Dial, DialRequested, DialResult,
                              EtrnDone, Hangup, Hold, Idle, IfaceDown, IfaceUp, InboundActive, InboundDone,
                              LinkState, MailWaiting, NotifyDown, NotifyUp, Phase, PollDue, PppdExited,
                              QueueRunDone, Release, Resume, RunQueue, ScheduleTimer, SendEtrn, SetupBroken, StartPppd,
                              StopRun, Timer)

S = LinkState
CFG = FsmConfig(numbers=("5551234", "5559876"), etrn_domains=("example.org",), idle_hangup_s=120,
                max_connect_s=1800, dial_timeout_s=90, pppd_timeout_s=60, hangup_timeout_s=15,
                backoff_base_s=60, backoff_max_s=600, max_failed_dials=3, limit_backoff_s=3600)


def fsm_in(state: S, phase: Phase = Phase.LINGER) -> LinkFSM:
    """An FSM driven into `state` through real events (t = 0)."""
    f = LinkFSM(CFG)
    path = {S.IDLE: [], S.DIALING: [DialRequested("test")],
            S.CONNECTING: [DialRequested("test"), DialResult(True)],
            S.UP: [DialRequested("test"), DialResult(True), IfaceUp("ppp0", "10.64.0.2")],
            S.BACKOFF: [DialRequested("test"), DialResult(False, "BUSY")]}
    if state is S.HANGING_UP:
        path_events = path[S.UP] + [QueueRunDone(), EtrnDone("250"), Timer()]
        for e in path_events:
            f.handle(e, 0.0 if not isinstance(e, Timer) else 500.0)
        assert f.state is S.HANGING_UP
        return f
    for e in path[state]:
        f.handle(e, 0.0)
    if state is S.UP and phase is not Phase.RUN:
        f.handle(QueueRunDone(), 0.0)
        if phase is Phase.LINGER:
            f.handle(EtrnDone("250"), 0.0)
    assert f.state is state and (state is not S.UP or f.phase is phase)
    return f


def strip_timer(actions):
    return [a for a in actions if not isinstance(a, ScheduleTimer)]


BAD_OPTIONS = SetupBroken("pppd-exit(2,bad-options)", "pppd exited 2 (bad-options)", "pppd's options")

CASES = [
    # state, event, now, want state, want actions (ScheduleTimer stripped)
    (S.IDLE, DialRequested("queue(2)"), 1, S.DIALING, [Dial(("5551234", "5559876"), "queue(2)")]),
    (S.IDLE, IfaceUp("ppp0", "10.64.0.2"), 1, S.UP, [NotifyUp("10.64.0.2"), ClearHostStatus(), RunQueue()]),
    (S.DIALING, DialResult(True), 1, S.CONNECTING, [StartPppd()]),
    (S.DIALING, DialResult(False, "BUSY"), 1, S.BACKOFF, [Hangup("BUSY"), NotifyDown("BUSY")]),
    (S.DIALING, Timer(), 91, S.BACKOFF, [Hangup("TIMEOUT"), NotifyDown("TIMEOUT")]),
    (S.DIALING, CarrierLost("NO CARRIER"), 1, S.BACKOFF, [Hangup("NO CARRIER"), NotifyDown("NO CARRIER")]),
    (S.DIALING, IfaceUp("ppp0", "a"), 1, S.UP, [NotifyUp("a"), ClearHostStatus(), RunQueue()]),
    (S.CONNECTING, IfaceUp("ppp0", "a"), 1, S.UP, [NotifyUp("a"), ClearHostStatus(), RunQueue()]),
    (S.CONNECTING, PppdExited(19), 1, S.BACKOFF, [Hangup("pppd-exit(19)"), NotifyDown("pppd-exit(19)")]),
    (S.CONNECTING, CarrierLost("eio"), 1, S.BACKOFF, [Hangup("eio"), NotifyDown("eio")]),
    (S.CONNECTING, IfaceDown("ppp0"), 1, S.BACKOFF, [Hangup("ppp0-down"), NotifyDown("ppp0-down")]),
    (S.CONNECTING, Timer(), 61, S.BACKOFF, [Hangup("TIMEOUT"), NotifyDown("TIMEOUT")]),
    (S.DIALING, BAD_OPTIONS, 1, S.IDLE, [Hangup(BAD_OPTIONS.cause), NotifyDown(BAD_OPTIONS.cause)]),
    (S.CONNECTING, BAD_OPTIONS, 1, S.IDLE, [Hangup(BAD_OPTIONS.cause), NotifyDown(BAD_OPTIONS.cause)]),
    (S.UP, BAD_OPTIONS, 1, S.IDLE, [Hangup(BAD_OPTIONS.cause), NotifyDown(BAD_OPTIONS.cause)]),
    (S.HANGING_UP, BAD_OPTIONS, 501, S.IDLE, [NotifyDown("hangup")]),
    (S.UP, QueueRunDone(), 1, S.UP, []),
    (S.UP, EtrnDone("459"), 1, S.UP, []),
    (S.UP, InboundActive(), 1, S.UP, []),
    (S.UP, MailWaiting(), 1, S.UP, [RunQueue(link_up=False)]),
    (S.UP, PollDue("2024-03-04T10:00:00+01:00"), 1, S.UP, [SendEtrn(("example.org",), "etrn")]),
    (S.UP, InboundDone(), 1, S.UP, []),
    (S.UP, Idle(100), 1, S.UP, []),
    (S.UP, Timer(), 121, S.HANGING_UP, [Hangup("idle")]),
    (S.UP, CarrierLost("NO CARRIER"), 1, S.IDLE, [Hangup("NO CARRIER"), NotifyDown("NO CARRIER")]),
    (S.UP, IfaceDown("ppp0"), 1, S.IDLE, [Hangup("ppp0-down"), NotifyDown("ppp0-down")]),
    (S.UP, PppdExited(16), 1, S.IDLE, [Hangup("pppd-exit(16)"), NotifyDown("pppd-exit(16)")]),
    (S.HANGING_UP, IfaceDown("ppp0"), 501, S.IDLE, [NotifyDown("hangup")]),
    (S.HANGING_UP, PppdExited(5), 501, S.IDLE, [NotifyDown("hangup")]),
    (S.HANGING_UP, CarrierLost("x"), 501, S.IDLE, [NotifyDown("hangup")]),
    (S.HANGING_UP, Timer(), 516, S.IDLE, [NotifyDown("hangup-timeout")]),
    (S.BACKOFF, Timer(), 61, S.IDLE, []),
    (S.BACKOFF, IfaceUp("ppp0", "a"), 1, S.UP, [NotifyUp("a"), ClearHostStatus(), RunQueue()]),
]


@pytest.mark.parametrize("state,event,now,want_state,want", CASES,
                         ids=[f"{c[0].name}-{type(c[1]).__name__}-{i}" for i, c in enumerate(CASES)])
def test_transition(state, event, now, want_state, want):
    f = fsm_in(state)
    got = strip_timer(f.handle(event, float(now)))
    assert f.state is want_state, f"got {f.state}, want {want_state}"
    assert got == want, f"got {got}, want {want}"


def test_every_table_entry_has_a_case():
    covered = {(c[0], type(c[1])) for c in CASES}
    assert set(TABLE) <= covered, f"untested: {set(TABLE) - covered}"


ALL_EVENTS = [DialRequested("x"), DialResult(True), IfaceUp(), IfaceDown(), CarrierLost(), PppdExited(0),
              BAD_OPTIONS, QueueRunDone(), EtrnDone("250"), MailWaiting(), PollDue(), InboundActive(), InboundDone(), Idle(1), Timer()]
IGNORED = [(s, e) for s in S for e in ALL_EVENTS if (s, type(e)) not in TABLE]


@pytest.mark.parametrize("state,event", IGNORED, ids=[f"{s.name}-{type(e).__name__}" for s, e in IGNORED])
def test_pairs_not_in_table_are_ignored(state, event):
    f = fsm_in(state)
    before = (f.state, f.deadline(), f.ignored)
    assert f.handle(event, 1.0) == []
    assert (f.state, f.deadline()) == before[:2] and f.ignored == before[2] + 1


@pytest.mark.parametrize("state", [S.DIALING, S.CONNECTING])
def test_a_setup_error_stops_dialling_until_resumed_or_forced(state):
    f = fsm_in(state)
    f.handle(BAD_OPTIONS, 1.0)
    assert f.state is S.IDLE and f.stopped is BAD_OPTIONS and f.deadline() is None      # no backoff timer
    assert f.failed_dials == 0
    ignored = f.ignored
    assert f.handle(DialRequested("queued(3>=1)"), 2.0) == [] and f.ignored == ignored + 1
    assert f.handle(Resume("reload"), 3.0) == [] and f.stopped is None
    assert strip_timer(f.handle(DialRequested("queued(3>=1)"), 4.0)) == [Dial(CFG.numbers, "queued(3>=1)")]
    f = fsm_in(state)
    f.handle(BAD_OPTIONS, 1.0)
    assert strip_timer(f.handle(DialRequested("operator", force=True), 2.0)) == [Dial(CFG.numbers, "operator")]
    assert f.stopped is None and f.state is S.DIALING            # a try after a fix; a new stop if it was not


def test_iface_up_is_idempotent():
    f = fsm_in(S.UP, Phase.RUN)
    assert f.handle(IfaceUp("ppp0", "10.64.0.2"), 1.0) == []     # the ip-up hook after netlink
    assert f.phase is Phase.RUN


def test_carrier_loss_during_run_stops_the_run():
    f = fsm_in(S.UP, Phase.RUN)
    got = strip_timer(f.handle(CarrierLost("NO CARRIER"), 5.0))
    assert got == [StopRun("NO CARRIER"), Hangup("NO CARRIER"), NotifyDown("NO CARRIER")]
    assert f.state is S.IDLE and f.failed_dials == 0


def test_backoff_doubles_then_hits_the_limit():
    f = LinkFSM(CFG)
    waits, now = [], 0.0
    for _ in range(4):
        f.handle(DialRequested("x"), now)
        f.handle(DialResult(False, "BUSY"), now)
        waits.append(f.deadline() - now)
        now = f.deadline()
        f.handle(Timer(), now)
        assert f.state is S.IDLE
    assert waits == [60, 120, 3600, 3600]       # limit reached at the 3rd failure
    f.handle(DialRequested("x"), now)
    f.handle(DialResult(True), now)
    f.handle(IfaceUp(), now)
    assert f.failed_dials == 0


def test_dial_requests_during_backoff_are_ignored():
    f = fsm_in(S.BACKOFF)
    assert f.handle(DialRequested("urgent(1)"), 1.0) == [] and f.state is S.BACKOFF


def run(f: LinkFSM, script):
    """Feed (t, event) pairs; fire Timer whenever the deadline passes first. Returns [(t, action)]."""
    log = []
    for t, event in script:
        while f.deadline() is not None and f.deadline() <= t:
            now = f.deadline()
            log += [(now, a) for a in strip_timer(f.handle(Timer(), now))]
        log += [(t, a) for a in strip_timer(f.handle(event, t))]
    return log


def test_scenario_dial_run_etrn_inbound_then_idle_hangup():
    f = LinkFSM(CFG)
    log = run(f, [
        (0, DialRequested("queue(2)")),
        (42, DialResult(True)),
        (45, IfaceUp("ppp0", "10.64.0.2")),
        (46, IfaceUp("ppp0", "10.64.0.2")),        # the ip-up hook, late: ignored
        (61, QueueRunDone()),
        (63, EtrnDone("250 2.0.0 Queuing for node example.org started")),
        (64, InboundActive()),                     # the ISP connects back
        (400, InboundDone()),                      # long push: no hang-up meanwhile
        (410, Idle(5000)), (450, Idle(6000)), (500, Idle(6000)),
        (572, IfaceDown("ppp0")),               # pppd gone after the hang-up
    ])
    assert log == [
        (0, Dial(("5551234", "5559876"), "queue(2)")),
        (42, StartPppd()),
        (45, NotifyUp("10.64.0.2")), (45, ClearHostStatus()), (45, RunQueue()),
        (61, SendEtrn(("example.org",))),
        (570, Hangup("idle")),                     # last traffic seen at 450 + 120 s
        (572, NotifyDown("hangup")),
    ], log
    assert f.state is S.IDLE and f.last_etrn.startswith("250")


def test_mail_waiting_while_lingering_goes_out_on_the_same_call_without_a_second_etrn():
    f = fsm_in(S.UP, Phase.RUN)
    assert strip_timer(f.handle(MailWaiting(), 5.0)) == []          # a run is under way: it ends in LINGER
    assert strip_timer(f.handle(QueueRunDone(), 6.0)) == [SendEtrn(("example.org",))]
    assert strip_timer(f.handle(MailWaiting(), 7.0)) == []          # ETRN phase: not yet
    assert strip_timer(f.handle(PollDue(), 7.0)) == []              # nor a unit poll
    f.handle(EtrnDone("250"), 8.0)
    assert f.phase is Phase.LINGER
    assert strip_timer(f.handle(MailWaiting(), 100.0)) == [RunQueue(link_up=False)] and f.phase is Phase.RUN
    assert f.deadline() == CFG.max_connect_s                         # running: no idle hang-up
    assert strip_timer(f.handle(QueueRunDone(), 101.0)) == []       # one ETRN per call
    assert f.phase is Phase.LINGER and f.deadline() == 101.0 + CFG.idle_hangup_s
    f.handle(IfaceDown("ppp0"), 102.0)
    f.handle(DialRequested("again"), 200.0)
    f.handle(DialResult(True), 201.0)
    f.handle(IfaceUp("ppp0", "10.64.0.2"), 202.0)
    assert strip_timer(f.handle(QueueRunDone(), 203.0)) == [SendEtrn(("example.org",))]   # a new call: ETRN again


def test_scenario_holder_keeps_line_until_max_connect():
    f = LinkFSM(CFG)
    log = run(f, [
        (0, DialRequested("rule")), (30, DialResult(True)), (33, IfaceUp("ppp0", "a")),
        (40, QueueRunDone()), (41, EtrnDone("459 example.org: service unavailable")),
        (42, Hold("runner")),
        (2000, Release("runner")),
    ])
    assert (1833, Hangup("max-connect")) in log, log
    assert [a for _, a in log if isinstance(a, StopRun)] == []
    f2 = LinkFSM(CFG)
    log2 = run(f2, [(0, DialRequested("rule")), (1, DialResult(True)), (2, IfaceUp()),
                    (3, QueueRunDone()), (4, EtrnDone("250")), (5, Hold("r")), (100, Release("r")),
                    (1000, IfaceDown())])
    assert (220, Hangup("idle")) in log2, log2


def test_max_connect_during_run_stops_run():
    f = LinkFSM(FsmConfig(max_connect_s=100))
    log = run(f, [(0, IfaceUp()), (500, QueueRunDone())])
    assert log == [(0, NotifyUp("")), (0, ClearHostStatus()), (0, RunQueue()),
                   (100, StopRun("max-connect")), (100, Hangup("max-connect")),
                   (115, NotifyDown("hangup-timeout"))], log
    assert f.state is S.IDLE


def test_schedule_timer_emitted_when_deadline_changes():
    f = LinkFSM(CFG)
    acts = f.handle(DialRequested("x"), 10.0)
    assert acts[-1] == ScheduleTimer(100.0)


def test_a_hangup_plan_replaces_the_idle_timer_chargehup():
    # the policy's chargehup as the manager passes it: hang up 5 s before the
    # next 90 s unit after 8 s of quiet (units counted from link-up at 45)
    def plan(up: float, quiet: float) -> float:
        edge = up + 90
        while edge < quiet + 8 + 5:
            edge += 90
        return edge - 5
    from dataclasses import replace
    f = LinkFSM(replace(CFG, hangup_plan=plan))
    log = run(f, [(0, DialRequested("rule")), (42, DialResult(True)), (45, IfaceUp("ppp0", "a")),
                  (50, QueueRunDone()), (51, EtrnDone("250")),
                  (110, Idle(100)), (125, Idle(200)),        # traffic until 125: 125 + 13 > 135
                  (400, IfaceDown("ppp0"))])
    # not 125 + 120 (the idle timer), nor 130: the unit that began at 135 is paid, so at 220,
    # said as what it is (a chargehup hang-up, not the idle timer)
    assert (220, Hangup("chargehup")) in log, log
