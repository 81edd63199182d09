"""Issue 16 §3 (CVE-2011-0411 class, response injection): the SMTP client ignores nothing
that a server sent before the TLS handshake finished.  It drops the session instead, as a
protocol error (TempFail SITE 4.5.0), and sends nothing more: no handshake, no EHLO.

A hostile server on loopback answers STARTTLS with ``220 ...\\r\\n250 ...\\r\\n`` in one
write, for each client that says STARTTLS: a queue run to the smart host, SmtpClient.deliver
to an MX (SMTP and LMTP mode), and ETRN.  The LMTP transport never says STARTTLS (its
servers are on the LAN: TlsPolicy("none")), which is asserted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

import pytest

from edgemail.clock import FakeClock
from edgemail.config.model import Timeouts
from edgemail.delivery import lmtp as lmtp_transport
from edgemail.delivery.etrn import etrn
from edgemail.envelope import Envelope, RcptStatus, Recipient
from edgemail.errors import PermFail, Scope, TempFail
from edgemail.smtpc.channel import Channel
from edgemail.smtpc.dialogue import Dialogue
from edgemail.smtpc.events import Ehlo, Response, StartTls
from edgemail.smtpc.results import Stats
from edgemail.smtpc.session import SmtpClient
from edgemail.smtpc.tls import MX_TLS, TlsPolicy
from runner_helpers import make_cfg, make_runner, make_store, submit
from test_smtpc_session import cert  # noqa: F401  (fixture: openssl self-signed)

MSG = b"Subject: t\r\n\r\nhello\r\n"
READY = b"220 2.0.0 Ready to start TLS\r\n"
INJECTED = b"250 2.0.0 injected before the handshake\r\n"


@dataclass
class Hostile:
    """What the server saw: commands before and after TLS, whether a handshake
    happened, the messages it took."""

    port: int = 0
    before_tls: list[str] = field(default_factory=list)
    after_tls: list[str] = field(default_factory=list)
    handshakes: int = 0
    messages: list[bytes] = field(default_factory=list)
    sessions: list[asyncio.Task] = field(default_factory=list)


def _ehlo_reply(tls: bool, size: int) -> bytes:
    offers = ["hostile.test", "PIPELINING", f"SIZE {size}", "ETRN"] + ([] if tls else ["STARTTLS"])
    return b"".join(f"250{'-' if i < len(offers) - 1 else ' '}{o}\r\n".encode()
                    for i, o in enumerate(offers))


async def _serve_commands(reader, writer, seen: list[str], state: Hostile, *, tls: bool, size: int,
                          lmtp: bool) -> str:
    """Answer commands until STARTTLS (returns "starttls"), QUIT or EOF ("end")."""
    rcpts = 0
    while line := await reader.readline():
        cmd = line.decode().rstrip("\r\n")
        seen.append(cmd)
        verb = cmd.split(" ", 1)[0].upper()
        if verb in ("EHLO", "LHLO"):
            writer.write(_ehlo_reply(tls, size))
        elif verb == "STARTTLS" and not tls:
            return "starttls"
        elif verb == "RCPT":
            rcpts += 1
            writer.write(b"250 2.1.5 ok\r\n")
        elif verb == "DATA":
            writer.write(b"354 go ahead\r\n")
            body = b""
            while (chunk := await reader.readline()) not in (b".\r\n", b""):
                body += chunk
            state.messages.append(body)
            writer.write(b"250 2.0.0 queued\r\n" * (rcpts if lmtp else 1))
        elif verb == "QUIT":
            writer.write(b"221 bye\r\n")
            break
        else:
            writer.write(b"250 2.0.0 ok\r\n")
        await writer.drain()
    return "end"


@contextlib.asynccontextmanager
async def hostile_server(cert_pair, *, starttls_reply: bytes, size: int = 1_000_000,
                         size_after_tls: int | None = None, lmtp: bool = False, split: bool = False):
    """A server that offers STARTTLS and answers it with ``starttls_reply`` (in one
    write, or in two when ``split``); on leaving, its sessions have ended."""
    state = Hostile()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert_pair)

    async def handle(reader, writer):
        state.sessions.append(asyncio.current_task())
        writer.write(b"220 hostile.test ESMTP\r\n")
        try:
            if await _serve_commands(reader, writer, state.before_tls, state, tls=False, size=size,
                                     lmtp=lmtp) == "starttls":
                first, _, rest = starttls_reply.partition(b"\r\n")
                if split:
                    writer.write(first + b"\r\n")
                    await writer.drain()
                    writer.write(rest)
                else:
                    writer.write(starttls_reply)
                await writer.start_tls(ctx)
                state.handshakes += 1
                await _serve_commands(reader, writer, state.after_tls, state, tls=True,
                                      size=size_after_tls or size, lmtp=lmtp)
        except (OSError, ssl.SSLError):
            pass                              # the client dropped us: what the fixed client does
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = srv.sockets[0].getsockname()[1]
    async with srv:
        yield state
        await asyncio.gather(*state.sessions)


def assert_dropped_before_tls(state: Hostile, failure: BaseException | str) -> None:
    text = str(failure)
    assert "before the TLS handshake" in text, f"got {text!r}, want the session dropped for injection"
    assert state.handshakes == 0 and state.after_tls == [], \
        f"the client went on after the injection: handshakes={state.handshakes}, after TLS {state.after_tls}"
    assert state.messages == [] and state.before_tls[-1] == "STARTTLS"


@pytest.fixture
async def client():
    c = SmtpClient(helo_name="gw.test", timeouts=Timeouts(connect=5, iconnect=5, misc=10))
    yield c
    await c.close()


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp-mode"])
async def test_client_drops_the_session_when_bytes_come_with_the_220(cert, client, lmtp):
    async with hostile_server(cert, starttls_reply=READY + INJECTED, lmtp=lmtp) as state:
        with pytest.raises(TempFail) as e:
            await client.deliver("127.0.0.1", state.port, "a@x", ["b@y"], MSG, tls=MX_TLS, lmtp=lmtp)
    assert e.value.scope is Scope.SITE and e.value.dsn == "4.5.0"
    assert_dropped_before_tls(state, e.value)
    assert client._cache == {}


async def test_queue_run_defers_and_sends_nothing_after_the_injection(cert, example_config):
    clock = FakeClock()
    async with hostile_server(cert, starttls_reply=READY + INJECTED) as state:
        cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{state.port}")
        store = make_store(cfg, clock)
        runner = make_runner(cfg, store, clock, smarthost_tls=TlsPolicy("may", verify=True, cafile=cert[0]))
        qid = await submit(store, ["far@remote.test"])
        report = await runner.queue_run()
    entry = store.get(qid)
    assert report.sent == 0 and entry.rcpt_status["far@remote.test"] is RcptStatus.DEFERRED
    assert_dropped_before_tls(state, entry.last_reply["far@remote.test"])


async def test_etrn_reports_no_reply_and_asks_nothing(cert):
    async with hostile_server(cert, starttls_reply=READY + INJECTED) as state:
        (r,) = await etrn("127.0.0.1", state.port, ["edge.example"], helo_name="edge.example", timeout=5)
    assert (r.code, r.ok) == (0, False)
    assert_dropped_before_tls(state, r.text)
    assert not any(c.startswith("ETRN") for c in state.before_tls)


async def test_bytes_in_a_second_segment_also_end_the_session(cert, client):
    """Written after the 220 was flushed: they reach the client before the handshake
    (the session is dropped as above) or inside it (the handshake fails); never as a reply."""
    async with hostile_server(cert, starttls_reply=READY + INJECTED, split=True) as state:
        with pytest.raises(TempFail) as e:
            await client.deliver("127.0.0.1", state.port, "a@x", ["b@y"], MSG, tls=MX_TLS)
    assert e.value.scope is Scope.SITE and e.value.dsn in ("4.5.0", "4.7.5"), f"got {e.value.dsn}: {e.value}"
    assert state.after_tls == [] and state.messages == []


async def test_after_the_handshake_ehlo_comes_first_and_its_reply_counts(cert, client):
    """A server that offers SIZE 1000000 in clear and SIZE 10 over TLS: the
    client says EHLO first over TLS and goes by that reply (5.3.4, no MAIL)."""
    async with hostile_server(cert, starttls_reply=READY, size_after_tls=10) as state:
        with pytest.raises(PermFail) as e:
            await client.deliver("127.0.0.1", state.port, "a@x", ["b@y"], MSG, tls=MX_TLS)
    assert e.value.dsn == "5.3.4"
    assert state.handshakes == 1 and state.after_tls == ["EHLO gw.test"]


async def test_lmtp_transport_never_says_starttls(cert, client):
    """LMTP routes go to LAN stores without TLS: an offered STARTTLS is not taken,
    so there is no handshake to inject into."""
    rcpt = Recipient("ann@edge.example")
    async with hostile_server(cert, starttls_reply=READY + INJECTED, lmtp=True) as state:
        got = await lmtp_transport.deliver(client, "127.0.0.1", state.port, Envelope("a@x", (rcpt,)),
                                           [rcpt], MSG, now=0.0)
        await client.close()                 # QUIT: the server's session ends
    assert got["ann@edge.example"].status is RcptStatus.SENT
    assert "STARTTLS" not in state.before_tls and state.handshakes == 0 and len(state.messages) == 1


async def test_bytes_that_reach_the_channel_after_the_220_was_read_end_the_session_too():
    """The window between reading the 220 and starting the handshake: the
    transport hands the channel more bytes (data_received, as it would).  The
    dialogue refuses them before it starts any handshake."""
    channel = Channel()
    d = Dialogue(channel, host="mx.test", port=25, timeouts=Timeouts(), stats=Stats())
    for cmd, reply in ((None, b"220 mx.test\r\n"), (Ehlo("gw"), b"250-mx.test\r\n250 STARTTLS\r\n"),
                       (StartTls(), READY)):
        if cmd is not None:
            d.conn.send(cmd)
        d.conn.receive_data(reply)
        assert isinstance(d.conn.next_event(), Response)
    channel.data_received(INJECTED)
    with pytest.raises(TempFail) as e:
        await d.start_tls(MX_TLS.context())
    assert e.value.dsn == "4.5.0" and "before the TLS handshake" in str(e.value), f"got {e.value.dsn}: {e.value}"
    assert d.broken and not d.tls
