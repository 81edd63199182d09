"""delivery/routing.py - address -> where it goes.  Never DNS.

NAME
    routing - route table, aliases and local users (pure core)

DESCRIPTION
    ``Router(cfg, aliases).route(address)`` returns one ``Decision`` per final
    recipient: the route kind (local, maildir, lmtp, relay, smarthost, mx,
    hold, error), its target (a maildir path with %u expanded, or host and
    port), the flags ``expensive`` (needs the link: sendmail F=e) and
    ``dialdelay`` (F=Z), the address after alias expansion and the envelope
    sender for errors (``errors_to``, from an owner- alias).
    ``check_rcpt(address)`` is what the SMTP listener asks at RCPT time: a
    reply line to refuse with, or None.

    Route table (cfg.routes): an exact domain, ".domain" (any subdomain of
    it, not the domain itself), or "*".  The longest matching pattern wins;
    an exact match beats any ".domain".  A customer's domain (ISP mode,
    cfg.customers) is routed ``hold`` with the customer's name as target and
    its ``deliver`` host (or the domain's MX) as host; never DialDelay.  A local
    domain (``cfg.is_local_domain``: local_domains, our hostname, localhost,
    literals of our addresses) with no entry of its own (exact or ".suffix";
    never "*") routes "local"; any other domain with no entry routes
    "mx", expensive (sendmail's default).  An address without a domain is
    local.

    A route in disguise (``%``, ``!`` or a quoted ``@`` in the local part)
    to a local domain, a name or literal of ours, or a held domain is an
    error decision with ``address.ROUTED_REFUSAL`` (550 5.7.1): alias and
    mailbox names never hold those characters, so such a local part is
    never a local address, and a held one would go on verbatim.

    Local parts, for local domains only:
      * aliases are looked up case-insensitively (sendmail downcases keys);
      * "user+detail": the alias "user+detail" if it exists, else "user";
        the delivered-to address keeps the detail, the mailbox (%u) is the
        base user, lower-cased.  The delimiter is fixed to "+" (Postfix's
        usual recipient_delimiter);
      * after aliases, a local user must be one of USERS (delivery/users.py:
        local.users, local.users_file, the system's passwd; the Router is
        given the set, default cfg.local.users) or "postmaster", which always
        exists (RFC 5321 4.5.1).  Unknown: "550 5.1.1 <addr>... User unknown".
        "abuse" (RFC 2142) is not implied: the shipped aliases file maps it
        to postmaster, and an unaliased abuse Maildir is one nobody reads.
        ``local.create_mailboxes`` turns the check off (any safe name is a
        mailbox, made on first delivery).
      * a mailbox name must be [a-z0-9._=-] and not start with "." (it
        becomes a path); anything else is "550 5.1.3".
    The user check applies to local and maildir routes; an LMTP server
    decides for itself.

NEVER
    Does I/O (aliases come parsed), resolves a name, or decides relay rights
    (smtpd does, on the peer and authentication).

FAILURES
    No exceptions for bad addresses: they become ``kind="error"`` decisions
    whose ``reply`` is the SMTP line to give or to bounce with.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass, replace

from edgemail.address import ROUTED_REFUSAL, AddressError, parse_address
from edgemail.config.model import Config, Route, match_route
from edgemail.config.values import MAILBOX, host_port, smart_host
from edgemail.delivery.aliases import Aliases, AliasLoop

DETAIL_DELIMITER = "+"
#: addresses whose decisions a Router remembers (RCPT, the commit hook and
#: every queue run ask about the same few addresses again and again)
ROUTE_CACHE = 4096
#: local parts that exist whatever the user list says (RFC 5321 4.5.1)
ALWAYS = frozenset({"postmaster"})


@dataclass(frozen=True)
class Decision:
    """Where one final recipient goes."""

    #: recipient after alias expansion ("user@domain")
    address: str
    #: the address the client gave
    original: str
    #: one of config.ROUTE_KINDS
    kind: str
    #: maildir path (%u expanded) for local/maildir; "" otherwise
    target: str = ""
    host: str = ""
    port: int = 0
    expensive: bool = False
    dialdelay: bool = False
    #: envelope sender for errors (owner- alias); None = the message's sender
    errors_to: str | None = None
    #: for kind "error": the SMTP reply ("550 5.1.1 <x>... User unknown")
    reply: str = ""
    #: alias names walked (for the log)
    via: tuple[str, ...] = ()

    @property
    def nexthop(self) -> str:
        """Grouping key for one transaction: "kind:host:port" or "kind:path"."""
        return f"{self.kind}:{self.host}:{self.port}" if self.host else f"{self.kind}:{self.target}"

    @property
    def permanent(self) -> bool:
        return self.kind == "error" and self.reply.startswith("5")


def split(address: str) -> tuple[str, str]:
    """"User@Example.ORG" -> ("User", "example.org"); no domain -> ("user", "")."""
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at:
        return domain, ""
    return local, domain.lower().rstrip(".")


class Router:
    """Routes addresses with one config and one alias table."""

    def __init__(self, cfg: Config, aliases: Aliases | None = None,
                 users: Container[str] | None = None) -> None:
        self.cfg = cfg
        self.aliases = aliases or Aliases()
        self.default_domain = cfg.local_domains[0]
        names = frozenset(u.lower() for u in cfg.local.users) if users is None else users
        #: the local users besides ALWAYS (a set, or users.PasswdUsers: asked one name at a
        #: time); None: any safe name is a mailbox (local.create_mailboxes)
        self.users: Container[str] | None = None if cfg.local.create_mailboxes else names
        self._cache: dict[str, tuple[Decision, ...]] = {}

    # -- public

    def route(self, address: str) -> list[Decision]:
        """The decisions for ADDRESS (remembered: config and aliases never
        change under a Router; a reload makes a new one)."""
        hit = self._cache.get(address)
        if hit is None:
            if len(self._cache) >= ROUTE_CACHE:
                self._cache.clear()
            hit = self._cache[address] = tuple(self._route(address))
        return list(hit)

    def _route(self, address: str) -> list[Decision]:
        local, domain = split(address)
        if not local:
            return [self._error(address, address, "553 5.1.3 <{a}>... Empty local part")]
        if domain and not self.cfg.is_local_domain(domain):
            return [self._remote(address, address, domain)]
        if _routed(address):
            # a route in disguise ("a%b", "b!a", "a@b" quoted): no alias or
            # mailbox name holds those characters, so it is none of ours (and
            # "a+x%b" is not "a"); never passed on
            return [self._error(address, address, ROUTED_REFUSAL)]
        try:
            exp = self.aliases.expand(address.strip().strip("<>"), self._local_part)
        except AliasLoop as exc:
            return [self._error(address, address, f"554 5.4.6 <{{a}}>... {exc}")]
        out = []
        for addr, errors_to, _literal in exp.addresses:
            d = self._final(addr, address)
            out.append(replace(d, errors_to=self._qualify(errors_to), via=exp.via))
        return out

    def check_rcpt(self, address: str) -> str | None:
        """The reply to refuse RCPT with, or None to accept.  A list with some
        bad members is accepted (its owner gets the errors)."""
        decisions = self.route(address)
        if decisions and all(d.kind == "error" for d in decisions):
            return decisions[0].reply
        return None

    # -- helpers

    def _local_part(self, address: str) -> str | None:
        local, domain = split(address)
        if domain and not self.cfg.is_local_domain(domain):
            return None
        return self._alias_key(local)

    def _alias_key(self, local: str) -> str:
        """"User+Detail" -> "user+detail" when that alias exists, else "user"."""
        key = local.lower()
        if key in self.aliases or DETAIL_DELIMITER not in key:
            return key
        return key.split(DETAIL_DELIMITER, 1)[0]

    def _qualify(self, address: str | None) -> str | None:
        if address is None or "@" in address:
            return address
        return f"{address}@{self.default_domain}"

    def _final(self, address: str, original: str) -> Decision:
        local, domain = split(address)
        if domain and not self.cfg.is_local_domain(domain):
            return self._remote(address, original, domain)
        domain = domain or self.default_domain
        full = f"{local}@{domain}"
        route = self._local_route(domain)
        if route.kind in ("local", "maildir"):
            return self._mailbox(full, original, route, check_users=True)
        return self._decide(full, original, route, domain)

    def _local_route(self, domain: str) -> Route:
        """A local domain's own entry (exact or ".suffix", never "*"); for our
        hostname, localhost or a literal only an exact one; else "local"."""
        if domain in self.cfg.local_domains:
            route = match_route(self.cfg.routes, domain, wildcard=False)
        else:
            route = next((r for r in self.cfg.routes if r.pattern == domain), None)
        return route or Route(domain, "local")

    def _remote(self, address: str, original: str, domain: str) -> Decision:
        customer = self.cfg.customer_of(domain)
        if _routed(address) and self.cfg.holds_mail_for(domain):
            return self._error(address, original, ROUTED_REFUSAL)   # it would go on verbatim
        if customer is not None:          # ISP mode: held until the customer asks
            host, port = customer.deliver or (domain, 25)
            return Decision(address, original, "hold", customer.name, host=host, port=port)
        route = match_route(self.cfg.routes, domain) or Route("", "mx", expensive=True)
        if route.kind in ("local", "maildir"):
            # a domain that is not ours but routed to mailboxes (virtual): no user list
            return self._mailbox(address, original, route, check_users=False)
        return self._decide(address, original, route, domain)

    def _mailbox(self, address: str, original: str, route: Route, *, check_users: bool) -> Decision:
        user = split(address)[0].lower().split(DETAIL_DELIMITER, 1)[0]
        if not MAILBOX.fullmatch(user):
            return self._error(address, original, "550 5.1.3 <{a}>... Bad mailbox name")
        if check_users and self.users is not None and user not in ALWAYS and user not in self.users:
            return self._error(address, original, "550 5.1.1 <{a}>... User unknown")
        path = self.cfg.local.maildir if route.kind == "local" else route.target
        return Decision(address, original, route.kind, path.replace("%u", user),
                        expensive=route.expensive, dialdelay=route.dialdelay)

    def _decide(self, address: str, original: str, route: Route, domain: str) -> Decision:
        host, port = "", 0
        if route.kind in ("lmtp", "relay"):
            host, port = host_port(route.target)
        elif route.kind == "smarthost":
            host, port = smart_host(self.cfg.SmartHost)
        elif route.kind in ("mx", "hold"):
            host, port = domain, 25
        elif route.kind == "error":
            return self._error(address, original, _error_reply(route.target))
        return Decision(address, original, route.kind, host=host, port=port,
                        expensive=route.expensive, dialdelay=route.dialdelay and route.kind != "hold")

    def _error(self, address: str, original: str, reply: str) -> Decision:
        return Decision(address, original, "error", reply=reply.replace("{a}", address))


def _routed(address: str) -> bool:
    """The local part holds ``%``, ``!`` or ``@`` (address.py's one parse)."""
    try:
        return parse_address(address.strip().strip("<>")).sender_routing
    except AddressError:
        return any(c in address.rpartition("@")[0] for c in "%!@")


def _error_reply(target: str) -> str:
    """"550 5.7.1 No mail here" stays; "550 No mail here" gets 5.0.0 / 4.0.0."""
    code, _, text = target.strip().partition(" ")
    text = text.strip()
    if not re.match(r"[245]\.\d{1,3}\.\d{1,3}(\s|$)", text):
        text = f"{code[0]}.0.0 {text}".rstrip()
    return f"{code} {text}"
