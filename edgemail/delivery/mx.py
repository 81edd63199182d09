"""delivery/mx.py - where mail for a domain goes: MX ordering (pure) and lookups (dnspython).

Owns: ``order_targets`` (the pure core: RFC 5321 5.1 ordering, implicit MX,
RFC 7505 null MX) and ``MxResolver`` (the driver: dns.asyncresolver against
the configured or the link's nameservers, with a TTL-respecting cache kept
in a JSON file in the spool directory so a restart - or a redial - does not
repeat queries over a link that costs money).

Never does: DNS at import or construction (invariant 1: accepting mail and
starting the daemon make no query; only the runner calls ``targets``); the
system resolver (getaddrinfo) - every name goes through our nameservers.

Nameservers: ``cfg.dns.nameservers`` when set; otherwise the ``nameserver``
lines of pppd's usepeerdns file (``cfg.dns.peer_dns_file``); otherwise
/etc/resolv.conf.  ``reload_nameservers()`` re-reads them (the runner calls
it on link-up).

Answers and what they mean:
  * MX records -> ordered by preference, equal preferences shuffled, hosts
    resolved to addresses (A; AAAA only for a host without A: dial-up links
    rarely carry IPv6 and every query costs a round trip);
  * no MX (NOERROR, no data) -> implicit MX: the domain itself;
  * null MX (only "0 .") -> PermFail 5.1.10;
  * NXDOMAIN -> PermFail 5.1.2; every exchange host NXDOMAIN/no address ->
    PermFail 5.4.4;
  * timeout -> TempFail scope LINK (never bounce; the text says what
    happened, "no answer from" the nameservers: whether the link is to blame
    is the runner's call, delivery/deliver.py, which says "link down?" only
    for a route of a link that a link manager runs);
    SERVFAIL / all nameservers failing -> TempFail scope SITE 4.4.3;
    no nameservers at all -> TempFail scope LINK 4.4.3.

Cache: positive answers for their TTL (capped at ``max_ttl``), NXDOMAIN and
NODATA for the SOA's negative TTL; never failures.  Expiry uses wall time
from the injected clock (the file outlives the process).  The file is
written atomically (temporary file, fsync, rename); an unreadable file is
ignored with a warning and replaced.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

from edgemail import maillog
from edgemail.clock import Clock, SystemClock
from edgemail.errors import PermFail, Scope, TempFail
from link.fileio import write_atomically

log = logging.getLogger("edgemail.runner")

CACHE_FILE = "dns-cache.json"
DEFAULT_NEGATIVE_TTL = 300


@dataclass(frozen=True)
class Target:
    """One host to try, in order."""

    host: str
    preference: int
    #: no MX record: the domain itself (RFC 5321 5.1)
    implicit: bool = False
    addresses: tuple[str, ...] = ()


# ------------------------------------------------------------------- the core

def order_targets(domain: str, answers: list[tuple[int, str]], rng: random.Random) -> list[Target]:
    """MX records -> targets in the order to try them.

    ``answers`` are (preference, exchange) pairs; empty means "no MX records"
    (implicit MX).  Raises PermFail 5.1.10 for a null MX.
    """
    domain = domain.rstrip(".").lower()
    if not answers:
        return [Target(domain, 0, implicit=True)]
    real = [(p, h.rstrip(".").lower()) for p, h in answers if h.rstrip(".")]
    if not real:
        raise PermFail(f"{domain} does not accept mail (null MX, RFC 7505)",
                       scope=Scope.SITE, dsn="5.1.10")
    out: list[Target] = []
    seen: set[str] = set()
    for pref, group in itertools.groupby(sorted(real), key=lambda a: a[0]):
        hosts = sorted({h for _, h in group} - seen)
        rng.shuffle(hosts)
        seen.update(hosts)
        out += [Target(h, pref) for h in hosts]
    return out


def parse_resolv_conf(text: str) -> tuple[str, ...]:
    """The ``nameserver`` addresses of a resolv.conf-format text."""
    out = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            out.append(words[1])
    return tuple(out)


# ----------------------------------------------------------------- the cache

class DnsCache:
    """(name, type) -> answer with an absolute expiry in wall time; JSON on disk."""

    def __init__(self, path: str | None, clock: Clock) -> None:
        self.path = path
        self.clock = clock
        self._entries: dict[str, dict] = {}
        #: one save at a time: deliveries run side by side and each may save
        #: (two writers of the one temporary file lost a rename: ENOENT)
        self._saving = asyncio.Lock()
        if path:
            self._load(path)

    def _load(self, path: str) -> None:
        try:
            data = json.loads(Path(path).read_text())
            self._entries = {k: v for k, v in data["entries"].items()
                             if isinstance(v, dict) and "expires" in v}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning(maillog.dns_cache_unreadable(path, exc))

    def get(self, name: str, rtype: str) -> dict | None:
        key = f"{name}/{rtype}"
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry["expires"] <= self.clock.wall():
            del self._entries[key]
            return None
        return entry

    def put(self, name: str, rtype: str, ttl: float, *, records: list[str] | None = None,
            nxdomain: bool = False) -> dict:
        entry = {"expires": self.clock.wall() + ttl, "records": records or [],
                 "nxdomain": nxdomain}
        self._entries[f"{name}/{rtype}"] = entry
        return entry

    async def save(self) -> None:
        if not self.path:
            return
        async with self._saving:         # the later save writes the later state
            now = self.clock.wall()
            live = {k: v for k, v in self._entries.items() if v["expires"] > now}
            await asyncio.to_thread(write_atomically, self.path,
                                    json.dumps({"version": 1, "entries": live}, indent=0))


# --------------------------------------------------------------- the driver

class _NxDomain(Exception):
    pass


def _servers(res: dns.asyncresolver.Resolver) -> str:
    """The nameservers asked, as the text of a failure names them."""
    port = "" if res.port == 53 else f":{res.port}"
    return ", ".join(f"{ns}{port}" for ns in res.nameservers)


class MxResolver:
    """Looks up where to send mail for a domain.  No I/O until ``targets``."""

    def __init__(self, dns_cfg, *, cache_file: str | None = None, clock: Clock | None = None,
                 rng: random.Random | None = None, resolv_conf: str = "/etc/resolv.conf",
                 max_ttl: float = 86400.0) -> None:
        self.cfg = dns_cfg
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.resolv_conf = resolv_conf
        self.max_ttl = max_ttl
        self.cache = DnsCache(cache_file, self.clock)
        self.nameservers: tuple[str, ...] | None = None
        #: queries sent (cache misses), for tests and logs
        self.queries = 0
        #: (name, type) -> the query on its way: deliveries side by side ask once
        self._flying: dict[tuple[str, str], asyncio.Future[dict]] = {}

    @classmethod
    def from_config(cls, cfg, **kw) -> "MxResolver":
        return cls(cfg.dns, cache_file=os.path.join(cfg.spool_dir, CACHE_FILE), **kw)

    def reload_nameservers(self) -> tuple[str, ...]:
        """Re-read where the nameservers come from (config, peer DNS file, resolv.conf)."""
        found: tuple[str, ...] = tuple(self.cfg.nameservers)
        for path in (self.cfg.peer_dns_file, self.resolv_conf):
            if found:
                break
            try:
                found = parse_resolv_conf(Path(path).read_text())
            except OSError:
                continue
        self.nameservers = found
        return found

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if self.nameservers is None:
            self.reload_nameservers()
        if not self.nameservers:
            raise TempFail(f"no nameservers (none in [dns] nameservers, {self.cfg.peer_dns_file} or "
                           f"{self.resolv_conf})", scope=Scope.LINK, dsn="4.4.3")
        res = dns.asyncresolver.Resolver(configure=False)
        res.nameservers = list(self.nameservers)
        res.port = self.cfg.port
        res.lifetime = self.cfg.timeout
        res.timeout = min(self.cfg.timeout, 2.0)
        return res

    async def targets(self, domain: str) -> list[Target]:
        """Ordered targets with addresses.  Raises PermFail/TempFail as documented above."""
        domain = domain.rstrip(".").lower()
        try:
            mx = await self._lookup(domain, "MX")
        except _NxDomain:
            raise PermFail(f"{domain}: domain not found (NXDOMAIN)", scope=Scope.SITE,
                           dsn="5.1.2") from None
        answers = [(int(p), h) for p, h in (r.split(None, 1) for r in mx)]
        ordered = order_targets(domain, answers, self.rng)
        out, temp = [], None
        for t in ordered:
            try:
                addrs = await self._addresses(t.host)
            except TempFail as exc:
                temp = exc
                continue
            if addrs:
                out.append(Target(t.host, t.preference, t.implicit, tuple(addrs)))
        await self.cache.save()
        if out:
            return out
        if temp is not None:
            raise temp
        raise PermFail(f"{domain}: no address for {', '.join(t.host for t in ordered)}",
                       scope=Scope.SITE, dsn="5.4.4")

    async def addresses(self, host: str) -> list[str]:
        """A host's addresses (A, else AAAA), through the cache.  Raises
        TempFail when DNS cannot answer now; [] when the name does not exist."""
        found = await self._addresses(host)
        await self.cache.save()
        return found

    async def _addresses(self, host: str) -> list[str]:
        for rtype in ("A", "AAAA"):
            try:
                found = await self._lookup(host, rtype)
            except _NxDomain:
                return []
            if found:
                return found
        return []

    async def _lookup(self, name: str, rtype: str) -> list[str]:
        entry = self.cache.get(name, rtype)
        if entry is None:
            key = (name, rtype)
            query = self._flying.get(key)
            if query is None:
                query = self._flying[key] = asyncio.ensure_future(self._query(name, rtype))
                query.add_done_callback(functools.partial(self._landed, key))
            entry = await asyncio.shield(query)
        if entry["nxdomain"]:
            raise _NxDomain(name)
        return entry["records"]

    def _landed(self, key: tuple[str, str], query: asyncio.Future) -> None:
        self._flying.pop(key, None)
        if not query.cancelled():
            query.exception()            # seen, even if every asker was cancelled

    async def _query(self, name: str, rtype: str) -> dict:
        res = self._resolver()
        self.queries += 1
        try:
            answer = await res.resolve(name, rtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN as exc:
            return self.cache.put(name, rtype, self._negative_ttl(exc.responses().values()),
                                  nxdomain=True)
        except dns.resolver.LifetimeTimeout:
            raise TempFail(f"DNS lookup of {name}/{rtype} timed out after {self.cfg.timeout:g}s "
                           f"(no answer from {_servers(res)})", scope=Scope.LINK,
                           dsn="4.4.3") from None
        except dns.resolver.NoNameservers as exc:
            raise TempFail(f"DNS lookup of {name}/{rtype} failed: {exc}", scope=Scope.SITE,
                           dsn="4.4.3") from None
        except dns.exception.DNSException as exc:
            raise TempFail(f"DNS lookup of {name}/{rtype} failed: {exc}", scope=Scope.SITE,
                           dsn="4.4.3") from None
        if answer.rrset is None:
            return self.cache.put(name, rtype, self._negative_ttl([answer.response]))
        return self.cache.put(name, rtype, min(answer.rrset.ttl, self.max_ttl),
                              records=[_text(r) for r in answer.rrset])

    def _negative_ttl(self, responses) -> float:
        for resp in responses:
            for rrset in getattr(resp, "authority", []):
                if rrset.rdtype == dns.rdatatype.SOA:
                    return min(rrset.ttl, rrset[0].minimum, self.max_ttl)
        return DEFAULT_NEGATIVE_TTL


def _text(rdata) -> str:
    if rdata.rdtype == dns.rdatatype.MX:
        host = "." if rdata.exchange == dns.name.root else rdata.exchange.to_text(True)
        return f"{rdata.preference} {host}"
    return rdata.to_text()
