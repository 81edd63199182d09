"""delivery/customers.py - ISP mode: who may flush which held mail (pure core).

NAME
    customers - etrn_request(cfg, node, client), atrn_request(cfg, user, domains),
    Flush (what a flush takes), beyond_us(targets, ...) (MX hosts past us)

DESCRIPTION
    Held mail: a recipient routed ``hold`` (routing.py) waits for someone's
    ETRN (RFC 1985) or ATRN (RFC 2645).  A customer's domains
    (``[[customer]]``) are held for it: its Decision's target is the
    customer's name.  A ``hold`` route of [routes] that no customer owns is
    held for the LAN (target ""): trusted clients may ETRN it.

    ETRN's node, and who may ask (``etrn_request``):
      ``domain``    that domain only; the customer holding it
      ``@domain``   the domain and its subdomains; every customer holding
                    one of them (those the client may ask for are flushed)
      ``#queue``    every domain of the customer named so
    A customer's mail may be asked for by a client in its ``networks`` or
    authenticated as its ``user``; the LAN's hold routes by trusted clients
    (lan_networks, loopback).  Refused: ``459 4.7.1 Node X not allowed:
    ...``.  A node no one holds gives None (the runner's ``-qR`` run for
    the LAN, 459 for others).

    ATRN (``atrn_request``): only for an authenticated user (530 5.7.0
    otherwise), for the domains held for the customers of that user; with
    no argument, all of them.  A domain not theirs: ``450 4.7.1 ATRN request
    refused``.  The runner says 453 (no mail), 451 (a flush of theirs is
    under way) or 250 (the connection turns around).

    ``beyond_us`` drops the MX hosts that are us or less preferred than us
    (we are a backup MX of the domains we hold: delivering to them would
    loop), as sendmail does.

NEVER
    Does I/O, counts the queue (the runner does), or looks at relay rights.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Sequence

from edgemail.config.model import Config, Customer, match_route
from edgemail.delivery.port import Job
from edgemail.delivery.routing import split

#: replies, worded after RFC 1985 and RFC 2645
NOT_ALLOWED = "459 4.7.1 Node {node} not allowed: {why}"
NEED_AUTH = "530 5.7.0 Authentication required"
REFUSED = "450 4.7.1 ATRN request refused: {why}"


@dataclass(frozen=True)
class Client:
    """Who asks: the client's address, whether it is trusted (LAN,
    loopback), and the AUTH user it authenticated as (None: it did not)."""

    ip: str
    trusted: bool = False
    user: str | None = None


@dataclass(frozen=True)
class Flush:
    """What one flush takes: the held jobs of these customers ("": the LAN's
    hold routes) whose domain NODE covers (``@`` prefix: subdomains too;
    ``#queue`` or ``*``: every domain; ATRN's list: "a,b")."""

    customers: tuple[str, ...]
    node: str

    @property
    def key(self) -> str:
        """One flush per key at a time (the runner's lock)."""
        return ",".join(sorted(self.customers))

    def wants(self, job: Job) -> bool:
        d = job.decision
        if d.kind != "hold" or d.target not in self.customers:
            return False
        domain = split(d.address)[1]
        return any(covers(n, domain) for n in self.node.split(","))


def covers(node: str, domain: str) -> bool:
    """Does ETRN's NODE (domain, @domain, #queue, or "*": all) cover DOMAIN?"""
    if node.startswith("#") or node == "*":
        return True
    if node.startswith("@"):
        base = node[1:].lower()
        return domain == base or domain.endswith("." + base)
    return domain == node.lower().rstrip(".")


def may_ask(customer: Customer, client: Client) -> bool:
    """May CLIENT ask for CUSTOMER's mail: from its networks, or as its user."""
    if customer.user and client.user == customer.user:
        return True
    ip = ipaddress.ip_address(client.ip)
    return any(ip in net for net in customer.networks if net.version == ip.version)


def etrn_request(cfg: Config, node: str, client: Client) -> Flush | str | None:
    """ETRN NODE from CLIENT: the Flush, the 459 refusal, or None when no
    one holds mail for NODE (not ISP business: the runner's -qR run)."""
    if node.startswith("#"):
        named = [c for c in cfg.customers if c.name.lower() == node[1:].lower()]
        if not named:
            return NOT_ALLOWED.format(node=node, why="no such queue")
        return _allowed(named, node, client, lan=False)
    held = [c for c in cfg.customers if _touches(c.domains, node)]
    if node.startswith("@"):
        lan = any(r.kind == "hold" and _touches((r.pattern,), node) for r in cfg.routes)
    else:
        route = match_route(cfg.routes, node.lower().rstrip("."))
        lan = not held and route is not None and route.kind == "hold"
    if not held and not lan:
        return None
    return _allowed(held, node, client, lan=lan)


def _allowed(customers: Sequence[Customer], node: str, client: Client, *, lan: bool) -> Flush | str:
    names = tuple(c.name for c in customers if may_ask(c, client))
    if lan and client.trusted:
        names += ("",)
    if names:
        return Flush(names, node)
    why = ("ask from the customer's network or authenticated as its user" if customers
           else "held for the LAN only")
    return NOT_ALLOWED.format(node=node, why=why)


def _touches(patterns: Sequence[str], node: str) -> bool:
    """Could mail held under one of PATTERNS ("d" or ".d") be what NODE asks for?"""
    if node.startswith("@"):
        base = node[1:].lower()
        return any(p.lstrip(".") == base or p.endswith("." + base)
                   or (p[0] == "." and base.endswith(p)) for p in patterns)
    domain = node.lower().rstrip(".")
    return any(domain == p or (p[0] == "." and domain.endswith(p)) for p in patterns)


def atrn_request(cfg: Config, user: str | None, domains: Sequence[str]) -> Flush | str:
    """ATRN [DOMAINS] from an authenticated USER: the Flush, or the 530/450 reply."""
    if not user:
        return NEED_AUTH
    mine = [c for c in cfg.customers if c.user == user]
    if not mine:
        return REFUSED.format(why=f"no domains are held for {user}")
    if not domains:
        return Flush(tuple(c.name for c in mine), "*")
    for d in domains:
        if not any(c.holds(d.lower()) for c in mine):
            return REFUSED.format(why=f"{d} is not a domain of yours")
    if len(domains) == 1:
        return Flush(tuple(c.name for c in mine), domains[0].lower())
    return Flush(tuple(c.name for c in mine), ",".join(d.lower() for d in domains))


def beyond_us(targets: Sequence, names: Sequence[str], addresses: Sequence[str]) -> list:
    """TARGETS (mx.Target, in order) before the first that is us (its name or
    an address of ours), and none of our preference or worse."""
    ours = {n.lower().rstrip(".") for n in names}
    mine = set(addresses)
    for i, t in enumerate(targets):
        if t.host.lower().rstrip(".") in ours or mine.intersection(t.addresses):
            return [u for u in targets[:i] if u.preference < t.preference]
    return list(targets)
