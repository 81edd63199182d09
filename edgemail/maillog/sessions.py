"""maillog/sessions.py - the lines about SMTP sessions: connections, rejects,
errors, timeouts.

The catalogue (edgemail/maillog/__init__.py, section "SMTP sessions") lists
each line with its LogLevel; each function here makes exactly one of them.
Logger: ``edgemail.smtpd``.  A session line names its peer as
``[ip]:port``, so every line of one session ties to the others.

Never: logs (the listener does), or quotes peer input without ``clean()``.
"""

from __future__ import annotations

from edgemail.maillog.text import NOQUEUE, clean, pairs

#: sendmail's ruleset for the stage a refused command belongs to
RULESETS = {"HELO": "check_helo", "EHLO": "check_helo", "MAIL": "check_mail", "RCPT": "check_rcpt",
            "DATA": "check_data", "END-OF-MESSAGE": "check_data", "ETRN": "check_etrn",
            "VRFY": "check_vrfy", "EXPN": "check_expn"}


def reject(reply: str, *, cmd: str, arg: str | None, relay: str, qid: str = NOQUEUE) -> str:
    """An SMTP command refused, in sendmail's ruleset form; `reply` is the
    full reply text (``554 5.7.1 ...``), `arg` the command's argument."""
    ruleset = RULESETS.get(cmd, "check_cmd")
    return f"{qid}: " + pairs(("ruleset", ruleset), ("arg1", _arg1(ruleset, cmd, arg)),
                              ("relay", relay), ("reject", reply))


def _arg1(ruleset: str, cmd: str, arg: str | None) -> str | None:
    """arg1=: the address for MAIL/RCPT (without parameters), the command and
    its argument for check_cmd, else the argument (None: left out)."""
    if ruleset == "check_cmd":
        return f"{cmd[:20]} {arg}".strip() if arg else cmd[:20]
    if cmd in ("MAIL", "RCPT") and arg:
        path = arg.partition(":")[2].strip()      # the path, without the parameters
        return path[:path.find(">") + 1] if path.startswith("<") and ">" in path else path.split(" ")[0]
    return arg or None


def connect(peer: str, listener: str) -> str:
    return f"{NOQUEUE}: connect from {clean(peer)}, listener={clean(listener)}"


def lost_connection(peer: str, after: str) -> str:
    return f"{NOQUEUE}: lost connection after {clean(after)} from {clean(peer)}"


def too_many_errors(peer: str, after: str) -> str:
    return f"{NOQUEUE}: too many errors after {clean(after)} from {clean(peer)}"


def timeout(peer: str, after: str) -> str:
    return f"{NOQUEUE}: timeout waiting for input from {clean(peer)} after {clean(after)}"


def time_limit(peer: str, after: str, limit: str) -> str:
    return f"{NOQUEUE}: {clean(limit)} time limit exceeded for {clean(peer)} after {clean(after)}"


def refused(peer: str, reply: str) -> str:
    return f"{NOQUEUE}: connection refused, relay={clean(peer)}, reply={clean(reply)}"


def internal_error(peer: str, after: str) -> str:
    return f"{NOQUEUE}: internal error after {clean(after)} from {clean(peer)}"


def pregreet(peer: str) -> str:
    return f"{NOQUEUE}: rejecting commands from {clean(peer)} due to pre-greeting traffic"


def tls_started(peer: str, version: str, cipher: str, bits: int) -> str:
    return f"{NOQUEUE}: STARTTLS=server, " + pairs(("relay", peer), ("version", version),
                                                   ("cipher", cipher), ("bits", bits))


def tls_failed(peer: str, error: object) -> str:
    return f"{NOQUEUE}: STARTTLS=server, " + pairs(("relay", peer), ("error", error))


def tls_pipelined(peer: str, dropped: int) -> str:
    return f"{NOQUEUE}: STARTTLS=server, relay={clean(peer)}, discarded={dropped} (bytes pipelined after STARTTLS)"


def auth_ok(peer: str, user: str, mech: str) -> str:
    return f"{NOQUEUE}: AUTH=server, " + pairs(("relay", peer), ("authid", user[:64]), ("mech", mech))


def auth_failed(peer: str, user: str, mech: str, failures: int) -> str:
    return (f"{NOQUEUE}: AUTH failure ({clean(mech)}): authentication failed, "
            + pairs(("authid", user[:64]), ("relay", peer), ("failures", failures)))


def auth_busy(peer: str, user: str, mech: str, pending: int) -> str:
    return (f"{NOQUEUE}: AUTH busy ({clean(mech)}): too many authentication checks pending, "
            + pairs(("authid", user[:64]), ("relay", peer), ("pending", pending)))
