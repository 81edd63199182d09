"""smtpd/turn.py - the verbs that ask us to send mail back: ETRN (RFC 1985) and ATRN (RFC 2645), sans I/O.

Owns the checks these commands get in the dialogue (core.py's command table
calls them) before the daemon's hook decides:

  * ETRN: offered (a hook, and PrivacyOptions without ``noetrn``), well
    formed (``domain``, ``@domain``, ``#queue``) -> an ``Etrn`` event with
    who asks (address, trusted, AUTH user); who may flush what is the
    hook's business (delivery/customers.py), so a customer outside the LAN
    may ETRN its own domains.
  * ATRN: only on an ODMR listener (``[[listen]] odmr = true``; elsewhere
    502; an ODMR listener takes no mail, so there is no transaction to be
    in), only after AUTH (530 5.7.0), with ``domain[,domain...]`` or
    nothing -> an ``Atrn`` event.  The hook's
    250 ends our side of the dialogue: the driver (session.py) hands the
    connection to the push (delivery/flush.py), where we are the client.
  * On an ODMR listener mail is not taken (MAIL, RCPT, DATA, ETRN, VRFY,
    EXPN: 502): the port is for EHLO, AUTH, ATRN, QUIT.

The AUTH user is ``dialogue.auth_user`` (None until AUTH succeeds: issue 11
§2's AUTH sets it; until it exists nobody is authenticated, so ATRN always
answers 530).

Never does: I/O, deciding who may flush, logging (refusals are logged by
the dialogue's reply path).
"""

from __future__ import annotations

import re
from typing import Protocol

from edgemail.smtpd.events import Atrn, Etrn


class _Offers(Protocol):
    @property
    def etrn(self) -> bool: ...
    @property
    def odmr(self) -> bool: ...


class Dialogue(Protocol):
    """What these verbs read of core.Dialogue."""

    @property
    def settings(self) -> _Offers: ...
    ip: str
    relay: str
    trusted: bool
    auth_user: str | None

_ETRN_ARG = re.compile(r"[@#]?[A-Za-z0-9][A-Za-z0-9._-]*")
_DOMAIN = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
_ATRN_ARG = re.compile(f"{_DOMAIN}(,{_DOMAIN})*")
#: what an ODMR listener does not do
ODMR_REFUSED = ("MAIL", "RCPT", "DATA", "ETRN", "VRFY", "EXPN")


def etrn(d: Dialogue, arg: str | None) -> str | Etrn:
    """ETRN: the refusal, or the event for the hook (the dialogue waits for its reply)."""
    if not d.settings.etrn:
        return "502 5.5.1 ETRN not available"
    if not arg or not _ETRN_ARG.fullmatch(arg):
        return "501 5.5.4 Syntax: ETRN <domain>"
    return Etrn(arg, ip=d.ip, trusted=d.trusted, user=d.auth_user)


def atrn(d: Dialogue, arg: str | None) -> str | Atrn:
    """ATRN [domain[,domain...]]: the refusal, or the event for the hook."""
    if not d.settings.odmr:
        return "502 5.5.1 ATRN not available here (ODMR, RFC 2645, is on the ODMR listener)"
    if d.auth_user is None:
        return "530 5.7.0 Authentication required"
    if arg and not _ATRN_ARG.fullmatch(arg):
        return "501 5.5.4 Syntax: ATRN [domain[,domain...]]"
    domains = tuple(arg.lower().split(",")) if arg else ()
    return Atrn(domains, user=d.auth_user, relay=d.relay)


def odmr_only(arg: str | None) -> str:
    return "502 5.5.1 This is an ODMR service (RFC 2645): EHLO, AUTH, ATRN, QUIT"
