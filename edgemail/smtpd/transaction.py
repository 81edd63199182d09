"""smtpd/transaction.py - one mail transaction, sans I/O: MAIL, RCPT and what
they decide.

Owns: the transaction's state (the sender, MAIL's parameters, the accepted
recipients), the replies to MAIL and RCPT: the argument's syntax
(``FROM:``/``TO:``, the path, the ESMTP/DSN parameters of params.py), the
order (no nested MAIL, RCPT only after MAIL), SIZE against the limit, the
SMTPUTF8 rule of RFC 6531 3.4, the recipient limit, then the listener's
decisions it is handed (an authenticated user's sender; room in the spool,
read afresh at MAIL; relay and routing for each recipient); and ``envelope()``, the spool's envelope it becomes.  core.py checks HELO first and resets the transaction (RSET,
HELO/EHLO, the end of DATA).

Replies: 250 2.1.0 / 250 2.1.5 on success; 501 5.5.4 syntax; 501 5.1.7 /
501 5.1.3 bad sender / recipient; 553 5.1.3 an unqualified address from a
client that is not trusted (a trusted one's gets the first local domain); 503 5.5.1 order; 552 5.3.4 size; 553
5.6.7 non-ASCII address without SMTPUTF8; 553 5.7.1 a sender the
authenticated user does not own; 452 4.3.1 no room; 452 4.5.3 too
many recipients; 555 5.5.4 unknown parameter; the decision's refusal
(554 5.7.1 Relaying denied, 550 5.1.1 ...).

Never does I/O; an exception from a decision is the caller's to answer.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, TypeVar

from edgemail.address import Address, AddressError, Path, Unqualified, parse_path
from edgemail.envelope import Envelope, Recipient, precedence_class
from edgemail.smtpd import params
from edgemail.smtpd.data import HeaderFacts, received_header

P = TypeVar("P")
#: (canonical address, refusal reply or None) for one recipient
RcptDecision = Callable[[Address], "tuple[str, str | None]"]


def strip_keyword(keyword: str, arg: str) -> str | None:
    """ARG without its leading KEYWORD (any case), or None if it lacks it."""
    if arg[:len(keyword)].upper() == keyword:
        return arg[len(keyword):].strip()
    return None


class Transaction:
    """MAIL, then RCPTs: the envelope being built."""

    def __init__(self) -> None:
        self.mail_from: str | None = None
        self.mail = params.MailParams()
        self.rcpts: list[Recipient] = []

    def mail_cmd(self, arg: str | None, *, extended: bool, max_size: int,
                 has_room: Callable[[int], bool], auth: bool = False,
                 authenticated: bool = False,
                 check_sender: Callable[[str], str | None] | None = None,
                 domain: str | None = None) -> str:
        """MAIL FROM: the reply; the sender is kept if it is 250.  AUTH: the
        AUTH extension is offered (AUTH= allowed; from a client not
        AUTHENTICATED it counts as AUTH=<>, RFC 4954 section 5); CHECK_SENDER:
        the authenticated user's sender check (a refusal or None)."""
        if self.mail_from is not None:
            return "503 5.5.1 Error: nested MAIL command"
        parse = params.mail_params_with_auth if auth else params.mail_params
        parsed = _parse(arg, "FROM:", parse, sender=True, extended=extended, domain=domain)
        if isinstance(parsed, str):
            return parsed
        path, mail = parsed
        if path.utf8 and not mail.smtputf8:     # RFC 6531 section 3.4
            return _NEEDS_SMTPUTF8.format("sender")
        if mail.size is not None and mail.size > max_size:
            return f"552 5.3.4 Message size exceeds fixed maximum message size ({max_size})"
        if check_sender is not None and (refusal := check_sender(path.text)):
            return refusal
        if not has_room(mail.size or 0):
            return "452 4.3.1 Insufficient system storage"
        if mail.auth is not None and not authenticated:
            mail = replace(mail, auth="<>")
        self.mail_from, self.mail = path.text, mail
        return f"250 2.1.0 Sender <{path.text}> OK"

    def rcpt_cmd(self, arg: str | None, *, extended: bool, max_rcpts: int,
                 decide: RcptDecision, domain: str | None = None) -> str:
        """RCPT TO: the reply; the recipient is kept if it is 250.  DOMAIN
        (both commands): what completes an unqualified address (None: 553)."""
        if self.mail_from is None:
            return "503 5.5.1 Error: need MAIL command"
        parsed = _parse(arg, "TO:", params.rcpt_params, sender=False, extended=extended, domain=domain)
        if isinstance(parsed, str):
            return parsed
        path, rcpt = parsed
        if path.utf8 and not self.mail.smtputf8:
            return _NEEDS_SMTPUTF8.format("recipient")
        if len(self.rcpts) >= max_rcpts:
            return "452 4.5.3 Too many recipients"
        assert path.address is not None         # only MAIL allows the null path
        address, refusal = decide(path.address)
        if refusal:
            return refusal
        self.rcpts.append(Recipient(address, rcpt.orcpt, rcpt.notify))
        return f"250 2.1.5 Recipient <{address}> OK"


_NEEDS_SMTPUTF8 = "553 5.6.7 Non-ASCII {} address needs the SMTPUTF8 parameter on MAIL"


def _parse(arg: str | None, keyword: str, parse: Callable[[str], P], *, sender: bool,
           extended: bool, domain: str | None) -> tuple[Path, P] | str:
    """A MAIL/RCPT argument: its path and its parameters (PARSE), or the
    refusal reply."""
    rest = strip_keyword(keyword, arg) if arg else None
    if rest is None:
        return f"501 5.5.4 Syntax: {'MAIL FROM' if sender else 'RCPT TO'}:<address>"
    what = "sender" if sender else "recipient"
    try:
        path = parse_path(rest, allow_null=sender, domain=domain)
    except Unqualified:
        return f"553 5.1.3 Unqualified {what} address: give user@domain (only trusted clients may omit the domain)"
    except AddressError as exc:
        return f"501 5.1.{7 if sender else 3} Bad {what} address syntax: {exc}"
    if path.params and not extended:
        return "501 5.5.4 Parameters need EHLO"
    try:
        return path, parse(path.params)
    except params.ParamError as exc:
        return exc.reply


def envelope(txn: Transaction, facts: HeaderFacts, *, arrived: float, size: int, helo: str,
             proto: str, client: str) -> Envelope:
    """The spool's envelope for a transaction whose data was read."""
    mail = txn.mail
    return Envelope(
        mail_from=txn.mail_from or "", recipients=tuple(txn.rcpts), ret=mail.ret,
        envid=mail.envid, body=mail.body, smtputf8=mail.smtputf8,
        precedence=precedence_class(facts.precedence), msgid=facts.msgid,
        proto=proto, client=client, helo=helo, arrived=arrived, size=size)


def queue_file(txn: Transaction, facts: HeaderFacts, message: bytes, *, helo: str, proto: str,
               ip: str, hostname: str, relay: str, arrived: float) -> tuple[Envelope, bytes]:
    """The envelope and the data (our Received: line first) a Commit queues."""
    rcpt = txn.rcpts[0].address if len(txn.rcpts) == 1 else None
    data = received_header(helo=helo, ip=ip, hostname=hostname, proto=proto, rcpt=rcpt,
                           when=arrived) + message
    return envelope(txn, facts, arrived=arrived, size=len(data), helo=helo, proto=proto,
                    client=relay), data
