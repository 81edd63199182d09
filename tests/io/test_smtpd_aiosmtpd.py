"""What the project still takes from aiosmtpd, checked against the installed
version: a test that fails loudly, naming what moved, before a peer breaks
in some far-away test.

edgemail's listener does not use aiosmtpd (smtpd/core.py owns the server
dialogue).  aiosmtpd stays as a *test peer*: hardware-sim/upstream.py (the
SMTP/LMTP sink with faults), hardware-sim/isprelay.py (the ISP relay) and
tests/hwsim (a stand-in listener).  Those peers use its public surface
(the classes, constructor keywords, handler hooks, session and envelope
fields) and, in upstream.py, four private names: ``SMTP._handle_client``
(the banner faults), ``SMTP._getparams`` (no_dsn), ``_reader._buffer``
(bytes consumed) and ``event_handler``.  pyproject.toml pins the versions
this was run against (TESTED); a new one must pass here first.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect

import pytest

aiosmtpd_smtp = pytest.importorskip("aiosmtpd.smtp")
aiosmtpd_lmtp = pytest.importorskip("aiosmtpd.lmtp")

#: the aiosmtpd versions the peers were run against (pyproject.toml's pin)
TESTED = {"1.4.6"}

SMTP_KEYWORDS = ("hostname", "ident", "data_size_limit", "enable_SMTPUTF8", "tls_context",
                 "authenticator", "auth_require_tls", "auth_exclude_mechanism", "timeout")


def test_the_installed_aiosmtpd_is_a_tested_one():
    version = importlib.metadata.version("aiosmtpd")
    assert version in TESTED, (
        f"aiosmtpd {version} is installed, the peers were run against {sorted(TESTED)}: "
        "run this file and tests/hwsim, then add it to TESTED and to pyproject.toml's pin")


@pytest.mark.parametrize("module,name", [
    ("smtp", "SMTP"), ("smtp", "AuthResult"), ("smtp", "LoginPassword"), ("smtp", "Session"),
    ("smtp", "Envelope"), ("lmtp", "LMTP"),
])
def test_the_names_the_peers_import(module, name):
    mod = aiosmtpd_smtp if module == "smtp" else aiosmtpd_lmtp
    assert hasattr(mod, name), f"aiosmtpd.{module}.{name} moved (hardware-sim imports it)"


def test_the_constructor_keywords_the_peers_pass():
    params = inspect.signature(aiosmtpd_smtp.SMTP.__init__).parameters
    missing = [k for k in SMTP_KEYWORDS if k not in params]
    assert not missing, f"aiosmtpd.smtp.SMTP() no longer takes {missing} (hardware-sim/upstream.py, isprelay.py)"


@pytest.mark.parametrize("name,coroutine", [
    ("_handle_client", True), ("_getparams", False), ("push", True), ("smtp_DATA", True),
    ("data_received", False),
])
def test_the_methods_upstream_overrides(name, coroutine):
    method = getattr(aiosmtpd_smtp.SMTP, name, None)
    assert method is not None, f"aiosmtpd.smtp.SMTP.{name} is gone (hardware-sim/upstream.py overrides it)"
    assert inspect.iscoroutinefunction(method) == coroutine, f"SMTP.{name}: coroutine={not coroutine} now"


async def test_hooks_session_and_envelope_as_the_peers_read_them():
    """One real session against aiosmtpd on loopback: the hooks are called
    with the arguments the peers take, and carry the fields they read."""
    seen: dict[str, object] = {}

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            seen["ehlo"] = (hostname, responses[-1])
            session.host_name = hostname        # a handle_EHLO hook must set it (upstream.py does)
            return responses

        async def handle_MAIL(self, server, session, envelope, address, options):
            envelope.mail_from, envelope.mail_options = address, options
            seen["reader_buffer"] = isinstance(server._reader._buffer, (bytes, bytearray))
            seen["handler"] = server.event_handler is self
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):
            seen["data"] = (envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                            session.peer[0], session.ssl, bool(session.authenticated), session.auth_data)
            return "250 2.0.0 OK"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: aiosmtpd_smtp.SMTP(Handler(), hostname="peer.test"),
                                      "127.0.0.1", 0)
    try:
        r, w = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        w.write(b"EHLO c.test\r\nMAIL FROM:<a@x.test> BODY=8BITMIME\r\nRCPT TO:<b@y.test>\r\n"
                b"DATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        await w.drain()
        out = await asyncio.wait_for(r.read(), 10)
        w.close()
    finally:
        server.close()
        await server.wait_closed()
    assert out.rstrip().endswith(b"221 Bye"), out
    assert seen["ehlo"] == ("c.test", "250 HELP"), seen
    assert seen["reader_buffer"] and seen["handler"], "SMTP._reader._buffer / event_handler moved"
    assert seen["data"] == ("a@x.test", ["b@y.test"], b"Subject: s\r\n\r\nbody\r\n", "127.0.0.1", None, False,
                            None)
