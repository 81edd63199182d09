"""cli/mailback.py - sendmail's ErrorMode=m (``-oem``, as cron and mutt call it):
the report a refused recipient's message goes back to its sender in.

Owns: ``error_report(env, data, refused, hostname=, postmaster=, now=) ->
(Envelope, bytes) | None``: the RFC 3464 failure report (delivery/dsn.py) for
the recipients the daemon (or the local check with the daemon down) refused at
submission, addressed to the envelope sender with the original message, as
sendmail mails errors back under ``-oem``.  Cron's job output for a mistyped
MAILTO is then in the sender's mailbox instead of lost with exit 67.

Never: talks to the daemon or reads a file; sendmail.py submits the report
like any message (the null sender, so nothing reports about it).  None for a
message from the null sender (there is nobody to tell) or nothing refused.
"""

from __future__ import annotations

from edgemail.delivery import dsn
from edgemail.envelope import Envelope, Recipient


def error_report(env: Envelope, data: bytes, refused: list[dict], *, hostname: str,
                 postmaster: str, now: float) -> tuple[Envelope, bytes] | None:
    """The failure report for REFUSED ({"address", "reply"} each) of ENV's message."""
    if not refused or env.mail_from == "":
        return None
    by_address = {r.address: r for r in env.recipients}
    results = [dsn.RcptResult(by_address.get(r["address"], Recipient(r["address"])), "failed",
                              _status(r["reply"]), r["reply"], last_attempt=now) for r in refused]
    report = dsn.build(env, data, results, qid="(submission)", reporting_mta=hostname,
                       postmaster=postmaster, now=now)
    if not isinstance(report, dsn.Report):
        return None
    return report.envelope(now), report.data


def _status(reply: str) -> str:
    """"550 5.1.1 <a@b>... User unknown" -> "5.1.1" (5.0.0 without one)."""
    parts = reply.split()
    return parts[1] if len(parts) > 1 and parts[1][:2] in ("5.", "4.") else "5.0.0"
