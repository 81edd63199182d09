"""smtpc/session.py against hardware-sim/upstream.py on loopback, one fault at a time."""

import asyncio
import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgemail.clock import FakeClock
from edgemail.config.model import Timeouts
from edgemail.envelope import Recipient
from edgemail.errors import ConfigError, LocalProtocolError, PermFail, Scope, TempFail
from edgemail.smtpc.core import MessageParams
from edgemail.smtpc.results import SmtpTimeout, StaleConnection, lost
from edgemail.smtpc.tls import MX_TLS, Credentials, TlsPolicy, load_credentials
from edgemail.smtpc.session import SmtpClient
import upstream
from upstream import Faults, upstream_factory  # noqa: F401  (fixture)

MSG = b"Subject: t\r\n\r\nhello\r\n"
LOOP = "127.0.0.1"


@pytest.fixture
async def client():
    c = SmtpClient(helo_name="gw.test", timeouts=Timeouts(connect=5, iconnect=5))
    yield c
    await c.close()


async def test_pipelining_one_round_trip_for_envelope(upstream_factory, client):
    up = await upstream_factory()
    r = await client.deliver(LOOP, up.port, "a@x", ["b@y", "c@y", "d@y"], MSG)
    assert all(x.ok for x in r.recipients.values())
    await client.close()
    # EHLO, MAIL+3 RCPT+DATA, message, QUIT: four client turns
    assert up.stats.round_trips == 4, f"got {up.stats.round_trips} round trips, want 4"
    assert up.messages[0].rcpt_tos == ["b@y", "c@y", "d@y"]


async def test_without_pipelining_lockstep(upstream_factory, client):
    up = await upstream_factory(faults=Faults(no_pipelining=True))
    r = await client.deliver(LOOP, up.port, "a@x", ["b@y", "c@y", "d@y"], MSG)
    assert all(x.ok for x in r.recipients.values())
    await client.close()
    # EHLO, MAIL, 3x RCPT, DATA, message, QUIT
    assert up.stats.round_trips == 8, f"got {up.stats.round_trips}, want 8"


async def test_connection_reuse(upstream_factory, client):
    up = await upstream_factory()
    for i in range(3):
        r = await client.deliver(LOOP, up.port, "a@x", [f"b{i}@y"], MSG)
        assert r.recipients[f"b{i}@y"].ok and r.reused == (i > 0)
    assert up.stats.connections == 1 and client.stats.reused == 2
    assert len(up.messages) == 3


async def test_no_cache_means_one_connection_each(upstream_factory):
    up = await upstream_factory()
    c = SmtpClient(helo_name="gw.test", cache_size=0)
    for i in range(3):
        await c.deliver(LOOP, up.port, "a@x", ["b@y"], MSG)
    assert up.stats.connections == 3


async def test_cache_timeout_on_fake_clock(upstream_factory):
    up = await upstream_factory()
    clock = FakeClock()
    c = SmtpClient(helo_name="gw.test", cache_timeout=60, clock=clock)
    await c.deliver(LOOP, up.port, "a@x", ["b@y"], MSG)
    clock.advance(30)
    await c.deliver(LOOP, up.port, "a@x", ["b@y"], MSG)
    clock.advance(61)
    await c.deliver(LOOP, up.port, "a@x", ["b@y"], MSG)
    await c.close()
    assert up.stats.connections == 2


async def test_stale_cached_connection_replaced(upstream_factory, client):
    up = await upstream_factory()
    await client.deliver(LOOP, up.port, "a@x", ["b@y"], MSG)
    (cached,) = client._cache.values()
    await up.close()                                     # the server goes away...
    cached.channel.abort()                               # ...and the socket with it
    up2 = await upstream_factory(port=up.port)
    r = await client.deliver(LOOP, up2.port, "a@x", ["c@y"], MSG)
    assert r.recipients["c@y"].ok and not r.reused
    assert [m.rcpt_tos for m in up2.messages] == [["c@y"]]


async def test_banner_421(upstream_factory, client):
    up = await upstream_factory(faults=Faults(banner_421=True))
    with pytest.raises(TempFail) as e:
        await client.deliver(LOOP, up.port, "a@x", ["b@y"], MSG)
    assert e.value.scope is Scope.SITE and e.value.dsn == "4.3.2"


