"""envelope.py - the words of a queued message: QueueId, Envelope, Recipient.

Frozen dataclasses only; no I/O.  The spool stores these (spool/record.py),
the SMTP listener and ``sendmail`` build them, the runner reads them.

Queue ids look like sendmail 8.12+'s (``f344MXxp018717``): year mod 60,
month, day, hour, minute, second (each one base-60 digit), two base-60
sequence digits, then six decimal digits of the daemon's pid.  Only the
daemon hands out queue ids, so a per-process sequence makes them unique;
when more than 3600 are needed within one second the generator borrows the
next second's stamp rather than repeat one.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

BASE60 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx"

# sendmail's default Precedence classes (sendmail.cf P lines).
PRECEDENCE_CLASSES = {
    "special-delivery": 100,
    "urgent": 100,
    "first-class": 0,
    "list": -30,
    "bulk": -60,
    "junk": -100,
}


class QueueIdGenerator:
    """Hands out sendmail-style queue ids, unique within this process."""

    def __init__(self, pid: int, now=time.time) -> None:
        self._pid = pid % 1_000_000
        self._now = now
        self._second = 0
        self._seq = 0

    def __call__(self) -> str:
        second = int(self._now())
        if second > self._second:
            self._second, self._seq = second, 0
        elif self._seq >= 3600:
            self._second, self._seq = self._second + 1, 0
        seq, self._seq = self._seq, self._seq + 1
        t = time.gmtime(self._second)
        stamp = "".join(BASE60[v] for v in (
            t.tm_year % 60, t.tm_mon - 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
            seq // 60, seq % 60))
        return f"{stamp}{self._pid:06d}"


def is_queue_id(text: str) -> bool:
    return (len(text) == 14 and all(c in BASE60 for c in text[:8])
            and text[8:].isdigit())


class RcptStatus(enum.Enum):
    """Where one recipient stands (Postfix's status words)."""

    #: not yet attempted, or deferred and waiting for its next attempt
    QUEUED = "queued"
    #: delivered; DONE
    SENT = "sent"
    #: last attempt failed temporarily
    DEFERRED = "deferred"
    #: failed permanently; a DSN was (or will be) sent
    BOUNCED = "bounced"
    #: gave up after Timeout.queuereturn
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in (RcptStatus.SENT, RcptStatus.BOUNCED, RcptStatus.EXPIRED)


@dataclass(frozen=True, slots=True)
class Recipient:
    """One envelope recipient with its DSN parameters (RFC 3461)."""

    address: str
    #: ORCPT parameter as given ("rfc822;user@example.org"), or None
    orcpt: str | None = None
    #: NOTIFY values: subset of {"SUCCESS", "FAILURE", "DELAY"} or {"NEVER"};
    #: empty when the client gave no NOTIFY (default behaviour applies)
    notify: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message's envelope as accepted.  ``mail_from`` is "" for the null sender."""

    mail_from: str
    recipients: tuple[Recipient, ...]
    #: RET parameter: "FULL", "HDRS" or None
    ret: str | None = None
    #: ENVID parameter, or None
    envid: str | None = None
    #: BODY parameter: "7BIT", "8BITMIME" or None
    body: str | None = None
    #: SMTPUTF8 requested
    smtputf8: bool = False
    #: size of the message data as queued (bytes, CRLF line endings)
    size: int = 0
    #: sendmail's message class from the Precedence: header
    precedence: int = 0
    #: Message-ID header value without <>, or ""
    msgid: str = ""
    #: how it came in: "ESMTP", "SMTP", "ESMTPA", "local"
    proto: str = "ESMTP"
    #: client as logged: "[192.0.2.20]:50312" or "localhost" for local submissions
    client: str = ""
    helo: str = ""
    #: authenticated user (never the password), or ""
    auth: str = ""
    #: wall-clock time of arrival, POSIX seconds
    arrived: float = 0.0

    @property
    def nrcpts(self) -> int:
        return len(self.recipients)

    @property
    def urgency(self) -> str:
        """sendmail's Timeout.queue* variant: "urgent", "normal" or "non-urgent"."""
        if self.precedence > 0:
            return "urgent"
        return "non-urgent" if self.precedence < 0 else "normal"


def precedence_class(header_value: str | None) -> int:
    """Map a Precedence: header value to sendmail's message class (0 if unknown)."""
    if not header_value:
        return 0
    return PRECEDENCE_CLASSES.get(header_value.strip().lower(), 0)


def priority(size: int, msg_class: int, nrcpts: int, *,
             class_factor: int, recipient_factor: int,
             retry_factor: int = 0, attempts: int = 0) -> int:
    """sendmail's queue priority; lower runs first.

    pri = msgsize - class * ClassFactor + nrcpt * RecipientFactor
          (+ RetryFactor for every attempt made).
    """
    return (size - msg_class * class_factor + nrcpts * recipient_factor
            + attempts * retry_factor)


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of one delivery attempt for one recipient, as logged."""

    status: RcptStatus
    dsn: str
    text: str
    relay: str = "none"
    at: float = 0.0
    extra: dict = field(default_factory=dict, compare=False)
