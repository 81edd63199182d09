"""smtpd/listener.py - one listening socket and the decisions shared by its sessions.

Owns: binding (``loop.create_server`` on the running loop with a numeric
address: no getaddrinfo, no threaded Controller; ``::`` is bound
dual-stack so IPv4 clients arrive IPv4-mapped; a strict (ISP-facing)
listener binds with IP_FREEBIND, so ppp0's address may appear later), the session counts
(``smtpd.max_sessions`` overall, ``smtpd.max_sessions_per_client`` per
client address: ``421 4.3.2`` beyond), who is trusted, and the relay
decision for one recipient.

Relay control (invariant 4; DESIGN.md "Input hygiene"):
  * trusted = the client address (IPv4-mapped IPv6 mapped first) is in
    ``lan_networks``, or is loopback while ``trust_loopback`` (default true;
    tests turn it off to play an outside client from 127.0.0.1).
  * A trusted client may send to any address.  Anyone else only to our
    local domains, and not with ``%``/``!``/quoted ``@`` in the local part
    (``554 5.7.1 <addr>... Relaying denied``).  Address literals are never
    local.  ``<postmaster>`` means postmaster at the first local domain.
  * Then ``check_rcpt(address)`` (routing) may refuse, e.g. ``550 5.1.1``.

Never does: DNS, reading the peer's name, or anything blocking on the loop.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import socket
from dataclasses import replace
from typing import Awaitable, Callable

from edgemail import maillog
from edgemail.address import Address
from edgemail.clock import Clock, SystemClock
from edgemail.config.model import Config, Listener
from edgemail.smtpd.protocol import EdgeSMTP

log = logging.getLogger("edgemail.smtpd")
#: linux/in.h, linux/in6.h (the socket module does not export them)
IP_FREEBIND, IPV6_FREEBIND = 15, 78


def listen_socket(listener: Listener) -> socket.socket:
    """The listener's socket, bound (not yet listening).  Numeric addresses
    only: no getaddrinfo."""
    if listener.address == "::":
        return _bound(socket.AF_INET6, listener, dual_stack=True)
    family = socket.AF_INET6 if ":" in listener.address else socket.AF_INET
    return _bound(family, listener, freebind=listener.strict)


def _bound(family: int, listener: Listener, *, dual_stack: bool = False,
           freebind: bool = False) -> socket.socket:
    """"::" means every address, IPv4 too (IPv4 clients then arrive as
    ::ffff:a.b.c.d and are mapped back).  An ISP-facing (strict) listener
    binds the link's local address (ppp0's 10.64.0.2) before the link
    exists: IP_FREEBIND, as a router must."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual_stack else 1)
        if freebind:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.bind(("::" if dual_stack else listener.address, listener.port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class SmtpListener:
    """An SMTP listener per docs/interfaces.md."""

    def __init__(self, cfg: Config, listener: Listener, store, *,
                 on_commit: Callable[[str], None] | None = None,
                 check_rcpt: Callable[[str], str | None] | None = None,
                 on_etrn: Callable[[str], Awaitable[str]] | None = None,
                 trust_loopback: bool = True, clock: Clock | None = None,
                 sock: socket.socket | None = None) -> None:
        self.cfg = cfg
        self.listener = listener
        self.store = store
        self.on_commit = on_commit
        self.check_rcpt = check_rcpt
        self.on_etrn = on_etrn
        self.trust_loopback = trust_loopback
        self.clock = clock or SystemClock()
        #: bound before the daemon gave up root (RunAsUser); None: start() binds
        self._sock = sock
        self.port = listener.port
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[EdgeSMTP] = set()
        #: every session's reads land here first (one loop: one read at a time)
        self.read_buffer = memoryview(bytearray(64 * 1024))
        self._per_client: collections.Counter[str] = collections.Counter()
        # aiosmtpd logs every session at INFO in its own words: keep its warnings only.
        logging.getLogger("mail.log").setLevel(logging.WARNING)

    async def start(self) -> None:
        """Serve on the running loop: on the socket bound before (``sock=``,
        when the daemon gave up root after binding) or on one bound now."""
        loop = asyncio.get_running_loop()
        sock, self._sock = self._sock or listen_socket(self.listener), None
        self._server = await loop.create_server(lambda: EdgeSMTP(self), sock=sock)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop accepting; sessions still open are told 421 and closed."""
        if self._server is None:
            return
        self._server.close()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.write(f"421 4.3.2 {self.cfg.hostname} Service shutting down\r\n".encode())
                session.transport.close()
        await self._server.wait_closed()
        self._server = None

    @property
    def active(self) -> int:
        """Sessions open now (the link manager keeps the line up while the ISP's are)."""
        return len(self._sessions)

    # ------------------------------------------------------------ decisions

    def trusted(self, peer_ip: str) -> bool:
        """May this client relay?  (LAN networks, or loopback if trusted.)"""
        ip = ipaddress.ip_address(peer_ip)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if self.trust_loopback and ip.is_loopback:
            return True
        return any(ip in net for net in self.cfg.lan_networks if net.version == ip.version)

    def rcpt_decision(self, trusted: bool, address: Address) -> tuple[str, str | None]:
        """(canonical address, refusal reply or None) for one RCPT from a
        client that is TRUSTED (the session asks ``trusted()`` once)."""
        if not address.domain:
            address = replace(address, domain=self.cfg.local_domains[0])
        text = str(address)
        if not trusted:
            local = address.literal is None and self.cfg.is_local_domain(address.domain)
            if not local:
                return text, f"554 5.7.1 <{text}>... Relaying denied"
            if address.sender_routing:
                return text, f"554 5.7.1 <{text}>... Relaying denied (sender-specified routing)"
        refusal = self.check_rcpt(text) if self.check_rcpt else None
        return text, refusal

    # ------------------------------------------------------------ sessions

    def _admit(self, session: EdgeSMTP) -> str | None:
        host = self.cfg.hostname
        if len(self._sessions) >= self.cfg.smtpd.max_sessions:
            return f"421 4.3.2 {host} Too many sessions, try again later"
        if self._per_client[session.peer_ip] >= self.cfg.smtpd.max_sessions_per_client:
            return f"421 4.3.2 {host} Too many sessions from your address, try again later"
        self._sessions.add(session)
        self._per_client[session.peer_ip] += 1
        return None

    def _release(self, session: EdgeSMTP) -> None:
        if session in self._sessions:
            self._sessions.discard(session)
            self._per_client[session.peer_ip] -= 1
            if self._per_client[session.peer_ip] <= 0:
                del self._per_client[session.peer_ip]

    def _committed(self, qid: str) -> None:
        if self.on_commit is None:
            return
        try:
            self.on_commit(qid)
        except Exception:   # the message is safe on disk: the client still gets its 250
            log.exception(maillog.hook_failed(qid, "on_commit"))