async def test_connect_refused(upstream_factory, client):
    up = await upstream_factory()
    port = up.port
    await up.close()
    with pytest.raises(TempFail) as e:
        await client.deliver(LOOP, port, "a@x", ["b@y"], MSG)
    assert e.value.scope is Scope.SITE and "connect" in e.value.reason


async def test_connect_timeout_when_syns_go_unanswered():
    """A listener whose accept queue is full drops new SYNs (Linux): the
    connect hangs as towards a host that is gone, and Timeout.connect ends it."""
    import socket
    full = socket.socket()
    full.bind((LOOP, 0))
    full.listen(0)
    port = full.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):               # backlog 0 still queues one; the rest wait in SYN_SENT
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((LOOP, port))
            fillers.append(s)
        await asyncio.sleep(0.2)
        c = SmtpClient(helo_name="gw.test", timeouts=Timeouts(connect=0.5, iconnect=5))
        with pytest.raises(SmtpTimeout) as e:
            await c.deliver(LOOP, port, "a@x", ["b@y"], MSG)
        assert e.value.phase == "connect" and e.value.scope is Scope.SITE
        assert "timed out after 0.5s" in str(e.value)          # Timeout.connect, not iconnect
        await c.close()
    finally:
        for s in fillers:
            s.close()
        full.close()


async def test_452_at_rcpt_others_delivered(upstream_factory, client):
    up = await upstream_factory(faults=Faults(rcpt_replies={"c@y": "452 4.2.2 mailbox full",
                                                             "d@y": "550 5.1.1 unknown"}))
    r = await client.deliver(LOOP, up.port, "a@x", ["b@y", "c@y", "d@y"], MSG)
    assert r.recipients["b@y"].ok
    c, d = r.recipients["c@y"].failure, r.recipients["d@y"].failure
    assert isinstance(c, TempFail) and c.scope is Scope.RECIPIENT and c.dsn == "4.2.2"
    assert isinstance(d, PermFail) and d.scope is Scope.RECIPIENT and d.dsn == "5.1.1"
    assert up.messages[0].rcpt_tos == ["b@y"]


async def test_all_rcpts_refused_sends_no_data(upstream_factory, client):
    up = await upstream_factory(faults=Faults(rcpt_replies={"b@y": "550 5.1.1 unknown"}))
    r = await client.deliver(LOOP, up.port, "a@x", ["b@y"], MSG)
    assert isinstance(r.recipients["b@y"].failure, PermFail)
    assert up.messages == []


async def test_mail_refused(upstream_factory, client):
    up = await upstream_factory(faults=Faults(mail_reply="553 5.7.1 sender rejected"))
    with pytest.raises(PermFail) as e:
        await client.deliver(LOOP, up.port, "a@x", ["b@y"], MSG)
    assert e.value.scope is Scope.MESSAGE and e.value.dsn == "5.7.1"


async def test_disconnect_after_354(upstream_factory, client):
    up = await upstream_factory(faults=Faults(disconnect_after_354=True))
    r = await client.deliver(LOOP, up.port, "a@x", ["b@y"], MSG)
    f = r.recipients["b@y"].failure
    assert isinstance(f, TempFail) and r.failure is f and f.scope is Scope.SITE
    assert client._cache == {}                           # dead connection not cached


async def test_final_reply_temporary(upstream_factory, client):
    up = await upstream_factory(faults=Faults(data_reply="451 4.3.0 try later"))
    r = await client.deliver(LOOP, up.port, "a@x", ["b@y"], MSG)
    f = r.recipients["b@y"].failure
    assert isinstance(f, TempFail) and f.scope is Scope.MESSAGE and f.dsn == "4.3.0"


async def test_slow_reply_times_out_per_phase(upstream_factory):
    up = await upstream_factory(faults=Faults(slow={"MAIL": 3.0}))
    c = SmtpClient(helo_name="gw.test", timeouts=Timeouts(mail=0.3))
    with pytest.raises(SmtpTimeout) as e:
        await c.deliver(LOOP, up.port, "a@x", ["b@y"], MSG)
    assert isinstance(e.value, TimeoutError) and e.value.phase == "mail"
    assert e.value.scope is Scope.SITE


