"""smtpd/turnaround.py - the session's side of ETRN and ATRN: the hooks, and handing the connection over.

Owns ``TurnVerbs``, the part of session.SmtpSession that runs ETRN's hook
(who asks goes with the node: the hook decides, delivery/flush.py) and
ATRN's (RFC 2645): a refusal goes back to the dialogue; after the hook's
250 is written the transport, and every byte read after ATRN, go to the
push (where we are the SMTP client: delivery/flush.py) and the session
lets go of it: no timer, no admission count, nothing more read or logged.

Never does: decide (the hooks do), or touch the connection after the hand-over.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Coroutine, Callable

from edgemail import maillog
from edgemail.smtpd.events import Atrn, Etrn

if TYPE_CHECKING:
    from edgemail.smtpd.core import Dialogue
    from edgemail.smtpd.timers import SessionTimers

log = logging.getLogger("edgemail.smtpd")

#: ATRN's push: (the transport, the bytes read after ATRN) -> whatever it reports
Push = Callable[[asyncio.Transport, bytes], Coroutine[Any, Any, object]]


class TurnVerbs:
    """ETRN's and ATRN's hooks for SmtpSession (see the module docstring)."""

    #: session.Services (its hooks and admission counts; not imported: session imports us)
    services: Any
    core: Dialogue | None
    transport: asyncio.Transport | None
    loop: asyncio.AbstractEventLoop
    relay: str
    _timers: SessionTimers | None
    _task: asyncio.Task | None
    _push: asyncio.Task | None
    _end_logged: bool

    async def _etrn(self, event: Etrn) -> str:
        on_etrn = self.services.on_etrn
        assert on_etrn is not None          # the dialogue offers ETRN only with a hook
        try:
            return await on_etrn(event.node, event)
        except Exception:
            log.error(maillog.internal_error(self.relay, "ETRN"), exc_info=True)
            return f"458 4.3.0 Unable to queue messages for node {event.node}"

    def _atrn(self, event: Atrn) -> None:
        """ATRN: the hook's refusal goes back to the dialogue; after its 250
        the connection is the push's (turn_around)."""
        core, on_atrn = self.core, self.services.on_atrn
        assert core is not None and on_atrn is not None   # offered only with a hook
        try:
            reply, push = on_atrn(event.user, event.domains, self.relay)
        except Exception as exc:
            reply, push = core.internal_error(exc), None
        if push is None:
            core.answer(reply)
            return
        core.close_with(reply)
        self._turn_around(push)

    def _turn_around(self, push: Push) -> None:
        """Our 250 to ATRN is written: give the connection (and what the
        client sent after ATRN) to the push, where we are the client."""
        core, transport = self.core, self.transport
        assert core is not None and transport is not None
        transport.write(core.data_to_send())
        early = core.reader.take()
        for pending in (self._timers, self._task):
            if pending is not None:
                pending.cancel()
        self._timers = self._task = None
        self.services.admission.release(self)
        self.transport = None               # no longer ours: the push reads and writes it
        self._end_logged = True
        self._push = self.loop.create_task(push(transport, early))
