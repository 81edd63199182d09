"""calls.py - the link manager's call: dial, pppd, hang-up, the link-up work (DRIVER).

NAME
    calls - CallDriver, the LinkManager's mixin that performs the FSM's
    call actions and turns their results into FSM events

DESCRIPTION
    Owns what a call does on the line and with the MTA, each as a task the
    manager spawns for an FSM action: dialing (the modem, or the external
    link's up_command), pppd on the handed-over tty (hold_open() keeps the
    tty open across the hand-over, released once pppd has the line), the
    hang-up (pppd stopped, then the modem's DTR dropped; the up/down
    commands in external mode), the MTA's queue run and ETRN, watching the
    interface over netlink (restarted a second after an OSError) and, while
    up, sampling ppp0's byte counters and the ISP's inbound sessions.
    At link-up it starts the call's record (last_dial, start time, number);
    at link-down it logs and books the call (connect time and bytes from the
    counters, or from pppd's ip-down environment when the hook gave one).

INVARIANTS
    Dial and hang-up never overlap on the tty (the manager's `_line` lock);
    a hang-up first cancels a dial in progress.  The loop never waits on
    the line: each driver is a task and reports through FSM events (_post);
    a hang-up's end shows as pppd's exit, the interface going or the FSM's
    timer.

NEVER
    Decides to dial or hang up (the FSM does).

FAILURES
    A driver's expected failures become events (DialFailed -> DialResult(
    False, result), LinkError/OSError while dialing -> DialResult(False,
    "LINK-LOST"), pppd not starting -> PppdExited(-1)); a failing port call
    is logged and treated as done; anything else ends the task and the
    manager logs it (link: task=NAME, error=E).

THE MANAGER SUPPLIES
    mode, clock, port, ledger, fsm, modem, pppd, external, sample_s,
    _netwatch_factory, _watch, _tasks, _line, _up, _dirty, _call, _held,
    _inbound, _ipdown_env, _dial_requested, _left_after_run, last_dial, last_etrn,
    last_pppd_exit, and _post(event), _spawn(name, coro), _port_call(name), _summary(),
    _now_dt().
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from link import linklog
from link import transitions as T
from link.errors import DialFailed, LinkError
from link.ppp import CARRIER_LOSS, exit_cause, hold_open, release

log = logging.getLogger("link")


class CallDriver:
    """Mixin for LinkManager: the call's drivers (tasks) and link-up/down bookkeeping."""

    # --- the drivers ----------------------------------------------------------------------

    async def _do_dial(self, a: T.Dial) -> None:
        async with self._line:
            if self.mode == "external":
                try:
                    code = await self.external.up()
                except LinkError as e:
                    log.warning(linklog.up_command_failed(e))
                    code = -1
                if code not in (None, 0):
                    self._post(T.DialResult(False, f"up_command exit {code}"))
                elif code == 0:
                    self._post(T.DialResult(True, "up_command"))
                return                              # no command: wait for the interface
            try:
                if not self.modem.is_open:
                    await self.modem.open()
                call = await self.modem.dial(a.numbers or None)
                self._release_tty()
                self._held = hold_open(self.modem.device)
                self.device = await self.modem.hand_over()
                self._number = call.number
            except DialFailed as e:
                self._post(T.DialResult(False, e.result))
                return
            except (LinkError, OSError) as e:
                log.warning(linklog.dial_failed(e))
                with contextlib.suppress(LinkError, OSError):
                    await self.modem.close()
                self._post(T.DialResult(False, "LINK-LOST"))
                return
        self._post(T.DialResult(True, "CONNECT"))

    async def _do_pppd(self) -> None:
        try:
            await self.pppd.start(self.device)
        except LinkError as e:
            log.error(linklog.pppd_failed(e))
            self._post(T.PppdExited(-1))
            return
        code = await self.pppd.wait()
        self._release_tty()
        cause = exit_cause(code)
        self.last_pppd_exit = {"status": code, "cause": cause, "carrier_loss": code in CARRIER_LOSS}
        log.info(linklog.pppd_exited(code, cause))
        self._post(T.PppdExited(code))

    async def _do_hangup(self, cause: str) -> None:
        dial = self._tasks.get("dial")
        if dial is not None and not dial.done():
            dial.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await dial
        self._release_tty()
        async with self._line:
            if self.mode == "external":
                with contextlib.suppress(LinkError):
                    await self.external.down()
                return
            if self.pppd.running:
                await self.pppd.stop()
            try:
                how = await self.modem.hangup()
                log.info(linklog.hangup(how, cause))
            except (LinkError, OSError) as e:
                log.warning(linklog.hangup_failed(cause, e))
            finally:
                with contextlib.suppress(LinkError, OSError):
                    await self.modem.close()

    async def _do_run(self, link_up: bool = True) -> None:
        try:
            await (self.port.run_queue() if link_up else self.port.run_due())
        except Exception as e:
            log.warning(linklog.port_failed("queue_run", e))
        self._left_after_run = self._summary().queued   # what this run could not send
        self._post(T.QueueRunDone())

    async def _do_etrn(self, domains: tuple[str, ...]) -> None:
        try:
            results = await self.port.etrn(domains)
            replies = [(r.domain, r.code, r.text) for r in results]
        except Exception as e:
            log.warning(linklog.port_failed("etrn", e))
            replies = [(d, 0, f"error: {e}") for d in domains]
        for domain, code, text in replies:
            log.info(linklog.etrn_reply(domain, code, text))
        self.last_etrn = {"at": self._now_dt().isoformat(), "ok": all(_etrn_ok(c) for _, c, _ in replies),
                          "replies": [{"domain": d, "code": c, "text": t} for d, c, t in replies]}
        self._post(T.EtrnDone("; ".join(f"{c} {d}" for d, c, _ in replies)))

    async def _watch_loop(self) -> None:
        from link import netwatch as nw
        while True:
            try:
                self._watch = self._netwatch_factory()
                async with self._watch as watch:
                    async for ev in watch:
                        if isinstance(ev, nw.IfaceUp):
                            self._post(T.IfaceUp(ev.ifname, ev.addr, ev.peer))
                        elif isinstance(ev, nw.IfaceDown):
                            self._post(T.IfaceDown(ev.ifname))
            except OSError as e:
                log.warning(linklog.netwatch_failed(e, 1.0))
                await asyncio.sleep(1.0)

    async def _sample_loop(self) -> None:
        """While up: byte counters (idle detection) and the ISP's inbound sessions."""
        while self.fsm.state is T.LinkState.UP:
            counters = None
            if self._watch is not None:
                with contextlib.suppress(OSError, LinkError):
                    counters = await self._watch.counters()
            if counters is not None and self._call is not None:
                self._call.setdefault("base", counters)
                self._call["last"] = counters
                self._post(T.Idle(sum(counters)))
            try:
                n = int(self.port.inbound_active())
            except Exception:
                n = 0
            if (n > 0) != (self._inbound > 0):
                self._post(T.InboundActive() if n > 0 else T.InboundDone())
            self._inbound = n
            await asyncio.sleep(self.sample_s)

    # --- up and down ------------------------------------------------------------------------

    def _on_up(self, a: T.NotifyUp) -> None:
        now = self._now_dt()
        self.last_dial = self._dial_requested or now
        self._dial_requested = None
        self._call = {"start": now, "mono": self.clock.monotonic(), "number": getattr(self, "_number", "")}
        self._ipdown_env = None
        self._inbound = 0
        self._up.set()
        self._release_tty()                          # pppd has the line now
        self._spawn("sample", self._sample_loop())

    def _release_tty(self) -> None:
        release(self._held)
        self._held = None

    def _on_down(self, a: T.NotifyDown) -> None:
        self._up.clear()
        self._dirty = True
        call, self._call = self._call, None
        self._inbound = 0
        if call is None:
            return
        if hasattr(self.port, "link_down"):         # optional: the MTA books link-up time
            self._port_call("link_down")
        connect_s = self.clock.monotonic() - call["mono"]
        sent = rcvd = 0
        if "base" in call:
            rcvd = call["last"][0] - call["base"][0]
            sent = call["last"][1] - call["base"][1]
        if self._ipdown_env:
            from link.accounting import from_ip_down_env
            with contextlib.suppress(ValueError):
                connect_s, sent, rcvd = from_ip_down_env(self._ipdown_env)
        log.info(linklog.call_ended(connect_s, sent, rcvd, a.cause))
        if self.ledger is not None:
            try:
                self.ledger.record_call(call["start"], connect_s, sent, rcvd, number=call["number"], cause=a.cause)
            except OSError as e:
                log.error(linklog.accounting_failed(e))


def _etrn_ok(code: int) -> bool:
    return 250 <= code <= 253