async def test_ehlo_refused_falls_back_to_helo(upstream_factory, client):
    up = await upstream_factory(faults=Faults(ehlo_502=True))
    r = await client.deliver(LOOP, up.port, "a@x", ["b@y"], MSG)
    assert r.recipients["b@y"].ok and up.messages[0].mail_options == []


async def test_size_checked_before_sending(upstream_factory, client):
    up = await upstream_factory(faults=Faults(size=100))
    with pytest.raises(PermFail) as e:
        await client.deliver(LOOP, up.port, "a@x", ["b@y"], b"x" * 200 + b"\r\n")
    assert e.value.dsn == "5.3.4" and "SIZE" in e.value.reason
    assert up.messages == [] and up.stats.round_trips == 1      # only EHLO was sent


async def test_8bit_body_to_7bit_server_refused(upstream_factory, client):
    up = await upstream_factory(faults=Faults(no_8bitmime=True))
    with pytest.raises(PermFail) as e:
        await client.deliver(LOOP, up.port, "a@x", ["b@y"], "caf\u00e9\r\n".encode())
    assert e.value.dsn == "5.6.3"
    assert up.messages == []


async def test_8bitmime_declared(upstream_factory, client):
    up = await upstream_factory()
    await client.deliver(LOOP, up.port, "a@x", ["b@y"], "caf\u00e9\r\n".encode())
    assert "BODY=8BITMIME" in up.messages[0].mail_options


@pytest.mark.parametrize("dsn", [True, False], ids=["dsn", "no-dsn"])
async def test_dsn_parameters_only_when_offered(upstream_factory, client, dsn):
    up = await upstream_factory(faults=Faults(no_dsn=not dsn))
    rcpt = Recipient("b@y", orcpt="rfc822;b@y", notify=frozenset({"FAILURE"}))
    await client.deliver(LOOP, up.port, "a@x", [rcpt], MSG,
                         params=MessageParams(ret="HDRS", envid="E1"))
    m = up.messages[0]
    if dsn:
        assert {"RET=HDRS", "ENVID=E1"} <= set(m.mail_options)
        assert m.rcpt_options["b@y"] == ["NOTIFY=FAILURE", "ORCPT=RFC822;B@Y"]
    else:
        assert not any(o.startswith(("RET", "ENVID")) for o in m.mail_options)
        assert m.rcpt_options["b@y"] == []


async def test_crlf_in_address_refused_before_any_byte(upstream_factory, client):
    up = await upstream_factory()
    with pytest.raises(LocalProtocolError):
        await client.deliver(LOOP, up.port, "a@x", ["b@y\r\nRCPT TO:<evil@z>"], MSG)
    with pytest.raises(LocalProtocolError):
        await client.deliver(LOOP, up.port, "a@x\n", ["b@y"], MSG)
    await client.close()
    assert up.stats.connections == 0 and up.messages == []


# The smuggling forms of the MTA core's tests, re-checked on the wire.
SMUGGLING = [
    b"a\n.\nb\r\n", b"a\r.\rb\r\n", b"a\r\n.\nMAIL FROM:<x@evil>\r\n", b"a\n.\r\nb\r\n",
    b"a\r\n.\r\r\nb\r\n", b"a\0\r\n.\0\r\nb\r\n", b"\r\n.\r\n", b".\r\n..\r\n...\r\n",
    b"bare\rcr\rand\nlf\n", b"x" * 998 + b"\r\n", b"no final newline",
]


@pytest.mark.parametrize("data", SMUGGLING, ids=[f"form{i}" for i in range(len(SMUGGLING))])
async def test_smuggling_forms_clean_on_the_wire(upstream_factory, client, data):
    up = await upstream_factory()
    r = await client.deliver(LOOP, up.port, "a@x", ["b@y"], data)
    assert r.recipients["b@y"].ok
    (m,) = up.messages
    raw = m.raw
    assert raw.endswith(b"\r\n.\r\n") or raw == b".\r\n"
    body = raw[:-3]
    assert b"\0" not in body
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n", body), f"bare CR/LF on the wire: {raw!r}"
    lines = body.split(b"\r\n")[:-1] if body else []
    for line in lines:
        assert len(line) <= 998
        assert not line.startswith(b".") or line.startswith(b".."), f"unstuffed dot: {line!r}"
    want = data.replace(b"\0", b"").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    want = want if want.endswith(b"\n") or not want else want + b"\n"
    assert m.content == want.replace(b"\n", b"\r\n"), "content changed beyond line endings"


