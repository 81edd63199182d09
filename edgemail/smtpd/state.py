"""smtpd/state.py - the words the dialogue's parts share: its states and
one listener's settings.

Owns: ``State`` (where a dialogue is: core.py's docstring draws the
transitions) and ``Settings`` (what one listener's dialogues share, taken
from the configuration once per listener).  core.py re-exports both.

Never: I/O, decisions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edgemail.config.model import Config, Listener


class State(enum.Enum):
    GREETING = "greeting"   #: connected, no 220 sent yet
    COMMAND = "command"     #: waiting for a command line
    DATA = "data"           #: after 354: the message, until CRLF "." CRLF
    AUTH = "auth"           #: after 334: the next line is an AUTH response
    WAITING = "waiting"     #: a Commit, Etrn, Atrn, StartTls or Authenticate is out
    CLOSED = "closed"       #: QUIT answered, 421 or 554 said, or the input ended


@dataclass(frozen=True)
class Settings:
    """What one listener's dialogues share (from the configuration)."""
    hostname: str
    max_size: int
    max_rcpts: int
    max_bad_commands: int
    #: an ISP/Internet-facing listener: bare CR/LF and NUL refused, SMTP
    #: synchronisation enforced (core.py)
    strict: bool
    #: ETRN offered (the daemon gave a hook; PrivacyOptions without noetrn)
    etrn: bool
    #: STARTTLS offered (the listener has a certificate)
    tls: bool = False
    #: only EHLO/HELO, STARTTLS, NOOP, RSET, QUIT before TLS
    require_tls: bool = False
    #: the AUTH mechanisms offered (empty: no AUTH), and whether before TLS too
    auth: tuple[str, ...] = ()
    auth_plaintext: bool = False
    #: CRAM-MD5 (only) offered before TLS too
    cram_plaintext: bool = False
    #: RFC 6409 submission: AUTH before MAIL
    submission: bool = False
    max_auth_failures: int = 3
    #: an ODMR listener (RFC 2645): ATRN offered, no mail taken (turn.py)
    odmr: bool = False
    #: completes unqualified senders and recipients from trusted clients
    #: (the first local domain: RFC 6409 4.2); others get 553 5.1.3
    local_domain: str = "localhost"

    @classmethod
    def of(cls, cfg: Config, listener: Listener, *, etrn: bool, auth: tuple[str, ...] = (),
           atrn: bool = False) -> "Settings":
        """A listener's settings; AUTH's mechanisms those the loaded credentials serve;
        ETRN unless PrivacyOptions noetrn (sendmail) or an ODMR listener."""
        odmr = listener.odmr and atrn
        return cls(hostname=cfg.hostname, max_size=cfg.MaxMessageSize,
                   max_rcpts=cfg.smtpd.MaxRecipientsPerMessage, max_bad_commands=cfg.smtpd.max_bad_commands,
                   strict=listener.strict, etrn=etrn and not odmr and "noetrn" not in cfg.PrivacyOptions,
                   odmr=odmr,
                   tls=listener.tls, require_tls=listener.require_tls,
                   auth=auth, auth_plaintext=listener.auth_plaintext,
                   cram_plaintext=listener.cram_plaintext,
                   submission=listener.submission, max_auth_failures=cfg.smtpd.max_auth_failures,
                   local_domain=cfg.local_domains[0])
