"""delivery/port.py - the runner's small words: LinkPort, RunReport, Job, and pure helpers.

NAME
    port - the seam to the link manager and the values the runner passes around

DESCRIPTION
    ``LinkPort`` is what the runner needs from the link manager (docs/interfaces.md):
    ``state``, ``hold(reason)`` (an async context manager that keeps the line
    up while inside) and ``wait_up(timeout) -> bool`` (DialDelay: wait for
    link-up, bounded).  ``link=None`` means "no link manager": expensive
    routes wait for an explicit queue run, which then treats the link as
    available (a LAN-only box, or a link brought up by someone else).

    Pure helpers: ``is_cheap`` (is this job delivered right after commit?),
    ``failed_attempt`` (a DeliveryFailure as an Attempt that remembers its
    scope), ``cut_attempt``/``is_cut`` (a delivery cut by the link),
    ``stat_text`` (sendmail's ``stat=``), ``is_ip``, ``parse_hosts``
    (/etc/hosts text -> name -> address: cheap routes never use DNS),
    ``connect_failed`` (is this the failure DialDelay is for?),
    ``pending_jobs`` (a queue entry's deliveries still to do, given the
    router's ``route``), ``mailbox`` and ``one_per_mailbox`` (one delivery
    per final mailbox per message, QA-7).

NEVER
    Does I/O: deliver.py reads the hosts file and hands its text to
    ``parse_hosts``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import AsyncContextManager, Callable, Protocol

from edgemail.delivery.routing import Decision
from edgemail.envelope import Attempt, RcptStatus, Recipient
from edgemail.errors import DeliveryFailure, Scope
from edgemail.spool.record import QueueEntry

#: link states in which a link-up is on its way (DialDelay waits for it)
COMING_UP = ("dialing", "connecting")


class LinkPort(Protocol):
    """The link as the runner sees it (the link package's manager fulfils it)."""

    #: "down", "dialing", "connecting", "up", "hanging-up"
    state: str

    def hold(self, reason: str) -> AsyncContextManager[None]:
        """Keep the line up while inside."""

    async def wait_up(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds for the link to be up; True if it is."""

    def big_mail_wait(self, size: int, urgent: bool) -> str:
        """Why a message this big waits for a cheap window ("" : it may go now)."""


@dataclass(frozen=True)
class Job:
    """One delivery: an envelope recipient as routed (an alias may give several)."""

    rcpt: Recipient            # as the envelope has it
    decision: Decision         # where it goes; decision.address is the final address
    key: str                   # the spool's rcpt_status key for this delivery

    @property
    def wire(self) -> Recipient:
        """The recipient as sent on (the final address, the original's DSN parameters)."""
        return Recipient(self.decision.address, orcpt=self.rcpt.orcpt, notify=self.rcpt.notify)


@dataclass
class RunReport:
    """What one queue run did."""

    run: str
    reason: str
    filters: tuple[str, ...] = ()
    selected: int = 0
    attempted: int = 0
    sent: int = 0
    deferred: int = 0
    bounced: int = 0
    #: recipients whose delivery was cut by link loss or stop_run (not counted)
    cut: int = 0
    skipped_hosts: list[str] = field(default_factory=list)
    #: "" (ran to the end), "stop" (stop_run), "budget", "link" (link lost)
    stopped: str = ""
    seconds: float = 0.0
    #: the link manager had the line down: expensive routes were left for the link
    link_wait: bool = False

    def message(self) -> str:
        text = (f"queue run {self.run} ({self.reason}): selected={self.selected}, "
                f"attempted={self.attempted}, sent={self.sent}, deferred={self.deferred}, "
                f"bounced={self.bounced}")
        if self.cut:
            text += f", cut={self.cut}"
        if self.stopped:
            text += f", stopped={self.stopped}"
        if self.link_wait:
            text += ", expensive routes wait for the link"
        return text

    def as_dict(self) -> dict:
        return {"run": self.run, "reason": self.reason, "filters": list(self.filters),
                "selected": self.selected, "attempted": self.attempted, "sent": self.sent,
                "deferred": self.deferred, "bounced": self.bounced, "cut": self.cut,
                "skipped_hosts": list(self.skipped_hosts), "stopped": self.stopped,
                "seconds": round(self.seconds, 3)}


def is_cheap(job: Job) -> bool:
    """Delivered at once after commit: not expensive, and no DNS needed (mx and
    hold always need DNS, so they are never cheap, whatever the flag says)."""
    return not job.decision.expensive and job.decision.kind not in ("mx", "hold")


def failed_attempt(exc: DeliveryFailure, relay: str, now: float, scope: Scope | None = None) -> Attempt:
    """EXC as a recorded Attempt; SCOPE overrides the error's own (a LINK
    failure where no link is to blame is recorded as SITE: not a cut)."""
    status = RcptStatus.BOUNCED if exc.permanent else RcptStatus.DEFERRED
    return Attempt(status, exc.dsn, exc.reply or exc.reason, relay=relay, at=now,
                   extra={"scope": (scope or exc.scope).value})


def cut_attempt(reason: str, relay: str, now: float) -> Attempt:
    """A delivery cut by link loss or stop_run: not recorded, grows no backoff."""
    return Attempt(RcptStatus.DEFERRED, "4.4.2", reason, relay=relay, at=now,
                   extra={"scope": Scope.LINK.value})


def is_cut(a: Attempt) -> bool:
    return a.status is RcptStatus.DEFERRED and a.extra.get("scope") == Scope.LINK.value


def stat_text(a: Attempt) -> str:
    """sendmail's stat=: "Sent (reply)", "Deferred: reason", or the bounce reason."""
    if a.status is RcptStatus.SENT:
        return f"Sent ({a.text})"
    if a.status is RcptStatus.DEFERRED:
        return f"Deferred: {a.text}"
    if a.status is RcptStatus.EXPIRED:
        return f"Expired: {a.text}"
    return a.text


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_hosts(text: str) -> dict[str, str]:
    """/etc/hosts text -> {name (lower case): first address listed for it}."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or not is_ip(fields[0]):
            continue
        for name in fields[1:]:
            found.setdefault(name.lower().rstrip("."), fields[0])
    return found


def connect_failed(exc: DeliveryFailure) -> bool:
    """The failure DialDelay is for: no connection was made at all."""
    if getattr(exc, "phase", None) == "connect":
        return True
    return exc.temporary and ("connect to " in exc.reason or "(connect)" in exc.reason)


def pending_jobs(entry: QueueEntry, route: Callable[[str], list[Decision]]
                 ) -> tuple[list[Job], dict[str, list[str]]]:
    """The deliveries still to do, and for aliased recipients the keys of their
    expansions: one Job per pending recipient, or per expansion of an alias
    (key "rcpt>address"), skipping what is final already."""
    jobs: list[Job] = []
    expansions: dict[str, list[str]] = {}
    seen: set[str] = set()
    for rcpt in entry.envelope.recipients:
        st = entry.rcpt_status.get(rcpt.address)
        if st is not None and st.final:
            continue
        decisions = list({d.address.lower(): d for d in route(rcpt.address)}.values())
        if len(decisions) == 1:
            keys = [rcpt.address]
        else:
            keys = [f"{rcpt.address}>{d.address}" for d in decisions]
            expansions[rcpt.address] = keys
        for d, key in zip(decisions, keys):
            st = entry.rcpt_status.get(key)
            if (st is None or not st.final) and key not in seen:
                seen.add(key)           # the same RCPT given twice is one recipient
                jobs.append(Job(rcpt, d, key))
    return jobs, expansions


def mailbox(d: Decision) -> str | None:
    """Where a delivery ends, as duplicates are told apart (QA-7; sendmail
    drops duplicates after alias expansion): a local or maildir route by its
    maildir path (the user name is lower-cased, +detail dropped), any other
    by its next hop and the address with the domain lower-cased (already an
    A-label: address.py) and the local part as given (RFC 5321 2.4: a
    remote local part may be case-sensitive; sendmail's F=u).  None for an
    error route: nothing is delivered."""
    if d.kind == "error":
        return None
    if d.kind in ("local", "maildir"):
        return f"{d.kind}:{d.target}"
    local, _, domain = d.address.rpartition("@")
    return f"{d.nexthop}|{local}@{domain.lower()}"


def one_per_mailbox(jobs: list[Job]) -> tuple[list[Job], dict[str, str]]:
    """The jobs to deliver (the first for each mailbox), and for each other
    job reaching a mailbox already delivered to, its key -> the key of the
    job that delivers for it (its attempt is that job's: one delivery, and a
    DSN for each original recipient)."""
    first: dict[str, str] = {}
    deliver: list[Job] = []
    riders: dict[str, str] = {}
    for j in jobs:
        box = mailbox(j.decision)
        if box is not None and box in first:
            riders[j.key] = first[box]
            continue
        if box is not None:
            first[box] = j.key
        deliver.append(j)
    return deliver, riders
