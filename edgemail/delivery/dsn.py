"""delivery/dsn.py - delivery status notifications (RFC 3464), built, not sent.

NAME
    dsn - failure, delay and success reports as multipart/report bytes (pure core)

DESCRIPTION
    ``build(env, original, results, ...)`` returns a ``Report`` (CRLF bytes,
    the envelope sender "" and the recipients to send it to), or ``Dropped``
    when nothing may be sent, or None when nobody asked for one.

      * failure ("failed"): to the sender unless NOTIFY says otherwise (no
        NOTIFY = FAILURE and DELAY, RFC 3461 4.1 and sendmail); the original
        message is returned in full (message/rfc822) unless RET=HDRS or
        ``nobodyreturn`` is set, then only its header (text/rfc822-headers).
      * delay ("delayed"): only for recipients with NOTIFY=DELAY, or with no
        NOTIFY at all (sendmail: warnings go out unless the client used
        NOTIFY without DELAY); header only; Will-Retry-Until is given.
      * success ("delivered", or "relayed" when the next hop has no DSN):
        only for NOTIFY=SUCCESS; header only.
    Every report has the null sender ``<>`` (RFC 5321 4.5.5) and
    ``Auto-Submitted: auto-replied`` (RFC 3834).

    Never a report about a report: for a message whose sender is ``<>``,
    delays and successes are not reported, and a failure becomes a *double
    bounce* to the postmaster.  A double bounce carries an ENVID beginning
    with ``DOUBLE_BOUNCE_ENVID``; when it fails in turn, ``build`` returns
    ``Dropped`` (its ``log_line`` is maillog.dsn_dropped, which the runner
    writes).  ``errors_to`` (an owner- alias) replaces the sender as the
    recipient of failure reports.

    Per-message fields: Reporting-MTA (our hostname), Original-Envelope-Id
    (from ENVID; RFC 3464 2.2.1 names it so, without "X-"), Arrival-Date.
    Per-recipient: Final-Recipient, Original-Recipient (ORCPT, xtext
    decoded), Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date,
    Will-Retry-Until (delays).

NEVER
    Sends, queues or logs: the runner commits the returned bytes with
    ``Report.envelope()``.  Peer text (diagnostics) is stripped of control
    characters before it enters a header field.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from email.utils import format_datetime

from edgemail import maillog
from edgemail.clock import utc
from edgemail.envelope import Envelope, Recipient
from link.durations import describe

DOUBLE_BOUNCE_ENVID = "edgemail-double-bounce"
ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
_NOTIFY_WORD = {"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS",
                "relayed": "SUCCESS", "expanded": "SUCCESS"}


@dataclass(frozen=True)
class RcptResult:
    """What happened to one recipient, as the runner knows it."""

    recipient: Recipient
    #: one of ACTIONS
    action: str
    #: enhanced status code, "5.1.1"
    status: str
    #: the remote reply or local reason ("550 5.1.1 <x>... User unknown")
    diagnostic: str = ""
    #: "mx.example.net" (empty for local delivery)
    remote_mta: str = ""
    last_attempt: float | None = None
    #: delays: when we give up (arrival + Timeout.queuereturn)
    will_retry_until: float | None = None
    #: address after alias expansion, when it differs
    final_recipient: str | None = None


@dataclass(frozen=True)
class Report:
    """A report ready to queue."""

    kind: str                       # "failure", "delay", "success", "double-bounce"
    recipients: tuple[str, ...]
    data: bytes
    envid: str | None = None
    eight_bit: bool = False
    mail_from: str = ""

    def envelope(self, now: float) -> Envelope:
        return Envelope(self.mail_from, tuple(Recipient(r) for r in self.recipients),
                        envid=self.envid, body="8BITMIME" if self.eight_bit else None,
                        size=len(self.data), proto="local", client="localhost", arrived=now)


@dataclass(frozen=True)
class Dropped:
    """A double bounce failed: nothing is sent, the runner logs ``log_line`` (maillog.dsn_dropped)."""

    qid: str
    recipients: tuple[str, ...]
    reason: str

    @property
    def log_line(self) -> str:
        return maillog.dsn_dropped(self.qid, self.recipients, self.reason)


def wants(rcpt: Recipient, action: str) -> bool:
    """Does this recipient's NOTIFY ask for a report of `action`?"""
    notify = {n.upper() for n in rcpt.notify}
    if "NEVER" in notify:
        return False
    if not notify:
        return action in ("failed", "delayed")
    return _NOTIFY_WORD[action] in notify


