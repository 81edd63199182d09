"""smtpc/results.py - what a delivery attempt returns or raises, and how failures are scoped.

Owns: ``DeliveryResult`` / ``RcptResult`` (one per recipient; ``failure``
None means delivered), ``SmtpTimeout`` (a TempFail and a TimeoutError),
``Stats`` (counters for tests and benchmarks), and the pure helpers the
session driver uses: ``lost`` (a dropped connection as a TempFail: scope
LINK when our side of the network went away, SITE otherwise),
``as_recipient`` and ``check_envelope`` (addresses with CR/LF/controls are
refused before connecting: no byte is sent).

Never does: I/O.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass

from edgemail.envelope import Recipient
from edgemail.errors import DeliveryFailure, LocalProtocolError, Scope, TempFail
from edgemail.smtpc import core
from edgemail.smtpc.reply import Reply

__all__ = ["LINK_ERRNOS", "SmtpTimeout", "StaleConnection", "Stats", "RcptResult", "DeliveryResult",
           "lost", "as_recipient", "check_envelope"]

#: errno values that mean our side of the network went away (the link)
LINK_ERRNOS = {errno.ENETUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL, errno.ENONET}


class SmtpTimeout(TempFail, TimeoutError):
    """No reply (or no progress) within the phase's Timeout.* value."""

    def __init__(self, reason: str, *, phase: str, scope: Scope = Scope.SITE) -> None:
        self.phase = phase
        super().__init__(reason, scope=scope, dsn="4.4.2")


class StaleConnection(Exception):
    """A cached connection failed its RSET probe (internal)."""


@dataclass
class Stats:
    """Counters for tests and benchmarks."""

    connections: int = 0
    round_trips: int = 0
    reused: int = 0


@dataclass(frozen=True)
class RcptResult:
    address: str
    reply: Reply | None
    failure: DeliveryFailure | None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class DeliveryResult:
    relay: str
    recipients: dict[str, RcptResult]
    #: a failure that hit every accepted recipient after RCPT (DATA, timeout, ...)
    failure: DeliveryFailure | None = None
    reused: bool = False
    #: the final reply (SMTP) to the dot, for the log line
    reply: Reply | None = None
    #: the server advertised DSN: NOTIFY/ORCPT went on, success reports are its to send
    dsn: bool = False


def lost(exc: BaseException | None, host: str, phase: str) -> TempFail:
    if isinstance(exc, OSError) and exc.errno in LINK_ERRNOS:
        return TempFail(f"link lost talking to {host} ({phase}): {exc.strerror}",
                        scope=Scope.LINK, dsn="4.4.2")
    why = f": {exc}" if exc else ""
    return TempFail(f"lost connection with {host} while waiting for {phase}{why}",
                    scope=Scope.SITE, dsn="4.4.2")


def as_recipient(r: Recipient | str) -> Recipient:
    return r if isinstance(r, Recipient) else Recipient(r)


def check_envelope(sender: str, recipients: Sequence[Recipient | str]) -> None:
    core.check_text("sender address", sender)
    for r in recipients:
        address = as_recipient(r).address
        if not address:
            raise LocalProtocolError("empty recipient address")
        core.check_text("recipient address", address)
