"""smtpd/syntax.py - one command line's syntax, sans I/O: its verb and
argument, or the 500 that refuses it.

Owns ``split_command()``: the line's end (strict listeners: CRLF only; a
bare LF ending the line or a bare CR inside it is ``500 5.5.2``, never
executed; LAN listeners take a bare LF as the end), an empty or non-ASCII
verb (``500 5.5.2 bad syntax``), and the length limits (RFC 5321 4.5.3.1:
512 octets; MAIL and RCPT 1024 after EHLO, for their parameters; AUTH
12288, RFC 4954 section 4).  A refused line comes back as ``BadLine`` with
what the log may name of it (the line's own first word and argument, never
the previous command's; never an AUTH argument).

Never: I/O, state, logging.
"""

from __future__ import annotations

from dataclasses import dataclass

#: command line limits (without CR LF): MAIL/RCPT after EHLO, AUTH, everything else
COMMAND_LIMITS = {"MAIL": 1024, "RCPT": 1024}
COMMAND_LIMIT = 512
AUTH_LIMIT = 12288
#: an HTTP request sent to port 25 (a browser, a proxy abused by a web page:
#: cross-protocol attacks): the session ends at once (Postfix's
#: smtpd_forbidden_commands), nothing after it is read
NON_SMTP = frozenset({"GET", "POST", "CONNECT", "HEAD", "PUT", "OPTIONS", "DELETE"})


@dataclass(frozen=True)
class BadLine:
    """A refused command line: the reply, and the line as the log names it."""
    reply: str
    verb: str
    arg: str | None
    #: the session ends after the reply (an HTTP request: NON_SMTP)
    close: bool = False


def split_command(line: bytes, *, strict: bool, extended: bool) -> tuple[str, str | None] | BadLine:
    """(VERB, argument) of LINE (with its line end), or why it is refused."""
    body = line.rstrip(b"\r\n")
    verb_bytes, _, arg_bytes = body.partition(b" ")
    if strict and (not line.endswith(b"\r\n") or b"\r" in body):
        reply = "500 5.5.2 Error: bare LF or CR in command line; lines must end with CRLF"
    elif not body or not verb_bytes.isascii():
        reply = "500 Error: bad syntax"
    else:
        verb = verb_bytes.upper().decode("ascii")
        if verb in NON_SMTP:
            return BadLine(f"554 5.7.0 Error: {verb} is no SMTP command (an HTTP request?): goodbye",
                           verb, None, close=True)
        limit = COMMAND_LIMITS.get(verb, COMMAND_LIMIT) if extended else COMMAND_LIMIT
        if len(body) <= (AUTH_LIMIT if verb == "AUTH" else limit):
            return verb, (str(arg_bytes.strip(), "utf-8", "surrogateescape") if arg_bytes else None)
        reply = "500 Command line too long"
    first = verb_bytes[:20].decode("ascii", "backslashreplace")
    first = first.upper() if verb_bytes.isascii() else first
    arg = None if first == "AUTH" or not arg_bytes else arg_bytes[:100].decode("utf-8", "backslashreplace")
    return BadLine(reply, first or "(empty line)", arg)
