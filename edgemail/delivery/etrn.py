"""delivery/etrn.py - ask the ISP to flush the mail it holds for us (RFC 1985 ETRN).

NAME
    etrn - etrn(host, port, domains, helo_name=..., timeout=..., tls=...) -> [EtrnResult]

DESCRIPTION
    One SMTP session on the smtpc client: ``smtpc.opening.Opening`` connects
    and greets (EHLO, HELO when EHLO gets a 5xx; STARTTLS when the server
    offers it, opportunistic and unverified as for an MX unless ``tls``
    says otherwise), then one ETRN per argument over the ``Dialogue``,
    then QUIT.  The argument forms are RFC 1985's: `domain` (flush that
    domain), `@domain` (that domain and its subdomains), `#queue` (a
    named queue); anything else is refused before a byte is sent (the
    grammar is smtpc.wire's).  Replies (smtpc.core.etrn_outcome):
        250 251 252 253       success (sendmail: "250 2.0.0 Queuing for node X
                              started"; Postfix: "250 Queuing started")
        458 459               the ISP cannot flush now: logged and reported
                              (Postfix: "459 <d>: service unavailable")
        500 501 502           the ISP has no ETRN (or refused the syntax)
    A server whose EHLO does not list ETRN is still asked (many answer
    anyway); its 500/502 says no.  Every domain gets a result; a session that
    breaks (connect, greeting, TLS, a timeout, a 421, a lost connection)
    gives code 0 with the reason for the domains not yet asked.  Every wait
    is bounded by ``timeout``.  This is the `etrn` the MTA's link port
    offers the link manager.

LOG LINES (logger "edgemail.etrn"; the format is maillog.etrn_result())
    etrn: relay=HOST:PORT, arg=ARG, reply=CODE TEXT, result=ok|deferred|unsupported|error

NEVER
    Resolves names (host is an address or a name the caller resolved),
    retries, or raises for a refusal: the reply is the result.

FAILURES (Raises:)
    ValueError   an argument that is not one of the RFC 1985 forms
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from edgemail import maillog
from edgemail.config.model import Timeouts
from edgemail.errors import DeliveryFailure
from edgemail.smtpc.core import ETRN_DEFERRED, ETRN_OK, ETRN_UNSUPPORTED, etrn_outcome
from edgemail.smtpc.dialogue import Dialogue
from edgemail.smtpc.events import Etrn
from edgemail.smtpc.opening import Opening
from edgemail.smtpc.results import Stats
from edgemail.smtpc.tls import MX_TLS, TlsPolicy
from edgemail.smtpc.wire import is_etrn_argument

__all__ = ["EtrnResult", "etrn", "check_argument", "session_timeouts", "SUCCESS", "DEFERRED", "UNSUPPORTED"]

log = logging.getLogger("edgemail.etrn")

SUCCESS, DEFERRED, UNSUPPORTED = ETRN_OK, ETRN_DEFERRED, ETRN_UNSUPPORTED


@dataclass(frozen=True)
class EtrnResult:
    domain: str                  #: the argument as sent
    code: int                    #: the reply code; 0 when no reply came
    text: str

    @property
    def ok(self) -> bool:
        return self.code in SUCCESS

    @property
    def outcome(self) -> str:
        return etrn_outcome(self.code)


def check_argument(arg: str) -> str:
    """The argument if it is an RFC 1985 form (domain, @domain, #queue); ValueError otherwise."""
    if is_etrn_argument(arg):
        return arg
    raise ValueError(f"ETRN argument {arg!r}: want domain, @domain or #queue (RFC 1985)")


async def etrn(host: str, port: int, domains: Iterable[str], *, helo_name: str,
               timeout: float = 60.0, tls: TlsPolicy = MX_TLS) -> list[EtrnResult]:
    """Greet, ETRN for each argument, QUIT; one EtrnResult per argument."""
    args = [check_argument(d) for d in domains]
    relay = f"{host}:{port}"
    results: list[EtrnResult] = []
    opening = Opening(helo_name, session_timeouts(timeout), Stats(), tls=tls)
    dialogue: Dialogue | None = None
    try:
        dialogue = await opening.open(host, port)
        for arg in args:
            (resp,) = await dialogue.exchange([Etrn(arg)])
            results.append(_logged(relay, EtrnResult(arg, resp.reply.code, resp.reply.text)))
        await dialogue.quit()
    except DeliveryFailure as e:
        reason = str(e) or type(e).__name__
        for arg in args[len(results):]:
            results.append(_logged(relay, EtrnResult(arg, 0, reason)))
    finally:
        if dialogue is not None:
            dialogue.abort()
    return results


def session_timeouts(timeout: float) -> Timeouts:
    """Every wait of a session that asks for our mail (connect, greeting, EHLO,
    TLS, AUTH, ETRN or ATRN, QUIT) bounded alike (ETRN here, ODMR: odmr.py)."""
    return dataclasses.replace(Timeouts(), connect=timeout, iconnect=timeout, initial=timeout,
                               helo=timeout, misc=timeout, quit=timeout)


def _logged(relay: str, r: EtrnResult) -> EtrnResult:
    level = logging.INFO if r.ok else logging.WARNING
    log.log(level, maillog.etrn_result(relay, r.domain, r.code, r.text, r.outcome))
    return r