async def test_long_line_not_sent(upstream_factory, client):
    up = await upstream_factory()
    with pytest.raises(PermFail) as e:
        await client.deliver(LOOP, up.port, "a@x", ["b@y"], b"x" * 999 + b"\r\n")
    assert "line too long" in e.value.reason and up.messages == []


async def test_lmtp_per_recipient_final_replies(upstream_factory, client):
    up = await upstream_factory(lmtp=True, faults=Faults(rcpt_replies={"lmtp:c@y": "452 4.2.2 over quota"}))
    r = await client.deliver(LOOP, up.port, "a@x", ["b@y", "c@y"], MSG, lmtp=True)
    assert r.recipients["b@y"].ok
    f = r.recipients["c@y"].failure
    assert isinstance(f, TempFail) and f.scope is Scope.MESSAGE and f.dsn == "4.2.2"


# ------------------------------------------------------------ TLS and AUTH

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return str(crt), str(key)


CRED = Credentials("alice", "s3cret pass")


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "login"])
async def test_starttls_then_auth(upstream_factory, client, cert, plain):
    up = await upstream_factory(tls_cert=cert[0], tls_key=cert[1],
                                credentials={"alice": "s3cret pass"},
                                faults=Faults(auth_plain_off=not plain))
    tls = TlsPolicy("may", verify=True, cafile=cert[0])
    r = await client.deliver(LOOP, up.port, "a@x", ["b@y"], MSG, tls=tls, credentials=CRED)
    assert r.recipients["b@y"].ok
    m = up.messages[0]
    assert m.tls and m.auth == "alice"
    assert up.auth_attempts == [("PLAIN" if plain else "LOGIN", "alice")]


async def test_verification_failure_is_tempfail(upstream_factory, client, cert):
    up = await upstream_factory(tls_cert=cert[0], tls_key=cert[1])
    with pytest.raises(TempFail) as e:
        await client.deliver(LOOP, up.port, "a@x", ["b@y"], MSG, tls=TlsPolicy("may", verify=True))
    assert e.value.dsn == "4.7.5" and up.messages == []


async def test_opportunistic_tls_for_mx(upstream_factory, client, cert):
    up = await upstream_factory(tls_cert=cert[0], tls_key=cert[1])
    await client.deliver(LOOP, up.port, "a@x", ["b@y"], MSG, tls=MX_TLS)
    assert up.messages[0].tls


async def test_auth_without_tls_refused(upstream_factory, client):
    up = await upstream_factory(credentials={"alice": "s3cret pass"},
                                faults=Faults(auth_without_tls=True))
    with pytest.raises(TempFail) as e:
        await client.deliver(LOOP, up.port, "a@x", ["b@y"], MSG, credentials=CRED)
    assert "in clear" in e.value.reason and e.value.scope is Scope.SITE
    assert up.auth_attempts == [] and up.messages == []


async def test_auth_refused(upstream_factory, client, cert, caplog):
    up = await upstream_factory(tls_cert=cert[0], tls_key=cert[1],
                                credentials={"alice": "s3cret pass"}, faults=Faults(auth_refused=True))
    with pytest.raises(TempFail) as e:
        await client.deliver(LOOP, up.port, "a@x", ["b@y"], MSG, tls=MX_TLS, credentials=CRED)
    assert e.value.dsn == "4.7.8" and e.value.scope is Scope.SITE
    assert "s3cret" not in str(e.value) and "s3cret" not in caplog.text


