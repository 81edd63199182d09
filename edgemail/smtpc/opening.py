"""smtpc/opening.py - opening a client connection: connect, greeting, STARTTLS, AUTH.

Owns: the part of a Session (session.py) before the first MAIL, as the
mixin ``Opening``: ``Session.open`` connects within Timeout.iconnect (the
first attempt of a message) or Timeout.connect, waits for the banner, says
EHLO (HELO when EHLO gets a 5xx; LHLO in LMTP mode), upgrades with
STARTTLS when the server offers it and the TlsPolicy (tls.py) allows it,
says EHLO (LHLO) again, and authenticates with AUTH PLAIN or LOGIN.

Never does: DNS (``host`` is an address or a name the runner resolved),
decide whether a reply is good (core.failure does, through ``_check``),
log or repr credentials.

Invariants:
  * credentials are sent only over TLS: a server that offers AUTH but not
    STARTTLS gets TempFail (scope SITE, 4.7.0), never the password in
    clear; so does one without STARTTLS under ``TlsPolicy("encrypt")``;
  * what the server offered before STARTTLS is forgotten (core.py) and
    asked again after it (RFC 3207 4.2);
  * a failed or cancelled opening closes the connection: ``open`` returns
    a greeted session or nothing;
  * credentials given but no AUTH offered: the mail goes without
    authentication, and maillog.no_auth is logged.

Failures: connect timeout -> SmtpTimeout (phase "connect"); network
unreachable/down, address gone -> TempFail scope LINK (results.lost);
refused or any other OSError -> TempFail scope SITE, 4.4.1; a bad greeting
or EHLO -> core.failure's TempFail (scope SITE); STARTTLS refused or no
usable AUTH mechanism -> 4.7.0, TLS handshake failed -> 4.7.5, AUTH
refused -> 4.7.8, all TempFail scope SITE.

The session supplies: ``cls(reader, writer, host=, port=, timeouts=,
stats=, lmtp=)``, ``exchange``, ``_check``, ``abort``, ``conn``,
``writer``, ``host``, ``relay``, ``timeouts``, ``broken``, ``tls``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from typing import TYPE_CHECKING

from edgemail import maillog
from edgemail.config.model import Timeouts
from edgemail.errors import Scope, TempFail
from edgemail.smtpc.events import Auth, AuthLine, Ehlo, Helo, Lhlo, StartTls
from edgemail.smtpc.results import LINK_ERRNOS, SmtpTimeout, Stats, lost
from edgemail.smtpc.tls import MX_TLS, Credentials, TlsPolicy

if TYPE_CHECKING:
    from edgemail.smtpc.session import Session

__all__ = ["Opening"]

log = logging.getLogger("edgemail.runner")


class Opening:
    """Mixin for Session: connect and greet (see the module docstring)."""

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


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")

