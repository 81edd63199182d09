"""session.py - the SMTP/LMTP client the runner uses: deliver a message, with a connection cache.

Owns: ``SmtpClient``: ``deliver`` (one message to one server) and the
cache of idle connections (ConnectionCacheSize/ConnectionCacheTimeout),
keyed by host, port, SMTP or LMTP, TLS policy and AUTH user.  It composes
the parts, each a class with its own state:

    Opening       (opening.py)      how to connect and greet: our name, the
                                    timeouts, TLS policy, credentials
    Dialogue      (dialogue.py)     one open connection: its Channel
                                    (channel.py) and the sans-IO core
    Transaction   (transaction.py)  one message: MAIL, RCPT, DATA, results

A new connection is ``Opening(...).open(host, port)``; a message is
``Transaction(...).run(dialogue)``; an idle dialogue waits in the cache.

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
  * Nothing a server sent before the TLS handshake finished is read as a
    reply: bytes with or after its 220 to STARTTLS drop the session,
    TempFail SITE 4.5.0 (dialogue.py; issue 16 §3).
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

import dataclasses
import itertools
from collections import OrderedDict
from collections.abc import Sequence

from edgemail.clock import Clock, SystemClock
from edgemail.config.model import Timeouts
from edgemail.envelope import Recipient
from edgemail.smtpc.core import MessageParams
from edgemail.smtpc.dialogue import Dialogue
from edgemail.smtpc.opening import Opening
from edgemail.smtpc.results import (
    DeliveryResult,
    RcptResult,
    SmtpTimeout,
    StaleConnection,
    Stats,
    check_envelope,
)
from edgemail.smtpc.tls import (
    MX_TLS,
    SMARTHOST_TLS,
    Credentials,
    TlsPolicy,
    load_credentials,
)
from edgemail.smtpc.transaction import Transaction

__all__ = ["SmtpClient", "DeliveryResult", "RcptResult", "SmtpTimeout", "Stats",
           "TlsPolicy", "MX_TLS", "SMARTHOST_TLS", "Credentials", "load_credentials"]

#: a cached connection's key: (host, port, lmtp, TLS policy, AUTH user)
CacheKey = tuple[str, int, bool, TlsPolicy, "str | None"]


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
        #: (key, serial) -> an idle dialogue, oldest first: several per key
        #: when deliveries to one host ran side by side
        self._cache: OrderedDict[tuple[CacheKey, int], Dialogue] = OrderedDict()
        self._serial = itertools.count()

    @classmethod
    def from_config(cls, cfg, clock: Clock | None = None) -> "SmtpClient":
        return cls(helo_name=cfg.hostname, timeouts=cfg.Timeout, cache_size=cfg.ConnectionCacheSize,
                   cache_timeout=cfg.ConnectionCacheTimeout, clock=clock)

    async def deliver(self, host: str, port: int, sender: str, recipients: Sequence[Recipient | str],
                      data: bytes, *, params: MessageParams = MessageParams(),
                      first_attempt: bool = False, tls: TlsPolicy = MX_TLS,
                      credentials: Credentials | None = None, lmtp: bool = False) -> DeliveryResult:
        """Send one message to one server; see the module docstring for results."""
        check_envelope(sender, recipients)         # before any connection or byte
        message = Transaction(sender, recipients, data, params)
        key: CacheKey = (host, port, lmtp, tls, credentials.user if credentials else None)
        dialogue = await self._take(key)
        result = None if dialogue is None else await _reuse(dialogue, message)
        if dialogue is not None and result is not None:
            self.stats.reused += 1
            result = dataclasses.replace(result, reused=True)
        else:
            opening = Opening(self.helo_name, self.timeouts, self.stats, tls=tls,
                              credentials=credentials, lmtp=lmtp, first_attempt=first_attempt)
            dialogue = await opening.open(host, port)
            result = await _transact(dialogue, message)
        await self._put(key, dialogue)
        return result

    async def _take(self, key: CacheKey) -> Dialogue | None:
        slot = next((k for k in self._cache if k[0] == key), None)
        if slot is None:
            return None
        dialogue = self._cache.pop(slot)
        if self.clock.monotonic() - dialogue.last_used > self.cache_timeout:
            await dialogue.quit()
            return None
        return dialogue

    async def _put(self, key: CacheKey, dialogue: Dialogue) -> None:
        if not dialogue.usable or self.cache_size <= 0:
            await dialogue.quit()
            return
        dialogue.last_used = self.clock.monotonic()
        self._cache[(key, next(self._serial))] = dialogue
        while len(self._cache) > self.cache_size:
            _, old = self._cache.popitem(last=False)
            await old.quit()

    async def close(self) -> None:
        """QUIT every cached connection."""
        while self._cache:
            _, dialogue = self._cache.popitem(last=False)
            await dialogue.quit()


async def _reuse(dialogue: Dialogue, message: Transaction) -> DeliveryResult | None:
    """The message over a cached dialogue; None when the RSET probe found it stale."""
    try:
        return await _transact(dialogue, message, probe=True)
    except StaleConnection:
        return None


async def _transact(dialogue: Dialogue, message: Transaction, *, probe: bool = False) -> DeliveryResult:
    try:
        return await message.run(dialogue, probe=probe)
    except BaseException:
        # a failed or cancelled transaction leaves the dialogue in an
        # unknown state: never hand that connection out again
        dialogue.abort()
        raise
