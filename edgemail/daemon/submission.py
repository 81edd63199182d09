"""daemon/submission.py - what the control socket's ``submit`` op may store (pure).

Owns: ``check_data(data)``, ``checked_envelope(req, data, cfg, client=, arrived=)``
(and ``drop_envelope(cfg)``, the same checks for a maildrop file), the envelope
of a local submission built from a request any local user may send
(issue 16 section 8), field by field:

  mail_from    ""  (the null sender) or an address, parsed as MAIL FROM's
               path (address.parse_path: syntax, control characters,
               lengths, valid UTF-8)
  recipients   a non-empty list of at most smtpd.MaxRecipientsPerMessage
               objects {address, notify?, orcpt?}; address as RCPT TO's,
               NOTIFY and ORCPT checked as RCPT's parameters
  ret, envid, body    None or as MAIL's RET, ENVID, BODY parameters
  data_b64     the message: CRLF line ends only, no bare CR, bare LF or
               NUL (what a strict listener refuses; ``sendmail``
               normalises its input before it sends), MaxMessageSize

The checks are smtpd's own (smtpd/params.py ``check_*``, address.py), so a
value the SMTP listener refuses is refused here, with the same words.

Set by the daemon, never by the client (a request naming one is refused,
so a local user cannot jump the queue or pass as someone else):
precedence and msgid (from the message's own Precedence: and Message-ID:
headers, as the listener reads them: smtpd/data.py ``summarise``),
smtputf8 (set when an address is not ASCII: RFC 6531 for a local
submitter), proto ("local"), client (the peer's uid from SO_PEERCRED),
helo and auth (empty), arrived (the daemon's clock), size, priority,
attempts, held and any other queue state.  Anything else unknown is
refused too, naming the field.

Failures: ValueError("bad envelope: ...") naming the field and what was
wrong; the control socket sends it back as the error.  Never does I/O.
"""

from __future__ import annotations

from edgemail.address import AddressError, Path, parse_path
from edgemail.config.model import Config
from edgemail.envelope import Envelope, Recipient, precedence_class
from edgemail.smtpd import params
from edgemail.smtpd.data import offence, summarise

#: the fields a submit request may carry (the control socket adds op and _peer)
FIELDS = frozenset({"op", "_peer", "mail_from", "recipients", "ret", "envid", "body", "data_b64"})
#: a recipient's fields
RCPT_FIELDS = frozenset({"address", "notify", "orcpt"})
#: fields only the daemon sets, and where their value comes from
DAEMON_ONLY = {
    "precedence": "the message's Precedence: header", "msgid": "the message's Message-ID: header",
    "smtputf8": "the addresses", "proto": "the daemon", "client": "SO_PEERCRED", "helo": "the daemon",
    "auth": "the daemon", "arrived": "the daemon's clock", "size": "the data", "priority": "the daemon",
    "attempts": "the daemon", "held": "the daemon", "trusted": "the daemon",
}


def drop_envelope(cfg: Config):
    """The maildrop's check (spool/maildrop.py ``Maildrop.check``): a drop,
    written by any local user's ``sendmail`` while the daemon was down,
    checked as a submit request from its owner's uid."""
    def check(env: Envelope, data: bytes, uid: int, created: float) -> Envelope:
        check_data(data)
        req = {"mail_from": env.mail_from, "ret": env.ret, "envid": env.envid, "body": env.body,
               "recipients": [{"address": r.address, "notify": sorted(r.notify), "orcpt": r.orcpt}
                              for r in env.recipients]}
        return checked_envelope(req, data, cfg, client=f"localhost (uid {uid})", arrived=created)
    return check


