"""line.py - the line itself: dial, pppd on the tty, hang up (DRIVER around modem.py and ppp.py).

NAME
    line - Line(cfg.link, modem=, pppd=): dial(numbers), ppp(), hangup(cause),
    release_tty(), close()

SYNOPSIS
    line = Line(cfg.link)                  # mode "modem": Modem + Pppd; "external": the commands
    result = await line.dial(("5551234",)) # DialResult(ok, result), or None: wait for the interface
    exited = await line.ppp()              # pppd on the handed-over tty, until it exits: PppdExited
    await line.hangup("idle")              # pppd stopped, then the modem's DTR dropped

DESCRIPTION
    Owns the modem (link.modem), the pppd child (link.ppp.Pppd) or, in
    external mode, the up/down commands (link.ppp.ExternalLink), and the
    order things happen on the tty.  dial() opens the modem if needed and
    dials; on CONNECT an fd on the tty is held open (hold_open()) across
    the hand-over, so the line stays up between the modem driver's close
    and pppd's open; release_tty() lets it go once pppd has the line
    (link-up) or is gone.  ppp() runs pppd on that tty and returns its
    exit as an FSM event (last_pppd_exit keeps it for status).  hangup()
    stops pppd (SIGTERM, SIGKILL after a grace) and drops the modem's DTR,
    or runs the down command.  Results are link.transitions events; the
    call driver (link.calls) posts them to the FSM.

INVARIANTS
    Dial and hang-up never overlap on the tty: one lock.  A dial that does
    not connect leaves the modem closed or on-hook.

NEVER
    Decides to dial or hang up, talks to the MTA, or watches the interface.

FAILURES
    Expected failures are results, not exceptions: DialFailed ->
    DialResult(False, result, placed); LinkError/OSError while dialing ->
    DialResult(False, "LINK-LOST", placed=False) (the modem is gone: no
    call reached the network); an up command's exit is placed; pppd not starting -> PppdExited(-1); a
    modem that does not answer after the hang-up is logged.  Our setup's
    errors are SetupBroken (the FSM stops dialling): pppd exiting with one
    of link.ppp.CONFIG_ERRORS, pppd or the up command that cannot be run
    at all (SetupError).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from link import linklog
from link.errors import DialFailed, LinkError, SetupError
from link.ppp import CARRIER_LOSS, CONFIG_ERRORS, SETUP_FIXES, ExternalLink, Pppd, exit_cause, hold_open, release
from link.transitions import DialResult, PppdExited, SetupBroken

if TYPE_CHECKING:
    from link.modem import Modem

log = logging.getLogger("link")


class Line:
    """The modem and pppd, or the external link's commands (the module's page)."""

    def __init__(self, cfg, *, modem: Modem | None = None, pppd: Pppd | None = None) -> None:
        self.mode = cfg.mode
        self.modem = modem if modem is not None or self.mode != "modem" else _make_modem(cfg)
        self.pppd = pppd if pppd is not None else Pppd(cfg.pppd, cfg.pppd_args)
        self.external = ExternalLink(cfg.up_command, cfg.down_command)
        self._lock = asyncio.Lock()             # dial and hang-up never overlap on the tty
        self._held: int | None = None           # tty fd kept across the hand-over to pppd
        self.device = ""                        #: the tty pppd gets
        self.number = ""                        #: the number that answered the last dial
        self.last_pppd_exit: dict | None = None

    async def dial(self, numbers: tuple[str, ...]) -> DialResult | SetupBroken | None:
        """Dial (the modem, or the up command); None: no up command, wait for the interface."""
        async with self._lock:
            if self.mode == "external":
                return await self._external_up()
            return await self._modem_dial(numbers)

    async def ppp(self) -> PppdExited | SetupBroken:
        """pppd on the tty the dial handed over, until it exits."""
        try:
            await self.pppd.start(self.device)
        except LinkError as e:
            log.error(linklog.pppd_failed(e))
            if isinstance(e, SetupError):
                return SetupBroken("pppd-not-runnable", str(e), "[link] pppd: the program, and the right to run it")
            return PppdExited(-1)
        code = await self.pppd.wait()
        self.release_tty()
        cause = exit_cause(code)
        self.last_pppd_exit = {"status": code, "cause": cause, "carrier_loss": code in CARRIER_LOSS}
        log.info(linklog.pppd_exited(code, cause))
        if code in CONFIG_ERRORS:
            return SetupBroken(f"pppd-exit({code},{cause})", f"pppd exited {code} ({cause})", SETUP_FIXES[code])
        return PppdExited(code)

    async def hangup(self, cause: str) -> None:
        """On-hook: pppd stopped, DTR dropped (external mode: the down command)."""
        self.release_tty()
        async with self._lock:
            if self.mode == "external":
                with contextlib.suppress(LinkError):
                    await self.external.down()
                return
            if self.pppd.running:
                await self.pppd.stop()
            await _on_hook(self._modem(), cause)

    def release_tty(self) -> None:
        """pppd has the line now (or is gone): the hand-over's fd goes."""
        release(self._held)
        self._held = None

    async def close(self) -> None:
        """Shutdown: pppd stopped, the tty released, the modem closed (no hang-up dialogue)."""
        if self.pppd.running:
            await self.pppd.stop()
        self.release_tty()
        if self.modem is not None:
            with contextlib.suppress(LinkError, OSError):
                if self.modem.is_open:
                    await self.modem.close()

    async def _external_up(self) -> DialResult | SetupBroken | None:
        try:
            code = await self.external.up()
        except LinkError as e:
            log.warning(linklog.up_command_failed(e))
            if isinstance(e, SetupError):
                return SetupBroken("up-command-not-runnable", str(e), "[link] up_command: the program, and the right to run it")
            code = -1
        if code is None:
            return None
        return DialResult(True, "up_command") if code == 0 else DialResult(False, f"up_command exit {code}")

    async def _modem_dial(self, numbers: tuple[str, ...]) -> DialResult:
        modem = self._modem()
        try:
            if not modem.is_open:
                await modem.open()
            call = await modem.dial(numbers or None)
            self.release_tty()
            self._held = hold_open(modem.device)
            self.device = await modem.hand_over()
            self.number = call.number
        except DialFailed as e:
            return DialResult(False, e.result, e.placed)
        except (LinkError, OSError) as e:       # the modem is gone (or never was): no call placed
            log.warning(linklog.dial_failed(e))
            with contextlib.suppress(LinkError, OSError):
                await modem.close()
            return DialResult(False, "LINK-LOST", placed=False)
        return DialResult(True, "CONNECT")

    def _modem(self) -> Modem:
        assert self.modem is not None, "modem mode without a modem"
        return self.modem


async def _on_hook(modem: Modem, cause: str) -> None:
    try:
        log.info(linklog.hangup(await modem.hangup(), cause))
    except (LinkError, OSError) as e:
        log.warning(linklog.hangup_failed(cause, e))
    finally:
        with contextlib.suppress(LinkError, OSError):
            await modem.close()


def _make_modem(cfg) -> Modem:
    from link.modem import Modem
    return Modem(cfg.device, speed=cfg.speed, init=tuple(cfg.init), numbers=tuple(cfg.numbers),
                 retries=cfg.dial_retries, dial_timeout=cfg.dial_timeout, command_timeout=cfg.command_timeout,
                 backoff_s=cfg.dial_backoff, guard_s=cfg.escape_guard, dtr_drop_s=cfg.dtr_drop)
