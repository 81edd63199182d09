"""delivery/reports.py - turning final failures and long delays into queued DSNs.

NAME
    reports - failure, expiry and delay reports, committed as new messages

DESCRIPTION
    ``delivered(entry, data, sent, now)``: success reports for NOTIFY=SUCCESS
    (RFC 3461 6.2: "delivered" into a mailbox, "relayed" to a host without
    DSN; nothing when the next hop took NOTIFY, or with noreceipts).
    ``Reporter.failed(entry, data, failures, now)`` builds RFC 3464 failure
    reports (dsn.build) for the (job, attempt) pairs that became BOUNCED or
    EXPIRED (outcome.decide says which), one report per errors-to address (owner- aliases), and commits each into the
    spool with the null sender; the new qid is handed to ``on_commit`` so it
    is delivered like any other mail (at once when it goes to a local
    mailbox).  ``delayed(...)`` does the same for a Timeout.queuewarn
    warning (only recipients whose NOTIFY asks for it: dsn.wants).  Never a
    report about a report: dsn.build turns a failed report into a double
    bounce to the postmaster and drops a failed double bounce (logged).

    Log lines (logger edgemail.runner; formats in maillog): dsn_queued(),
    dsn_not_queued(), dsn_dropped().

NEVER
    Sends anything itself, or reports about the null sender's mail except
    as a double bounce.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable, Sequence

from edgemail import maillog
from edgemail.delivery import dsn
from edgemail.delivery.port import Job
from edgemail.config.model import Config
from edgemail.envelope import Attempt
from edgemail.errors import SpoolError
from edgemail.spool import schedule
from edgemail.spool.record import QueueEntry
from edgemail.spool.store import Store

log = logging.getLogger("edgemail.runner")


class Reporter:
    """Failure and delay reports, committed into STORE and handed to ON_COMMIT."""

    def __init__(self, cfg: Config, store: Store, on_commit: Callable[[str], None]) -> None:
        self.cfg, self.store, self.on_commit = cfg, store, on_commit
        self.postmaster = f"postmaster@{cfg.local_domains[0]}"
        self.nobodyreturn = "nobodyreturn" in cfg.PrivacyOptions

    async def failed(self, entry: QueueEntry, data: bytes,
                     failures: Sequence[tuple[Job, Attempt]], now: float) -> list[str]:
        """The failure report for FAILURES (outcome.decide's ``failed``: jobs
        that became BOUNCED or EXPIRED), one per errors-to address."""
        by_owner: dict[str | None, list[dsn.RcptResult]] = defaultdict(list)
        for j, a in failures:
            by_owner[j.decision.errors_to].append(dsn.RcptResult(
                j.rcpt, "failed", a.dsn, a.text, remote_mta=_remote(a), last_attempt=now,
                final_recipient=j.decision.address if j.decision.address != j.rcpt.address else None))
        qids = []
        for owner, results in by_owner.items():
            qids += await self._queue(entry, data, results, now, errors_to=owner)
        return qids

    async def delivered(self, entry: QueueEntry, data: bytes,
                        sent: Sequence[tuple[Job, Attempt]], now: float) -> list[str]:
        """The success report (RFC 3461 NOTIFY=SUCCESS) for SENT: "delivered"
        into a mailbox (local, maildir, LMTP), "relayed" to a host that does
        not advertise DSN; none where the next hop took NOTIFY (it reports),
        and none at all with PrivacyOptions noreceipts (sendmail)."""
        if "noreceipts" in self.cfg.PrivacyOptions:
            return []
        results = []
        for j, a in sent:
            if not dsn.wants(j.rcpt, "delivered") or a.extra.get("next_hop_dsn"):
                continue
            action = "delivered" if j.decision.kind in _MAILBOXES else "relayed"
            text = "delivered to maildir" if a.relay == "maildir" else a.text   # never our paths
            results.append(dsn.RcptResult(
                j.rcpt, action, a.dsn, text, remote_mta=_remote(a), last_attempt=now,
                final_recipient=j.decision.address if j.decision.address != j.rcpt.address else None))
        return await self._queue(entry, data, results, now)

    async def delayed(self, entry: QueueEntry, data: bytes, jobs: list[Job], now: float) -> list[str]:
        until = entry.created + schedule.return_after(entry.envelope, self.cfg.Timeout)
        results = []
        for j in jobs:
            last = entry.last_attempt.get(j.key)
            results.append(dsn.RcptResult(
                j.rcpt, "delayed", last.dsn if last else "4.0.0",
                last.text if last else "not yet attempted (waiting for the link)",
                remote_mta=_remote(last) if last else "", last_attempt=last.at if last else None,
                will_retry_until=until))
        return await self._queue(entry, data, results, now)

    async def _queue(self, entry: QueueEntry, data: bytes, results: list[dsn.RcptResult], now: float,
                     errors_to: str | None = None) -> list[str]:
        report = dsn.build(entry.envelope, data, results, qid=entry.qid,
                           reporting_mta=self.cfg.hostname, postmaster=self.postmaster, now=now,
                           errors_to=errors_to, nobodyreturn=self.nobodyreturn,
                           warn_after=schedule.warn_after(entry.envelope, self.cfg.Timeout),
                           return_after=schedule.return_after(entry.envelope, self.cfg.Timeout))
        if report is None:
            return []
        if isinstance(report, dsn.Dropped):
            log.warning(maillog.dsn_dropped(report.qid, report.recipients, report.reason))
            return []
        env = report.envelope(now)
        try:
            qid = await self.store.commit(env, report.data)
        except SpoolError as exc:
            log.error(maillog.dsn_not_queued(entry.qid, report.kind, exc))
            raise
        logging.getLogger("edgemail.spool").info(maillog.received(qid, env))
        log.info(maillog.dsn_queued(entry.qid, report.kind, qid, report.recipients))
        self.on_commit(qid)
        return [qid]


#: route kinds whose delivery is final: a success there is "delivered"
_MAILBOXES = ("local", "maildir", "lmtp")


def _remote(a: Attempt) -> str:
    if a.relay in ("maildir", "error", "alias", "none", ""):
        return ""
    return a.relay.split("[", 1)[0]