def checked_envelope(req: dict, data: bytes, cfg: Config, *, client: str, arrived: float) -> Envelope:
    """The envelope of a submit request, every field checked (see the module
    docstring).  DATA is the message as it will be queued (trace line
    included), already through ``check_data``."""
    _check_fields(req)
    domain = cfg.local_domains[0]       # local submission is trusted: unqualified is completed
    paths = [_path("mail_from", req.get("mail_from", ""), sender=True, domain=domain)]
    recipients = _recipients(req.get("recipients"), cfg.smtpd.MaxRecipientsPerMessage, paths, domain)
    try:
        ret = params.check_ret(_optional_str(req, "ret"))
        envid = params.check_envid(_optional_str(req, "envid"))
        body = params.check_body(_optional_str(req, "body"))
    except params.ParamError as exc:
        raise ValueError(f"bad envelope: {_words(exc)}") from None
    facts = summarise(data)
    return Envelope(mail_from=paths[0].text, recipients=recipients, ret=ret, envid=envid,
                    body=body, smtputf8=any(p.utf8 for p in paths), size=len(data),
                    precedence=precedence_class(facts.precedence), msgid=facts.msgid,
                    proto="local", client=client, arrived=arrived)


def _check_fields(req: dict) -> None:
    for name in sorted(set(req) - FIELDS):
        if name in DAEMON_ONLY:
            raise ValueError(f"bad envelope: {name} is set by the daemon (from {DAEMON_ONLY[name]}), "
                             "not by the client")
        raise ValueError(f"bad envelope: unknown field {name[:40]!r}")


def check_data(data: bytes) -> None:
    """The client's message: CRLF line ends only, no NUL (what a strict
    listener would queue); lines counted from the client's first."""
    if b"\0" not in data and data.count(b"\r") == data.count(b"\n") == data.count(b"\r\n"):
        return                          # the usual case, without a list of lines (smtpd/data.py's test)
    for n, line in enumerate(data.split(b"\r\n"), 1):
        if b"\r" in line or b"\n" in line or b"\0" in line:
            raise ValueError(f"bad message data: {offence(line)} in line {n} "
                             "(lines must end in CRLF; sendmail converts its input)")


def _recipients(value, limit: int, paths: list[Path], domain: str) -> tuple[Recipient, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("bad envelope: recipients must be a non-empty list")
    if len(value) > limit:
        raise ValueError(f"bad envelope: {len(value)} recipients, at most {limit} "
                         "(smtpd.MaxRecipientsPerMessage)")
    out = []
    for n, r in enumerate(value, 1):
        if not isinstance(r, dict) or "address" not in r or not set(r) <= RCPT_FIELDS:
            raise ValueError(f"bad envelope: recipient {n} must be an object with address "
                             "and optional notify, orcpt")
        path = _path(f"recipient {n}", r["address"], sender=False, domain=domain)
        paths.append(path)
        out.append(Recipient(path.text, orcpt=_orcpt(n, r.get("orcpt")), notify=_notify(n, r.get("notify"))))
    return tuple(out)


def _path(what: str, value, *, sender: bool, domain: str) -> Path:
    if not isinstance(value, str):
        raise ValueError(f"bad envelope: {what} must be a string")
    if not value and sender:
        return Path(None)
    try:
        path = parse_path(f"<{value}>", allow_null=False, domain=domain)
        if path.params:
            raise AddressError("text after the address (give parameters as their own fields)")
    except AddressError as exc:
        raise ValueError(f"bad envelope: {what} {value[:80]!r}: {exc}") from None
    return path


def _notify(n: int, value) -> frozenset[str]:
    if value is None or value == []:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(w, str) for w in value):
        raise ValueError(f"bad envelope: recipient {n} notify must be a list of strings")
    try:
        return params.check_notify(",".join(value))
    except params.ParamError as exc:
        raise ValueError(f"bad envelope: recipient {n}: {_words(exc)}") from None


def _orcpt(n: int, value) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"bad envelope: recipient {n} orcpt must be a string")
    try:
        return params.check_orcpt(value)
    except params.ParamError as exc:
        raise ValueError(f"bad envelope: recipient {n}: {_words(exc)}") from None


def _optional_str(req: dict, name: str) -> str | None:
    value = req.get(name)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"bad envelope: {name} must be a string or null")
    return value


def _words(exc: params.ParamError) -> str:
    """"501 5.5.4 RET must be FULL or HDRS" -> "RET must be FULL or HDRS"."""
    return exc.reply.split(" ", 2)[-1]
