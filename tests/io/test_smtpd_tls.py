"""Inbound STARTTLS and AUTH over real sockets (issue 11 §1, §2): the
handshake, the plaintext pipelined after STARTTLS dropped (CVE-2024-34083
class), AUTH PLAIN/LOGIN against a real credentials file, failures counted
per client across sessions, submission, the certificate re-read."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import subprocess
import warnings

import pytest

from edgemail.errors import ConfigError
from edgemail.smtpd.credentials import hash_password
from edgemail.smtpd.listener import reload_secrets
from tests.io.smtpd_helpers import Raw, make_store, running

PLAIN = base64.b64encode(b"\0alice\0s3cret").decode()
WRONG = base64.b64encode(b"\0alice\0guess").decode()


def make_cert(directory, cn: str) -> tuple[str, str]:
    crt, key = directory / f"{cn}.crt", directory / f"{cn}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2",
                    "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return str(crt), str(key)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    return make_cert(d, "one.test"), make_cert(d, "two.test")


@pytest.fixture
def passwd(tmp_path):
    path = tmp_path / "smtpd.passwd"
    path.write_text(f"# test users\nalice:{hash_password('s3cret', log2n=4)}\n")
    return path


@pytest.fixture
def tls_config(example_config, certs, passwd, tmp_path):
    (crt, key), _ = certs
    live_crt, live_key = tmp_path / "live.crt", tmp_path / "live.key"
    live_crt.write_bytes(open(crt, "rb").read())
    live_key.write_bytes(open(key, "rb").read())

    def make(**listener):
        return example_config(
            listen=[{"name": "t", "address": "127.0.0.1", "port": 0, "strict": True, "greet_pause": 0,
                     "tls_cert": str(live_crt), "tls_key": str(live_key), **listener}],
            smtpd={"auth_file": str(passwd)})
    return make


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


async def starttls(c: Raw, pipelined: bytes = b"") -> str:
    await c.send(b"STARTTLS\r\n" + pipelined)
    reply = await c.reply()
    assert reply == "220 2.0.0 Ready to start TLS", reply
    await c.w.start_tls(client_context())
    return c.w.get_extra_info("ssl_object").getpeercert(binary_form=True)


async def secure_session(port: int) -> Raw:
    c = await Raw.connect(port)
    await c.cmd("EHLO c")
    await starttls(c)
    ehlo = await c.cmd("EHLO c")
    assert "250-AUTH PLAIN LOGIN" in ehlo, ehlo
    return c


async def test_starttls_drops_the_plaintext_pipelined_after_it(tls_config, caplog):
    cfg = tls_config()
    store = make_store(cfg.spool_dir)
    async with running(cfg, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        ehlo = await c.cmd("EHLO c")
        assert "250-STARTTLS" in ehlo and "AUTH" not in ehlo
        injected = b"MAIL FROM:<evil@x.example>\r\nRCPT TO:<victim@far.example>\r\n"
        with caplog.at_level(logging.INFO, logger="edgemail.smtpd"):
            await starttls(c, injected)
            after = await c.cmd("MAIL FROM:<a@x.example>")
            ehlo2 = await c.cmd("EHLO c")
            rcpt = await c.cmd("RCPT TO:<b@edge.example>")
            await c.cmd("QUIT")
    assert after.startswith("503 5.5.1 Error: send HELO first"), "the EHLO state was reset"
    assert "STARTTLS" not in ehlo2 and "250-AUTH PLAIN LOGIN" in ehlo2
    assert rcpt.startswith("503 5.5.1 Error: need MAIL command"), "the injected MAIL never ran"
    assert f"discarded={len(injected)} (bytes pipelined after STARTTLS)" in caplog.text
    assert "STARTTLS=server, relay=[127.0.0.1]" in caplog.text and "version=TLSv1." in caplog.text
    assert queued(store) == 0


def queued(store) -> int:
    return len(store.entries())


async def closed(smtpd) -> None:
    """Wait (bounded) until the listener has no session open."""
    for _ in range(500):
        if smtpd.active == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the session was not closed")


async def test_tls_1_1_is_refused(tls_config, caplog):
    caplog.set_level(logging.INFO, logger="edgemail.smtpd")
    async with running(tls_config(), make_store(tls_config().spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        await c.cmd("EHLO c")
        await c.send(b"STARTTLS\r\n")
        await c.reply()
        ctx = client_context()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await c.w.start_tls(ctx)
        await closed(smtpd)
    assert "STARTTLS=server, relay=[127.0.0.1]" in caplog.text and "error=" in caplog.text


async def test_auth_before_tls_is_538_and_not_offered(tls_config):
    async with running(tls_config(), make_store(tls_config().spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        assert "AUTH" not in await c.cmd("EHLO c")
        reply = await c.cmd(f"AUTH PLAIN {PLAIN}")
        await c.cmd("QUIT")
    assert reply == "538 5.7.11 Encryption required for requested authentication mechanism"


@pytest.mark.parametrize("exchange", [
    [f"AUTH PLAIN {PLAIN}"],
    ["AUTH PLAIN", PLAIN],
    ["AUTH LOGIN", base64.b64encode(b"alice").decode(), base64.b64encode(b"s3cret").decode()],
], ids=["plain", "plain-334", "login"])
async def test_auth_good_then_relay(tls_config, exchange, caplog):
    cfg = tls_config()
    store = make_store(cfg.spool_dir)
    async with running(cfg, store, trust_loopback=False) as smtpd:
        c = await secure_session(smtpd.port)
        with caplog.at_level(logging.INFO, logger="edgemail.smtpd"):
            replies = [await c.cmd(line) for line in exchange]
        assert replies[-1] == "235 2.7.0 Authentication successful", replies
        assert all(r.startswith("334 ") for r in replies[:-1])
        assert (await c.cmd("MAIL FROM:<alice@edge.example>")).startswith("250")
        assert (await c.cmd("RCPT TO:<x@far.example>")).startswith("250"), "authenticated: may relay"
        assert (await c.cmd("DATA")).startswith("354")
        assert (await c.cmd("Subject: t\r\n\r\nhi\r\n.")).startswith("250 2.0.0")
        await c.cmd("QUIT")
    (entry,) = store.entries()
    assert store.read_data(entry.qid).startswith(b"Received: from c ([127.0.0.1])\r\n\tby ")
    assert b"with ESMTPSA" in store.read_data(entry.qid)[:200]
    assert entry.envelope.proto == "ESMTPSA"
    assert "AUTH=server, relay=[127.0.0.1]" in caplog.text and "authid=alice" in caplog.text
    assert "s3cret" not in caplog.text and PLAIN not in caplog.text


async def test_failed_auth_counts_per_client_across_sessions(tls_config, caplog):
    cfg = tls_config()
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await secure_session(smtpd.port)
        with caplog.at_level(logging.INFO, logger="edgemail.smtpd"):
            first = [await c.cmd(f"AUTH PLAIN {WRONG}") for _ in range(2)]
            await c.cmd("QUIT")
            c = await secure_session(smtpd.port)               # a new session: the count goes on
            third = await c.cmd(f"AUTH PLAIN {WRONG}")
            rest = await c.reply()
            c2 = await secure_session(smtpd.port)              # over the limit: 421 at once
            fourth = await c2.cmd(f"AUTH PLAIN {PLAIN}")
            closed = await c2.reply()
    assert first == ["535 5.7.8 Authentication credentials invalid"] * 2
    assert third == "535 5.7.8 Authentication credentials invalid"
    assert rest.startswith("421 4.7.0") and "too many failed authentications" in rest
    assert fourth.startswith("421 4.7.0") and closed == "<EOF>"
    assert caplog.text.count("AUTH failure (PLAIN): authentication failed, authid=alice") == 3
    assert "failures=3" in caplog.text and "guess" not in caplog.text and WRONG not in caplog.text


async def test_submission_needs_auth_then_checks_the_sender(tls_config):
    cfg = tls_config(submission=True, require_tls=True, strict=False)
    store = make_store(cfg.spool_dir)
    async with running(cfg, store) as smtpd:             # loopback is trusted: AUTH is still required
        c = await Raw.connect(smtpd.port)
        await c.cmd("EHLO c")
        before_tls = await c.cmd("MAIL FROM:<alice@edge.example>")
        await starttls(c)
        await c.cmd("EHLO c")
        before_auth = await c.cmd("MAIL FROM:<alice@edge.example>")
        assert (await c.cmd(f"AUTH PLAIN {PLAIN}")).startswith("235")
        mismatch = await c.cmd("MAIL FROM:<boss@edge.example>")
        own = await c.cmd("MAIL FROM:<alice@edge.example>")
        await c.cmd("QUIT")
    assert before_tls == "530 5.7.0 Must issue a STARTTLS command first"
    assert before_auth == "530 5.7.0 Authentication required"
    assert mismatch == "553 5.7.1 <boss@edge.example>... Sender address rejected: not owned by user alice"
    assert own.startswith("250 2.1.0")


async def test_the_certificate_is_read_again_on_reload(tls_config, certs, tmp_path):
    cfg = tls_config()
    (one_crt, _), (two_crt, two_key) = certs
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        async def served() -> bytes:
            c = await Raw.connect(smtpd.port)
            await c.cmd("EHLO c")
            der = await starttls(c)
            await c.cmd("QUIT")
            return der
        first = await served()
        (tmp_path / "live.key").write_text("not a key\n")
        with pytest.raises(ConfigError, match="cannot load the TLS certificate"):
            reload_secrets([smtpd])
        assert await served() == first, "a bad new key leaves the old certificate serving"
        (tmp_path / "live.crt").write_bytes(open(two_crt, "rb").read())
        (tmp_path / "live.key").write_bytes(open(two_key, "rb").read())
        assert reload_secrets([smtpd])() == (1, 1)
        second = await served()
    assert first == ssl.PEM_cert_to_DER_cert(open(one_crt).read())
    assert second == ssl.PEM_cert_to_DER_cert(open(two_crt).read())


async def test_plaintext_instead_of_a_handshake_ends_the_session(tls_config, caplog):
    caplog.set_level(logging.INFO, logger="edgemail.smtpd")
    cfg = tls_config()
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        await c.cmd("EHLO c")
        await c.send(b"STARTTLS\r\n")
        assert (await c.reply()).startswith("220 2.0.0")
        await c.send(b"EHLO plaintext-after-starttls\r\n")   # no handshake: bytes the TLS layer refuses
        got = await asyncio.wait_for(c.r.read(), 10)
        await closed(smtpd)
    assert b"250" not in got
    assert "STARTTLS=server" in caplog.text and "error=" in caplog.text


async def test_the_clients_end_of_input_after_starttls_closes_without_asyncio_warnings(tls_config, caplog):
    """TLS has no half-close: eof_received says so (False) instead of returning True, which asyncio
    ignores with "returning true from eof_received() has no effect when using ssl"."""
    caplog.set_level(logging.INFO)
    async with running(tls_config(), make_store(tls_config().spool_dir)) as smtpd:
        c = await secure_session(smtpd.port)
        assert (await c.cmd("NOOP")).startswith("250")
        c.w.close()                                 # close_notify, then the TCP FIN
        await closed(smtpd)
    assert "eof_received" not in caplog.text, caplog.text
    assert "lost connection after NOOP from [127.0.0.1]" in caplog.text


async def test_plain_half_close_still_answers_what_was_sent(tls_config):
    """Without TLS the end of input keeps the connection half-open: what the client sent before
    its FIN is answered, then we close."""
    async with running(tls_config(), make_store(tls_config().spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        await c.send(b"NOOP\r\nRSET\r\n")
        c.w.write_eof()
        noop, rset, end = await c.reply(), await c.reply(), await c.reply()
        await c.close()
    assert noop == "250 2.0.0 OK" and rset == "250 2.0.0 OK" and end == "<EOF>"
