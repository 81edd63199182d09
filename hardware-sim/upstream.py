#!/usr/bin/env python3
"""upstream.py - an upstream SMTP/LMTP server (ISP relay, remote MX) with injectable faults.

Owns: an aiosmtpd server on a loopback port that accepts mail, records what
it received - the envelope, its ESMTP parameters, and the DATA section as it
came over the wire (dot-stuffing and line endings untouched, for smuggling
checks) - and counts TCP connections and round trips.  Written without any
edgemail import: it is the other side of the wire, and must not share our
mistakes.

Faults (``Faults`` fields; mutable between connections):
  banner_421          greet with 421 and close
  ehlo_502            EHLO answered 502 (client must fall back to HELO)
  mail_reply          reply to every MAIL instead of 250 (e.g. "452 4.3.1 full")
  rcpt_replies        {address: reply} for chosen RCPTs (e.g. 452 4.2.2)
  data_reply          final reply after the dot instead of 250
  disconnect_after_354  send 354 then close the connection
  slow                {"BANNER"|"EHLO"|"MAIL"|"RCPT"|"DATA"|"RSET": seconds} delay before replying
  no_pipelining, no_dsn, no_8bitmime, no_enhanced   withhold the extension
  size                SIZE limit (bytes) advertised and enforced
  auth_refused        every AUTH fails with 535
  auth_without_tls    offer AUTH on the clear connection (and no STARTTLS)
  auth_plain_off      offer only AUTH LOGIN

TLS: pass ``tls_cert``/``tls_key`` to offer STARTTLS; AUTH is offered only
after TLS unless ``auth_without_tls``.

Round trips: the number of times the client sent something after we had
replied to everything it sent before (client turns).  A pipelined
MAIL/RCPT/RCPT/DATA group is one; each lockstep command is one.

As a program::

    upstream.py --port 2525 [--fault no_pipelining] [--fault size=1000] [--lmtp]
                [--tls-cert C --tls-key K] [--user U --password P]

As a pytest fixture: ``from upstream import upstream_factory`` in a test
module, then ``up = await upstream_factory(faults=Faults(...))``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ssl
import sys
from dataclasses import dataclass, field

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

DSN_PARAMS = {"NOTIFY", "ORCPT", "RET", "ENVID"}


@dataclass
class Faults:
    banner_421: bool = False
    ehlo_502: bool = False
    mail_reply: str | None = None
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    disconnect_after_354: bool = False
    slow: dict[str, float] = field(default_factory=dict)
    no_pipelining: bool = False
    no_dsn: bool = False
    no_8bitmime: bool = False
    no_enhanced: bool = False
    size: int | None = None
    auth_refused: bool = False
    auth_without_tls: bool = False
    auth_plain_off: bool = False


@dataclass
class Received:
    """One message as the upstream saw it."""

    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    #: per recipient, the RCPT parameters
    rcpt_options: dict[str, list[str]]
    #: data after aiosmtpd's un-stuffing
    content: bytes
    #: the DATA section exactly as received: from after "DATA\r\n" through ".\r\n"
    raw: bytes
    tls: bool
    auth: str | None


@dataclass
class Stats:
    connections: int = 0
    round_trips: int = 0
    commands: list[str] = field(default_factory=list)


class _Handler:
    def __init__(self, up: "Upstream") -> None:
        self.up = up

    async def _slow(self, what: str) -> None:
        delay = self.up.faults.slow.get(what)
        if delay:
            await asyncio.sleep(delay)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        await self._slow("EHLO")
        f = self.up.faults
        if f.ehlo_502:
            return ["502 5.5.1 EHLO not implemented"]
        session.host_name = hostname
        drop = {"250-8BITMIME"} if f.no_8bitmime else set()
        out = [r for r in responses[:-1] if r not in drop
               and not (r.startswith("250-AUTH") and self.up.credentials is None)]
        extra = [("PIPELINING", f.no_pipelining), ("DSN", f.no_dsn),
                 ("ENHANCEDSTATUSCODES", f.no_enhanced)]
        out += [f"250-{name}" for name, off in extra if not off]
        return out + [responses[-1]]

    async def handle_MAIL(self, server, session, envelope, address, options):
        await self._slow("MAIL")
        if self.up.faults.mail_reply:
            return self.up.faults.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        envelope.x_rcpt = {}
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):
        await self._slow("RCPT")
        reply = self.up.faults.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        getattr(envelope, "x_rcpt", {})[address] = list(options)
        return "250 2.1.5 OK"

    async def handle_RSET(self, server, session, envelope):
        await self._slow("RSET")
        return "250 2.0.0 OK"

    async def handle_DATA(self, server, session, envelope):
        await self._slow("DATA")
        raw = bytes(server.x_raw[server.x_data_start:server.x_consumed()])
        self.up.messages.append(Received(
            envelope.mail_from, list(envelope.rcpt_tos), list(envelope.mail_options),
            dict(getattr(envelope, "x_rcpt", {})), envelope.original_content or b"", raw,
            tls=session.ssl is not None, auth=getattr(session, "x_user", None)))
        reply = self.up.faults.data_reply or "250 2.0.0 OK queued"
        if self.up.lmtp:
            return "\r\n".join(self.up.faults.rcpt_replies.get(f"lmtp:{r}", reply)
                               for r in envelope.rcpt_tos)
        return reply


class _Mixin:
    """Behaviour shared by the SMTP and LMTP server classes."""

    up: "Upstream"

    def connection_made(self, transport):
        if getattr(self, "x_raw", None) is None:
            self.x_raw = bytearray()
            self.x_turn = True
            self.up.stats.connections += 1
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.x_raw += data
        if self.x_turn:
            self.up.stats.round_trips += 1
            self.x_turn = False
        super().data_received(data)

    def x_consumed(self) -> int:
        return len(self.x_raw) - len(self._reader._buffer)

    async def push(self, status):
        self.x_turn = True
        await super().push(status)

    async def _handle_client(self):
        delay = self.up.faults.slow.get("BANNER")
        if delay:
            await asyncio.sleep(delay)
        if self.up.faults.banner_421:
            await self.push("421 4.3.2 upstream.test service not available, closing")
            self.transport.close()
            return
        await super()._handle_client()

    async def smtp_DATA(self, arg):
        self.x_data_start = self.x_consumed()
        if self.up.faults.disconnect_after_354 and self.envelope.rcpt_tos:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            self.transport.close()
            return
        await super().smtp_DATA(arg)

    def _getparams(self, params):
        if not self.up.faults.no_dsn:
            params = [p for p in params if p.partition("=")[0] not in DSN_PARAMS]
        return super()._getparams(params)


class _SMTP(_Mixin, SMTP):
    pass


class _LMTP(_Mixin, LMTP):
    pass


class Upstream:
    """The server.  ``await start()``, use ``port``, ``messages``, ``stats``; ``await close()``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None,
                 credentials: dict[str, str] | None = None, lmtp: bool = False,
                 hostname: str = "upstream.test") -> None:
        self.host, self.port = host, port
        self.faults = faults or Faults()
        self.credentials = credentials
        self.lmtp = lmtp
        self.hostname = hostname
        self.messages: list[Received] = []
        self.stats = Stats()
        self.auth_attempts: list[tuple[str, str]] = []
        self._tls = None
        if tls_cert:
            self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._tls.load_cert_chain(tls_cert, tls_key)
        self._server: asyncio.AbstractServer | None = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        self.auth_attempts.append((mechanism, user))
        ok = (not self.faults.auth_refused and self.credentials is not None
              and self.credentials.get(user) == password)
        if ok:
            session.x_user = user
        return AuthResult(success=ok, handled=False)

    def _protocol(self):
        f = self.faults
        cls = _LMTP if self.lmtp else _SMTP
        proto = cls(_Handler(self), hostname=self.hostname,
                    data_size_limit=f.size or 33554432, enable_SMTPUTF8=True,
                    tls_context=None if f.auth_without_tls else self._tls,
                    authenticator=self._authenticate,
                    auth_require_tls=not f.auth_without_tls,
                    auth_exclude_mechanism=["PLAIN"] if f.auth_plain_off else None,
                    timeout=60)
        proto.up = self
        return proto

    async def start(self) -> "Upstream":
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            if hasattr(self._server, "close_clients"):
                self._server.close_clients()
            await asyncio.sleep(0)

    async def __aenter__(self) -> "Upstream":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()


