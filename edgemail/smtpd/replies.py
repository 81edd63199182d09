"""smtpd/replies.py - the words of the server's replies that are not one
command's decision: enhanced status codes, the greeting, EHLO's list, HELP.

Owns:
  * ``with_enhanced(reply)``: every reply but 220, 354 and the EHLO/HELO
    answer carries an RFC 2034 code; one written without it gets the
    usual one for its basic code (500 -> 5.5.2, 501 -> 5.5.4, 502/503 ->
    5.5.1, ...; else x.0.0).
  * ``hello()``, ``ehlo_reply()``: the EHLO/HELO answer and the extensions
    we offer (STARTTLS and AUTH as the session's state allows).
  * ``help_reply()``: HELP and ``HELP verb``, worded as aiosmtpd 1.4.6 did
    (the listener's replies did not change when it stopped using aiosmtpd).

Never does: I/O, state.
"""

from __future__ import annotations

import re

IDENT = "ESMTP edgemail"
_ENHANCED = re.compile(r"\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
_DEFAULT_ENHANCED = {500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4",
                     530: "5.7.0", 421: "4.3.0"}
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")

#: verb -> (HELP syntax, what ESMTP adds to it); the verbs HELP lists
HELP_SYNTAX = {
    "DATA": ("DATA", ""),
    "EHLO": ("EHLO hostname", ""),
    "ETRN": ("ETRN <domain>", ""),
    "HELO": ("HELO hostname", ""),
    "HELP": ("HELP [command]", ""),
    "MAIL": ("MAIL FROM:<address>", " [SP <mail-parameters>]"),
    "NOOP": ("NOOP [ignored]", ""),
    "QUIT": ("QUIT", ""),
    "RCPT": ("RCPT TO:<address>", " [SP <mail-parameters>]"),
    "RSET": ("RSET", ""),
    "VRFY": ("VRFY <address>", ""),
}
_SUPPORTED = "Supported commands: " + " ".join(sorted(HELP_SYNTAX))


def with_enhanced(reply: str) -> str:
    """Add an enhanced status code to a reply that lacks one (not 220/354)."""
    code = reply[:3]
    if not code.isdigit() or code[0] not in "245" or code == "220" or _ENHANCED.match(reply):
        return reply
    enh = _DEFAULT_ENHANCED.get(int(code), f"{code[0]}.0.0")
    return f"{reply[:4]}{enh} {reply[4:]}".rstrip()


def greeting(hostname: str) -> str:
    return f"220 {hostname} {IDENT}"


def hello(hostname: str, helo: str, ip: str) -> str:
    """The first line of the EHLO/HELO answer (the client's name made printable)."""
    return f"{hostname} Hello {_UNPRINTABLE.sub('?', helo)[:64]} [{ip}]"


def ehlo_reply(first: str, *, max_size: int, etrn: bool, starttls: bool = False,
               auth: tuple[str, ...] = (), atrn: bool = False) -> str:
    """EHLO's multi-line 250: FIRST, then the extensions we offer now
    (STARTTLS before TLS only, AUTH with its mechanisms only where it may
    be used, ATRN on an ODMR listener)."""
    lines = [first, f"SIZE {max_size}", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES",
             "DSN", "SMTPUTF8"]
    if etrn:
        lines.append("ETRN")
    if starttls:
        lines.append("STARTTLS")
    if auth:
        lines.append("AUTH " + " ".join(auth))
    if atrn:
        lines.append("ATRN")
    lines.append("HELP")
    last = len(lines) - 1
    return "\r\n".join(f"250{'-' if i < last else ' '}{line}" for i, line in enumerate(lines))


def help_reply(arg: str | None, *, extended: bool) -> str:
    """HELP: the verbs we know; HELP VERB: its syntax (501 and the list
    for a verb we do not know)."""
    if not arg:
        return f"250 {_SUPPORTED}"
    entry = HELP_SYNTAX.get(arg.upper())
    if entry is None:
        return f"501 {_SUPPORTED}"
    syntax, extension = entry
    return f"250 Syntax: {syntax}{extension if extended else ''}"
