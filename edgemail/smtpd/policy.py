"""smtpd/policy.py - the decisions a listener's sessions share: who may
relay, where a recipient may go, how many sessions are let in.

Owns:
  * ``RelayPolicy``: trust and the relay decision for one recipient
    (invariant 4; DESIGN.md "Input hygiene"):
      - trusted = the client address (IPv4-mapped IPv6 mapped first) is in
        ``lan_networks``, or is loopback while ``trust_loopback`` (default
        true; tests turn it off to play an outside client from 127.0.0.1).
      - A trusted client may send to any address.  Anyone else only to
        what is ours (``Config.is_local_domain``: the local domains, our
        hostname, localhost, literals of our own addresses) or held
        (``554 5.7.1 <addr>... Relaying denied``).  ``<postmaster>`` means
        postmaster at the first local domain.
      - Held domains (ISP mode: a customer's, or a ``hold`` route's) are
        ours to hold: anyone may send to them.
      - A route in disguise (``%``, ``!``, quoted ``@`` in the local part)
        to a destination of ours or held, from any client: routing decides
        (``check_rcpt``: refused with ``address.ROUTED_REFUSAL`` unless the
        whole local part is an alias); without a router it is refused.
      - Then ``check_rcpt(address)`` (routing) may refuse, e.g. ``550 5.1.1``.
  * ``Admission``: the session counts, ``smtpd.max_sessions`` overall and
    ``smtpd.max_sessions_per_client`` per client address (``421 4.3.2``
    beyond), the connection rate (``ConnectionRate``), and the set of
    sessions open (for shutdown).
  * ``ConnectionRate``: connections per client address within
    ``smtpd.connection_rate_time_unit`` (Postfix anvil's
    smtpd_client_connection_rate_limit, sendmail's ConnectionRateThrottle
    per client): past ``smtpd.client_connection_rate_limit`` attempts
    (every attempt counts, refused ones too) the connection gets ``421
    4.7.0 HOST Error: too many connections from ADDR`` and is closed.
    Fixed windows, as anvil's: a client's window opens at its first
    connection and lasts one time unit.  Trusted clients (``RelayPolicy.
    trusted``: LAN, loopback) are exempt: they are our own hosts and
    programs, which may relay anyway, and their bursts (a LAN relay's queue
    run, a script's sendmail loop) are the appliance's job; a runaway LAN
    host is still bounded by the session counts.  Memory is bounded:
    expired windows are dropped as time passes (oldest first, O(1) per
    connection), and at most ``RATE_CLIENTS`` clients are tracked; past
    that the oldest window is forgotten (a flood from many addresses then
    costs that client its count, never memory).

Never does: DNS, reading the peer's name, I/O of any kind.
"""

from __future__ import annotations

import collections
import functools
import ipaddress
from typing import Callable, Generic, TypeVar

from edgemail.clock import Clock, SystemClock

from edgemail.address import ROUTED_REFUSAL, Address
from edgemail.config.model import Config

S = TypeVar("S")

#: the most client addresses ConnectionRate keeps a window for (about 235 bytes each: 2.3 MB)
RATE_CLIENTS = 10_000


def client_ip(address: str) -> str:
    """The client's address as we name it: the scope dropped, IPv4-mapped
    IPv6 (a dual-stack listener's IPv4 clients) as IPv4."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip)


class RelayPolicy:
    """Who may relay, and the decision for one recipient."""

    def __init__(self, cfg: Config, *, check_rcpt: Callable[[str], str | None] | None = None,
                 trust_loopback: bool = True) -> None:
        self.cfg = cfg
        self.check_rcpt = check_rcpt
        self.trust_loopback = trust_loopback
        #: asked twice per connection (admission, the dialogue): ~13 us each uncached
        self._trusted = functools.lru_cache(maxsize=1024)(self._decide_trust)

    def trusted(self, peer_ip: str) -> bool:
        """May this client relay?  (LAN networks, or loopback if trusted.)"""
        return self._trusted(peer_ip)

    def _decide_trust(self, peer_ip: str) -> bool:
        ip = ipaddress.ip_address(client_ip(peer_ip))
        if self.trust_loopback and ip.is_loopback:
            return True
        return any(ip in net for net in self.cfg.lan_networks if net.version == ip.version)

    def rcpt_decision(self, trusted: bool, address: Address) -> tuple[str, str | None]:
        """(canonical address, refusal reply or None) for one RCPT from a
        client that is TRUSTED (the session asks ``trusted()`` once)."""
        if not address.domain:
            address = address.with_domain(self.cfg.local_domains[0])
        text = str(address)
        held = address.literal is None and self.cfg.holds_mail_for(address.domain)
        ours = held or self.cfg.is_local_domain(address.domain)
        if not trusted and not ours:
            return text, f"554 5.7.1 <{text}>... Relaying denied"
        if self.check_rcpt is None:
            return text, ROUTED_REFUSAL.format(a=text) if ours and address.sender_routing else None
        return text, self.check_rcpt(text)


class ConnectionRate:
    """Connections per client address within UNIT seconds (module docstring)."""

    def __init__(self, unit: float, *, max_clients: int = RATE_CLIENTS) -> None:
        self.unit, self.max_clients = unit, max_clients
        #: client -> [window start, connections in it]; oldest window first
        self._windows: collections.OrderedDict[str, list[float]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def count(self, ip: str, now: float) -> int:
        """One more connection from IP at NOW (monotonic); IP's count in its window."""
        self._expire(now)
        window = self._windows.get(ip)
        if window is None:
            if len(self._windows) >= self.max_clients:
                self._windows.popitem(last=False)
            self._windows[ip] = window = [now, 0]
        window[1] += 1
        return int(window[1])

    def _expire(self, now: float) -> None:
        """Forget the windows that have ended (they are in order of start)."""
        windows = self._windows
        while windows:
            ip, (start, _) = next(iter(windows.items()))
            if now - start < self.unit:
                return
            del windows[ip]


class Admission(Generic[S]):
    """The sessions let in, counted overall and per client address."""

    def __init__(self, cfg: Config, *, clock: Clock | None = None,
                 exempt: Callable[[str], bool] = lambda ip: False) -> None:
        self.cfg, self.clock, self.exempt = cfg, clock or SystemClock(), exempt
        self.rate = ConnectionRate(cfg.smtpd.connection_rate_time_unit)
        #: session -> its client address
        self._open: dict[S, str] = {}
        self._per_client: collections.Counter[str] = collections.Counter()

    @property
    def sessions(self) -> list[S]:
        return list(self._open)

    def admit(self, session: S, peer_ip: str) -> str | None:
        """Let SESSION in (None), or the 421 that refuses it."""
        host, limits = self.cfg.hostname, self.cfg.smtpd
        if limits.client_connection_rate_limit and not self.exempt(peer_ip) and \
                self.rate.count(peer_ip, self.clock.monotonic()) > limits.client_connection_rate_limit:
            return f"421 4.7.0 {host} Error: too many connections from {peer_ip}"
        if len(self._open) >= limits.max_sessions:
            return f"421 4.3.2 {host} Too many sessions, try again later"
        if self._per_client[peer_ip] >= limits.max_sessions_per_client:
            return f"421 4.3.2 {host} Too many sessions from your address, try again later"
        self._open[session] = peer_ip
        self._per_client[peer_ip] += 1
        return None

    def release(self, session: S) -> None:
        """SESSION has ended (a session never let in is ignored)."""
        peer_ip = self._open.pop(session, None)
        if peer_ip is None:
            return
        self._per_client[peer_ip] -= 1
        if self._per_client[peer_ip] <= 0:
            del self._per_client[peer_ip]
