"""The SMTP listener against real clients (smtplib, swaks, raw sockets) on
127.0.0.1 with the spool in tmp_path."""

from __future__ import annotations

import asyncio
import smtplib

import pytest

from tests.io.smtpd_helpers import Raw, make_store, running

MSG = (b"From: a@edge.example\r\nTo: b@edge.example\r\nSubject: hi\r\n"
       b"Message-ID: <m1@lan.example>\r\nPrecedence: bulk\r\n\r\nhello\r\n")


@pytest.fixture
def cfg(example_config):
    return example_config()


@pytest.fixture
def store(cfg):
    return make_store(cfg.spool_dir)


def smtplib_send(port, sender, rcpts, msg, **kw):
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.lan", timeout=10) as s:
        s.ehlo()
        return s.sendmail(sender, rcpts, msg, **kw), s


async def test_smtplib_submission_is_queued_with_envelope(cfg, store, caplog):
    caplog.set_level("INFO", logger="edgemail.smtpd")
    async with running(cfg, store) as smtpd:
        refused, _ = await asyncio.to_thread(
            smtplib_send, smtpd.port, "a@edge.example", ["b@edge.example", "c@far.example"], MSG)
    assert refused == {}
    lines = [r.getMessage() for r in caplog.records if "from=<a@edge.example>" in r.getMessage()]
    assert len(lines) == 1, lines
    qid = lines[0].split(":")[0]
    env = store.get(qid).envelope
    assert env.mail_from == "a@edge.example"
    assert [r.address for r in env.recipients] == ["b@edge.example", "c@far.example"]
    assert env.msgid == "m1@lan.example" and env.precedence == -60 and env.proto == "ESMTP"
    data = store.read_data(qid)
    assert data.startswith(b"Received: from client.lan ([127.0.0.1])\r\n\tby gw.edge.example (edgemail) with ESMTP;")
    assert data.endswith(MSG)
    assert env.size == len(data)
    assert f"size={len(data)}, class=-60, nrcpts=2, msgid=<m1@lan.example>, proto=ESMTP, relay=[127.0.0.1]:" in lines[0]


async def test_smtputf8_transaction_is_utf8smtp_in_received_and_log(cfg, store, caplog):
    """RFC 6531 3.7.3 (as Postfix writes it): WITH UTF8SMTP for a transaction with SMTPUTF8;
    the next transaction of the session without it is ESMTP again."""
    caplog.set_level("INFO", logger="edgemail.smtpd")
    async with running(cfg, store) as smtpd:
        def send():
            with smtplib.SMTP("127.0.0.1", smtpd.port, local_hostname="client.lan", timeout=10) as s:
                s.sendmail("j\u00f6rg@edge.example", ["b@edge.example"], MSG, mail_options=["SMTPUTF8"])
                s.sendmail("a@edge.example", ["b@edge.example"], MSG)
        await asyncio.to_thread(send)
    lines = [r.getMessage() for r in caplog.records if "from=<" in r.getMessage()]
    assert "proto=UTF8SMTP," in lines[0] and "proto=ESMTP," in lines[1], lines
    first = store.read_data(lines[0].split(":")[0])
    assert first.startswith(b"Received: from client.lan ([127.0.0.1])\r\n\tby gw.edge.example (edgemail) with UTF8SMTP")