def is_double_bounce(env: Envelope) -> bool:
    return env.mail_from == "" and (env.envid or "").startswith(DOUBLE_BOUNCE_ENVID)


def build(env: Envelope, original: bytes, results: list[RcptResult], *, qid: str,
          reporting_mta: str, postmaster: str, now: float,
          errors_to: str | None = None, nobodyreturn: bool = False,
          warn_after: float | None = None, return_after: float | None = None) -> Report | Dropped | None:
    """The report for `results` (all of one kind: failed, delayed, or
    delivered/relayed/expanded).  A delay report says "for past WARN_AFTER"
    and "until message is RETURN_AFTER old" (Timeout.queuewarn/queuereturn
    as configured, spelled out: "4 hours", "5 days"); without them, the
    time waited and the retry limit, rounded."""
    if not results:
        return None
    kind = _kind(results)
    if env.mail_from == "":
        if kind != "failure":
            return None                      # never a report about a report
        if is_double_bounce(env):
            return Dropped(qid, tuple(r.recipient.address for r in results),
                           "; ".join(_clean(r.diagnostic or r.status) for r in results))
        to, kind, chosen = postmaster, "double-bounce", results
    else:
        chosen = [r for r in results if wants(r.recipient, r.action)]
        if not chosen:
            return None
        to = (errors_to or env.mail_from) if kind == "failure" else env.mail_from
    full = kind in ("failure", "double-bounce") and env.ret != "HDRS" and not nobodyreturn
    times = _times(env, chosen, now, warn_after, return_after)
    data, eight_bit = _render(env, original, chosen, kind=kind, to=to, qid=qid,
                              reporting_mta=reporting_mta, now=now, full=full, times=times)
    envid = f"{DOUBLE_BOUNCE_ENVID}.{qid}" if kind == "double-bounce" else None
    return Report(kind, (to,), data, envid, eight_bit)


def _kind(results: list[RcptResult]) -> str:
    actions = {r.action for r in results}
    if actions <= {"failed"}:
        return "failure"
    if actions <= {"delayed"}:
        return "delay"
    if actions <= {"delivered", "relayed", "expanded"}:
        return "success"
    raise ValueError(f"one report per kind: got actions {sorted(actions)}")


# ---------------------------------------------------------------- rendering

SUBJECTS = {
    "failure": "Returned mail: see transcript for details",
    "double-bounce": "Postmaster notify: see transcript for details",
    "delay": "Warning: could not send message for past {hours}",
    "success": "Return receipt",
}
INTROS = {
    "failure": "The original message was received at {arrival}\nfrom {client}\n\n"
               "   ----- The following addresses had permanent fatal errors -----",
    "double-bounce": "A delivery status notification could not be delivered.\n"
                     "The original message was received at {arrival}\nfrom {client}\n\n"
                     "   ----- The following addresses had permanent fatal errors -----",
    "delay": "**********************************************\n"
             "**      THIS IS A WARNING MESSAGE ONLY      **\n"
             "**  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\n"
             "**********************************************\n\n"
             "The original message was received at {arrival}\nfrom {client}\n\n"
             "   ----- Transcript of session follows -----\n"
             "Warning: message still undelivered after {hours}\n"
             "Will keep trying until message is {days} old",
    "success": "The original message was received at {arrival}\nfrom {client}\n\n"
               "   ----- The following addresses had successful delivery notifications -----",
}


def _date(ts: float) -> str:
    return format_datetime(utc(ts))