def test_credentials_file(tmp_path):
    p = tmp_path / "auth"
    p.write_text("# smart host\nalice s3cret pass\n")
    os.chmod(p, 0o600)
    cred = load_credentials(str(p))
    assert (cred.user, cred.password) == ("alice", "s3cret pass")
    assert "s3cret" not in repr(cred)
    os.chmod(p, 0o644)
    with pytest.raises(ConfigError) as e:
        load_credentials(str(p))
    assert "0644" in str(e.value) and str(p) in str(e.value)
    os.chmod(p, 0o600)
    p.write_text("justauser\n")
    with pytest.raises(ConfigError):
        load_credentials(str(p))


@pytest.mark.parametrize("err,scope", [(errno.ENETUNREACH, Scope.LINK), (errno.ENETDOWN, Scope.LINK),
                                       (errno.ECONNRESET, Scope.SITE)], ids=["netunreach", "netdown", "reset"])
def test_link_loss_scope(err, scope):
    f = lost(OSError(err, os.strerror(err)), "mx.test", "rcpt")
    assert isinstance(f, TempFail) and f.scope is scope


async def test_upstream_runs_as_a_program(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(upstream.__file__)), "--port", "0", "--fault", "no_dsn",
        stdout=asyncio.subprocess.PIPE)
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        port = int(line.rsplit(":", 1)[1])
        c = SmtpClient(helo_name="gw.test")
        r = await c.deliver(LOOP, port, "a@x", ["b@y"], MSG)
        await c.close()
        assert r.recipients["b@y"].ok
        assert "to=['b@y']" in (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
    finally:
        proc.kill()
        await proc.wait()


class _FakeDialogue:
    """Stands in for a Dialogue in SmtpClient's cache: ``outcomes`` are what a
    Transaction's run over it does."""

    def __init__(self, *outcomes):
        self.outcomes, self.probes, self.aborted, self.last_used = list(outcomes), [], False, 0.0

    async def transact(self, *, probe=False):
        self.probes.append(probe)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    usable = property(lambda self: not self.aborted)

    def abort(self):
        self.aborted = True

    async def quit(self):
        self.abort()


@pytest.mark.parametrize("cached, fresh, want", [
    (None, ["ok"], "ok"),
    (None, [TempFail("x", scope=Scope.SITE)], TempFail),
    (None, [asyncio.CancelledError()], asyncio.CancelledError),
    (["ok"], None, "reused"),
    ([StaleConnection()], ["ok"], "ok"),
    ([TempFail("x", scope=Scope.SITE)], None, TempFail),
    ([StaleConnection()], [TempFail("x", scope=Scope.SITE)], TempFail),
], ids=["fresh", "fresh-fails", "fresh-cancelled", "reused", "stale-replaced", "reused-fails",
        "stale-then-fails"])
async def test_cache_never_keeps_a_failed_or_cancelled_session(monkeypatch, cached, fresh, want):
    from edgemail.smtpc import session as mod
    result = mod.DeliveryResult("mx:25", {})
    old = _FakeDialogue(*[result if o == "ok" else o for o in cached]) if cached else None
    new = _FakeDialogue(*[result if o == "ok" else o for o in fresh]) if fresh else None
    opened = []

    async def fake_open(opening, host, port):
        opened.append(new)
        return new

    async def fake_run(message, dialogue, *, probe=False):
        return await dialogue.transact(probe=probe)
    monkeypatch.setattr(mod.Opening, "open", fake_open)
    monkeypatch.setattr(mod.Transaction, "run", fake_run)
    c = SmtpClient(helo_name="gw.test", clock=FakeClock())
    key = ("mx", 25, False, MX_TLS, None)
    if old is not None:
        old.last_used = c.clock.monotonic()
        c._cache[(key, -1)] = old
    if isinstance(want, type):
        with pytest.raises(want):
            await c.deliver("mx", 25, "a@x", ["b@y"], MSG)
    else:
        r = await c.deliver("mx", 25, "a@x", ["b@y"], MSG)
        assert r.reused == (want == "reused")
    live = old if want == "reused" else new
    assert list(c._cache.values()) == ([live] if isinstance(want, str) else [])
    assert old is None or (old.probes == [True] and old.aborted == (want != "reused"))
    assert opened == ([] if fresh is None else [new])
    assert new is None or (new.probes == [False] and new.aborted == isinstance(want, type))
