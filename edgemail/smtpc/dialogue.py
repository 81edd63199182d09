"""smtpc/dialogue.py - one open client connection and its dialogue: the core's bytes moved.

Owns: ``Dialogue``, a Channel (channel.py) and the sans-IO dialogue
(core.ClientConnection) of one connection: ``exchange`` writes commands
and reads their replies, each wait bounded by the Timeout.* of the
command whose reply is due (sendmail's Timeout.initial/helo/mail/rcpt/
datainit/datablock/datafinal/rset/quit/misc); ``start_tls`` upgrades the
connection after a 220 to STARTTLS; ``check`` turns the first negative
reply into its failure; ``quit`` and ``abort`` end it; ``turn_around``
gives the connection up after a 250 to ATRN (ODMR: an Opening with
credentials, ``exchange([Atrn(domains)])``, ``turn_around()``, and our
SMTP server takes the transport and the bytes that came after the 250).  What a
connection is for is its users' business: opening.py greets on it,
transaction.py sends a message over it, delivery/etrn.py asks for ETRN.

Never does: decide what to say (its callers) or what a reply means
(core.py), DNS, logging.

Invariants:
  * one ``exchange`` is one round trip: every command of a pipelined group
    is written before the first reply is read;
  * a timeout, a lost connection, a reply that is not SMTP or a 421
    marks the dialogue ``broken``; a broken dialogue is never ``usable``
    again (the connection cache drops it);
  * nothing the server sent before the TLS handshake finished is read as
    a reply (issue 16 §3, the CVE-2011-0411 class: response injection):
    bytes that came with or after the 220 to STARTTLS drop the session
    as a protocol error, before any handshake.  Dropped, not discarded: no
    conforming server sends them, so they are an attacker's on the path
    or a broken server's, and the log and the DSN say so instead of the
    session going on as if nothing happened; after the handshake the core
    lets nothing but EHLO (LHLO, HELO) go first, and waits for its reply.

Failures: ``SmtpTimeout`` (phase = the Timeout.* that ran out); a lost
connection -> TempFail, scope LINK when our side of the network went away,
SITE otherwise (results.lost); a reply that is not SMTP -> TempFail SITE
4.5.0; a 421 -> core.failure's TempFail SITE; a TLS handshake that fails
-> TempFail SITE 4.7.5; bytes before the handshake -> TempFail SITE 4.5.0;
LocalProtocolError for what the core refuses to send.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence

from edgemail.config.model import Timeouts
from edgemail.errors import (
    DeliveryFailure,
    LocalProtocolError,
    RemoteProtocolError,
    Scope,
    TempFail,
)
from edgemail.smtpc import core
from edgemail.smtpc.channel import Channel
from edgemail.smtpc.core import ClientConnection
from edgemail.smtpc.events import Command, Message, Quit, Response
from edgemail.smtpc.results import SmtpTimeout, Stats, lost

__all__ = ["Dialogue", "WRITE_CHUNK"]

WRITE_CHUNK = 64 * 1024


class Dialogue:
    """One open connection and its dialogue (see the module docstring)."""

    def __init__(self, channel: Channel, *, host: str, port: int, timeouts: Timeouts,
                 stats: Stats, lmtp: bool = False) -> None:
        self.channel = channel
        self.host, self.port = host, port
        self.relay = f"{host}:{port}"
        self.timeouts = timeouts
        self.stats = stats
        self.conn = ClientConnection(lmtp=lmtp)
        self.broken = False
        self.tls = False
        #: when it was last put back into the connection cache (monotonic)
        self.last_used = 0.0

    # -------------------------------------------------------------- exchange
    async def exchange(self, commands: Sequence[Command]) -> list[Response]:
        """Write the commands in one go, then read their replies (one round trip).

        No commands: wait for one reply (the greeting).
        """
        out = b"".join(self.conn.send(c) for c in commands)
        if out:
            await self._write(out, "datablock" if any(isinstance(c, Message) for c in commands)
                              else "misc")
        self.stats.round_trips += 1
        return await self._collect(self._expected(commands))

    def check(self, responses: list[Response]) -> None:
        """Raise the failure of the first negative reply, if any."""
        for r in responses:
            fail = core.failure(r.command, r.reply, host=self.host)
            if fail is not None:
                raise fail

    def _expected(self, commands: Sequence[Command]) -> int:
        if not commands:
            return 1
        n = len(commands)
        if self.conn.lmtp and isinstance(commands[-1], Message):
            n += len(self.conn.accepted_recipients) - 1
        return n

    async def _write(self, data: bytes, phase: str) -> None:
        try:
            for i in range(0, len(data), WRITE_CHUNK):
                async with asyncio.timeout(getattr(self.timeouts, phase)):
                    await self.channel.write(data[i:i + WRITE_CHUNK])
        except TimeoutError:
            self.broken = True
            raise SmtpTimeout(f"{self.host}: no progress writing ({phase})", phase=phase) from None
        except OSError as exc:
            self.broken = True
            raise lost(exc, self.host, phase) from None

    async def _collect(self, want: int) -> list[Response]:
        got: list[Response] = []
        while len(got) < want:
            ev = self._next_response()
            if ev is None:
                await self._read()
                continue
            got.append(ev)
            if ev.reply.code == 421:          # closing: nothing more will come
                self.broken = True
                raise core.failure(ev.command, ev.reply, host=self.host) or TempFail(str(ev.reply))
        return got

    def _next_response(self) -> Response | None:
        """The next reply's event, or None when more bytes must be read."""
        try:
            ev = self.conn.next_event()
        except RemoteProtocolError as exc:
            raise self._protocol_broken(exc) from None
        return ev if isinstance(ev, Response) else None

    async def _read(self) -> None:
        awaiting = self.conn.awaiting
        phase = awaiting.phase if awaiting is not None else "misc"
        try:
            async with asyncio.timeout(getattr(self.timeouts, phase)):
                data = await self.channel.read()
        except TimeoutError:
            self.broken = True
            raise SmtpTimeout(f"{self.host}: no reply within Timeout.{phase} "
                              f"({getattr(self.timeouts, phase):g}s)", phase=phase) from None
        except OSError as exc:
            self.broken = True
            raise lost(exc, self.host, phase) from None
        if not data:
            self.broken = True
            raise lost(None, self.host, phase)
        self.conn.receive_data(data)

    def _protocol_broken(self, exc: RemoteProtocolError) -> TempFail:
        self.broken = True
        return TempFail(f"{self.host} broke the protocol: {exc}", scope=Scope.SITE, dsn="4.5.0")

    # ------------------------------------------------------------------- TLS
    async def start_tls(self, context: ssl.SSLContext) -> None:
        """The TLS handshake, after the server's 220 to STARTTLS.

        Whatever came after the 220 and before the handshake (the core's
        buffer, or the channel's since the last read) drops the session
        (TempFail SITE 4.5.0): no byte from before TLS is read as a reply.
        """
        early = self.channel.take()
        try:
            if early:
                self.conn.receive_data(early)     # the core refuses them
        except RemoteProtocolError as exc:
            raise self._protocol_broken(exc) from None
        try:
            async with asyncio.timeout(self.timeouts.misc):
                await self.channel.start_tls(context, server_hostname=self.host)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self.broken = True
            raise TempFail(f"TLS handshake with {self.host} failed: {exc}", scope=Scope.SITE,
                           dsn="4.7.5") from None
        self.conn.tls_established()
        self.tls = True

    # ------------------------------------------------------- ODMR turn-around
    def turn_around(self) -> tuple[asyncio.Transport, bytes]:
        """After a 250 to ATRN (RFC 2645): the connection for our server side,
        reading paused, and every byte received after the 250, in order."""
        early = self.conn.handover()          # LocalProtocolError unless ATRN got its 250
        transport, unread = self.channel.detach()
        self.broken = True                    # this dialogue is over
        return transport, early + unread

    # ---------------------------------------------------------------- ending
    @property
    def usable(self) -> bool:
        return not (self.broken or self.conn.closed)

    async def quit(self) -> None:
        """QUIT if the dialogue is still in step, then close."""
        if self.usable:
            try:
                await self.exchange([Quit()])
            except (DeliveryFailure, LocalProtocolError):
                pass
        self.abort()

    def abort(self) -> None:
        """Close without a word; the dialogue is never used again."""
        self.broken = True
        self.channel.close()
