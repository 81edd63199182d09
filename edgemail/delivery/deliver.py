"""delivery/deliver.py - one message's recipients to their next hops (driver).

NAME
    deliver - group jobs by next hop, send each group once, return one Attempt per job

DESCRIPTION
    ``Deliverer.deliver(env, data, jobs, ctx)`` groups jobs by
    ``Decision.nexthop`` (one SMTP/LMTP transaction with many recipients per
    host; the SmtpClient's connection cache reuses connections across
    messages) and delivers each group:

      local, maildir  transports.maildir, one file per recipient
      lmtp            transports.lmtp (LAN: no TLS, no DialDelay)
      relay           SMTP to the route's host; opportunistic TLS
      smarthost       SMTP to SmartHost; TLS verified (``smarthost_tls``),
                      AUTH with the SmartHostAuthFile credentials
      mx, hold        DNS (MxResolver.targets: the only place a DNS query is
                      made) then SMTP to each MX in order until one answers;
                      a hold route leaves out the MX hosts at our preference
                      or worse (customers.beyond_us: we are the backup MX),
                      or goes to the customer's ``deliver`` host; in an ODMR
                      push (``ctx.via``) over the customer's own connection
      error           the route's reply, as a bounce (5xx) or deferral (4xx)

    Host names: a route's host that is an IP literal is used as is.  A name
    is looked up in the hosts file (/etc/hosts) - never DNS - on routes that
    are not expensive (cheap deliveries happen while the link is down and
    must not make a query: DESIGN invariant 1/3); a name missing there
    defers with a reason saying so.  Expensive routes fall back to the
    resolver's address lookup.

    Host status (expensive routes only; LAN hosts are cheap to retry): a host
    that failed with scope SITE is skipped for the rest of the run and until
    Timeout.hoststatus (``ctx.hosts``); success or failure is recorded.
    Deliveries of one run run side by side (queuerun.py), so the first contact
    with a host in a run goes alone: the others for that host wait for its
    outcome (``ctx.contact``), then are skipped if it failed.

    DialDelay (routes flagged ``dialdelay`` only, sendmail F=Z): after a failed
    first connect, wait for link-up if the link is coming up
    (``link.wait_up(DialDelay)``), else sleep DialDelay, then try once more.
    LAN routes never pay it.

NEVER
    Touches the spool or logs results (the driver records and logs), or
    raises for a delivery failure: every job gets an Attempt.  Failures of
    scope LINK come back as "cut" attempts (``port.is_cut``): the driver
    records nothing for them, so no backoff grows.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from edgemail import maillog
from edgemail.delivery import lmtp, maildir
from edgemail.delivery.customers import beyond_us
from edgemail.delivery.hoststatus import HostStatusCache
from edgemail.delivery.port import (
    COMING_UP,
    Job,
    connect_failed,
    cut_attempt,
    failed_attempt,
    is_ip,
    parse_hosts,
)
from edgemail.delivery.routing import split
from edgemail.envelope import Attempt, Envelope, RcptStatus
from edgemail.errors import ConfigError, DeliveryFailure, PermFail, Scope, TempFail
from edgemail.smtpc.core import MessageParams
from edgemail.smtpc.results import DeliveryResult
from edgemail.smtpc.tls import MX_TLS, SMARTHOST_TLS, TlsPolicy, load_credentials

log = logging.getLogger("edgemail.runner")

SMTP_KINDS = ("relay", "smarthost", "mx", "hold")


class Via(Protocol):
    """The connection an ODMR push delivers over (flush.py's, after ATRN)."""

    relay: str

    async def send(self, env: Envelope, data: bytes, jobs: list[Job]) -> DeliveryResult: ...


@dataclass
class RunContext:
    """What one run (or one cheap delivery) shares across messages."""

    run: str
    hosts: HostStatusCache
    now: Callable[[], float]
    skipped: list[str] = field(default_factory=list)
    #: host -> set once the run's first delivery attempt to it is over
    contact: dict[str, asyncio.Event] = field(default_factory=dict)
    #: an ODMR push: hold jobs go over this connection (flush.Via), not to their host
    via: Via | None = None

    async def first_contact(self, host: str) -> asyncio.Event | None:
        """The event to set when done if this is the run's first try of HOST;
        else None, after waiting for that first try to be over."""
        seen = self.contact.get(host)
        if seen is None:
            seen = self.contact[host] = asyncio.Event()
            return seen
        await seen.wait()
        return None


class Deliverer:
    def __init__(self, cfg, *, clock, smtp, resolver, link=None,
                 smarthost_tls: TlsPolicy = SMARTHOST_TLS, hosts_file: str = "/etc/hosts",
                 mx_port: int = 25) -> None:
        self.cfg, self.clock, self.smtp, self.resolver, self.link = cfg, clock, smtp, resolver, link
        self.mx_port = mx_port
        self.smarthost_tls = smarthost_tls
        self.hosts_file = hosts_file

    # ------------------------------------------------------------ entry point

    async def deliver(self, env: Envelope, data: bytes, jobs: list[Job],
                      ctx: RunContext, *, qid: str = "") -> dict[str, Attempt]:
        """One Attempt per job.  A group whose transport raised (a bug, or
        content the client refuses to send) is logged once with its
        traceback and deferred 4.3.0; the other groups keep their results."""
        data = _sendable(data)
        groups: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            groups[job.decision.nexthop].append(job)
        out: dict[str, Attempt] = {}
        for group in groups.values():
            try:
                out.update(await self._group(env, data, group, ctx))
            except Exception as exc:      # issue 16 §8: never the whole message, never the run
                out.update(self._internal_error(qid, group, exc, ctx.now()))
        return out

    def _internal_error(self, qid: str, jobs: list[Job], exc: Exception, now: float) -> dict[str, Attempt]:
        reason = f"{type(exc).__name__}: {exc}"
        log.error(maillog.delivery_internal_error(qid or "NOQUEUE", reason), exc_info=exc)
        return {j.key: Attempt(RcptStatus.DEFERRED, "4.3.0", f"internal error: {reason}",
                               relay=j.decision.host or "none", at=now, extra={"scope": "message"})
                for j in jobs}

    def _link_lost(self, d) -> bool:
        """Is a LINK-scope failure (DNS timeout, network unreachable) the
        link's?  Only for a route that needs the link while a link manager
        runs it; otherwise (``[link] mode = "none"``, a cheap route) it is
        this destination's trouble: recorded, backed off, the run goes on."""
        return self.link is not None and d.expensive

    async def _group(self, env, data, jobs: list[Job], ctx: RunContext) -> dict[str, Attempt]:
        d = jobs[0].decision
        try:
            if d.kind in ("local", "maildir"):
                return {j.key: await self._maildir(env, data, j, ctx) for j in jobs}
            if d.kind == "error":
                return {j.key: _error_attempt(j.decision.reply, ctx.now()) for j in jobs}
            if d.kind == "hold" and ctx.via is not None:
                return self._results(jobs, await ctx.via.send(env, data, jobs), ctx.via.relay, ctx.now())
            if d.kind == "lmtp":
                host = await self._address(d.host, expensive=d.expensive)
                got = await lmtp.deliver(self.smtp, host, d.port, env, [j.wire for j in jobs],
                                         data, now=ctx.now())
                return {j.key: got[j.decision.address] for j in jobs}
            return await self._smtp(env, data, jobs, ctx)
        except DeliveryFailure as exc:
            if exc.scope is Scope.LINK and self._link_lost(d):
                return {j.key: cut_attempt(f"{exc.reason}: link down?", d.host or "none", ctx.now())
                        for j in jobs}
            return {j.key: failed_attempt(exc, d.host or "none", ctx.now(), scope=_not_link(exc))
                    for j in jobs}

    async def _maildir(self, env, data, job: Job, ctx) -> Attempt:
        try:
            return await maildir.deliver(job.decision.target, data, mail_from=env.mail_from,
                                         rcpt=job.decision.address, host=self.cfg.hostname,
                                         now=ctx.now(), perms=maildir.perms_for(self.cfg.local))
        except DeliveryFailure as exc:
            return failed_attempt(exc, "maildir", ctx.now())

    # ------------------------------------------------------------ SMTP routes

    async def _smtp(self, env, data, jobs: list[Job], ctx: RunContext) -> dict[str, Attempt]:
        d = jobs[0].decision
        targets = await self._targets(d)
        tls, creds = self._tls(d.kind)
        last: DeliveryFailure | None = None
        for name, addr, port in targets:
            first = await ctx.first_contact(name) if d.expensive else None
            try:
                if d.expensive and ctx.hosts.skip(name, ctx.now(), self.cfg.Timeout.hoststatus, run=ctx.run):
                    ctx.skipped.append(name)
                    last = TempFail(f"{name}: skipped, failed recently (host status; purgestat clears it)",
                                    scope=Scope.SITE, dsn="4.4.1")
                    continue
                try:
                    result = await self._send(addr, port, env, data, jobs, tls, creds, d.dialdelay)
                except TempFail as exc:
                    if exc.scope is not Scope.SITE:
                        raise
                    if d.expensive:
                        ctx.hosts.record(name, ctx.now(), False, dsn=exc.dsn, text=exc.reason, run=ctx.run)
                    last = exc
                    continue
                if d.expensive:
                    ctx.hosts.record(name, ctx.now(), True, run=ctx.run)
            finally:
                if first is not None:
                    first.set()
            return self._results(jobs, result, f"{name}[{addr}]:{port}", ctx.now())
        raise last or TempFail(f"{d.host}: no host to try", scope=Scope.SITE)

    async def _targets(self, d) -> list[tuple[str, str, int]]:
        """(name, address, port) to try in order.  A hold route by MX (its host
        is the domain) leaves out us (our host name, or an address we listen
        on at the MX port) and every MX less preferred than us: we are the
        domain's backup MX while we hold its mail."""
        by_mx = d.kind == "mx" or (d.kind == "hold" and d.host == split(d.address)[1])
        if not by_mx:
            expensive = d.expensive or d.kind == "hold"       # a flush may look the host up
            return [(d.host, await self._address(d.host, expensive=expensive), d.port)]
        found = await self.resolver.targets(d.host)
        if d.kind == "hold":
            ours = [lst.address for lst in self.cfg.listeners if lst.port == self.mx_port]
            found = beyond_us(found, [self.cfg.hostname], ours)
            if not found:
                raise TempFail(f"{d.host}: no MX host is more preferred than us (we hold its mail "
                               "as a backup MX); deliver it with [[customer]] deliver", scope=Scope.SITE,
                               dsn="4.4.4")
        return [(t.host, a, self.mx_port) for t in found for a in t.addresses[:1]]

    def _tls(self, kind: str):
        if kind != "smarthost":
            return MX_TLS, None
        path = self.cfg.SmartHostAuthFile
        if not path:
            return self.smarthost_tls, None
        try:
            return self.smarthost_tls, load_credentials(path)
        except ConfigError as exc:
            raise TempFail(f"smart host credentials unusable: {exc}", scope=Scope.SITE,
                           dsn="4.7.0") from None

    async def _send(self, addr, port, env, data, jobs, tls, creds, dialdelay) -> DeliveryResult:
        async def once(first: bool) -> DeliveryResult:
            return await self.smtp.deliver(addr, port, env.mail_from, [j.wire for j in jobs], data,
                                           params=MessageParams.from_envelope(env),
                                           first_attempt=first, tls=tls, credentials=creds)
        try:
            return await once(True)
        except TempFail as exc:
            if not (dialdelay and connect_failed(exc)):
                raise
            await self.dial_delay(addr, exc)
            return await once(False)

    async def dial_delay(self, host: str, exc: DeliveryFailure) -> None:
        """sendmail F=Z, but wait for link-up when it is on its way instead of sleeping blind."""
        delay = self.cfg.DialDelay
        state = getattr(self.link, "state", None)
        if self.link is not None and state in COMING_UP:
            log.info(maillog.dialdelay(host, wait_s=delay, after=exc.reason, link_coming=True))
            await self.link.wait_up(delay)
        else:
            log.info(maillog.dialdelay(host, wait_s=delay, after=exc.reason, link_coming=False))
            await self.clock.sleep(delay)

    def _results(self, jobs, result: DeliveryResult, relay: str, now: float) -> dict[str, Attempt]:
        out = {}
        for j in jobs:
            r = result.recipients.get(j.decision.address)
            if r is None:
                out[j.key] = Attempt(RcptStatus.DEFERRED, "4.0.0", "no result from the client", relay=relay, at=now)
            elif r.failure is not None:
                if r.failure.scope is Scope.LINK and self._link_lost(j.decision):
                    out[j.key] = cut_attempt(r.failure.reason, relay, now)
                else:
                    out[j.key] = failed_attempt(r.failure, relay, now, scope=_not_link(r.failure))
            else:
                text = str(r.reply) if r.reply is not None else "250 2.0.0 ok"
                dsn = r.reply.dsn() if r.reply is not None else "2.0.0"
                out[j.key] = Attempt(RcptStatus.SENT, dsn, text, relay=relay, at=now,
                                     extra={"next_hop_dsn": result.dsn})
        return out

    # ------------------------------------------------------------ names

    async def _address(self, host: str, *, expensive: bool) -> str:
        if is_ip(host):
            return host
        try:
            known = parse_hosts(Path(self.hosts_file).read_text())
        except OSError:
            known = {}
        addr = known.get(host.lower().rstrip("."))
        if addr:
            return addr
        if not expensive:
            raise TempFail(f"route host {host!r} is neither an IP address nor in {self.hosts_file}; "
                           "routes that are not expensive never use DNS (use [IP] or list the name "
                           "there, or mark the route expensive)", scope=Scope.SITE, dsn="4.4.3")
        found = await self.resolver.addresses(host)
        if not found:
            raise PermFail(f"{host}: no address", scope=Scope.SITE, dsn="5.4.4")
        return found[0]


def _not_link(exc: DeliveryFailure) -> Scope:
    """The scope recorded for a failure not blamed on the link (LINK -> SITE)."""
    return Scope.SITE if exc.scope is Scope.LINK else exc.scope


def _error_attempt(reply: str, now: float) -> Attempt:
    code, _, rest = reply.partition(" ")
    dsn = rest.split(" ", 1)[0] if rest[:2] in ("4.", "5.") else f"{code[:1]}.0.0"
    status = RcptStatus.BOUNCED if code.startswith("5") else RcptStatus.DEFERRED
    return Attempt(status, dsn, reply, relay="error", at=now, extra={"scope": "recipient"})


def _sendable(data: bytes) -> bytes:
    """Mail queued before accept-time re-encoding (smtpd/longlines.py) with a
    line over 998 octets: re-encoded now, so it is sent rather than bounced
    5.6.0; what cannot be made sendable is left for the client's 5.6.0."""
    from edgemail.smtpd.longlines import Unsendable, make_sendable
    try:
        return make_sendable(data)
    except Unsendable:
        return data
