"""session.py - the asyncio driver of the SMTP/LMTP client, with a connection cache.

Owns: TCP connections to relays, MX hosts, the smart host and LMTP servers;
per-phase timeouts (sendmail's Timeout.connect/iconnect/initial/helo/mail/
rcpt/datainit/datablock/datafinal/rset/quit); STARTTLS; AUTH PLAIN/LOGIN;
reuse of connections (ConnectionCacheSize/ConnectionCacheTimeout).  The
dialogue itself is core.py's; this module only moves its bytes.

The runner calls::

    client = SmtpClient.from_config(cfg)
    result = await client.deliver(host, port, sender, recipients, data,
                                  params=MessageParams.from_envelope(env),
                                  first_attempt=..., tls=SMARTHOST_TLS,
                                  credentials=load_credentials(cfg.SmartHostAuthFile))
    result.recipients["a@example.net"].failure   # None = delivered
    await client.close()

Never does: DNS (mx.py resolves; ``host`` is an address or a name the
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
import base64
import errno
import itertools
import logging
import ssl
from collections import OrderedDict

from edgemail import maillog
from edgemail.clock import Clock, SystemClock
from edgemail.config import Timeouts
from edgemail.envelope import Recipient
from edgemail.errors import DeliveryFailure, LocalProtocolError, RemoteProtocolError, Scope, TempFail
from edgemail.smtpc import core
from edgemail.smtpc.core import (NEED_DATA, Auth, AuthLine, ClientConnection, Data, Ehlo,
                                 Helo, Lhlo, Message, MessageParams, Quit, Response, Rset,
                                 StartTls)
from edgemail.smtpc.results import (LINK_ERRNOS, DeliveryResult, RcptResult, SmtpTimeout,
                                    StaleConnection, Stats, as_recipient, check_envelope, lost)
from edgemail.smtpc.tls import MX_TLS, SMARTHOST_TLS, Credentials, TlsPolicy, load_credentials

__all__ = ["SmtpClient", "Session", "DeliveryResult", "RcptResult", "SmtpTimeout", "Stats",
           "TlsPolicy", "MX_TLS", "SMARTHOST_TLS", "Credentials", "load_credentials"]
_lost = lost                      # the old private name, used by tests

log = logging.getLogger("edgemail.runner")

WRITE_CHUNK = 64 * 1024


class Session:
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

    # ---------------------------------------------------------------- opening
    @classmethod
    async def open(cls, host: str, port: int, *, helo_name: str, timeouts: Timeouts,
                   stats: Stats, first_attempt: bool = False, tls: TlsPolicy = MX_TLS,
                   credentials: Credentials | None = None, lmtp: bool = False) -> "Session":
        limit = timeouts.iconnect if first_attempt else timeouts.connect
        try:
            async with asyncio.timeout(limit):
                reader, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            raise SmtpTimeout(f"connect to {host}:{port}: timed out after {limit:g}s",
                              phase="connect") from None
        except OSError as exc:
            if exc.errno in LINK_ERRNOS:
                raise lost(exc, host, "connect") from None
            raise TempFail(f"connect to {host}:{port}: {exc.strerror or exc}",
                           scope=Scope.SITE, dsn="4.4.1") from None
        stats.connections += 1
        self = cls(reader, writer, host=host, port=port, timeouts=timeouts, stats=stats, lmtp=lmtp)
        try:
            await self._greet(helo_name, tls, credentials)
        except BaseException:
            self.abort()
            raise
        return self

    async def _greet(self, helo_name: str, tls: TlsPolicy, credentials: Credentials | None) -> None:
        self._check(await self.exchange([]))            # the banner
        await self._hello(helo_name)
        caps = self.conn.capabilities
        if caps.starttls and tls.mode != "none":
            await self._starttls(tls)
            await self._hello(helo_name)
        elif tls.mode == "encrypt" or (credentials and caps.auth):
            raise TempFail(f"{self.host} does not offer STARTTLS; refusing to send "
                           f"{'credentials' if credentials else 'mail'} in clear",
                           scope=Scope.SITE, dsn="4.7.0")
        if credentials and self.conn.capabilities.auth:
            await self._auth(credentials)
        elif credentials:
            log.warning(maillog.no_auth(self.relay))

    async def _hello(self, name: str) -> None:
        if self.conn.lmtp:
            self._check(await self.exchange([Lhlo(name)]))
            return
        (resp,) = await self.exchange([Ehlo(name)])
        if resp.reply.permanent:
            resp = (await self.exchange([Helo(name)]))[0]
        self._check([resp])

    async def _starttls(self, tls: TlsPolicy) -> None:
        (resp,) = await self.exchange([StartTls()])
        if resp.reply.code != 220:
            raise TempFail(f"STARTTLS refused by {self.host}: {resp.reply}", scope=Scope.SITE,
                           dsn="4.7.0", reply=str(resp.reply))
        try:
            async with asyncio.timeout(self.timeouts.misc):
                await self.writer.start_tls(tls.context(), server_hostname=self.host)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            self.broken = True
            raise TempFail(f"TLS handshake with {self.host} failed: {exc}", scope=Scope.SITE,
                           dsn="4.7.5") from None
        self.tls = True

    async def _auth(self, cred: Credentials) -> None:
        offered = self.conn.capabilities.auth
        if "PLAIN" in offered:
            token = _b64(f"\0{cred.user}\0{cred.password}")
            (resp,) = await self.exchange([Auth("PLAIN", token)])
        elif "LOGIN" in offered:
            (resp,) = await self.exchange([Auth("LOGIN")])
            for secret in (cred.user, cred.password):
                if resp.reply.code != 334:
                    break
                (resp,) = await self.exchange([AuthLine(_b64(secret))])
        else:
            raise TempFail(f"{self.host} offers AUTH {' '.join(sorted(offered))}; we speak "
                           "PLAIN and LOGIN only", scope=Scope.SITE, dsn="4.7.0")
        if resp.reply.code != 235:
            raise TempFail(f"authentication as {cred.user} at {self.host} failed: {resp.reply}",
                           scope=Scope.SITE, dsn="4.7.8", reply=str(resp.reply))

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
            ev = self.conn.next_event()
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

    # ----------------------------------------------------------- transaction
    async def transact(self, sender: str, recipients: list, data: bytes,
                       params: MessageParams, *, probe: bool = False) -> DeliveryResult:
        rcpts = [as_recipient(r) for r in recipients]
        caps = self.conn.capabilities
        mail = core.mail_command(caps, sender, data, params, tuple(rcpts))
        core.encode_data(data)                     # line too long -> PermFail before MAIL
        cmds = [mail, *(core.rcpt_command(caps, r) for r in rcpts)]
        for c in cmds:                              # refuse CR/LF before any byte goes out
            core._command_line(c)
        if caps.pipelining:
            replies = await self._pipelined(cmds, probe)
        else:
            replies = await self._lockstep(cmds, probe)
        return await self._finish(rcpts, cmds, replies, data)

    async def _pipelined(self, cmds: list, probe: bool) -> list[Response]:
        batch = ([Rset()] if probe else []) + cmds + [Data()]
        try:
            replies = await self.exchange(batch)
        except DeliveryFailure:
            # dead before MAIL was answered: the cached connection had gone stale
            if probe and isinstance(self.conn.awaiting, (Rset, core.Mail)):
                raise StaleConnection() from None
            raise
        if probe:
            rset, replies = replies[0], replies[1:]
            if not rset.reply.positive:
                raise StaleConnection()
        return replies

    async def _lockstep(self, cmds: list, probe: bool) -> list[Response]:
        if probe:
            try:
                (r,) = await self.exchange([Rset()])
            except DeliveryFailure:
                raise StaleConnection() from None
            if not r.reply.positive:
                raise StaleConnection()
        replies = [(await self.exchange([cmds[0]]))[0]]
        if not replies[0].reply.positive:
            return replies
        for c in cmds[1:]:
            replies += await self.exchange([c])
        if self.conn.accepted_recipients:
            replies += await self.exchange([Data()])
        return replies

    async def _finish(self, rcpts: list[Recipient], cmds: list, replies: list[Response],
                      data: bytes) -> DeliveryResult:
        mail_fail = core.failure(replies[0].command, replies[0].reply, host=self.host)
        if mail_fail is not None:
            if self.conn._in_data:      # broken server said 354 anyway: do not send
                self.broken = True
            raise mail_fail
        results: dict[str, RcptResult] = {}
        for r, resp in zip(rcpts, replies[1:len(cmds)]):
            results[r.address] = RcptResult(r.address, resp.reply,
                                            core.failure(resp.command, resp.reply, host=self.host))
        accepted = [a for a, res in results.items() if res.ok]
        data_resp = replies[len(cmds)] if len(replies) > len(cmds) else None
        if not accepted:
            if data_resp is not None and data_resp.reply.code == 354:
                self.broken = True
            return DeliveryResult(self.relay, results)
        try:
            final = await self._send_data(data_resp, data)
        except DeliveryFailure as exc:
            return DeliveryResult(self.relay, {**results, **{
                a: RcptResult(a, None, exc) for a in accepted}}, failure=exc)
        return self._final(results, accepted, final)

    async def _send_data(self, data_resp: Response | None, data: bytes) -> list[Response]:
        if data_resp is None:
            raise TempFail("no reply to DATA", scope=Scope.MESSAGE)
        fail = core.failure(data_resp.command, data_resp.reply, host=self.host)
        if fail is not None:
            raise fail
        if data_resp.reply.code != 354:
            raise TempFail(f"DATA answered {data_resp.reply}, not 354", scope=Scope.MESSAGE)
        return await self.exchange([Message(data)])

    def _final(self, results: dict, accepted: list[str], final: list[Response]) -> DeliveryResult:
        if self.conn.lmtp:
            for resp in final:
                results[resp.recipient] = RcptResult(resp.recipient, resp.reply, core.failure(
                    resp.command, resp.reply, host=self.host))
            return DeliveryResult(self.relay, results)
        (resp,) = final
        fail = core.failure(resp.command, resp.reply, host=self.host)
        for a in accepted:
            results[a] = RcptResult(a, resp.reply, fail)
        return DeliveryResult(self.relay, results, failure=fail, reply=resp.reply)

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


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


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
        reused = session is not None
        try:
            if session is not None:
                try:
                    result = await session.transact(sender, recipients, data, params, probe=True)
                except StaleConnection:
                    session.abort()
                    session, reused = None, False
            if session is None:
                session = await Session.open(
                    host, port, helo_name=self.helo_name, timeouts=self.timeouts,
                    stats=self.stats, first_attempt=first_attempt, tls=tls,
                    credentials=credentials, lmtp=lmtp)
                result = await session.transact(sender, recipients, data, params)
        except BaseException:
            # a failed or cancelled transaction leaves the dialogue in an
            # unknown state: never hand that session out again
            if session is not None:
                session.abort()
            raise
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
