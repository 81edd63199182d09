"""smtpc/opening.py - opening a client connection: connect, greeting, STARTTLS, AUTH.

Owns: ``Opening``, how we open a connection to a server: our name, the
timeouts, the TlsPolicy (tls.py), the credentials, SMTP or LMTP.
``Opening.open(host, port)`` connects within Timeout.iconnect (the first
attempt of a message) or Timeout.connect, waits for the banner, says EHLO
(HELO when EHLO gets a 5xx; LHLO in LMTP mode), upgrades with STARTTLS
when the server offers it and the policy allows it, says EHLO (LHLO)
again, authenticates with AUTH PLAIN or LOGIN, and returns the greeted
``Dialogue`` (dialogue.py); ``greet(channel, host, port)`` does the same
on a connection already open (ODMR: the ISP greets the customer after
the turn-around).  Message delivery (transaction.py), ETRN
(delivery/etrn.py) and the ODMR client (delivery/odmr.py) open their
connections with it.

Never does: DNS (``host`` is an address or a name the caller resolved),
decide whether a reply is good (core.failure does, through
``Dialogue.check``), log or repr credentials.

Invariants:
  * credentials are sent only over TLS: a server that offers AUTH but not
    STARTTLS gets TempFail (scope SITE, 4.7.0), never the password in
    clear; so does one without STARTTLS under ``TlsPolicy("encrypt")``;
  * what the server offered before STARTTLS is forgotten (core.py) and
    asked again after it (RFC 3207 4.2);
  * a failed or cancelled opening closes the connection: ``open`` returns
    a greeted dialogue or nothing;
  * credentials given but no AUTH offered: the mail goes without
    authentication, and maillog.no_auth is logged.

Failures: connect timeout -> SmtpTimeout (phase "connect"); network
unreachable/down, address gone -> TempFail scope LINK (results.lost);
refused or any other OSError -> TempFail scope SITE, 4.4.1; a bad greeting
or EHLO -> core.failure's TempFail (scope SITE); STARTTLS refused or no
usable AUTH mechanism -> 4.7.0, TLS handshake failed -> 4.7.5, AUTH
refused -> 4.7.8, all TempFail scope SITE.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from dataclasses import dataclass

from edgemail import maillog
from edgemail.config.model import Timeouts
from edgemail.errors import Scope, TempFail
from edgemail.smtpc.channel import Channel
from edgemail.smtpc.dialogue import Dialogue
from edgemail.smtpc.events import Auth, AuthLine, Ehlo, Helo, Lhlo, Response, StartTls
from edgemail.smtpc.results import LINK_ERRNOS, SmtpTimeout, Stats, lost
from edgemail.smtpc.tls import MX_TLS, Credentials, TlsPolicy

__all__ = ["Opening"]

log = logging.getLogger("edgemail.runner")


@dataclass(frozen=True)
class Opening:
    """How to open and greet a connection (see the module docstring)."""

    helo_name: str
    timeouts: Timeouts
    #: counters shared with the client that opens (connections, round trips)
    stats: Stats
    tls: TlsPolicy = MX_TLS
    credentials: Credentials | None = None
    lmtp: bool = False
    #: a message's first attempt waits Timeout.iconnect, later ones Timeout.connect
    first_attempt: bool = False

    async def open(self, host: str, port: int) -> Dialogue:
        """A connected, greeted (and, as the policy says, encrypted and authenticated) dialogue."""
        channel = await self._connect(host, port)
        self.stats.connections += 1
        return await self.greet(channel, host, port)

    async def greet(self, channel: Channel, host: str, port: int) -> Dialogue:
        """The greeted dialogue on an open CHANNEL (``open``'s, or one adopted
        after ATRN: ODMR's reversed connection, where the banner comes from
        the customer); the channel is closed if the greeting fails."""
        dialogue = Dialogue(channel, host=host, port=port, timeouts=self.timeouts,
                            stats=self.stats, lmtp=self.lmtp)
        try:
            await self._greet(dialogue)
        except BaseException:
            dialogue.abort()
            raise
        return dialogue

    async def _connect(self, host: str, port: int) -> Channel:
        limit = self.timeouts.iconnect if self.first_attempt else self.timeouts.connect
        try:
            async with asyncio.timeout(limit):
                return await Channel.connect(host, port)
        except TimeoutError:
            raise SmtpTimeout(f"connect to {host}:{port}: timed out after {limit:g}s",
                              phase="connect") from None
        except OSError as exc:
            if exc.errno in LINK_ERRNOS:
                raise lost(exc, host, "connect") from None
            raise TempFail(f"connect to {host}:{port}: {exc.strerror or exc}",
                           scope=Scope.SITE, dsn="4.4.1") from None

    async def _greet(self, d: Dialogue) -> None:
        d.check(await d.exchange([]))            # the banner
        await self._hello(d)
        caps, credentials = d.conn.capabilities, self.credentials
        if caps.starttls and self.tls.mode != "none":
            await self._starttls(d)
            await self._hello(d)
        elif self.tls.mode == "encrypt" or (credentials and caps.auth):
            raise TempFail(f"{d.host} does not offer STARTTLS; refusing to send "
                           f"{'credentials' if credentials else 'mail'} in clear",
                           scope=Scope.SITE, dsn="4.7.0")
        if credentials and d.conn.capabilities.auth:
            await self._auth(d, credentials)
        elif credentials:
            log.warning(maillog.no_auth(d.relay))

    async def _hello(self, d: Dialogue) -> None:
        if self.lmtp:
            d.check(await d.exchange([Lhlo(self.helo_name)]))
            return
        (resp,) = await d.exchange([Ehlo(self.helo_name)])
        if resp.reply.permanent:
            (resp,) = await d.exchange([Helo(self.helo_name)])
        d.check([resp])

    async def _starttls(self, d: Dialogue) -> None:
        (resp,) = await d.exchange([StartTls()])
        if resp.reply.code != 220:
            raise TempFail(f"STARTTLS refused by {d.host}: {resp.reply}", scope=Scope.SITE,
                           dsn="4.7.0", reply=str(resp.reply))
        await d.start_tls(self.tls.context())

    async def _auth(self, d: Dialogue, cred: Credentials) -> None:
        offered = d.conn.capabilities.auth
        if "PLAIN" in offered:
            (resp,) = await d.exchange([Auth("PLAIN", _b64(f"\0{cred.user}\0{cred.password}"))])
        elif "LOGIN" in offered:
            resp = await _auth_login(d, cred)
        else:
            raise TempFail(f"{d.host} offers AUTH {' '.join(sorted(offered))}; we speak "
                           "PLAIN and LOGIN only", scope=Scope.SITE, dsn="4.7.0")
        if resp.reply.code != 235:
            raise TempFail(f"authentication as {cred.user} at {d.host} failed: {resp.reply}",
                           scope=Scope.SITE, dsn="4.7.8", reply=str(resp.reply))


async def _auth_login(d: Dialogue, cred: Credentials) -> Response:
    """AUTH LOGIN: the user name and the password, each answering a 334."""
    (resp,) = await d.exchange([Auth("LOGIN")])
    for secret in (cred.user, cred.password):
        if resp.reply.code != 334:
            break
        (resp,) = await d.exchange([AuthLine(_b64(secret))])
    return resp


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")
