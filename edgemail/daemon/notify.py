"""daemon/notify.py - sd_notify(3) for systemd's Type=notify, wrapping sdnotify.

Owns: the messages the daemon sends to systemd: ``READY=1`` (only after the
spool is recovered and every listener is bound), ``STATUS=...``,
``WATCHDOG=1`` every half of ``$WATCHDOG_USEC`` while the event loop runs,
``STOPPING=1``.

Never fails the daemon: without ``$NOTIFY_SOCKET`` (not under systemd, or in
tests) every call is a no-op.  sdnotify's ``debug=True`` raises TypeError
when the variable is missing, so we only ask for debug errors when it is set
and log a send failure once instead of raising.
"""

from __future__ import annotations

import logging
import os

import sdnotify

from edgemail import maillog
from edgemail.clock import Clock, SystemClock

log = logging.getLogger("edgemail.daemon")


class Notifier:
    """What the daemon tells systemd."""

    def __init__(self) -> None:
        env = os.environ        # sdnotify reads $NOTIFY_SOCKET from here itself
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._warned = False
        self._sd = None
        if self.enabled:
            try:
                self._sd = sdnotify.SystemdNotifier(debug=True)
            except OSError as exc:
                log.warning(maillog.warning(f"cannot reach NOTIFY_SOCKET: {exc}"))
                self.enabled = False
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else None

    def send(self, state: str) -> None:
        if self._sd is None:
            return
        try:
            self._sd.notify(state)
        except OSError as exc:
            if not self._warned:
                log.warning(maillog.warning(f"sd_notify failed: {exc}"))
                self._warned = True

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    async def watchdog(self, clock: Clock | None = None) -> None:
        """Ping the watchdog while the loop runs; returns at once if none is asked for."""
        if self.watchdog_interval is None:
            return
        clock = clock or SystemClock()
        while True:
            self.send("WATCHDOG=1")
            await clock.sleep(self.watchdog_interval)