try:
    import pytest

    @pytest.fixture
    async def upstream_factory():
        """Start upstreams on loopback ports; all closed at the end of the test."""
        started: list[Upstream] = []

        async def make(**kw) -> Upstream:
            up = await Upstream(**kw).start()
            started.append(up)
            return up

        yield make
        for up in started:
            await up.close()
except ImportError:       # running as a program without pytest installed
    pass


def _parse_fault(text: str, faults: Faults) -> None:
    name, eq, value = text.partition("=")
    fld = {f.name: f for f in dataclasses.fields(Faults)}.get(name)
    if fld is None:
        raise SystemExit(f"upstream.py: unknown fault {name!r}; known: "
                         + ", ".join(f.name for f in dataclasses.fields(Faults)))
    if name in ("rcpt_replies", "slow"):
        key, _, v = value.partition(":")
        getattr(faults, name)[key] = float(v) if name == "slow" else v
    elif name == "size":
        faults.size = int(value)
    elif name in ("mail_reply", "data_reply"):
        setattr(faults, name, value)
    else:
        setattr(faults, name, True)


async def _serve(args) -> None:
    faults = Faults()
    for f in args.fault:
        _parse_fault(f, faults)
    creds = {args.user: args.password} if args.user else None
    up = await Upstream(host=args.host, port=args.port, faults=faults, tls_cert=args.tls_cert,
                        tls_key=args.tls_key, credentials=creds, lmtp=args.lmtp).start()
    print(f"upstream listening on {up.host}:{up.port}", flush=True)
    seen = 0
    while True:
        await asyncio.sleep(0.5)
        for m in up.messages[seen:]:
            print(f"from=<{m.mail_from}> to={m.rcpt_tos} size={len(m.content)} tls={m.tls}",
                  flush=True)
        seen = len(up.messages)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2525)
    p.add_argument("--fault", action="append", default=[],
                   help="NAME, NAME=VALUE, rcpt_replies=ADDR:REPLY or slow=CMD:SECONDS")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--lmtp", action="store_true")
    args = p.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
