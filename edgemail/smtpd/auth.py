"""smtpd/auth.py - SMTP AUTH (RFC 4954) without I/O: the SASL exchanges of
PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195: cram.py has its secrets),
and whom an authenticated user may send as.

Owns:
  * ``Exchange``: one AUTH command's exchange.  ``start(initial)`` and
    then ``line(text)`` for each continuation line return a ``Prompt``
    (send ``334 TEXT``), an ``Answer`` (the user and password to verify:
    the driver checks them against the credentials, off the loop), or the
    reply that ends the exchange (``501 5.0.0`` aborted by ``*``, ``501
    5.5.2`` not base64 / not UTF-8 / not the mechanism's form / a user
name that is empty or holds control characters, ``535
    5.7.8`` an authorisation identity other than the user: we do not
    proxy).  CRAM-MD5: ``334`` with the challenge, then ``USER HEXDIGEST``
    (an Answer whose ``challenge`` is set; an initial response is ``501
    5.5.2``, RFC 4954 section 4: the server speaks first).
  * ``may_send_as()``: the sender check for authenticated sessions
    (Postfix's smtpd_sender_login_maps, ``reject_sender_login_mismatch``):
    the ``[smtpd.sender_login]`` table's addresses and ``@domains`` for the
    user, else ``USER@`` each local domain (the user itself when it is an
    address); the null sender is always allowed (DSNs, MDNs).

Never: I/O, logging, keeping a password beyond the Answer (whose repr
hides it).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from edgemail.smtpd import cram

#: what EHLO offers after ``AUTH`` (with a credentials file), and CRAM-MD5 (with cram secrets)
MECHANISMS = ("PLAIN", "LOGIN")
CRAM = cram.MECH
#: RFC 4954 section 4: an AUTH line may be 12288 octets
LINE_LIMIT = 12288

ABORTED = "501 5.0.0 Authentication aborted"
UNDECODABLE = "501 5.5.2 Cannot decode response"
INVALID = "535 5.7.8 Authentication credentials invalid"
_USERNAME, _PASSWORD = "VXNlcm5hbWU6", "UGFzc3dvcmQ6"    # "Username:", "Password:"
_CRAM_ANSWER = re.compile(r"(\S+) ([0-9a-fA-F]{32})")


@dataclass(frozen=True)
class Prompt:
    """Send ``334 TEXT`` and take the next line as the answer."""
    text: str


@dataclass(frozen=True)
class Answer:
    """Credentials to verify (CRAM-MD5: the password is the digest of CHALLENGE)."""
    user: str
    password: str = field(repr=False)
    challenge: str = ""


Step = Prompt | Answer | str


class Exchange:
    """The exchange of one AUTH command, for MECH (one of MECHANISMS)."""

    def __init__(self, mech: str, hostname: str = "localhost") -> None:
        self.mech = mech
        #: LOGIN: the user name, once given
        self.user: str | None = None
        #: CRAM-MD5: the challenge sent
        self.challenge = cram.challenge(hostname) if mech == CRAM else ""

    def start(self, initial: str | None) -> Step:
        """AUTH MECH [initial-response]: the first step."""
        if self.mech == CRAM:
            if initial is not None:
                return "501 5.5.2 CRAM-MD5 takes no initial response"
            return Prompt(base64.b64encode(self.challenge.encode("utf-8")).decode("ascii"))
        if initial is None:
            return Prompt("" if self.mech == "PLAIN" else _USERNAME)
        return self.line(initial)

    def line(self, text: str) -> Step:
        """One response (base64, ``=`` for empty, ``*`` to abort)."""
        if text == "*":
            return ABORTED
        decoded = _decode(text)
        if decoded is None:
            return UNDECODABLE
        if self.mech == "PLAIN":
            return _plain(decoded)
        if self.mech == CRAM:
            m = _CRAM_ANSWER.fullmatch(decoded)
            if not m or not _good_user(m.group(1)):
                return UNDECODABLE
            return Answer(m.group(1), m.group(2), self.challenge)
        if self.user is None:
            if not _good_user(decoded):
                return UNDECODABLE
            self.user = decoded
            return Prompt(_PASSWORD)
        return Answer(self.user, decoded)


def _decode(text: str) -> str | None:
    """A response's text (RFC 4954: ``=`` is the empty response), or None."""
    if text == "=":
        return ""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        return None


def _plain(message: str) -> Step:
    """RFC 4616: authzid NUL authcid NUL passwd."""
    parts = message.split("\x00")
    if len(parts) != 3 or not parts[1]:
        return UNDECODABLE
    authzid, user, password = parts
    if not _good_user(user):
        return UNDECODABLE
    if authzid and authzid != user:
        return INVALID
    return Answer(user, password)


def _good_user(user: str) -> bool:
    """A user name: not empty, no control characters."""
    return bool(user) and user.isprintable()


def may_send_as(user: str, sender: str, logins: dict[str, tuple[str, ...]],
                local_domains: tuple[str, ...]) -> bool:
    """May authenticated USER use SENDER in MAIL FROM?  (module docstring)"""
    if not sender:
        return True
    sender = sender.lower()
    allowed = logins.get(user)
    if allowed is None:
        name = user.lower()
        allowed = (name,) if "@" in name else tuple(f"{name}@{d}" for d in local_domains)
    domain = "@" + sender.rpartition("@")[2]
    return any(a == sender or a == domain for a in allowed)
