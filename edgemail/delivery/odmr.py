"""delivery/odmr.py - ask the ISP for our mail over our own connection (RFC 2645 ODMR, the customer's side).

NAME
    odmr - odmr(client, domains, helo_name=..., timeouts=..., accept=...) -> [EtrnResult]

DESCRIPTION
    For a dial-up customer with a dynamic address the ISP cannot connect
    back (ETRN); with ODMR it pushes the held mail over the connection we
    open.  One session on the smtpc client: ``smtpc.opening.Opening``
    connects to ``[link] odmr``'s host (port 366 by default), greets, and
    always upgrades with STARTTLS (``TlsPolicy("encrypt")``: the
    certificate checked against ``cafile`` or the system CAs unless
    ``tls_verify = false``) before AUTH with ``user`` and the password in
    ``secret_file``; a server without STARTTLS never gets the password.
    Then ``ATRN domain[,domain...]``.  RFC 2645's replies:
        250           the connection turns around: ``accept(transport,
                      early, relay)`` serves it as our SMTP server (the
                      listener's normal accept path: durability, hygiene,
                      Received:) and returns when the ISP has closed it,
                      with the number of messages committed
        453           no mail waiting (a success: nothing to do)
        450 451 530   refused / not now / not authenticated
        502 (500)     the server has no ATRN
    Every domain gets a result (one ATRN asks for all of them; its reply is
    each one's); a session that breaks before the reply (connect, TLS,
    AUTH, a timeout) gives code 0 with the reason.  Every wait before the
    turn-around is bounded by ``timeout``; after it, the session's own
    Timeout.command bounds each wait for the ISP.

LOG LINES (logger "edgemail.odmr"; formats maillog.odmr_result, maillog.odmr_push_ended)
    odmr: relay=HOST:PORT, domains=LIST, reply=CODE TEXT, result=ok|nomail|refused|error
    odmr: relay=HOST:PORT, push=ended, messages=N, reason=closed

NEVER
    Sends the password without TLS, logs it, retries, or raises for a
    refusal: the reply is the result.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from edgemail import maillog
from edgemail.config.model import OdmrClient, Timeouts
from edgemail.delivery.etrn import EtrnResult
from edgemail.errors import ConfigError, DeliveryFailure
from edgemail.smtpc.dialogue import Dialogue
from edgemail.smtpc.events import Atrn
from edgemail.smtpc.opening import Opening
from edgemail.smtpc.results import Stats
from edgemail.smtpc.tls import Credentials, TlsPolicy, load_secret

__all__ = ["odmr", "Accept", "outcome"]

log = logging.getLogger("edgemail.odmr")

#: serve the turned connection: (transport, bytes after the 250, relay) -> messages committed
Accept = Callable[[object, bytes, str], Awaitable[int]]


def outcome(code: int) -> str:
    """"ok" (250), "nomail" (453), "refused" (450, 451, 530, 5xx) or "error" (0: no reply)."""
    return {250: "ok", 453: "nomail", 0: "error"}.get(code, "refused")


async def odmr(client: OdmrClient, domains: Sequence[str], *, helo_name: str, timeouts: Timeouts,
               accept: Accept) -> list[EtrnResult]:
    """Connect, STARTTLS, AUTH, ATRN; after a 250, serve the push until it is over."""
    relay = f"{client.host}:{client.port}"
    try:
        opening = _opening(client, helo_name, timeouts)
        dialogue = await opening.open(client.host, client.port)
    except (ConfigError, DeliveryFailure) as exc:
        return _results(relay, domains, 0, str(exc) or type(exc).__name__)
    try:
        (resp,) = await dialogue.exchange([Atrn(tuple(domains))])
    except DeliveryFailure as exc:
        dialogue.abort()
        return _results(relay, domains, 0, str(exc) or type(exc).__name__)
    results = _results(relay, domains, resp.reply.code, resp.reply.text)
    if resp.reply.code == 250:
        await _serve(dialogue, relay, accept)
    else:
        await dialogue.quit()
    return results


def _opening(client: OdmrClient, helo_name: str, timeouts: Timeouts) -> Opening:
    """How to open the ODMR session: TLS required, then AUTH (ConfigError: no secret)."""
    secret = load_secret(client.secret_file, "link.odmr.secret_file")
    tls = TlsPolicy("encrypt", verify=client.tls_verify, cafile=client.cafile or None)
    return Opening(helo_name, timeouts, Stats(), tls=tls, credentials=Credentials(client.user, secret))


async def _serve(dialogue: Dialogue, relay: str, accept: Accept) -> None:
    transport, early = dialogue.turn_around()
    try:
        messages = await accept(transport, early, relay)
    except Exception as exc:            # whatever was committed is safe; say why it ended
        transport.abort()
        log.warning(maillog.odmr_push_ended(relay, 0, f"error: {exc}"))
        return
    log.info(maillog.odmr_push_ended(relay, messages, "closed"))


def _results(relay: str, domains: Sequence[str], code: int, text: str) -> list[EtrnResult]:
    level = logging.INFO if outcome(code) in ("ok", "nomail") else logging.WARNING
    log.log(level, maillog.odmr_result(relay, domains, code, text, outcome(code)))
    return [EtrnResult(d, code, text) for d in domains]
