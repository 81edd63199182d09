"""smtpc/core.py: the client dialogue without sockets."""

import pytest
from hypothesis import given, strategies as st

from edgemail.envelope import Recipient
from edgemail.errors import LocalProtocolError, PermFail, RemoteProtocolError, Scope, TempFail
from edgemail.smtpc import core
from edgemail.smtpc.events import (NEED_DATA, Atrn, Capabilities, Data, Ehlo, Etrn, Mail, Message, Quit, StartTls,
                                    Rcpt, Rset)
from edgemail.smtpc.core import ClientConnection, MessageParams
from edgemail.smtpc.reply import Reply

EHLO_FULL = Reply(250, ("mx.test", "SIZE 1000", "PIPELINING", "8BITMIME", "STARTTLS",
                        "AUTH PLAIN LOGIN", "DSN", "ENHANCEDSTATUSCODES", "SMTPUTF8"))


def events(conn):
    out = []
    while (ev := conn.next_event()) is not NEED_DATA:
        out.append(ev)
    return out


def test_capabilities():
    c = Capabilities.from_reply(EHLO_FULL)
    assert (c.size, c.pipelining, c.eightbitmime, c.starttls, c.dsn, c.smtputf8,
            c.enhancedstatuscodes) == (1000, True, True, True, True, True, True)
    assert c.auth == {"PLAIN", "LOGIN"}
    assert Capabilities.from_reply(Reply(250, ("x", "SIZE"))).size == 0
    assert Capabilities.from_reply(Reply(250, ("x", "SIZE \u00b2"))).size == 0      # a digit, not an ASCII one
    assert not Capabilities.from_reply(Reply(250, ("x",))).pipelining


def test_pipelined_dialogue_replies_in_order():
    conn = ClientConnection()
    conn.receive_data(b"220 hi\r\n")
    assert events(conn)[0].reply.code == 220
    conn.send(Ehlo("gw.test"))
    conn.receive_data(b"250-mx.test\r\n250 PIPELINING\r\n")
    events(conn)
    assert conn.capabilities.pipelining
    wire = b"".join(conn.send(c) for c in (Mail("a@x"), Rcpt("b@y"), Rcpt("c@y"), Data()))
    assert wire == b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@y>\r\nDATA\r\n"
    conn.receive_data(b"250 ok\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n")
    evs = events(conn)
    assert [type(e.command) for e in evs] == [Mail, Rcpt, Rcpt, Data]
    assert conn.accepted_recipients == ("b@y",)
    assert conn.send(Message(b".x\r\n")) == b"..x\r\n.\r\n"


def test_message_only_after_354():
    conn = ClientConnection()
    with pytest.raises(LocalProtocolError):
        conn.send(Message(b"x\r\n"))


def test_lmtp_one_reply_per_accepted_recipient():
    conn = ClientConnection(lmtp=True)
    conn.receive_data(b"220 hi\r\n")
    events(conn)
    conn.send(core.Lhlo("gw"))
    conn.receive_data(b"250 ok\r\n")
    events(conn)
    for c in (Mail("a@x"), Rcpt("b@y"), Rcpt("c@y"), Rcpt("d@y"), Data()):
        conn.send(c)
    conn.receive_data(b"250 ok\r\n250 ok\r\n550 no\r\n250 ok\r\n354 go\r\n")
    events(conn)
    conn.send(Message(b"hi\r\n"))
    conn.receive_data(b"250 2.0.0 b ok\r\n452 4.2.2 d full\r\n")
    evs = events(conn)
    assert [(e.recipient, e.reply.code) for e in evs] == [("b@y", 250), ("d@y", 452)]


@pytest.mark.parametrize("cmd", [
    Mail("a@x\r\nRCPT TO:<evil@z>"), Mail("a\n@x"), Rcpt("b@y\r"), Rcpt("b\0@y"),
    Rcpt("b@y> NOTIFY=NEVER"), Rcpt(""), Mail("a@x", ("SIZE=1\r\nDATA",)), Ehlo("gw\r\nQUIT"),
], ids=["crlf-sender", "lf-sender", "cr-rcpt", "nul-rcpt", "angle", "empty-rcpt", "param", "ehlo"])
def test_control_characters_refused_before_any_byte(cmd):
    conn = ClientConnection()
    conn.receive_data(b"220 hi\r\n")
    events(conn)
    with pytest.raises(LocalProtocolError):
        conn.send(cmd)
    assert conn.awaiting is None            # nothing registered, nothing to send