def _clean(text: str) -> str:
    """Peer text for a header field: no control characters, one line."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()


def xtext_decode(text: str) -> str:
    """RFC 3461 xtext: "+2B" -> "+"."""
    return re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _original_recipient(orcpt: str) -> str:
    addr_type, sep, addr = orcpt.partition(";")
    if not sep:
        return f"rfc822; {xtext_decode(orcpt.strip())}"
    return f"{addr_type.strip()}; {xtext_decode(addr.strip())}"


def _duration(seconds: float) -> str:
    """Seconds as sendmail's texts say them: "4 hours", "5 days" (rounded
    to a whole minute from 2 minutes up, so timer jitter never shows)."""
    n = round(seconds) if seconds < 120 else 60 * round(seconds / 60)
    return describe(n)


def _times(env: Envelope, results: list[RcptResult], now: float, warn_after: float | None,
           return_after: float | None) -> tuple[str, str]:
    """The "for past X" and "until message is Y old" words."""
    waited = warn_after if warn_after is not None else max(0.0, now - env.arrived)
    until = max((r.will_retry_until or 0) for r in results)
    limit = return_after if return_after is not None else max(0.0, until - env.arrived)
    return _duration(waited), _duration(limit)


def _per_recipient(r: RcptResult) -> list[str]:
    lines = [f"Final-Recipient: rfc822; {_clean(r.final_recipient or r.recipient.address)}"]
    if r.recipient.orcpt:
        lines.append(f"Original-Recipient: {_clean(_original_recipient(r.recipient.orcpt))}")
    lines += [f"Action: {r.action}", f"Status: {r.status}"]
    if r.remote_mta:
        lines.append(f"Remote-MTA: dns; {_clean(r.remote_mta)}")
    if r.diagnostic:
        dtype = "smtp" if re.match(r"[245]\d\d[ -]", r.diagnostic) else "x-local"
        lines.append(f"Diagnostic-Code: {dtype}; {_clean(r.diagnostic)}")
    if r.last_attempt is not None:
        lines.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")
    if r.will_retry_until is not None:
        lines.append(f"Will-Retry-Until: {_date(r.will_retry_until)}")
    return lines


def _split_header(original: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, _ = original.partition(sep)
        if found:
            return head + b"\r\n"
    return original if original.endswith(b"\r\n") else original + b"\r\n"


def _human(env: Envelope, results: list[RcptResult], kind: str, times: tuple[str, str]) -> str:
    intro = INTROS[kind].format(arrival=_date(env.arrived), client=_clean(env.client or "localhost"),
                                hours=times[0], days=times[1])
    body = [intro]
    for r in results:
        body.append(f"<{_clean(r.recipient.address)}>")
        if r.diagnostic:
            body.append(f"    ({_clean(r.diagnostic)})")
    return "\n".join(body) + "\n"


def _render(env: Envelope, original: bytes, results: list[RcptResult], *, kind: str, to: str,
            qid: str, reporting_mta: str, now: float, full: bool,
            times: tuple[str, str]) -> tuple[bytes, bool]:
    returned = original if full else _split_header(original)
    returned = returned.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    eight_bit = any(b > 127 for b in returned)
    boundary = _boundary(qid, now, returned)
    subject = SUBJECTS[kind].format(hours=times[0])
    per_message = [f"Reporting-MTA: dns; {reporting_mta}"]
    if env.envid:
        per_message.append(f"Original-Envelope-Id: {_clean(xtext_decode(env.envid))}")
    per_message.append(f"Arrival-Date: {_date(env.arrived)}")
    status = "\r\n".join(per_message) + "\r\n" + "".join(
        "\r\n" + "\r\n".join(_per_recipient(r)) + "\r\n" for r in results)
    head = [
        f"From: Mail Delivery Subsystem <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{_clean(to)}>",
        f"Subject: {subject}",
        f"Date: {_date(now)}",
        f"Message-ID: <{qid}.{int(now)}.{kind}@{reporting_mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    returned_type = "message/rfc822" if full else "text/rfc822-headers"
    cte = "8bit" if eight_bit else "7bit"
    parts = [
        "\r\n".join(head).encode(), b"\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n",
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n".encode(),
        _human(env, results, kind, times).replace("\n", "\r\n").encode("ascii", "replace"),
        f"\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n".encode(),
        status.encode("ascii", "replace"),
        f"\r\n--{boundary}\r\nContent-Type: {returned_type}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode(),
        returned,
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts), eight_bit


def _boundary(qid: str, now: float, returned: bytes) -> str:
    seed = f"{qid}/{now}".encode()
    while True:
        boundary = f"{qid}.{hashlib.sha1(seed).hexdigest()[:16]}/edgemail"
        if boundary.encode() not in returned:
            return boundary
        seed += b"+"
