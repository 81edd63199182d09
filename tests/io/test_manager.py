"""The link manager with its collaborators, on virtual time (no root, no modem).

Real parts: the manager, its FSM, call driver and policy driver, the policy
core, the ledger on disk, external-link mode's up/down commands as real
processes (/bin/true, /bin/false) and the ppp hooks' reports (link_up /
link_down, as the control socket passes them).  At the edge: the MTA's
port (records what it is asked), the netlink watcher (reports nothing:
the hooks bring the line up here, as in external mode with fixed
addresses) and the netlink probe that checks a hook's claim (ppp0 up with
10.64.0.2 and 10.64.0.3).  Time is a FakeClock: the loop and the sampling
sleep on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace

import pytest

from edgemail.clock import FakeClock
from edgemail.config.model import LinkConfig
from link.accounting import Ledger
from link.manager import LinkManager
from link.netwatch import IFF_LOWER_UP, IFF_UP, View
from link.policy import parse
from link.port import QueueSummary, wall_now

POLICY = "set idle_hangup = 2m\nset max_connect = 30m\nset dial_when_queued = 1\nset redial_gap = 1s\n"
CFG = replace(LinkConfig(), mode="external", up_command=("/bin/true",), down_command=("/bin/true",),
              etrn_host="isp.example", etrn_domains=("example.org",))


@dataclass(frozen=True)
class Reply:
    domain: str
    code: int
    text: str


class Mta:
    """The MTA's side of the port: what it was asked, a queue the test sets."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.queue = QueueSummary()
        self.fail: dict[str, type[Exception]] = {}      #: call -> what it raises
        self.inbound = 0
        self.tried: list[tuple[bool, str]] = []         #: line_tried(placed, result), in order
        self.release_run = asyncio.Event()
        self.release_run.set()

    def _note(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail[name](f"{name} broke")

    def queue_summary(self):
        self._note("queue_summary")
        return self.queue

    def clear_host_status(self) -> None:
        self._note("clear_host_status")

    async def run_queue(self) -> None:
        self._note("run_queue")
        await self.release_run.wait()
        self.queue = QueueSummary()

    async def run_due(self) -> None:
        self._note("run_due")
        self.queue = QueueSummary()

    def stop_run(self) -> None:
        self._note("stop_run")

    async def etrn(self, domains):
        self._note("etrn")
        return [Reply(d, 250, f"Queuing for node {d} started") for d in domains]

    def inbound_active(self) -> int:
        if "inbound_active" in self.fail:
            raise self.fail["inbound_active"]("inbound_active broke")
        return self.inbound

    def link_down(self) -> None:
        self._note("link_down")

    def line_tried(self, placed: bool, result: str) -> None:
        self.tried.append((placed, result))

    def asked(self, name: str) -> list[str]:
        return [c for c in self.calls if c == name]


class QuietNetWatch:
    """netlink that reports nothing and has no counters."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        pass

    def __aiter__(self):
        return self

    async def __anext__(self):
        await asyncio.Event().wait()

    async def counters(self):
        return None

    def close(self) -> None:
        pass


async def ppp0_up() -> View:
    """netlink's answer to the hook's claim: ppp0 up with its addresses."""
    return View(7, IFF_UP | IFF_LOWER_UP, {"10.64.0.2": ("10.64.0.1", 32), "10.64.0.3": ("10.64.0.1", 32)})


async def until(pred, what: str):
    """Let the loop run until pred() holds (a positive event, not a sleep)."""
    for _ in range(2000):
        got = pred()
        if got:
            return got
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
async def rig(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="link")
    made = []

    def make(cfg=CFG, policy=POLICY, queued=0):
        clock, mta = FakeClock(), Mta()
        mta.queue = QueueSummary(queued, 60.0, 0)
        ledger = Ledger(str(tmp_path / "link.json"))
        mgr = LinkManager(cfg, parse(policy), clock=clock, port=mta, ledger=ledger,
                          netwatch_factory=QuietNetWatch, fsm_overrides=dict(backoff_base_s=30.0),
                          probe=ppp0_up)
        task = asyncio.create_task(mgr.run())
        made.append(task)
        return mgr, mta, clock, ledger

    yield make
    for task in made:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def lines(caplog, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


async def bring_up(mgr, mta):
    await until(lambda: mgr.state == "connecting", "the up command's dial")
    assert await mgr.link_up("ppp0", "10.64.0.2", "10.64.0.1") == {"state": "up", "changed": True}
    await until(lambda: mgr.fsm.phase.value == "linger", "run and ETRN done")


async def test_a_call_from_the_policy_to_the_idle_hangup(rig, caplog):
    mgr, mta, clock, ledger = rig(queued=1)
    await bring_up(mgr, mta)
    assert [c for c in mta.calls if c != "queue_summary"] == ["clear_host_status", "run_queue", "etrn"]
    assert mgr.status()["last_etrn"]["ok"] is True and mgr.status()["policy"]["dial"] is True
    assert lines(caplog, "link: etrn=example.org, reply=250 Queuing")
    deadline = mgr.fsm.deadline()
    assert deadline is not None and deadline > clock.monotonic()
    await clock.wait_for_sleepers(1)
    clock.advance(deadline - clock.monotonic() + 0.01)
    await until(lambda: mgr.state == "hanging-up", "the idle hang-up")
    assert mgr.link_down("ppp0", env={"CONNECT_TIME": "125", "BYTES_SENT": "2048", "BYTES_RCVD": "4096"})
    await until(lambda: mgr.state == "down", "the call's end")
    assert lines(caplog, "link: state=HANGING_UP, reason=idle")
    assert lines(caplog, "link: call=ended, connect=125.0s, sent=2048, rcvd=4096, cause=hangup")
    assert ledger.last_call is not None and ledger.last_call.connect_s == 125.0
    assert mta.asked("link_down") == ["link_down"] and mgr.status()["last_call"]["bytes_rcvd"] == 4096


async def test_mail_queued_while_lingering_goes_out_on_the_same_call(rig):
    mgr, mta, clock, ledger = rig(queued=1)
    await bring_up(mgr, mta)
    mta.queue = QueueSummary(1, 1.0, 0)
    mgr.demand_changed()
    await until(lambda: mta.asked("run_due"), "a second run on the call")
    await until(lambda: mgr.fsm.phase.value == "linger", "back to linger")
    assert mta.asked("etrn") == ["etrn"] and mta.asked("run_queue") == ["run_queue"]   # one ETRN per call
    assert mgr.state == "up"


async def test_the_policy_is_asked_again_after_the_call_and_waits_for_an_empty_queue(rig):
    mgr, mta, clock, ledger = rig(queued=1)
    await bring_up(mgr, mta)
    asked = mgr.policy_driver.asked
    mgr.link_down("ppp0")
    await until(lambda: mgr.policy_driver.asked > asked, "the policy asked after the call")
    assert mgr.state == "down" and mgr.policy_driver.decision.dial is False
    assert mgr.status()["policy"]["queued"] == 0


async def test_carrier_loss_during_the_run_stops_it_and_grows_no_backoff(rig, caplog):
    mgr, mta, clock, ledger = rig(queued=1)
    mta.release_run.clear()                        # the run is still going when the line goes
    await until(lambda: mgr.state == "connecting", "the dial")
    await mgr.link_up("ppp0", "10.64.0.2")
    await until(lambda: mta.asked("run_queue"), "the run started")
    mgr.link_down("ppp0")
    await until(lambda: mta.asked("stop_run"), "stop_run")
    assert mgr.fsm.failed_dials == 0 and lines(caplog, "link: stop_run=ppp0-down")
    assert lines(caplog, "link: state=IDLE, reason=ppp0-down")
    mta.release_run.set()


async def test_a_failing_up_command_backs_off_then_dials_again(rig, caplog):
    mgr, mta, clock, ledger = rig(cfg=replace(CFG, up_command=("/bin/false",)), queued=1)
    await until(lambda: mgr.state == "backoff", "the backoff")
    assert lines(caplog, "link: state=BACKOFF, reason=up_command exit 1")
    assert "backing off after 1 failed dial(s): 30s left" in mgr.explain()
    await clock.wait_for_sleepers(1)
    clock.advance(30.01)
    await until(lambda: mgr.fsm.failed_dials == 2, "the second dial, failed too")
    assert len(lines(caplog, "link: state=DIALING")) == 2 and mgr.state == "backoff"


@pytest.mark.parametrize("cfg,want", [
    (replace(CFG, up_command=("/bin/false",)), (True, "up_command exit 1")),      # it ran: a try
    (replace(CFG, up_command=("/nonexistent/ifup",)), (False, "up-command-not-runnable")),
    (replace(CFG, mode="modem", device="/nonexistent/ttyS9", numbers=("5551234",)), (False, "LINK-LOST")),
], ids=["up-command-fails", "up-command-missing", "modem-missing"])
async def test_every_dial_result_is_told_to_the_mta_placed_or_not(rig, cfg, want):
    """retry.count_offline_time's input (issue 14 §5): a failed try counts as a
    time the line could have been up; a modem or setup that cannot even dial does not."""
    mgr, mta, clock, ledger = rig(cfg=cfg, queued=1)
    await until(lambda: mta.tried, "the dial's result told")
    assert mta.tried == [want]


async def test_a_call_that_connects_is_told_as_placed(rig):
    mgr, mta, clock, ledger = rig(queued=1)
    await bring_up(mgr, mta)
    assert mta.tried == [(True, "up_command")]


async def test_a_failing_port_is_logged_by_type_and_the_call_goes_on(rig, caplog):
    mgr, mta, clock, ledger = rig(queued=1)
    mta.fail = {"run_queue": OSError, "clear_host_status": RuntimeError}
    await bring_up(mgr, mta)
    expected = lines(caplog, "link: queue_run=failed, error=run_queue broke")      # I/O trouble: a warning
    bug = [r for r in caplog.records if r.getMessage().startswith("link: clear_host_status=error")]
    assert expected and bug and bug[0].getMessage() == "link: clear_host_status=error, error=RuntimeError('clear_host_status broke')"
    assert bug[0].exc_info is not None and bug[0].levelname == "ERROR"           # a bug: with its traceback
    assert mta.asked("etrn") == ["etrn"] and mgr.state == "up"


@pytest.mark.parametrize("error, line", [(OSError, "queue_summary=failed"), (KeyError, "queue_summary=error")])
async def test_a_queue_summary_that_raises_makes_no_call(rig, caplog, error, line):
    mgr, mta, clock, ledger = rig(queued=1)
    mta.fail = {"queue_summary": error}
    mgr.demand_changed()
    await until(lambda: lines(caplog, f"link: {line}"), "the line")
    await until(lambda: mgr.policy_driver.last_ask and mgr.policy_driver.last_ask["queued"] == 0, "an ask")
    assert mgr.state == "down" and mgr.status()["queue"]["queued"] == 0


async def test_an_inbound_count_that_breaks_during_a_push_does_not_hang_up(rig, caplog):
    mgr, mta, clock, ledger = rig(queued=1)
    await bring_up(mgr, mta)

    async def sample(dt: float = 1.0) -> None:         # the loop's timer and the sampler asleep: move on
        await clock.wait_for_sleepers(2)
        clock.advance(dt)
    mta.inbound = 1                                    # the ISP pushes our mail back
    await sample()
    await until(lambda: mgr.fsm.inbound == 1, "the push seen")
    mta.fail = {"inbound_active": AttributeError}      # then the MTA's count breaks (a bug)
    await sample()
    await until(lambda: lines(caplog, "link: inbound_active=error"), "the bug said")
    await sample(mgr.fsm.config.idle_hangup_s + 5)     # longer than the idle hang-up
    await clock.wait_for_sleepers(2)
    assert mgr.state == "up" and mgr.fsm.inbound == 1
    assert len(lines(caplog, "link: inbound_active=error")) == 1              # once, not every sample
    del mta.fail["inbound_active"]
    mta.inbound = 0                                    # the push is over, and the count works again
    await sample()
    await until(lambda: mgr.fsm.inbound == 0, "the push's end seen")


async def test_a_hook_netlink_contradicts_is_refused_and_changes_nothing(rig, caplog):
    mgr, mta, clock, ledger = rig(queued=0)
    await until(lambda: mgr.policy_driver.asked, "the first ask")
    reply = await mgr.link_up("ppp0", "10.99.0.9", "10.64.0.1")
    assert reply == {"state": "down", "ignored": "ppp0 has no address 10.99.0.9 (it has 10.64.0.2, 10.64.0.3): "
                                                "netlink does not confirm the hook"}
    assert lines(caplog, "link: hook=ip-up, iface=ppp0, local=10.99.0.9, result=refused (ppp0 has no address")
    assert mgr.state == "down" and mta.asked("run_queue") == [] and ledger.last_call is None


async def test_an_up_command_that_cannot_run_stops_dialling_until_resumed(rig, caplog):
    mgr, mta, clock, ledger = rig(cfg=replace(CFG, up_command=("/nonexistent/ifup",)), queued=1)
    await until(lambda: mgr.fsm.stopped is not None, "the stop")
    assert mgr.state == "down" and lines(caplog, "link: dialing=stopped, cause=up-command-not-runnable")
    await until(lambda: lines(caplog, "link: dial=held, reason=queued(1>=1), stopped=up-command-not-runnable"),
                "the policy's dial held")
    assert mgr.status()["link"]["stopped"]["until"] == "reload" and "dialing stopped: cannot run" in mgr.explain()
    asked = mgr.policy_driver.asked
    clock.advance(3600)                                 # no backoff timer brings a retry
    mgr.demand_changed()
    await until(lambda: mgr.policy_driver.asked > asked, "asked again")
    assert len(lines(caplog, "link: state=DIALING")) == 1
    assert len(lines(caplog, "link: dial=held")) == 1   # held again, said once for the same reason
    assert mgr.resume("reload") is True and mgr.resume("reload") is False
    await until(lambda: len(lines(caplog, "link: state=DIALING")) == 2, "a dial after the resume")
    await until(lambda: len(lines(caplog, "link: dialing=stopped")) == 2, "stopped again: nothing was fixed")
    assert mgr.dial_now()["dialing"] is True                # the operator may try, stop or not
    assert lines(caplog, "link: dialing=resumed, reason=operator")


async def test_operator_dial_and_hangup(rig, caplog):
    mgr, mta, clock, ledger = rig(queued=0)
    await until(lambda: mgr.policy_driver.asked, "the first ask")
    assert mgr.state == "down" and mgr.hangup_now() == {"hangup": False, "state": "down"}
    assert mgr.dial_now() == {"dialing": True, "state": "dialing"}
    assert mgr.dial_now()["dialing"] is False
    await bring_up(mgr, mta)
    assert mgr.hangup_now() == {"hangup": True, "state": "up"}
    assert await mgr.link_up("ppp9") == {"ignored": "interface ppp9 is not ppp0"}
    mgr.link_down("ppp0")
    await until(lambda: mgr.state == "down", "down")
    assert mgr.policy_driver.last_dial is not None and ledger.usage(mgr.policy_driver.last_dial).calls == 1


UNIT_POLICY = ("timezone UTC\ntariff unit 0.06 90s\nset chargehup = on\nset chargehup_margin = 5s\n"
               "set chargehup_quiet = 8s\nset unit_poll = 5m\nset idle_hangup = 15s\nset dial_when_queued = 1\n"
               "set redial_gap = 1s\nset schedule = relative\n*/5 * * * * etrn\n")


async def test_one_more_etrn_in_the_paid_unit_counts_as_the_next_poll(rig, caplog):
    """Issue 14 §2 in the daemon's manager (it was in the core and the bench only):
    the quiet line is hung up 5 s before its 90 s unit ends; the relative
    schedule's next poll falls within unit_poll of that, so one more ETRN goes
    20 s before the hang-up, in the paid unit, and the next dial counts from
    the poll it stood in for.  Virtual time: the policy core gives every instant."""
    from datetime import timedelta

    from link.policy import UNIT_POLL_LEAD
    mgr, mta, clock, ledger = rig(policy=UNIT_POLICY, queued=1)
    pol = mgr.policy
    await bring_up(mgr, mta)
    up = wall_now(clock)                            # the call came up now (virtual time stands still)
    assert mta.asked("etrn") == ["etrn"]
    hangup = pol.hangup_at(up, up)                  # quiet since the ETRN, at t = up
    due = pol.next_poll(up, mgr.demand(up))
    assert hangup == up + timedelta(seconds=85) and due is not None and (due - hangup).total_seconds() <= 300
    await clock.wait_for_sleepers(1)
    clock.advance(85 - UNIT_POLL_LEAD - 1)
    await asyncio.sleep(0.05)
    assert mta.asked("etrn") == ["etrn"], "a unit poll before its time"
    clock.advance(1.01)
    await until(lambda: len(mta.asked("etrn")) == 2, "the ETRN in the paid unit")
    assert mgr.unit_polls.count == 1 and mgr.unit_polls.last_poll == due
    await until(lambda: mgr.fsm.phase.value == "linger", "the poll's ETRN done")
    clock.advance(UNIT_POLL_LEAD - 0.5)
    await asyncio.sleep(0.05)
    assert mgr.state == "up" and len(mta.asked("etrn")) == 2       # one per planned hang-up
    clock.advance(1.0)
    await until(lambda: mgr.state == "hanging-up", "the chargehup hang-up")
    assert wall_now(clock) == hangup + timedelta(seconds=0.51)     # the loop woke at the plan, not later
    mgr.link_down("ppp0")                                          # the down hook
    await until(lambda: mgr.state == "down", "the call's end")
    assert ledger.last_call is not None and ledger.last_call.connect_s == pytest.approx(85.51)  # in one unit
    nxt = mgr.policy.should_dial(wall_now(clock), mgr.demand(wall_now(clock)))
    assert not nxt.dial and nxt.next_at == due + timedelta(minutes=5), nxt   # counted from the stood-in poll
