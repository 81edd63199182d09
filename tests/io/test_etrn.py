"""edgemail.delivery.etrn against a scripted SMTP server on loopback: sendmail/Postfix replies, no ETRN,
broken session, STARTTLS."""
from __future__ import annotations

import asyncio
import ssl

import pytest

from edgemail.delivery.etrn import check_argument, etrn
from edgemail.smtpc.tls import TlsPolicy
from test_smtpc_session import cert  # noqa: F401  (fixture: openssl self-signed)


async def server(answers: dict[str, str], *, ehlo: str = "250-isp.example\r\n250 ETRN\r\n", close_after: int = 99,
                 tls: ssl.SSLContext | None = None):
    """Answers ETRN <arg> from `answers`; records what it was sent ("<tls>" where STARTTLS took effect)."""
    seen: list[str] = []

    async def handle(reader, writer):
        writer.write(b"220 isp.example ESMTP\r\n")
        n = 0
        while line := await reader.readline():
            cmd = line.decode().rstrip("\r\n")
            seen.append(cmd)
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                writer.write(ehlo.encode())
            elif verb == "STARTTLS" and tls is not None:
                writer.write(b"220 2.0.0 go ahead\r\n")
                await writer.start_tls(tls)
                seen.append("<tls>")
                continue
            elif verb == "HELO":
                writer.write(b"250 isp.example\r\n")
            elif verb == "ETRN":
                n += 1
                if n > close_after:
                    break
                writer.write(answers[cmd.split(" ", 1)[1]].encode() + b"\r\n")
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                break
            await writer.drain()
        writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1], seen


async def test_sendmail_and_postfix_replies():
    srv, port, seen = await server({
        "example.org": "250 2.0.0 Queuing for node example.org started",
        "@example.net": "250 Queuing started",
        "#slow": "459 <#slow>: service unavailable",
        "example.com": "458 Unable to queue messages for node example.com",
    })
    async with srv:
        res = await etrn("127.0.0.1", port, ["example.org", "@example.net", "#slow", "example.com"],
                         helo_name="edge.example", timeout=5)
    assert [(r.domain, r.code, r.outcome) for r in res] == [
        ("example.org", 250, "ok"), ("@example.net", 250, "ok"),
        ("#slow", 459, "deferred"), ("example.com", 458, "deferred")]
    assert "Queuing for node example.org started" in res[0].text
    assert seen == ["EHLO edge.example", "ETRN example.org", "ETRN @example.net", "ETRN #slow",
                    "ETRN example.com", "QUIT"]


async def test_isp_without_etrn_is_unsupported():
    srv, port, _ = await server({"example.org": "502 5.5.1 Unrecognized command"},
                                ehlo="250 isp.example\r\n")
    async with srv:
        (r,) = await etrn("127.0.0.1", port, ["example.org"], helo_name="edge.example", timeout=5)
    assert (r.code, r.outcome, r.ok) == (502, "unsupported", False)


async def test_broken_session_gives_code_0_for_the_rest():
    srv, port, _ = await server({"a.example": "250 ok", "b.example": "250 ok"}, close_after=1)
    async with srv:
        res = await etrn("127.0.0.1", port, ["a.example", "b.example"], helo_name="edge.example", timeout=5)
    assert [(r.domain, r.code) for r in res] == [("a.example", 250), ("b.example", 0)]
    assert res[1].outcome == "error" and res[1].text


async def test_a_421_ends_the_session_with_code_0_for_the_rest():
    srv, port, seen = await server({"a.example": "421 4.3.2 shutting down", "b.example": "250 ok"})
    async with srv:
        res = await etrn("127.0.0.1", port, ["a.example", "b.example"], helo_name="edge.example", timeout=5)
    assert [(r.domain, r.code, r.outcome) for r in res] == [("a.example", 0, "error"), ("b.example", 0, "error")]
    assert "421 4.3.2 shutting down" in res[0].text and seen[-1] == "ETRN a.example"


async def test_etrn_goes_over_starttls_when_offered(cert):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*cert)
    srv, port, seen = await server({"example.org": "250 2.0.0 Queuing for node example.org started"},
                                   ehlo="250-isp.example\r\n250-STARTTLS\r\n250 ETRN\r\n", tls=ctx)
    async with srv:
        (r,) = await etrn("127.0.0.1", port, ["example.org"], helo_name="edge.example", timeout=5,
                          tls=TlsPolicy("may", verify=True, cafile=cert[0]))
    assert (r.code, r.outcome) == (250, "ok")
    assert seen == ["EHLO edge.example", "STARTTLS", "<tls>", "EHLO edge.example", "ETRN example.org", "QUIT"]


async def test_nobody_listening_is_a_result_not_an_exception():
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()
    (r,) = await etrn("127.0.0.1", port, ["example.org"], helo_name="edge.example", timeout=5)
    assert r.code == 0 and not r.ok


@pytest.mark.parametrize("arg", ["example.org", "@example.org", "#queue1", "a-b.example."])
def test_rfc1985_forms_accepted(arg):
    assert check_argument(arg) == arg


@pytest.mark.parametrize("arg", ["", "@", "#", "exa mple.org", "example.org\r\nQUIT", "-bad.example", "a..b"])
def test_other_arguments_refused(arg):
    with pytest.raises(ValueError, match="RFC 1985"):
        check_argument(arg)
