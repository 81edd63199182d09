"""daemon/wiredlink.py - the link manager and its MTA port, as the daemon holds them.

Owns ``Link(manager, port)``: what the daemon's other parts ask of the link
(``changed``, ``committed``, ``status``, ``status_text``, ``waiting``: the
words a queue run's answer adds with the line down), the two long-running
tasks (``run``) and systemd's STATUS= text (``notify_loop``).  The port is
daemon/mtaport.py's MtaPort; the manager is link/manager.py's LinkManager.

Use::

    link = Link(mgr, port)                    # the manager gets its port now
    link.committed(qid); link.changed()       # a commit, a run: the demand changed
    link.status() -> dict; await link.run()   # the manager and the port's watch
    link.waiting(filters) -> (n, words)       # sendmail -q with the line down

Never: decides when to dial (the policy does) or reads the queue itself
(the port does).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Sequence

from edgemail.clock import Clock
from edgemail.daemon.notify import Notifier

if TYPE_CHECKING:
    from edgemail.daemon.mtaport import MtaPort

#: how often the sd_notify STATUS text is recomputed (sent only when it changed)
STATUS_POLL_S = 1.0
#: the line's states, as a queue run's answer words them
LINE_WORDS = {"down": "down", "backoff": "down (backing off after a failed dial)", "hanging-up": "hanging up"}


class Link:
    """The link manager and its MTA port, as the daemon holds them: what the
    daemon's other parts ask of the link (``changed``, ``committed``,
    ``status``, ``status_text``) and the two long-running tasks (``run``).

    The one late binding of the daemon is here: the manager is built before
    the runner (it is the runner's LinkPort: DialDelay, hold), the port after
    it (the port drives the runner), so the manager gets its port now."""

    def __init__(self, manager, port: MtaPort) -> None:
        self.manager, self.port = manager, port
        manager.port = port

    def changed(self) -> None:
        """The queue changed: re-plan the port's watch, ask the policy again."""
        self.port.changed()
        self.manager.demand_changed()

    def committed(self, qid: str) -> None:
        """A commit hook (daemon/run.py's CommitHooks): a new message changes the demand."""
        self.changed()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.manager.run())
            tg.create_task(self.port.watch(self.manager.demand_changed))

    def status(self) -> dict:
        """The manager's status() (``link``: the state, and its other facts) and ``queue``: the demand."""
        return {**self.manager.status(), "queue": self.port.queue_summary().as_dict()}

    def waiting(self, filters: Sequence[str] = ()) -> tuple[int, str]:
        """With the line down: how many of the messages a queue run with
        FILTERS selects wait for the line, and for what, in words (0, "" else)."""
        state = self.manager.state
        if state in ("up", "dialing", "connecting"):
            return 0, ""
        state = LINE_WORDS.get(state, state)
        n, held = self.port.waiting_for(filters)
        stop = self.manager.fsm.stopped
        said = []
        if n and stop is not None:
            said.append(f"{n} message(s) for the link wait, and dialing is stopped ({stop.text}): "
                        "see `edgemail link explain`")
        elif n:
            said.append(f"{n} message(s) for the link wait for the dial policy or `edgemail link dial`")
        if held:
            said.append(f"{held} message(s) on a hold route wait for the line to be up: run this again then")
        return n + held, (f"the line is {state}: " + "; ".join(said)) if said else ""

    def status_text(self) -> str:
        q = self.port.queue_summary()
        stop = self.manager.fsm.stopped
        state = f"{self.manager.state} (dialing stopped: {stop.text})" if stop is not None else self.manager.state
        return f"link {state}, {q.total} queued ({q.queued} for the link)"

    async def notify_loop(self, notifier: Notifier, clock: Clock) -> None:
        """STATUS= to systemd whenever the link state or the queue count changes."""
        said = ""
        while True:
            text = self.status_text()
            if text != said:
                notifier.status(text)
                said = text
            await clock.sleep(STATUS_POLL_S)
