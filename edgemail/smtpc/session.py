"""session.py - the asyncio driver of the SMTP/LMTP client, with a connection cache.

Owns: TCP connections to relays, MX hosts, the smart host and LMTP servers;
per-phase timeouts (sendmail's Timeout.connect/iconnect/initial/helo/mail/
rcpt/datainit/datablock/datafinal/rset/quit); STARTTLS; AUTH PLAIN/LOGIN;
reuse of connections (ConnectionCacheSize/ConnectionCacheTimeout).  The
dialogue itself is core.py's; this module only moves its bytes.

Here: ``Session``'s byte moving (``exchange``: write the commands, read
their replies, each wait bounded by the Timeout.* of the command whose
reply is due; a timeout, a lost connection or a broken protocol marks the
session ``broken``), its end (``quit``, ``abort``), and ``SmtpClient``
(the connection cache and ``deliver``).  Session's other two parts are
mixins: opening.py (connect, greeting, STARTTLS, AUTH) and transaction.py
(MAIL, RCPT, DATA, the message, the results).

The runner calls::

    client = SmtpClient.from_config(cfg)
    result = await client.deliver(host, port, sender, recipients, data,
                                  params=MessageParams.from_envelope(env),
                                  first_attempt=..., tls=SMARTHOST_TLS,
                                  credentials=load_credentials(cfg.SmartHostAuthFile))
    result.recipients["a@example.net"].failure   # None = delivered
    await client.close()

Never does: DNS (delivery/mx.py resolves; ``host`` is an address or a name the
runner resolved), queue updates, logging of bodies or credentials.

Decisions (TLS policy and credentials: tls.py; results and scoping: results.py):
  * Credentials are sent only over TLS: a server that offers AUTH but no
    STARTTLS gets TempFail (scope SITE, 4.7.0), never the password in clear.
  * Scopes: connect refused / connect timeout / greeting or EHLO failure /
    421 anywhere / TLS or AUTH failure -> SITE; network unreachable, network
    down, address gone (the link's interface vanished) -> LINK; 4xx/5xx at
    MAIL, DATA or the final dot -> MESSAGE; 4xx/5xx at RCPT -> RECIPIENT;
    a timeout or a closed connection mid-dialogue -> SITE.
  * A cached connection is probed with RSET before reuse; with PIPELINING
    the RSET rides in the same round trip as MAIL/RCPT/DATA.  If the probe
    finds the connection dead, it is dropped and a new one opened (nothing
    was accepted on the old one, so nothing can be duplicated).

Results: ``deliver`` raises DeliveryFailure when the whole message failed
before any recipient was answered (connect, greeting, TLS, AUTH, SIZE,
8BITMIME, line too long, MAIL refused); once RCPT replies are in it returns
a ``DeliveryResult`` (results.py), a later failure (DATA refused, timeout,
lost link after the final dot: the RFC 1047 window) set on every accepted
recipient.  ``SmtpTimeout`` for timeouts; LocalProtocolError for addresses
with CR/LF/controls (before connecting: no byte is sent).

The names of tls.py and results.py are re-exported here (``from
edgemail.smtpc.session import TlsPolicy`` keeps working).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict

from edgemail.clock import Clock, SystemClock
from edgemail.config.model import Timeouts
from edgemail.errors import (
    DeliveryFailure,
    LocalProtocolError,
    RemoteProtocolError,
    Scope,
    TempFail,
)
from edgemail.smtpc import core
from edgemail.smtpc.core import ClientConnection, MessageParams
from edgemail.smtpc.events import NEED_DATA, Message, Quit, Response
from edgemail.smtpc.opening import Opening
from edgemail.smtpc.results import (
    DeliveryResult,
    RcptResult,
    SmtpTimeout,
    StaleConnection,
    Stats,
    check_envelope,
    lost,
)
from edgemail.smtpc.tls import (
    MX_TLS,
    SMARTHOST_TLS,
    Credentials,
    TlsPolicy,
    load_credentials,
)
from edgemail.smtpc.transaction import Transaction

__all__ = ["SmtpClient", "Session", "DeliveryResult", "RcptResult", "SmtpTimeout", "Stats",
           "TlsPolicy", "MX_TLS", "SMARTHOST_TLS", "Credentials", "load_credentials"]
_lost = lost                      # the old private name, used by tests

WRITE_CHUNK = 64 * 1024


class Session(Opening, Transaction):
    """One open connection and its dialogue."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 host: str, port: int, timeouts: Timeouts, stats: Stats, lmtp: bool) -> None:
        self.reader, self.writer = reader, writer
        self.host, self.port = host, port
        self.relay = f"{host}:{port}"
        self.timeouts = timeouts
        self.stats = stats
        self.conn = ClientConnection(lmtp=lmtp)
        self.broken = False
        self.tls = False
        self.last_used = 0.0

    # -------------------------------------------------------------- exchange
    async def exchange(self, commands: list, *, expect: int | None = None) -> list[Response]:
        """Write the commands in one go, then read their replies (one round trip)."""
        out = b"".join(self.conn.send(c) for c in commands)
        if out:
            await self._write(out, "datablock" if any(isinstance(c, Message) for c in commands)
                              else "misc")
        self.stats.round_trips += 1
        want = expect if expect is not None else self._expected(commands)
        return await self._collect(want)

    def _expected(self, commands: list) -> int:
        if not commands:
            return 1
        n = len(commands)
        if self.conn.lmtp and isinstance(commands[-1], Message):
            n += len(self.conn.accepted_recipients) - 1
        return n

    async def _write(self, data: bytes, phase: str) -> None:
        try:
            for i in range(0, len(data), WRITE_CHUNK):
                self.writer.write(data[i:i + WRITE_CHUNK])
                async with asyncio.timeout(getattr(self.timeouts, phase)):
                    await self.writer.drain()
        except TimeoutError:
            self.broken = True
            raise SmtpTimeout(f"{self.host}: no progress writing ({phase})", phase=phase) from None
        except OSError as exc:
            self.broken = True
            raise lost(exc, self.host, phase) from None

    async def _collect(self, want: int) -> list[Response]:
        got: list[Response] = []
        while len(got) < want:
            try:
                ev = self.conn.next_event()
            except RemoteProtocolError as exc:
                self.broken = True
                raise TempFail(f"{self.host} broke the protocol: {exc}", scope=Scope.SITE,
                               dsn="4.5.0") from None
            if ev is NEED_DATA:
                await self._read()
                continue
            got.append(ev)
            if ev.reply.code == 421:          # closing: nothing more will come
                self.broken = True
                raise core.failure(ev.command, ev.reply, host=self.host)
        return got

    async def _read(self) -> None:
        awaiting = self.conn.awaiting
        phase = awaiting.phase if awaiting is not None else "misc"
        try:
            async with asyncio.timeout(getattr(self.timeouts, phase)):
                data = await self.reader.read(65536)
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
        try:
            self.conn.receive_data(data)
        except RemoteProtocolError as exc:
            self.broken = True
            raise TempFail(f"{self.host} broke the protocol: {exc}", scope=Scope.SITE,
                           dsn="4.5.0") from None

    def _check(self, responses: list[Response]) -> None:
        for r in responses:
            fail = core.failure(r.command, r.reply, host=self.host)
            if fail is not None:
                raise fail

    # ---------------------------------------------------------------- ending
    @property
    def usable(self) -> bool:
        return not (self.broken or self.conn.closed)

    async def quit(self) -> None:
        if self.usable:
            try:
                await self.exchange([Quit()])
            except (DeliveryFailure, LocalProtocolError):
                pass
        self.abort()

    def abort(self) -> None:
        self.broken = True
        self.writer.close()


