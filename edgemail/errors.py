"""errors.py - the exception tree of edgemail.

Every error carries enough to act on it: a config error names the file, the
key and (where known) the line; a delivery failure names its *scope* (who has
to wait) and its *temperature* (temporary or permanent), as Postfix's
smtp_trouble.c and nullmailer's errcodes do.

    EdgemailError
    +-- ConfigError                 start-up only: one clear line, exit 78
    +-- SpoolError                  commit failed -> 451 4.3.0
    |   +-- SpoolFull               ENOSPC / MinFreeBlocks -> 452 4.3.1
    |   +-- CorruptQueueFile        moved to corrupt/, warn, keep running
    +-- DeliveryFailure             scope in {LINK, SITE, MESSAGE, RECIPIENT}
    |   +-- TempFail                4xx, timeouts, DNS trouble, link lost
    |   +-- PermFail                5xx, NXDOMAIN, queue lifetime expired
    +-- ProtocolError
    |   +-- LocalProtocolError      we tried something the protocol forbids (our bug)
    |   +-- RemoteProtocolError     the peer or the modem sent nonsense (temporary)
    +-- ControlError                control socket request failed
"""

from __future__ import annotations

import enum


class EdgemailError(Exception):
    """Base of every error edgemail raises on purpose."""


class ConfigError(EdgemailError):
    """A configuration file is unusable. Raised at start-up only.

    str() gives one line: ``FILE:LINE: KEY: problem (expected ...)``.
    """

    def __init__(self, problem: str, *, file: str | None = None,
                 key: str | None = None, line: int | None = None) -> None:
        self.problem = problem
        self.file = file
        self.key = key
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.key}: {self.problem}" if self.key else f"{where}: {self.problem}"


class ConfigErrors(ConfigError):
    """Several config errors found in one pass (all are reported, not only the first)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        EdgemailError.__init__(self, "\n".join(str(e) for e in errors))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class SpoolError(EdgemailError):
    """The spool could not do what was asked. The message is not committed."""


class SpoolFull(SpoolError):
    """No room on the spool file system (ENOSPC or below MinFreeBlocks)."""


class CorruptQueueFile(SpoolError):
    """A queue file fails to decode: truncated, wrong version, bad record."""


class QueueFileGone(SpoolError):
    """A queue file is no longer there (removed by hand): its entry left the queue."""


class Scope(enum.Enum):
    """Who has to wait after a failure (Postfix smtp_trouble.c)."""

    #: the link went away: defer the run, not the messages; no backoff grows
    LINK = "link"
    #: the destination is down: skip it for this run (host status)
    SITE = "site"
    #: this message cannot go now (e.g. too big for this server today)
    MESSAGE = "message"
    #: one recipient
    RECIPIENT = "recipient"


class DeliveryFailure(EdgemailError):
    """A delivery did not succeed. ``dsn`` is the enhanced status code."""

    permanent = False

    def __init__(self, reason: str, *, scope: Scope = Scope.MESSAGE,
                 dsn: str | None = None, reply: str | None = None) -> None:
        self.reason = reason
        self.scope = scope
        self.dsn = dsn or ("5.0.0" if self.permanent else "4.0.0")
        self.reply = reply
        super().__init__(reason)

    @property
    def temporary(self) -> bool:
        return not self.permanent


class TempFail(DeliveryFailure):
    """Try again later."""

    permanent = False


class PermFail(DeliveryFailure):
    """Give up; bounce."""

    permanent = True


class ProtocolError(EdgemailError):
    """A protocol was not followed."""


class LocalProtocolError(ProtocolError):
    """We tried to do something the protocol forbids (our bug)."""


class RemoteProtocolError(ProtocolError):
    """The peer (SMTP server, DNS server, modem) sent something we cannot parse."""


class ControlError(EdgemailError):
    """A control-socket request failed or the daemon is not reachable."""
