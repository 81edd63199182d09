"""smtpd/secure.py - STARTTLS (RFC 3207) and AUTH (RFC 4954) in the server
dialogue, sans I/O: the part of core.py's Dialogue that decides who the
client is.

Owns the commands and their replies:
  * STARTTLS: ``220 2.0.0 Ready to start TLS``, the plaintext read after
    the command dropped (CVE-2024-34083 class: nothing pipelined after
    STARTTLS is ever a command), the EHLO state, the transaction and any
    AUTH forgotten (RFC 3207 section 4.2), a StartTls event; the driver
    runs the handshake and calls ``tls_started()``.  ``454 4.7.0`` where TLS
    is not offered, ``554 5.5.1`` when it is already on.
  * AUTH PLAIN / LOGIN / CRAM-MD5 (auth.py's exchanges): only after EHLO,
    outside a transaction, once; ``538 5.7.11`` before TLS unless the
    listener has ``auth_plaintext`` (every mechanism) or ``cram_plaintext``
    (CRAM-MD5 only: the secret never crosses); ``504 5.5.4`` other mechanisms; ``334`` prompts, the
    responses taken in state AUTH (never as commands, never logged); an
    Authenticate event whose outcome ``auth_done()`` answers: ``235 2.7.0``
    or ``535 5.7.8`` (``auth_deferred()``: ``454 4.7.0``, too many checks
    pending, no failure counted), and ``421 4.7.0`` (the session ends) once the client
    has ``max_auth_failures`` failures (counted by the driver, per client
    address, across sessions).
  * ``require_tls``: ``530 5.7.0 Must issue a STARTTLS command first``
    for everything but EHLO/HELO, STARTTLS, NOOP, RSET and QUIT.
  * ``may_relay``: a trusted client, or an authenticated one.

Log lines: AUTH=server (success), AUTH failure, AUTH busy (without the password).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from edgemail import maillog
from edgemail.smtpd.auth import CRAM, LINE_LIMIT, Exchange, Prompt
from edgemail.smtpd.events import Authenticate, Event, StartTls
from edgemail.smtpd.reader import TOO_LONG, LineReader, Overlong
from edgemail.smtpd.state import Settings, State
from edgemail.smtpd.transaction import Transaction

log = logging.getLogger("edgemail.smtpd")

#: what require_tls lets through before STARTTLS
BEFORE_TLS = frozenset({"EHLO", "HELO", "STARTTLS", "NOOP", "RSET", "QUIT"})


class SecureCommands:
    """STARTTLS and AUTH for Dialogue (core.py), which provides the state below."""

    settings: Settings
    state: State
    reader: LineReader
    ip: str
    relay: str
    trusted: bool
    helo: str | None
    extended: bool
    txn: Transaction
    ended: bool
    #: TLS is on (after a handshake)
    tls: bool
    #: the authenticated user (None: not authenticated)
    auth_user: str | None
    _exchange: Exchange | None
    _auth_failures: Callable[[], int]

    if TYPE_CHECKING:
        def _reply(self, status: str, *, logged: bool = True) -> None: ...

        def _send(self, text: str) -> None: ...

        def close_with(self, reply: str) -> None: ...

    @property
    def may_relay(self) -> bool:
        """A trusted client (LAN, loopback) or an authenticated user."""
        return self.trusted or self.auth_user is not None

    @property
    def qualify_with(self) -> str | None:
        """The domain an unqualified address gets: a trusted or authenticated
        client's (RFC 6409 4.2), None for anyone else (553 5.1.3)."""
        return self.settings.local_domain if self.may_relay else None

    def tls_refusal(self, verb: str) -> str | None:
        """require_tls: the 530 for VERB before TLS, or None."""
        if self.settings.require_tls and not self.tls and verb not in BEFORE_TLS:
            return "530 5.7.0 Must issue a STARTTLS command first"
        return None

    # ---------------------------------------------------------------- STARTTLS

    def _starttls(self, arg: str | None) -> str | Event:
        if arg:
            return "501 5.5.4 Syntax: STARTTLS"
        if not self.settings.tls:
            return "454 4.7.0 TLS not available"
        if self.tls:
            return "554 5.5.1 Error: TLS already active"
        self._reply("220 2.0.0 Ready to start TLS")
        dropped = self.reader.held
        self.reader.discard()
        self.helo, self.extended, self.txn, self.auth_user = None, False, Transaction(), None
        self.state = State.WAITING
        return StartTls(dropped)

    def tls_started(self) -> None:
        """The handshake is done: commands again, over TLS (EHLO first, RFC 3207)."""
        if self.state is State.WAITING:
            self.tls, self.state = True, State.COMMAND

    # ---------------------------------------------------------------- AUTH

    def auth_offered(self) -> tuple[str, ...]:
        """The mechanisms EHLO offers now (before TLS: all with auth_plaintext,
        CRAM-MD5 with cram_plaintext, else none)."""
        return () if self.auth_user else self._mechanisms_now()

    def _mechanisms_now(self) -> tuple[str, ...]:
        s = self.settings
        if self.tls or s.auth_plaintext:
            return s.auth
        return tuple(m for m in s.auth if m == CRAM) if s.cram_plaintext else ()

    def _auth(self, arg: str | None) -> str | Event | None:
        """AUTH MECH [initial-response]."""
        mech, _, initial = (arg or "").partition(" ")
        refusal = self._auth_refusal(mech.upper())
        if refusal:
            return refusal
        if self._auth_failures() >= self.settings.max_auth_failures:
            self._too_many_failures()
            return None
        self._exchange = exchange = Exchange(mech.upper(), self.settings.hostname)
        return self._auth_step(exchange.start(initial.strip() or None))

    def _auth_refusal(self, mech: str) -> str | None:
        s = self.settings
        if not s.auth:
            return "502 5.5.1 AUTH not available"
        if not self.extended:
            return "503 5.5.1 Error: send EHLO first"
        if self.auth_user is not None:
            return "503 5.5.1 Error: already authenticated"
        if self.txn.mail_from is not None:
            return "503 5.5.1 Error: AUTH not allowed in a mail transaction"
        if mech not in s.auth:
            return f"504 5.5.4 Unrecognized authentication type (offered: {' '.join(s.auth)})"
        if mech not in self._mechanisms_now():
            return "538 5.7.11 Encryption required for requested authentication mechanism"
        return None

    def _auth_line(self, line: bytes | Overlong) -> Event | None:
        """A response line while in state AUTH."""
        exchange = self._exchange
        assert exchange is not None
        if line is TOO_LONG or len(line) > LINE_LIMIT:
            self.state, self._exchange = State.COMMAND, None
            self._reply("500 5.5.6 Authentication exchange line is too long")
            return None
        text = bytes(line).rstrip(b"\r\n").decode("ascii", "replace").strip()
        result = self._auth_step(exchange.line(text))
        if isinstance(result, str):
            self._reply(result)
            return None
        return result

    def _auth_step(self, step) -> str | Event | None:
        """What one step of the exchange means for the dialogue."""
        if isinstance(step, Prompt):
            self._send(f"334 {step.text}")
            self.state = State.AUTH
            return None
        assert self._exchange is not None
        mech, self._exchange = self._exchange.mech, None
        self.state = State.COMMAND
        if isinstance(step, str):
            return step
        self.state = State.WAITING
        return Authenticate(mech, step.user, step.password, step.challenge)

    def auth_done(self, event: Authenticate, user: str | None, failures: int) -> None:
        """The Authenticate's outcome: USER authenticated, or None (FAILURES:
        this client's failures now, this one counted)."""
        if self.state is not State.WAITING:
            return
        self.state = State.COMMAND
        if user is not None:
            self.auth_user = user
            log.info(maillog.auth_ok(self.relay, user, event.mech))
            self._reply("235 2.7.0 Authentication successful")
            return
        log.warning(maillog.auth_failed(self.relay, event.user, event.mech, failures))
        self._reply("535 5.7.8 Authentication credentials invalid", logged=False)
        if failures >= self.settings.max_auth_failures and self.state is not State.CLOSED:
            self._too_many_failures()

    def auth_deferred(self, event: Authenticate, reply: str, pending: int) -> None:
        """The Authenticate was not checked (PENDING checks are): REPLY, a 454."""
        if self.state is not State.WAITING:
            return
        self.state = State.COMMAND
        log.warning(maillog.auth_busy(self.relay, event.user, event.mech, pending))
        self._reply(reply, logged=False)

    def _too_many_failures(self) -> None:
        self.close_with(f"421 4.7.0 {self.settings.hostname} Error: too many failed authentications")
        self.ended = True
