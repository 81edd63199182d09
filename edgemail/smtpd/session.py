"""smtpd/session.py - one SMTP session's driver: the socket, the clock, the
spool and the hooks around the sans-IO dialogue (core.py).

Owns the I/O of one connection: reads (into the listener's shared buffer:
``asyncio.BufferedProtocol``; a ``recv(256 KiB)`` per read cost an mmap),
writing the replies, flow control both ways, the time limits (timers.py),
greet_pause (talking during it ends the session, core.py), the commit after
DATA, the ETRN hook, the STARTTLS handshake and the AUTH check (each a
task; the dialogue takes no input until it is answered), the session's log
lines (connect, lost connection, timeout, refused, STARTTLS, ``from=``), and
ATRN's turn-around: after the hook's 250 the transport (and the bytes read
after ATRN) go to the push (delivery/flush.py).

STARTTLS: the dialogue has dropped the plaintext read after the command;
reading stops at once (before the 220 is even sent), so no plaintext byte
reaches the dialogue again: ``loop.start_tls`` takes the socket over, and
what arrives after the handshake is read through TLS.  A failed handshake
ends the session.  AUTH: the listener's AuthService checks (one at a
time, off the loop) and counts failures per client address.

The loop: bytes in -> ``core.receive_data`` -> ``core.next_event()`` until
NEED_DATA, sending ``core.data_to_send()`` after each; a Commit or Etrn
runs as a task whose reply goes to ``core.answer()``, then the loop goes
on; Close closes the transport.

Invariants:
  * 250 after DATA only after ``await store.commit()`` returned (the file
    and its directory are fsynced: invariant 2).
  * No name lookups: the host name is the configured one; the client is its
    IP address (invariant 1).
  * Timeout.command per read and per command line, and max_session_time
    (timers.py): a slow but moving DATA is never cut, a commit in progress
    never times out, a client that dribbles a line (slowloris) or stalls
    gets ``421 4.4.2`` and is closed.
  * Held input is bounded: past ``held_input_limit`` reading pauses until
    the waiting command has answered.  While the client does not read our
    replies (writing paused), no command is taken.
  * End of input: what the client sent is answered, then the connection is
    closed.

Failures: a spool error answers ``451 4.3.0`` (logged once with its
traceback), SpoolFull ``452 4.3.1``, a failing ETRN hook ``458 4.3.0``,
any other exception in a task ``451 4.3.0``; the session goes on.  A TLS handshake
that fails or times out is logged (tls_failed) and closes; nothing stops the listener.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine, Protocol, cast

from edgemail import maillog
from edgemail.clock import Clock
from edgemail.envelope import Envelope
from edgemail.errors import SpoolError, SpoolFull
from edgemail.smtpd.auth import may_send_as
from edgemail.smtpd.core import Dialogue, Settings, State
from edgemail.smtpd.credentials import AuthService
from edgemail.smtpd.events import NEED_DATA, Atrn, Authenticate, Close, Commit, Etrn, Event, StartTls
from edgemail.smtpd.policy import Admission, RelayPolicy, client_ip
from edgemail.smtpd.timers import SessionTimers
from edgemail.smtpd.tls import ServerTls, describe
from edgemail.smtpd.transaction import queue_file
from edgemail.smtpd.turnaround import Push, TurnVerbs

log = logging.getLogger("edgemail.smtpd")



class Spool(Protocol):
    """What a session needs of the spool (spool/store.py's Store)."""

    def has_room(self, size: int = 0, *, fresh: bool = False) -> bool: ...

    async def commit(self, env: Envelope, data: bytes) -> str: ...


@dataclass(frozen=True)
class Services:
    """What a listener hands each of its sessions."""
    settings: Settings
    #: the listener's name (for the connect line), its command timeout and session limit
    name: str
    timeout: float
    store: Spool
    clock: Clock
    policy: RelayPolicy
    admission: "Admission[SmtpSession]"
    #: every session's reads land here first (one loop: one read at a time)
    read_buffer: memoryview
    on_commit: Callable[[str], None] | None = None
    #: ETRN's hook: (node, the Etrn event: who asks) -> the reply
    on_etrn: Callable[[str, Etrn], Awaitable[str]] | None = None
    #: ATRN's hook: (user, domains, relay) -> (reply, the push after a 250 or None)
    on_atrn: Callable[[str | None, tuple[str, ...], str], tuple[str, Push | None]] | None = None
    #: seconds before the 220 (sendmail's greet_pause)
    greet_pause: float = 0.0
    max_session_time: float = 3600.0
    #: STARTTLS's context (None: not offered); AUTH's credentials and failure counts
    tls: ServerTls | None = None
    auth: AuthService | None = None


class SmtpSession(TurnVerbs, asyncio.BufferedProtocol):
    """One connection, per the module docstring."""

    #: input held while a command waits (a commit, ETRN) before reading pauses
    held_input_limit = 256 * 1024

    def __init__(self, services: Services) -> None:
        self.services = services
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.core: Dialogue | None = None
        self.relay = ""
        #: the session's end is logged already (refused at connect, timed out)
        self._end_logged = False
        self._task: asyncio.Task | None = None
        #: after ATRN's 250: the push that has the connection now
        self._push: asyncio.Task | None = None
        #: messages this session committed; done once the connection is gone (ODMR waits for it)
        self.commits = 0
        self.done: asyncio.Future[None] = self.loop.create_future()
        self._busy = False                      # a commit or a handshake is in progress
        self._timers: SessionTimers | None = None
        self._greeter: asyncio.TimerHandle | None = None
        self._writing_paused = False
        self._reading_paused = False

    # ---------------------------------------------------------------- connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        s = self.services
        peer = transport.get_extra_info("peername") or ("0.0.0.0", 0)
        ip = client_ip(peer[0])
        self.relay = f"[{ip}]:{peer[1]}"
        self.core = core = self._dialogue(ip)
        refusal = s.admission.admit(self, ip)
        if refusal:
            log.warning(maillog.refused(self.relay, refusal))
            self._end_logged = True
            core.close_with(refusal)
        else:
            log.debug(maillog.connect(self.relay, s.name))
            if s.greet_pause > 0:
                self._greeter = self.loop.call_later(s.greet_pause, self._greet)
            else:
                core.greet()
            self._timers = SessionTimers(self.loop, per_read=s.timeout, per_session=s.max_session_time,
                                         busy=self._waiting, on_expiry=self._expired)
        self._pump()

    def _dialogue(self, ip: str) -> Dialogue:
        """The dialogue for a client at IP, with this listener's decisions."""
        s, auth = self.services, self.services.auth
        cfg = s.policy.cfg

        def sender_ok(user: str, sender: str) -> bool:
            return may_send_as(user, sender, cfg.smtpd.sender_login, cfg.local_domains)

        core = Dialogue(
            s.settings, ip=ip, relay=self.relay, trusted=s.policy.trusted(ip),
            has_room=lambda size: s.store.has_room(size, fresh=True),
            decide_rcpt=lambda address: s.policy.rcpt_decision(core.may_relay, address),
            auth_failures=(lambda: auth.failures.count(ip, s.clock.monotonic())) if auth else (lambda: 0),
            sender_ok=sender_ok)
        return core

    def _greet(self) -> None:
        """greet_pause is over: the 220 (unless the client talked first)."""
        self._greeter = None
        if self.core is not None and self.core.state is State.GREETING:
            self.core.greet()
            if self._task is None:
                self._pump()

    @property
    def auth_user(self) -> str | None:
        """The user the client authenticated as (None: it did not)."""
        return self.core.auth_user if self.core is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.services.admission.release(self)
        if not self.done.done():
            self.done.set_result(None)
        core = self.core
        if core is not None and not core.ended and not self._end_logged:
            log.info(maillog.lost_connection(self.relay, core.verb))
        for pending in (self._task, self._timers, self._greeter):
            if pending is not None:
                pending.cancel()
        self.transport = None

    def shutdown(self, reply: str) -> None:
        """The listener closes: say REPLY (a 421) and close, whether or not
        the client reads."""
        if self.core is not None and self.transport is not None:
            self.core.close_with(reply)
            self.transport.write(self.core.data_to_send())
            self.transport.close()

    @property
    def held(self) -> int:
        """Bytes read that no reply covers yet."""
        return self.core.held if self.core is not None else 0

    # ---------------------------------------------------------------- reading

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.services.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.services.read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """Take DATA; most commands are answered before this returns."""
        if self._timers is not None:
            self._timers.read()
        core = self.core
        assert core is not None
        core.receive_data(data)
        if self._task is None and not self._writing_paused:
            self._pump()
            return
        # input piles up only while a command waits or the client does not read
        if core.held > self.held_input_limit and not self._reading_paused:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                self._reading_paused = True
                transport.pause_reading()

    def eof_received(self) -> bool:
        """The client has sent all it will: answer what it sent, then close.
        Plain TCP stays half-open for the answers (True); TLS has no half-close
        (its transport closes after this, flushing what we wrote): False."""
        assert self.core is not None and self.transport is not None
        self.core.receive_data(b"")
        if self._task is None:
            self._pump()
        return self.transport is not None and self.transport.get_extra_info("ssl_object") is None

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._task is None:
            self._pump()

    # ---------------------------------------------------------------- the loop

    def _pump(self) -> None:
        """Run the dialogue as far as it goes without waiting (for input, a
        task, or a client that does not read)."""
        core = self.core
        assert core is not None
        while not self._writing_paused:
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            event = core.next_event()
            data = core.data_to_send()
            if data:
                transport.write(data)
            if event is NEED_DATA:
                if self._timers is not None:
                    self._timers.ready(core.state, core.held)
                break
            if isinstance(event, Close):
                transport.close()
                return
            if isinstance(event, StartTls):
                transport.pause_reading()       # not one more plaintext byte for the dialogue
                self._reading_paused = False    # start_tls resumes reading, through TLS
                if event.dropped:
                    log.warning(maillog.tls_pipelined(self.relay, event.dropped))
            if isinstance(event, (Commit, Etrn, StartTls, Authenticate)):
                self._task = self.loop.create_task(self._perform(event))
                return
            if isinstance(event, Atrn):
                self._atrn(event)
                continue
        if self._reading_paused and core.held <= self.held_input_limit \
                and not self._writing_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    async def _perform(self, event: Event) -> None:
        """A Commit, Etrn, StartTls or Authenticate; its outcome goes back to the dialogue."""
        core = self.core
        assert core is not None
        try:
            if isinstance(event, StartTls):
                if not await self._start_tls():
                    return
            elif isinstance(event, Authenticate):
                await self._authenticate(event)
            elif isinstance(event, Commit):
                core.answer(await self._commit(event))
            else:
                assert isinstance(event, Etrn)
                core.answer(await self._etrn(event))
        except Exception as exc:
            core.answer(core.internal_error(exc))
        self._task = None
        if self._timers is not None:
            self._timers.waited()
        self._pump()

    async def _start_tls(self) -> bool:
        """The handshake (the 220 is on its way); False: it failed, the session is closed."""
        s, core, transport = self.services, self.core, self.transport
        assert core is not None and transport is not None and s.tls is not None
        self._busy, error = True, None
        try:
            tls = await self.loop.start_tls(transport, self, s.tls.context, server_side=True,
                                            ssl_handshake_timeout=s.timeout)
        except OSError as exc:      # ssl.SSLError, ConnectionError, TimeoutError
            tls, error = None, exc
        finally:
            self._busy = False
        if tls is None:
            log.info(maillog.tls_failed(self.relay, error or "connection closed"))
            self._end_logged = True
            transport.abort()
            return False
        self.transport = tls
        log.info(maillog.tls_started(self.relay, *describe(tls.get_extra_info("ssl_object"))))
        core.tls_started()
        return True

    async def _authenticate(self, event: Authenticate) -> None:
        """Check AUTH's password off the loop; count a failure for this client."""
        auth, core = self.services.auth, self.core
        assert auth is not None and core is not None
        ok = await auth.check(core.ip, event.mech, event.user, event.password, event.challenge,
                              now=self.services.clock.monotonic, limit=core.settings.max_auth_failures)
        if isinstance(ok, str):         # not checked (too many pending): no failure counted
            core.auth_deferred(event, ok, auth.pending.total)
        else:
            failures = auth.settle(core.ip, ok, self.services.clock.monotonic())
            core.auth_done(event, event.user if ok else None, failures)

    async def _commit(self, event: Commit) -> str:
        """Queue a message; the reply to the final dot."""
        s = self.services
        assert self.core is not None
        env, data = queue_file(event.txn, event.facts, event.message, helo=event.helo, proto=event.proto,
                               ip=self.core.ip, hostname=s.settings.hostname, relay=self.relay,
                               arrived=s.clock.wall())
        if not s.store.has_room(len(data)):
            return "452 4.3.1 Insufficient system storage"
        self._busy = True
        try:
            qid = await s.store.commit(env, data)
        except SpoolFull:
            return "452 4.3.1 Insufficient system storage"
        except SpoolError:
            log.error(maillog.internal_error(self.relay, "DATA"), exc_info=True)
            return "451 4.3.0 Error: queue file write error, try again later"
        finally:
            self._busy = False
        log.info(maillog.received(qid, env))
        self.commits += 1
        self._committed(qid)
        return f"250 2.0.0 {qid} Message accepted for delivery"

    def _committed(self, qid: str) -> None:
        on_commit = self.services.on_commit
        if on_commit is None:
            return
        try:
            on_commit(qid)
        except Exception:   # the message is safe on disk: the client still gets its 250
            log.exception(maillog.hook_failed(qid, "on_commit"))

    # ---------------------------------------------------------------- time limits

    def _waiting(self) -> bool:
        """We are the ones the session waits on: no client limit runs."""
        return self._busy or (self.core is not None and self.core.state is State.WAITING)

    def _expired(self, limit: str) -> None:
        """A time limit (timers.py) passed: 421 4.4.2 and close."""
        if self.core is None or self.transport is None:
            return
        host = self.services.settings.hostname
        if limit == "timeout":
            log.info(maillog.timeout(self.relay, self.core.verb))
            reply = f"421 4.4.2 {host} Error: timeout exceeded"
        else:
            log.info(maillog.time_limit(self.relay, self.core.verb, limit))
            reply = f"421 4.4.2 {host} Error: {limit} time limit exceeded"
        self._end_logged = True
        self.shutdown(reply)