class SmtpClient:
    """Delivers messages, reusing connections per (host, port, mode)."""

    def __init__(self, *, helo_name: str, timeouts: Timeouts | None = None,
                 cache_size: int = 2, cache_timeout: float = 300.0,
                 clock: Clock | None = None) -> None:
        self.helo_name = helo_name
        self.timeouts = timeouts or Timeouts()
        self.cache_size = cache_size
        self.cache_timeout = cache_timeout
        self.clock = clock or SystemClock()
        self.stats = Stats()
        #: (key, serial) -> an idle session, oldest first: several per key
        #: when deliveries to one host ran side by side
        self._cache: OrderedDict[tuple[tuple, int], Session] = OrderedDict()
        self._serial = itertools.count()

    @classmethod
    def from_config(cls, cfg, clock: Clock | None = None) -> "SmtpClient":
        return cls(helo_name=cfg.hostname, timeouts=cfg.Timeout, cache_size=cfg.ConnectionCacheSize,
                   cache_timeout=cfg.ConnectionCacheTimeout, clock=clock)

    async def deliver(self, host: str, port: int, sender: str, recipients: list,
                      data: bytes, *, params: MessageParams = MessageParams(),
                      first_attempt: bool = False, tls: TlsPolicy = MX_TLS,
                      credentials: Credentials | None = None, lmtp: bool = False) -> DeliveryResult:
        """Send one message to one server; see the module docstring for results."""
        check_envelope(sender, recipients)         # before any connection or byte
        key = (host, port, lmtp, tls, credentials.user if credentials else None)
        session = await self._take(key)
        result = None if session is None else await _reuse(session, sender, recipients, data, params)
        reused = result is not None
        if result is None:
            session = await Session.open(
                host, port, helo_name=self.helo_name, timeouts=self.timeouts,
                stats=self.stats, first_attempt=first_attempt, tls=tls,
                credentials=credentials, lmtp=lmtp)
            result = await _transact(session, sender, recipients, data, params)
        await self._put(key, session)
        if reused:
            self.stats.reused += 1
            result = DeliveryResult(result.relay, result.recipients, result.failure, True, result.reply)
        return result

    async def _take(self, key: tuple) -> Session | None:
        slot = next((k for k in self._cache if k[0] == key), None)
        if slot is None:
            return None
        session = self._cache.pop(slot)
        if self.clock.monotonic() - session.last_used > self.cache_timeout:
            await session.quit()
            return None
        return session

    async def _put(self, key: tuple, session: Session) -> None:
        if not session.usable or self.cache_size <= 0:
            await session.quit()
            return
        session.last_used = self.clock.monotonic()
        self._cache[(key, next(self._serial))] = session
        while len(self._cache) > self.cache_size:
            _, old = self._cache.popitem(last=False)
            await old.quit()

    async def close(self) -> None:
        """QUIT every cached connection."""
        while self._cache:
            _, session = self._cache.popitem(last=False)
            await session.quit()


async def _reuse(session: Session, *args) -> DeliveryResult | None:
    """The transaction on a cached session; None when the RSET probe found it stale."""
    try:
        return await _transact(session, *args, probe=True)
    except StaleConnection:
        return None


async def _transact(session: Session, *args, probe: bool = False) -> DeliveryResult:
    try:
        return await session.transact(*args, probe=probe)
    except BaseException:
        # a failed or cancelled transaction leaves the dialogue in an
        # unknown state: never hand that session out again
        session.abort()
        raise
