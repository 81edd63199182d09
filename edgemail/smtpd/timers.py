"""smtpd/timers.py - one session's time limits (session.py's clock).

Owns three limits, checked by one timer on the loop:
  * per read (sendmail's Timeout.command): no byte for that long ends the
    session.  Any bytes re-arm it, so a slow but moving DATA is never cut.
  * per command line (the whole-line deadline, as sendmail's sfgets puts
    Timeout.command around the whole line): a command line (or an AUTH
    response) must be complete within Timeout.command of the moment we
    became ready for it.  A client that sends one byte just inside the
    per-read timeout (slowloris) is cut here.
  * per session (``[smtpd] max_session_time``, default 1 h): the whole
    connection, DATA included; a 10 MB message at 56 kbit/s takes 25 min.
Time spent waiting on us (a commit, a TLS handshake, an AUTH check, an
ETRN hook: the dialogue is WAITING) counts for none of the per-read and
per-line limits, and never cuts a commit: the check comes back after it.

The driver calls ``read()`` on bytes in, ``ready(state, held)`` each time
the dialogue needs input, and ``cancel()`` at the end; ``on_expiry(limit)``
is called once, with "timeout", "command line" or "session".

Never: I/O, replies (the session says the 421).
"""

from __future__ import annotations

import asyncio
from typing import Callable

from edgemail.smtpd.state import State

#: the states in which the client owes us a command line
LINE_STATES = (State.COMMAND, State.AUTH)


class SessionTimers:
    """The limits of one session (module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, per_read: float, per_session: float,
                 busy: Callable[[], bool], on_expiry: Callable[[str], None]) -> None:
        self.loop, self.per_read, self.per_session = loop, per_read, per_session
        self._busy, self._on_expiry = busy, on_expiry
        self.started = self.last_read = loop.time()
        #: when we became ready for the command line now awaited (None: not awaiting one)
        self.line_since: float | None = None
        self._timer: asyncio.TimerHandle | None = loop.call_later(min(per_read, per_session), self._check)

    def read(self) -> None:
        """Bytes arrived."""
        self.last_read = self.loop.time()

    def ready(self, state: State, held: int) -> None:
        """The dialogue needs input in STATE with HELD bytes of a partial line."""
        if state not in LINE_STATES:
            self.line_since = None
        elif held == 0 or self.line_since is None:
            self.line_since = self.loop.time()

    def waited(self) -> None:
        """Our own wait is over (a commit, a handshake): the client's clocks restart."""
        self.last_read = self.loop.time()
        self.line_since = None

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def expired(self, now: float) -> tuple[str | None, float]:
        """(the limit passed, or None; seconds to the next check)."""
        if self._busy():
            return None, min(self.per_read, max(self.started + self.per_session - now, 1.0))
        session_left = self.started + self.per_session - now
        if session_left <= 0:
            return "session", 0
        read_left = self.last_read + self.per_read - now
        line_left = (self.line_since + self.per_read - now) if self.line_since is not None else read_left
        if read_left <= 0:
            return "timeout", 0
        if line_left <= 0:
            return "command line", 0
        return None, min(session_left, read_left, line_left)

    def _check(self) -> None:
        limit, wait = self.expired(self.loop.time())
        if limit is None:
            self._timer = self.loop.call_later(wait, self._check)
            return
        self._timer = None
        self._on_expiry(limit)
