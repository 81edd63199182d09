"""smtpd/events.py - what the server dialogue (core.py) tells its driver
(session.py), as h11's _events.py does.

``Dialogue.next_event()`` returns one of:
  * ``NEED_DATA``: every whole command read is answered; read more.
  * ``FLUSH``: replies fill the output limit; send them, then ask again
    (the driver stops asking while the client does not read).

  * ``Commit``: the end of DATA was read and the message passed the
    checks; make it durable, then ``answer()`` with the reply.
  * ``Etrn``: an ETRN (RFC 1985) with who asks; the hook decides and
    starts the flush, then ``answer()`` with its reply.
  * ``Atrn``: an ATRN (RFC 2645) after AUTH; ``answer()`` with the hook's
    refusal, or ``close_with()`` its 250 and hand the connection over.
  * ``StartTls``: ``220`` to STARTTLS is queued and the plaintext read
    after the command is dropped: send the 220, stop reading plaintext at
    once, run the handshake, then ``tls_started()`` (or close).
  * ``Authenticate``: AUTH's credentials to verify (off the loop: scrypt
    is slow), then ``auth_done()`` with the user or None.
  * ``Close``: the dialogue is over (QUIT answered, 421 said, the input
    ended with everything answered): send what is left, then close.

The driver sends ``data_to_send()`` after every ``next_event()``.  After
``Commit``, ``Etrn``, ``Atrn``, ``StartTls`` or ``Authenticate`` the
dialogue takes no input until it is answered: replies keep the commands'
order (RFC 2920).

Never does: I/O, deciding (core.py), logging.  Message bytes and passwords
never appear in a repr (they would reach a log line through one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgemail.smtpd.data import HeaderFacts
from edgemail.smtpd.transaction import Transaction


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NEED_DATA = _Signal("NEED_DATA")
FLUSH = _Signal("FLUSH")


@dataclass(frozen=True)
class Commit:
    """A message to queue: the transaction, the data (dot-stuffing removed,
    CRLF line ends) and its header facts."""
    txn: Transaction = field(repr=False)
    message: bytes = field(repr=False)
    facts: HeaderFacts
    helo: str
    proto: str


@dataclass(frozen=True)
class Etrn:
    """ETRN for ``node`` (``@domain``, ``#queue`` or a domain), offered and
    well formed, and who asks (the hook decides whether they may)."""
    node: str
    ip: str = ""
    trusted: bool = False
    #: the AUTH user, None before AUTH
    user: str | None = None


@dataclass(frozen=True)
class Atrn:
    """ATRN (RFC 2645) from an authenticated ``user`` for ``domains`` (none:
    all of theirs).  The hook answers; after its 250 the connection is the
    push's (the driver hands it over)."""
    domains: tuple[str, ...]
    user: str
    relay: str


@dataclass(frozen=True)
class StartTls:
    """STARTTLS answered 220; ``dropped`` plaintext bytes that followed it
    were discarded (CVE-2024-34083 class: never commands after the handshake)."""
    dropped: int


@dataclass(frozen=True)
class Authenticate:
    """AUTH MECH gave these credentials; verify them."""
    mech: str
    user: str
    password: str = field(repr=False)
    #: CRAM-MD5: the challenge the password (the client's digest) answers
    challenge: str = ""


@dataclass(frozen=True)
class Close:
    """The dialogue is over."""


CLOSE = Close()

Event = _Signal | Commit | Etrn | Atrn | StartTls | Authenticate | Close