@pytest.mark.parametrize("data,wire", [
    (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
    (b"a\nb", b"a\r\nb\r\n.\r\n"),
    (b"a\rb\r", b"a\r\nb\r\n.\r\n"),
    (b"a\n.\nb\n", b"a\r\n..\r\nb\r\n.\r\n"),
    (b"a\r.\rb", b"a\r\n..\r\nb\r\n.\r\n"),
    (b".\r\n", b"..\r\n.\r\n"),
    (b"x\0y\r\n", b"xy\r\n.\r\n"),
    (b"a\r\r\nb", b"a\r\n\r\nb\r\n.\r\n"),
    (b"", b".\r\n"),
], ids=["crlf", "bare-lf", "bare-cr", "lf-dot", "cr-dot", "lone-dot", "nul", "cr-crlf", "empty"])
def test_encode_data(data, wire):
    assert core.encode_data(data) == wire


@given(st.binary(max_size=400))
def test_encoded_data_is_clean(data):
    try:
        wire = core.encode_data(data)
    except PermFail:
        return
    assert wire.endswith(b"\r\n.\r\n") or wire == b".\r\n"
    body = wire[:-3]
    assert b"\0" not in body
    assert body.replace(b"\r\n", b"").count(b"\r") == 0 and body.replace(b"\r\n", b"").count(b"\n") == 0
    for line in body.split(b"\r\n"):
        assert not line.startswith(b".") or line.startswith(b"..")
        assert len(line) <= core.MAX_LINE


def test_long_line_permanent_failure():
    core.encode_data(b"x" * 998 + b"\r\n")
    with pytest.raises(PermFail) as e:
        core.encode_data(b"ok\r\n" + b"x" * 999 + b"\r\n")
    assert e.value.dsn == "5.6.0" and "line too long" in e.value.reason and "line 2" in e.value.reason
    with pytest.raises(PermFail):
        core.encode_data(b"." + b"x" * 997 + b"\r\n")     # 999 on the wire with the stuffed dot


def test_mail_command_parameters():
    caps = Capabilities.from_reply(EHLO_FULL)
    params = MessageParams(ret="HDRS", envid="id+1=x", body="8BITMIME")
    m = core.mail_command(caps, "a@x", b"caf\xc3\xa9\r\n", params)
    assert m.params == ("SIZE=7", "BODY=8BITMIME", "RET=HDRS", "ENVID=id+2B1+3Dx")
    r = core.rcpt_command(caps, Recipient("b@y", orcpt="rfc822;b+1@y", notify=frozenset({"FAILURE", "DELAY"})))
    assert r.params == ("NOTIFY=DELAY,FAILURE", "ORCPT=rfc822;b+2B1@y")


def test_no_dsn_parameters_without_dsn():
    caps = Capabilities(esmtp=True)
    m = core.mail_command(caps, "a@x", b"x\r\n", MessageParams(ret="FULL", envid="e"))
    assert m.params == ()
    assert core.rcpt_command(caps, Recipient("b@y", orcpt="rfc822;b@y", notify=frozenset({"NEVER"}))).params == ()


def test_size_and_8bit_refusals():
    with pytest.raises(PermFail) as e:
        core.mail_command(Capabilities(esmtp=True, size=10), "a@x", b"x" * 11, MessageParams())
    assert e.value.dsn == "5.3.4" and e.value.scope is Scope.MESSAGE
    with pytest.raises(PermFail) as e:
        core.mail_command(Capabilities(esmtp=True), "a@x", b"\xff\r\n", MessageParams())
    assert e.value.dsn == "5.6.3" and "8BITMIME" in e.value.reason
    with pytest.raises(PermFail) as e:
        core.mail_command(Capabilities(esmtp=True), "a@x", b"x", MessageParams(), (Recipient("jö@y"),))
    assert e.value.dsn == "5.6.7"


@pytest.mark.parametrize("cmd,code,kind,scope", [
    (Mail("a"), "550 5.7.1 no", PermFail, Scope.MESSAGE),
    (Mail("a"), "452 4.3.1 full", TempFail, Scope.MESSAGE),
    (Rcpt("b"), "550 5.1.1 no", PermFail, Scope.RECIPIENT),
    (Rcpt("b"), "452 4.2.2 full", TempFail, Scope.RECIPIENT),
    (Rcpt("b"), "421 4.3.2 bye", TempFail, Scope.SITE),
    (Ehlo("x"), "554 5.7.1 go away", TempFail, Scope.SITE),
    (Data(), "554 5.6.0 no", PermFail, Scope.MESSAGE),
    (Rset(), "421 bye", TempFail, Scope.SITE),
], ids=["mail5", "mail4", "rcpt5", "rcpt4", "rcpt421", "ehlo5", "data5", "rset421"])
def test_failure_scope(cmd, code, kind, scope):
    (reply,) = __import__("edgemail.smtpc.reply", fromlist=["x"]).ReplyParser().feed(code.encode() + b"\r\n")
    f = core.failure(cmd, reply, host="mx.test")
    assert type(f) is kind and f.scope is scope, f"got {type(f).__name__}/{f.scope}"
    assert f.dsn[0] == ("5" if kind is PermFail else "4")
    assert "mx.test said" in f.reason


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_core_events_chunking_invariant(cuts):
    stream = b"220 hi\r\n250-mx\r\n250 PIPELINING\r\n250 ok\r\n550 5.1.1 no\r\n354 go\r\n"

    def run(chunks):
        conn = ClientConnection()
        for c in (Ehlo("gw"), Mail("a@x"), Rcpt("b@y"), Data()):
            conn._expect.append((c, None))
        out = []
        for ch in chunks:
            conn.receive_data(ch)
            out += events(conn)
        return out

    edges = [0, *sorted(cuts), len(stream)]
    assert run([stream[a:b] for a, b in zip(edges, edges[1:]) if b > a]) == run([stream])


def test_cores_import_no_io_modules():
    """core.py, events.py and wire.py (without the package __init__, which loads the driver)."""
    import subprocess
    import sys
    code = ("import os, sys, types, edgemail; "
            "pkg = types.ModuleType('edgemail.smtpc'); "
            "pkg.__path__ = [os.path.join(os.path.dirname(edgemail.__file__), 'smtpc')]; "
            "sys.modules['edgemail.smtpc'] = pkg; "
            "import edgemail.smtpc.core, edgemail.smtpc.events, edgemail.smtpc.wire; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('asyncio', 'socket', 'ssl', 'selectors', 'logging')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# ------------------------------------------------------- ETRN and ATRN (ODMR)

def greeted(**kw):
    conn = ClientConnection(**kw)
    conn.receive_data(b"220 isp.example ESMTP\r\n")
    events(conn)
    conn.send(Ehlo("edge.example"))
    conn.receive_data(b"250-isp.example\r\n250-ETRN\r\n250 ATRN\r\n")
    events(conn)
    return conn


def test_etrn_and_atrn_offers_are_read():
    conn = greeted()
    assert conn.capabilities.etrn and conn.capabilities.atrn
    assert not Capabilities.from_reply(EHLO_FULL).etrn


@pytest.mark.parametrize("arg", ["example.org", "@example.org", "#queue1", "a-b.example."])
def test_etrn_wire(arg):
    assert greeted().send(Etrn(arg)) == f"ETRN {arg}\r\n".encode()


@pytest.mark.parametrize("arg", ["", "@", "#", "exa mple.org", "example.org\r\nQUIT", "-bad.example",
                                 "a..b", "example.org\n"])
def test_etrn_argument_outside_rfc1985_never_sent(arg):
    conn = greeted()
    with pytest.raises(LocalProtocolError, match="ETRN argument"):
        conn.send(Etrn(arg))
    assert conn.awaiting is None


@pytest.mark.parametrize("code,want", [
    (250, "ok"), (251, "ok"), (252, "ok"), (253, "ok"), (458, "deferred"), (459, "deferred"),
    (500, "unsupported"), (501, "unsupported"), (502, "unsupported"), (421, "error"), (550, "error"),
    (0, "error"),
])
def test_etrn_outcome(code, want):
    assert core.etrn_outcome(code) == want, f"got {core.etrn_outcome(code)} for {code}, want {want}"


def test_etrn_reply_is_a_response_to_etrn():
    conn = greeted()
    conn.send(Etrn("example.org"))
    conn.receive_data(b"250 2.0.0 Queuing for node example.org started\r\n")
    (ev,) = events(conn)
    assert ev.command == Etrn("example.org") and ev.reply.code == 250
    assert core.failure(ev.command, ev.reply) is None


@pytest.mark.parametrize("domains,wire", [
    ((), b"ATRN\r\n"), (("edge.example",), b"ATRN edge.example\r\n"),
    (("edge.example", "b.example"), b"ATRN edge.example,b.example\r\n"),
])
def test_atrn_wire(domains, wire):
    assert greeted().send(Atrn(domains)) == wire


@pytest.mark.parametrize("bad", ["@edge.example", "edge.example,x", "a b", "#q"])
def test_atrn_takes_domains_only(bad):
    with pytest.raises(LocalProtocolError, match="ATRN domain"):
        greeted().send(Atrn(("edge.example", bad)))


def test_250_to_atrn_hands_the_connection_over_unparsed():
    """What follows the 250 is the other side's (here a client's EHLO, which
    is no reply): the core parses none of it and hands it over whole."""
    conn = greeted()
    conn.send(Atrn(("edge.example",)))
    conn.receive_data(b"250 OK now reversing the connection\r\nEHLO isp")
    conn.receive_data(b".example\r\n")
    (ev,) = events(conn)
    assert ev.reply.code == 250 and conn.turned
    assert conn.next_event() is NEED_DATA
    assert conn.handover() == b"EHLO isp.example\r\n"
    with pytest.raises(LocalProtocolError, match="turned around"):
        conn.send(Quit())
    with pytest.raises(LocalProtocolError, match="turned around"):
        conn.receive_data(b"more")


@pytest.mark.parametrize("reply", [b"453 You have no mail\r\n", b"530 5.7.0 Authentication required\r\n"])
def test_refused_atrn_keeps_the_dialogue(reply):
    conn = greeted()
    conn.send(Atrn())
    conn.receive_data(reply)
    assert [e.reply.code for e in events(conn)] == [int(reply[:3])]
    assert not conn.turned and conn.send(Quit()) == b"QUIT\r\n"
    with pytest.raises(LocalProtocolError, match="handover before"):
        conn.handover()


# ------------------------------------- STARTTLS: nothing from before the handshake

READY = b"220 2.0.0 Ready to start TLS\r\n"


def tls_offered():
    conn = ClientConnection()
    conn.receive_data(b"220 mx.test ESMTP\r\n")
    events(conn)
    conn.send(Ehlo("gw"))
    conn.receive_data(b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
    events(conn)
    conn.send(StartTls())
    return conn


@pytest.mark.parametrize("after", [b"250 2.0.0 injected\r\n", b"250-mx.test\r\n250 AUTH PLAIN\r\n", b"2", b"\r\n"],
                         ids=["reply", "ehlo-reply", "one-byte", "empty-line"])
def test_bytes_with_the_220_to_starttls_are_refused(after):
    conn = tls_offered()
    conn.receive_data(READY + after)
    with pytest.raises(RemoteProtocolError, match="before the TLS handshake"):
        conn.next_event()


def test_bytes_after_the_220_before_the_handshake_are_refused():
    conn = tls_offered()
    conn.receive_data(READY)
    (ev,) = events(conn)
    assert ev.reply.code == 220 and conn.capabilities == Capabilities()
    with pytest.raises(RemoteProtocolError, match="before the TLS handshake"):
        conn.receive_data(b"250 2.0.0 injected\r\n")


def test_after_the_handshake_ehlo_first_and_alone():
    conn = tls_offered()
    conn.receive_data(READY)
    events(conn)
    with pytest.raises(LocalProtocolError, match="handshake has not finished"):
        conn.send(Ehlo("gw"))
    conn.tls_established()
    with pytest.raises(LocalProtocolError, match="EHLO comes first"):
        conn.send(Mail("a@x"))
    assert conn.send(Ehlo("gw")) == b"EHLO gw\r\n"
    with pytest.raises(LocalProtocolError, match="before EHLO is answered"):
        conn.send(Mail("a@x"))
    conn.receive_data(b"250-mx.test\r\n250 PIPELINING\r\n")
    events(conn)
    assert conn.capabilities.pipelining and not conn.capabilities.starttls
    assert conn.send(Mail("a@x")) == b"MAIL FROM:<a@x>\r\n"


def test_tls_established_needs_a_220_to_starttls():
    conn = tls_offered()
    with pytest.raises(LocalProtocolError, match="without a 220"):
        conn.tls_established()
    conn.receive_data(b"454 4.7.0 TLS not available\r\n")
    events(conn)
    with pytest.raises(LocalProtocolError, match="without a 220"):
        conn.tls_established()
    assert conn.send(Mail("a@x")) == b"MAIL FROM:<a@x>\r\n"     # refused: the dialogue goes on in clear


@pytest.mark.parametrize("first", [None, Ehlo("gw"), Data(), Etrn("example.org"), Quit(), StartTls()],
                         ids=["greeting", "ehlo", "data", "etrn", "quit", "starttls"])
def test_nothing_is_sent_before_a_state_changing_command_is_answered(first):
    """RFC 2920 3.1: EHLO, DATA, QUIT (and the greeting, STARTTLS, ETRN) end a group."""
    conn = ClientConnection()
    if first is not None:
        conn.receive_data(b"220 hi\r\n")
        events(conn)
        if isinstance(first, Data):
            conn.send(Mail("a@x"))
        conn.send(first)
    with pytest.raises(LocalProtocolError, match="before .* is answered"):
        conn.send(Rcpt("b@y"))
