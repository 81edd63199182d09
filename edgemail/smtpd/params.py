"""smtpd/params.py - ESMTP parameters of MAIL and RCPT (sans-IO).

Owns the syntax of the parameters we advertise: SIZE (RFC 1870), BODY
(RFC 6152), SMTPUTF8 (RFC 6531) on MAIL; the DSN parameters of RFC 3461:
RET and ENVID on MAIL, NOTIFY and ORCPT on RCPT; AUTH= on MAIL (RFC 4954
section 5) only where AUTH is offered: an xtext mailbox or ``<>``, kept in
``MailParams.auth`` (the caller keeps it only for an authenticated session,
as the RFC says: anyone else's counts as ``AUTH=<>``; it is not queued, and
we relay without AUTH=).  Values are kept as given
(ENVID and ORCPT stay xtext-encoded and case-preserved; aiosmtpd upper-cases
the whole parameter string, which is why we parse it ourselves).

Failures: ``ParamError.reply`` is the SMTP reply to send:
  * a keyword we do not know            -> 555 5.5.4
  * a known keyword given twice, or a bad value -> 501 5.5.4
  * SIZE above the limit                -> 552 5.3.4 (decided by the caller)
Never does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

_XTEXT = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})*")
_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
NOTIFY_WORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})


class ParamError(ValueError):
    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


@dataclass(frozen=True)
class MailParams:
    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None
    #: AUTH=: the mailbox (xtext) or "<>"
    auth: str | None = None


@dataclass(frozen=True)
class RcptParams:
    notify: frozenset[str] = frozenset()
    orcpt: str | None = None


def split(text: str) -> dict[str, str | None]:
    """``KEY[=VALUE] ...`` -> {KEY (upper): value or None}; duplicates refused."""
    out: dict[str, str | None] = {}
    for word in text.split():
        key, eq, value = word.partition("=")
        if not _KEYWORD.fullmatch(key) or (eq and not value):
            raise ParamError(f"501 5.5.4 Bad parameter syntax {word[:40]!r}")
        key = key.upper()
        if key in out:
            raise ParamError(f"501 5.5.4 Duplicate parameter {key}")
        out[key] = value if eq else None
    return out


def is_xtext(value: str) -> bool:
    return bool(_XTEXT.fullmatch(value))


def mail_params_with_auth(text: str) -> MailParams:
    """MAIL's parameters where AUTH is offered: AUTH= too."""
    p = split(text)
    auth = _value(p, "AUTH")
    if auth is not None and auth != "<>" and (len(auth) > 500 or not is_xtext(auth)):
        raise ParamError("501 5.5.4 AUTH must be an xtext mailbox or <>")
    return replace(_mail_params(p), auth=auth)


def mail_params(text: str) -> MailParams:
    return _mail_params(split(text))


def _mail_params(p: dict[str, str | None]) -> MailParams:
    size = _size(p.pop("SIZE")) if "SIZE" in p else None
    body = check_body(_value(p, "BODY"))
    smtputf8 = "SMTPUTF8" in p
    if smtputf8 and p.pop("SMTPUTF8") is not None:
        raise ParamError("501 5.5.4 SMTPUTF8 takes no value")
    ret = check_ret(_value(p, "RET"))
    envid = check_envid(_value(p, "ENVID"))
    _unknown(p, "MAIL")
    return MailParams(size, body, smtputf8, ret, envid)


# The value checks, one each, shared with the control socket's submit op
# (daemon/submission.py): a value the listener refuses is refused there too.

def check_body(body: str | None) -> str | None:
    """BODY: 7BIT or 8BITMIME (any case; returned upper-case), or None."""
    if body is not None and body.upper() not in ("7BIT", "8BITMIME"):
        raise ParamError("501 5.5.4 BODY must be 7BIT or 8BITMIME")
    return body and body.upper()


def check_ret(ret: str | None) -> str | None:
    """RET: FULL or HDRS (any case; returned upper-case), or None."""
    if ret is not None and ret.upper() not in ("FULL", "HDRS"):
        raise ParamError("501 5.5.4 RET must be FULL or HDRS")
    return ret and ret.upper()


def check_envid(envid: str | None) -> str | None:
    """ENVID: xtext of at most 100 characters, kept as given, or None."""
    if envid is not None and (len(envid) > 100 or not is_xtext(envid)):
        raise ParamError("501 5.5.4 ENVID must be xtext of at most 100 characters")
    return envid


def check_orcpt(orcpt: str | None) -> str | None:
    """ORCPT: addr-type;xtext of at most 500 characters, kept as given, or None."""
    if orcpt is not None:
        kind, semi, value = orcpt.partition(";")
        if not semi or not _ADDR_TYPE.fullmatch(kind) or not value or not is_xtext(value) \
                or len(orcpt) > 500:
            raise ParamError("501 5.5.4 ORCPT must be addr-type;xtext (e.g. rfc822;user@example.org)")
    return orcpt


def rcpt_params(text: str) -> RcptParams:
    p = split(text)
    notify: frozenset[str] = frozenset()
    if "NOTIFY" in p:
        notify = check_notify(p.pop("NOTIFY"))
    orcpt = check_orcpt(_value(p, "ORCPT"))
    _unknown(p, "RCPT")
    return RcptParams(notify, orcpt)


def _size(value: str | None) -> int:
    if not value or not value.isdigit() or len(value) > 20:
        raise ParamError("501 5.5.4 SIZE must be a number of octets")
    return int(value)


def check_notify(value: str | None) -> frozenset[str]:
    """NOTIFY: NEVER alone, or a list of SUCCESS, FAILURE, DELAY (any case)."""
    words = frozenset(w.upper() for w in (value or "").split(","))
    if words == {"NEVER"}:
        return words
    if not words or not words <= NOTIFY_WORDS or "" in words:
        raise ParamError("501 5.5.4 NOTIFY must be NEVER or a list of SUCCESS,FAILURE,DELAY")
    return words


def _value(p: dict, key: str) -> str | None:
    """Pop a parameter that must carry a value; None when absent."""
    if key not in p:
        return None
    value = p.pop(key)
    if value is None:
        raise ParamError(f"501 5.5.4 {key} needs a value")
    return value


def _unknown(p: dict, verb: str) -> None:
    if p:
        raise ParamError(f"555 5.5.4 {verb} parameter {sorted(p)[0]} not recognised")
