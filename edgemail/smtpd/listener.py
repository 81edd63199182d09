"""smtpd/listener.py - one listening socket and what its sessions share.

Owns: binding (``loop.create_server`` on the running loop with a numeric
address: no getaddrinfo, no threaded Controller; ``::`` is bound
dual-stack so IPv4 clients arrive IPv4-mapped; a strict (ISP-facing)
listener binds with IP_FREEBIND, so ppp0's address may appear later),
serving (and ``adopt``: a connection turned round by ATRN) and closing,
and the pieces every session of this listener gets
(session.Services): the dialogue's settings, the relay policy and the
admission counts (policy.py: sessions and the connection rate per client,
counted per listener as Postfix's anvil counts per service; trusted
clients exempt from the rate), the spool, the clock, the hooks, the read
buffer, the TLS context (tls.py: loaded at construction) and AUTH's
credentials (credentials.py's AuthService: given, so that every listener
counts one client's failures together, or loaded from ``[smtpd]
auth_file``); ``reload_secrets()`` reads both again on SIGHUP
(daemon/reload.py), all or nothing.

Failures: a certificate or credentials file that does not load raises
ConfigError at construction (the daemon does not start).

Never does: DNS, reading the peer's name, or anything blocking on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Awaitable, Callable

from edgemail.clock import Clock, SystemClock
from edgemail.config.model import Config, Listener
from edgemail.smtpc.channel import take_over
from edgemail.smtpd.core import Settings
from edgemail.smtpd.credentials import AuthService
from edgemail.smtpd.policy import Admission, RelayPolicy
from edgemail.smtpd.events import Etrn
from edgemail.smtpd.session import Push, Services, SmtpSession, Spool
from edgemail.smtpd.tls import ServerTls, make_context

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

    def __init__(self, cfg: Config, listener: Listener, store: Spool, *,
                 on_commit: Callable[[str], None] | None = None,
                 check_rcpt: Callable[[str], str | None] | None = None,
                 on_etrn: Callable[[str, Etrn], Awaitable[str]] | None = None,
                 on_atrn: Callable[..., tuple[str, Push | None]] | None = None,
                 trust_loopback: bool = True, clock: Clock | None = None,
                 sock: socket.socket | None = None, auth: AuthService | None = None) -> None:
        self.cfg = cfg
        self.listener = listener
        self.policy = RelayPolicy(cfg, check_rcpt=check_rcpt, trust_loopback=trust_loopback)
        clock = clock or SystemClock()
        self.admission: Admission[SmtpSession] = Admission(cfg, clock=clock, exempt=self.policy.trusted)
        #: STARTTLS's certificate (reload_tls() on SIGHUP); AUTH's credentials
        self.tls = ServerTls(listener.tls_cert, listener.tls_key) if listener.tls else None
        if listener.auth and auth is None:
            auth = AuthService.of(cfg.smtpd)
        self.auth = auth if listener.auth else None
        self.services = Services(
            settings=Settings.of(cfg, listener, etrn=on_etrn is not None,
                                 auth=self.auth.mechanisms if self.auth is not None else (),
                                 atrn=on_atrn is not None),
            name=listener.name, timeout=cfg.Timeout.command, max_session_time=cfg.smtpd.max_session_time,
            store=store,
            clock=clock, policy=self.policy, admission=self.admission,
            read_buffer=memoryview(bytearray(64 * 1024)), on_commit=on_commit, on_etrn=on_etrn,
            on_atrn=on_atrn, greet_pause=listener.greet_pause, tls=self.tls, auth=self.auth)
        #: bound before the daemon gave up root (RunAsUser); None: start() binds
        self._sock = sock
        self.port = listener.port
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Serve on the running loop: on the socket bound before (``sock=``,
        when the daemon gave up root after binding) or on one bound now."""
        loop = asyncio.get_running_loop()
        sock, self._sock = self._sock or listen_socket(self.listener), None
        self._server = await loop.create_server(lambda: SmtpSession(self.services), sock=sock)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop accepting; sessions still open are told 421 and closed."""
        if self._server is None:
            return
        self._server.close()
        for session in self.admission.sessions:
            session.shutdown(f"421 4.3.2 {self.cfg.hostname} Service shutting down")
        await self._server.wait_closed()
        self._server = None

    def adopt(self, transport: asyncio.Transport, early: bytes = b"") -> SmtpSession:
        """Serve a connection we did not accept: ODMR's, after the ISP's 250
        to our ATRN we are the server on our own connection.  The session
        greets, takes what is pushed through the normal accept path (this
        listener's rules, the spool's commit, Received:) and counts as one
        of this listener's sessions; ``await session.done`` for its end."""
        session = SmtpSession(self.services)
        take_over(transport, session, early)
        if session.core is not None and transport.get_extra_info("ssl_object") is not None:
            session.core.tls = True         # the connection is TLS already: no STARTTLS inside it
        return session

    @property
    def active(self) -> int:
        """Sessions open now (the link manager keeps the line up while the ISP's are)."""
        return len(self.admission.sessions)


def reload_secrets(listeners: list[SmtpListener]) -> Callable[[], tuple[int, int | None]]:
    """Read every listener's TLS certificate and key and the AUTH credentials
    again (SIGHUP), all of them before anything changes.  Returns the swap:
    call it to put them in use (new handshakes, new AUTH checks; nothing in
    progress changes); it returns (certificates reloaded, AUTH users or
    None).  Raises ConfigError: then nothing changed."""
    contexts = [(lst.tls, make_context(lst.tls.cert, lst.tls.key)) for lst in listeners if lst.tls]
    services = {id(lst.auth): lst.auth for lst in listeners if lst.auth is not None}
    creds = [(auth, auth.reread()) for auth in services.values()]

    def swap() -> tuple[int, int | None]:
        for tls, context in contexts:
            tls.context = context
        for auth, (credentials, cram) in creds:
            auth.credentials, auth.cram = credentials, cram
        return len(contexts), (sum(len(c.users) + len(cram or ()) for _, (c, cram) in creds)
                               if creds else None)
    return swap
