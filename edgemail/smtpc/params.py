"""smtpc/params.py - MAIL and RCPT with the parameters a server understands (pure).

Owns: ``MessageParams`` (the envelope's per-message ESMTP parameters),
``mail_command`` and ``rcpt_command``: the commands the dialogue (core.py)
sends for one message, built from what the server offered in its EHLO
reply (events.Capabilities).

Never does: decide when a command is sent (core.py), encode it (wire.py),
I/O of any kind.

Invariants:
  * an 8-bit body is never sent to a server that does not offer 8BITMIME
    (PermFail 5.6.3, rather than corrupting it); a message larger than the
    server's SIZE fails for that server (PermFail 5.3.4) before MAIL; a
    non-ASCII address needs SMTPUTF8 (PermFail 5.6.7);
  * DSN parameters (RET, ENVID, NOTIFY, ORCPT) are passed on only when the
    server offers DSN, xtext-encoded.

Failures: PermFail, scope MESSAGE, for a message this server cannot take
unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgemail.envelope import Recipient
from edgemail.errors import PermFail, Scope
from edgemail.smtpc.events import Capabilities, Mail, Rcpt
from edgemail.smtpc.wire import has_8bit, xtext

__all__ = ["MessageParams", "mail_command", "rcpt_command"]


@dataclass(frozen=True)
class MessageParams:
    """The envelope's per-message ESMTP parameters (from Envelope)."""

    ret: str | None = None
    envid: str | None = None
    body: str | None = None
    smtputf8: bool = False

    @classmethod
    def from_envelope(cls, env) -> "MessageParams":
        return cls(ret=env.ret, envid=env.envid, body=env.body, smtputf8=env.smtputf8)


def mail_command(caps: Capabilities, sender: str, data: bytes, params: MessageParams,
                 recipients: tuple[Recipient, ...] = ()) -> Mail:
    """MAIL FROM with the parameters this server understands.

    Raises PermFail (scope MESSAGE) when the message cannot go to this server
    unchanged: too big for its SIZE, 8-bit body without 8BITMIME, non-ASCII
    addresses without SMTPUTF8.
    """
    out = [*_size_param(caps, data), *_body_param(caps, data, params),
           *_smtputf8_param(caps, params, sender, recipients), *_dsn_params(caps, params)]
    return Mail(sender, tuple(out))


def _size_param(caps: Capabilities, data: bytes) -> list[str]:
    size = len(data)
    if caps.size is None:
        return []
    if caps.size and size > caps.size:
        raise PermFail(f"message size {size} exceeds the server's SIZE limit {caps.size}",
                       scope=Scope.MESSAGE, dsn="5.3.4")
    return [f"SIZE={size}"]


def _body_param(caps: Capabilities, data: bytes, params: MessageParams) -> list[str]:
    eightbit = has_8bit(data)
    if not (eightbit or params.body == "8BITMIME"):
        return []
    if caps.eightbitmime:
        return ["BODY=8BITMIME"]
    if eightbit:
        raise PermFail("message has an 8-bit body and the server does not offer 8BITMIME; "
                       "not sent rather than corrupted", scope=Scope.MESSAGE, dsn="5.6.3")
    return []


def _smtputf8_param(caps: Capabilities, params: MessageParams, sender: str,
                    recipients: tuple[Recipient, ...]) -> list[str]:
    ascii_only = all(a.isascii() for a in [sender, *(r.address for r in recipients)])
    if ascii_only and not params.smtputf8:
        return []
    if caps.smtputf8:
        return ["SMTPUTF8"]
    if not ascii_only:
        raise PermFail("non-ASCII address and the server does not offer SMTPUTF8",
                       scope=Scope.MESSAGE, dsn="5.6.7")
    return []


def _dsn_params(caps: Capabilities, params: MessageParams) -> list[str]:
    out: list[str] = []
    if caps.dsn:
        if params.ret:
            out.append(f"RET={params.ret.upper()}")
        if params.envid:
            out.append(f"ENVID={xtext(params.envid)}")
    return out


def rcpt_command(caps: Capabilities, rcpt: Recipient | str) -> Rcpt:
    if isinstance(rcpt, str):
        return Rcpt(rcpt)
    params: list[str] = []
    if caps.dsn:
        if rcpt.notify:
            params.append("NOTIFY=" + ",".join(sorted(n.upper() for n in rcpt.notify)))
        if rcpt.orcpt:
            kind, _, addr = rcpt.orcpt.partition(";")
            params.append(f"ORCPT={kind};{xtext(addr)}" if addr else f"ORCPT={xtext(kind)}")
    return Rcpt(rcpt.address, tuple(params))