async def test_ehlo_advertises_extensions_and_every_reply_has_an_enhanced_code(cfg, store):
    async with running(cfg, store, on_etrn=lambda arg, who: None) as smtpd:
        c = await Raw.connect(smtpd.port)
        assert c.banner.startswith("220 gw.edge.example ")
        ehlo = await c.cmd("EHLO client.lan")
        for word in ("SIZE 10485760", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES", "DSN", "SMTPUTF8", "ETRN"):
            assert f"250-{word}" in ehlo or f"250 {word}" in ehlo, ehlo
        replies = [await c.cmd(line) for line in (
            "NOOP", "HELP", "VRFY x", "EXPN x", "XYZZY", "MAIL FROM:<a@edge.example>",
            "MAIL FROM:<a@edge.example>", "RCPT TO:<b@edge.example>", "RSET", "RCPT TO:<b@edge.example>",
            "DATA", "MAIL FROM:<bad", "AUTH PLAIN AGhpAHNlY3JldA==", "STARTTLS", "QUIT")]
        await c.close()
    for r in replies:
        assert re_enhanced(r), f"no enhanced status code in {r!r}"


def re_enhanced(reply: str) -> bool:
    import re
    return bool(re.match(r"\d{3} [245]\.\d{1,3}\.\d{1,3} ", reply))


async def raw_session(port, *lines):
    c = await Raw.connect(port)
    out = [await c.cmd(line) for line in lines]
    await c.close()
    return out


RELAY = [
    # rcpt, outside client's reply, trusted client's reply
    ("<b@edge.example>", "250 2.1.5", "250 2.1.5"),
    ("<B@EDGE.Example.>", "250 2.1.5", "250 2.1.5"),
    ("<postmaster>", "250 2.1.5 Recipient <postmaster@edge.example>", "250 2.1.5"),
    ("<c@far.example>", "554 5.7.1 <c@far.example>... Relaying denied", "250 2.1.5"),
    ("<u%far.example@edge.example>", "550 5.7.1", "550 5.7.1"),      # a route in disguise (16 §4)
    ("<far.example!u@edge.example>", "550 5.7.1", "550 5.7.1"),      # a route in disguise (16 §4)
    ('<"u@far.example"@edge.example>', "550 5.7.1", "550 5.7.1"),      # a route in disguise (16 §4)
    ("<@edge.example:u@far.example>", "554 5.7.1 <u@far.example>", "250 2.1.5 Recipient <u@far.example>"),
    ("<u@[192.0.2.1]>", "554 5.7.1", "250 2.1.5"),
    ("<u@192.0.2.1>", "501 5.1.3", "501 5.1.3"),
    ("<>", "501 5.1.3", "501 5.1.3"),
    ("<u@edge.example.far.example>", "554 5.7.1", "250 2.1.5"),
]


@pytest.mark.parametrize("who", ["outside", "loopback", "lan"])
async def test_relay_decisions(example_config, who):
    # "outside": loopback not trusted and not in lan_networks; "lan": loopback
    # not trusted as such but 127.0.0.0/8 listed as a LAN network.
    lan = ["127.0.0.0/8"] if who == "lan" else ["192.168.0.0/16"]
    cfg = example_config(lan_networks=lan)
    store = make_store(cfg.spool_dir)
    async with running(cfg, store, trust_loopback=(who == "loopback")) as smtpd:
        lines = ["EHLO c"] + [x for rcpt, *_ in RELAY for x in ("MAIL FROM:<a@x.example>", f"RCPT TO:{rcpt}", "RSET")]
        out = await raw_session(smtpd.port, *lines)
    rcpt_replies = out[2::3]
    for (rcpt, outside, trusted), got in zip(RELAY, rcpt_replies):
        want = outside if who == "outside" else trusted
        assert got.startswith(want), f"{who} RCPT TO:{rcpt}: got {got!r}, want {want!r}"


def test_trusted_maps_ipv4_mapped_ipv6(example_config):
    from edgemail.smtpd.listener import SmtpListener
    cfg = example_config()
    policy = SmtpListener(cfg, cfg.listeners[0], store=None, trust_loopback=False).policy
    assert policy.trusted("::ffff:192.168.7.7") and policy.trusted("192.168.7.7")
    assert not policy.trusted("::ffff:10.0.0.1") and not policy.trusted("127.0.0.1")
    assert not policy.trusted("::ffff:127.0.0.1")
    assert SmtpListener(cfg, cfg.listeners[0], store=None).policy.trusted("::ffff:127.0.0.1")


async def test_relay_denied_is_logged(example_config, caplog):
    cfg = example_config()
    async with running(cfg, make_store(cfg.spool_dir), trust_loopback=False) as smtpd:
        await raw_session(smtpd.port, "EHLO c", "MAIL FROM:<a@x.example>", "RCPT TO:<c@far.example>")
    lines = [r.getMessage() for r in caplog.records if r.name == "edgemail.smtpd"]
    assert any(l.startswith("NOQUEUE: ruleset=check_rcpt, arg1=<c@far.example>, relay=[127.0.0.1]:")
               and l.endswith(", reject=554 5.7.1 <c@far.example>... Relaying denied") for l in lines), lines


async def test_dsn_parameters_are_stored(cfg, store, caplog):
    caplog.set_level("INFO", logger="edgemail.smtpd")
    async with running(cfg, store) as smtpd:
        out = await raw_session(
            smtpd.port, "EHLO c", "MAIL FROM:<a@edge.example> RET=HDRS ENVID=Q+2B1 BODY=8BITMIME SIZE=100",
            "RCPT TO:<b@edge.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B+40Edge.example",
            "RCPT TO:<c@edge.example> NOTIFY=NEVER", "RCPT TO:<d@edge.example> NOTIFY=sometimes",
            "RCPT TO:<d@edge.example> X-UNKNOWN=1", "DATA", "Subject: x\r\n\r\nbody\r\n.")
    assert out[4].startswith("501 5.5.4 NOTIFY") and out[5].startswith("555 5.5.4"), out
    assert out[-1].startswith("250 2.0.0 ") and out[-1].endswith(" Message accepted for delivery"), out
    qid = out[-1].split()[2]
    env = store.get(qid).envelope
    assert (env.ret, env.envid, env.body) == ("HDRS", "Q+2B1", "8BITMIME")
    b, c = env.recipients
    assert b.notify == {"SUCCESS", "FAILURE"} and b.orcpt == "rfc822;B+40Edge.example"
    assert c.notify == {"NEVER"} and c.orcpt is None


async def test_on_commit_gets_the_qid(cfg, store):
    seen = []
    async with running(cfg, store, on_commit=seen.append) as smtpd:
        out = await raw_session(smtpd.port, "HELO c", "MAIL FROM:<>", "RCPT TO:<b@edge.example>", "DATA", "x\r\n.")
    assert out[-1].startswith("250 2.0.0 ") and seen == [out[-1].split()[2]]
    assert store.get(seen[0]).envelope.proto == "SMTP" and store.get(seen[0]).envelope.mail_from == ""


async def test_etrn(example_config):
    """ETRN well formed goes to the hook with who asks (it decides: a customer
    outside the LAN may ETRN its own domains); bad syntax never does."""
    asked = []

    async def on_etrn(arg, who):
        asked.append((arg, who.ip, who.trusted, who.user))
        return f"250 2.0.0 Queuing for node {arg} started" if who.trusted else f"459 4.7.1 Node {arg} not allowed"

    for trusted in (True, False):
        cfg = example_config()
        async with running(cfg, make_store(cfg.spool_dir), on_etrn=on_etrn, trust_loopback=trusted) as smtpd:
            out = await raw_session(smtpd.port, "EHLO c", "ETRN edge.example", "ETRN", "ETRN bad;arg")
        assert out[1] == ("250 2.0.0 Queuing for node edge.example started" if trusted
                          else "459 4.7.1 Node edge.example not allowed")
        assert out[2].startswith("501 5.5.4") and out[3].startswith("501 5.5.4")
    assert asked == [("edge.example", "127.0.0.1", True, None), ("edge.example", "127.0.0.1", False, None)]


async def test_noetrn_and_atrn_off_the_odmr_listener(example_config):
    """PrivacyOptions noetrn: ETRN is not offered (sendmail); ATRN only on an ODMR listener."""
    cfg = example_config(PrivacyOptions="noetrn")
    async with running(cfg, make_store(cfg.spool_dir), on_etrn=lambda arg, who: None,
                       on_atrn=lambda *a: ("250 never", None)) as smtpd:
        out = await raw_session(smtpd.port, "EHLO c", "ETRN edge.example", "ATRN edge.example")
    assert "ETRN" not in out[0] and "ATRN" not in out[0]
    assert out[1].startswith("502 5.5.1 ETRN not available")
    assert out[2].startswith("502 5.5.1 ATRN not available here")


@pytest.mark.skipif(not __import__("shutil").which("swaks"), reason="swaks not installed (make debs)")
async def test_swaks(cfg, store, caplog):
    caplog.set_level("INFO", logger="edgemail.smtpd")
    async with running(cfg, store) as smtpd:
        proc = await asyncio.create_subprocess_exec(
            "swaks", "--server", "127.0.0.1", "--port", str(smtpd.port), "--helo", "swaks.lan",
            "--from", "a@edge.example", "--to", "b@edge.example,c@far.example",
            "--header", "Precedence: list", "--body", "hello from swaks",
            "--pipeline", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "<-  250 2.0.0 " in text, text
    qid = text.split("<-  250 2.0.0 ")[1].split()[0]
    env = store.get(qid).envelope
    assert env.precedence == -30 and env.nrcpts == 2 and env.helo == "swaks.lan"
    assert b"hello from swaks" in store.read_data(qid)


async def test_ipv4_mapped_peer_on_a_dual_stack_listener(example_config, caplog):
    import socket as _s
    if not _s.has_ipv6:
        pytest.skip("no IPv6 on this host")
    caplog.set_level("INFO", logger="edgemail.smtpd")
    cfg = example_config(listen=[{"name": "v6", "address": "::", "port": 0}], lan_networks=["127.0.0.0/8"])
    store = make_store(cfg.spool_dir)
    try:
        ctx = running(cfg, store, trust_loopback=False)
        smtpd = await ctx.__aenter__()
    except OSError as exc:
        pytest.skip(f"cannot bind [::]: {exc}")
    try:
        out = await raw_session(smtpd.port, "EHLO c", "MAIL FROM:<a@x.example>", "RCPT TO:<c@far.example>",
                                "DATA", "x\r\n.")
    finally:
        await ctx.__aexit__(None, None, None)
    assert out[2].startswith("250 2.1.5"), "::ffff:127.0.0.1 is mapped, then found in lan_networks"
    assert out[0].splitlines()[0].endswith("[127.0.0.1]")
    assert any("relay=[127.0.0.1]:" in r.getMessage() and "from=<a@x.example>" in r.getMessage()
               for r in caplog.records)


async def test_non_ascii_addresses_need_smtputf8(cfg, store):
    # RFC 6531 3.4: without SMTPUTF8 on MAIL a UTF-8 local part or a U-label
    # domain gets 553 5.6.7; with it the message is queued marked smtputf8.
    async with running(cfg, store) as smtpd:
        out = await raw_session(
            smtpd.port, "EHLO c", "MAIL FROM:<jösé@edge.example>", "MAIL FROM:<a@edge.example>",
            "RCPT TO:<b@bücher.example>", "RCPT TO:<müller@edge.example>", "RSET",
            "MAIL FROM:<jösé@edge.example> SMTPUTF8", "RCPT TO:<müller@edge.example>",
            "RCPT TO:<b@bücher.example>", "DATA", "Subject: x\r\n\r\nbody\r\n.")
    assert out[1].startswith("553 5.6.7 Non-ASCII sender address"), out
    assert out[2].startswith("250 2.1.0"), out
    assert out[3].startswith("553 5.6.7 Non-ASCII recipient") and out[4].startswith("553 5.6.7"), out
    assert [o[:9] for o in out[6:9]] == ["250 2.1.0", "250 2.1.5", "250 2.1.5"], out
    assert out[-1].startswith("250 2.0.0 "), out
    env = store.get(out[-1].split()[2]).envelope
    assert env.smtputf8 and env.mail_from == "jösé@edge.example"
    assert [r.address for r in env.recipients] == ["müller@edge.example", "b@xn--bcher-kva.example"]


async def test_address_that_is_not_utf8_is_a_syntax_error(cfg, store):
    async with running(cfg, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        await c.cmd("EHLO c")
        await c.send(b"MAIL FROM:<j\xff@edge.example> SMTPUTF8\r\n")
        bad = await c.reply()
        await c.close()
    assert bad.startswith("501 5.1.7 Bad sender address syntax: address is not valid UTF-8"), bad


async def test_pipelined_transactions_in_one_write_and_dot_ended_lines(cfg, store):
    """DATA is read in large pieces: the end of one message, the next
    transaction's commands and QUIT in the same packet all arrive intact, a
    line that merely ends in a dot does not end DATA, an empty message is one."""
    body = b"Subject: dots.\r\n\r\nline one.\r\n..stuffed.\r\n" + b"x" * 70 + b".\r\n"
    stream = (b"MAIL FROM:<a@edge.example>\r\nRCPT TO:<b@edge.example>\r\nDATA\r\n"
              + body + b".\r\n"
              + b"MAIL FROM:<c@edge.example>\r\nRCPT TO:<d@edge.example>\r\nDATA\r\n.\r\nQUIT\r\n")
    async with running(cfg, store) as smtpd:
        c = await Raw.connect(smtpd.port)
        assert (await c.cmd("EHLO client.lan")).startswith("250")
        await c.send(stream)
        replies = [await c.reply() for _ in range(9)]
        await c.close()
    assert [r[:3] for r in replies] == ["250", "250", "354", "250", "250", "250", "354", "250", "221"]
    qids = [r.split()[2] for r in (replies[3], replies[7])]
    first, second = (store.read_data(q) for q in qids)
    assert first.endswith(b"\r\n" + body.replace(b"\r\n..", b"\r\n.")) and b"x" * 70 + b".\r\n" in first
    assert store.get(qids[1]).envelope.mail_from == "c@edge.example"
    assert second.endswith(b"\r\n") and b"Subject" not in second


async def test_quit_with_an_argument_ends_the_session_and_bare_vrfy_is_252(example_config):
    """sendmail 8.17's srvrsmtp.c answers QUIT 221 whatever follows it, and
    with PrivacyOptions novrfy answers VRFY 252 before it looks at the
    argument (501 "Argument required" only when it verifies)."""
    cfg = example_config()
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        c = await Raw.connect(smtpd.port)
        vrfy = await c.cmd("VRFY")
        quit_reply = await c.cmd("QUIT now")
        end = await c.reply()
        await c.close()
    assert vrfy == "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"
    assert quit_reply.startswith("221 2.0.0 ") and end == "<EOF>", (quit_reply, end)
