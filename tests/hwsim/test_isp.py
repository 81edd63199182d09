"""The ISP world over the line: DNS counter, relay with AUTH, ETRN, sinks (root)."""
import os
import smtplib
import ssl
import stat
import subprocess
import time

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.hwsim.hwsim_helpers import EdgeMailListener

pytestmark = pytest.mark.root

QUERIES = [
    ("edge.example", "MX", "NOERROR", {"10 mail.edge.example.", "20 relay.isp.example."}),
    ("mail.edge.example", "A", "NOERROR", {"10.64.0.2"}),
    ("remote1.example", "MX", "NOERROR", {"10 mx.remote1.example."}),
    ("mx.remote2.example", "A", "NOERROR", {"198.51.100.11"}),
    ("nullmx.example", "MX", "NOERROR", {"0 ."}),
    ("nomx.example", "MX", "NOERROR", set()),
    ("nxdomain.example", "MX", "NXDOMAIN", set()),
    ("servfail.example", "MX", "SERVFAIL", set()),
    ("www.google.com", "A", "REFUSED", set()),
]


def ask(w, name, rtype, tcp=False, timeout=3.0):
    query = dns.message.make_query(name, rtype)
    with w.in_edge():
        fn = dns.query.tcp if tcp else dns.query.udp
        return fn(query, w.dns_ip, timeout=timeout)


def test_dns_answers_and_counts_only_over_the_link(world):
    w = world()
    assert w.dns_query_count() == 0
    with pytest.raises(OSError):  # line down: the edge has no route at all
        ask(w, "edge.example", "MX")
    assert w.dns_query_count() == 0
    proc = w.start_fakepppd()
    w.wait_ppp_up(proc=proc)
    for i, (name, rtype, rcode, want) in enumerate(QUERIES):
        reply = ask(w, name, rtype, tcp=bool(i % 2))
        got = {r.to_text() for rrset in reply.answer for r in rrset}
        assert (dns.rcode.to_text(reply.rcode()), got) == (rcode, want), name
    assert w.dns_query_count() == len(QUERIES)
    log = w.dns_queries()
    assert [q["qname"] for q in log] == [n + "." for n, *_ in QUERIES]
    assert {q["proto"] for q in log} == {"udp", "tcp"}
    assert all(q["client"] == "10.64.0.2" and q["t"] > 0 for q in log)


def test_dns_silent_fault_still_counts(online_world):
    w = online_world()
    w.isp_control("dns_faults", silent=True)
    with pytest.raises(dns.exception.Timeout):
        ask(w, "edge.example", "MX", timeout=1.0)
    assert w.dns_query_count() == 1


def relay_tls(w) -> ssl.SSLContext:
    """Verify the relay against the world's certificate, host name (the IP) included."""
    return ssl.create_default_context(cafile=w.relay_cert)


def submit(w, port=587, user="edge", password="secret", rcpts=("you@remote1.example",), tls=True):
    with w.in_edge():
        smtp = smtplib.SMTP(w.relay_ip, port, local_hostname="gw.edge.example", timeout=10)
    with smtp:
        if tls:
            smtp.starttls(context=relay_tls(w))
        if user:
            smtp.login(user, password)
        smtp.sendmail("me@edge.example", list(rcpts), b"Subject: out\r\n\r\nover the line\r\n")


def wait_sinks(w, n, timeout_s=5.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        msgs = w.sink_messages()
        if len(msgs) >= n:
            return msgs
        time.sleep(0.05)
    return w.sink_messages()


@pytest.mark.parametrize("port", [25, 587])
def test_relay_with_starttls_and_auth_delivers_to_the_sinks(online_world, port):
    w = online_world()
    submit(w, port=port, rcpts=("a@remote1.example", "b@remote2.example"))
    msgs = wait_sinks(w, 2)
    assert sorted((m["sink"], tuple(m["rcpts"])) for m in msgs) == [
        ("198.51.100.10", ("a@remote1.example",)), ("198.51.100.11", ("b@remote2.example",))]
    assert all("over the line" in m["data"] and m["mail_from"] == "me@edge.example" for m in msgs)
    assert [(e["user"], e["ok"], e["tls"]) for e in w.relay_log("auth")] == [("edge", True, True)]
    relayed = w.relay_log("relay")
    assert {(e["auth"], e["tls"], e["status"]) for e in relayed} == {("edge", True, "sent")}


def test_certificate_is_made_at_world_up_and_its_key_kept_private(world):
    w = world()
    assert w.isp_control("status")["tls_cert"] == w.relay_cert
    key = os.path.join(w.run_dir, "relay-key.pem")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    logs = "".join(open(os.path.join(w.run_dir, f), errors="replace").read()
                   for f in os.listdir(w.run_dir) if f.endswith(".log"))
    assert "PRIVATE KEY" not in logs and "relay-key" not in logs
    text = subprocess.run(["openssl", "x509", "-in", w.relay_cert, "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:relay.isp.example" in text and "IP Address:192.0.2.25" in text


def test_auth_is_offered_only_after_starttls(online_world):
    w = online_world()
    with w.in_edge():
        smtp = smtplib.SMTP(w.relay_ip, 587, local_hostname="gw.edge.example", timeout=10)
    with smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls") and not smtp.has_extn("auth")
        code, text = smtp.docmd("AUTH", "PLAIN AGVkZ2UAc2VjcmV0")      # \0edge\0secret, in clear
        assert code == 538 and text.startswith(b"5.7.11"), text
        smtp.starttls(context=relay_tls(w))
        smtp.ehlo()
        assert not smtp.has_extn("starttls")
        assert set(smtp.esmtp_features["auth"].split()) >= {"PLAIN", "LOGIN"}
    assert w.relay_log("auth") == []                                   # the clear attempt never got that far


def test_a_wrong_certificate_authority_fails_verification(online_world, tmp_path):
    w = online_world()
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=relay.isp.example", "-keyout", str(tmp_path / "k"),
                    "-out", str(other)], capture_output=True, check=True)
    with w.in_edge():
        smtp = smtplib.SMTP(w.relay_ip, 587, local_hostname="gw.edge.example", timeout=10)
    with smtp, pytest.raises(ssl.SSLCertVerificationError):
        smtp.starttls(context=ssl.create_default_context(cafile=str(other)))


def test_swaks_submission_with_auth_login(online_world):
    if subprocess.run(["perl", "-MNet::SSLeay", "-e", "1"], capture_output=True).returncode != 0:
        pytest.skip("swaks needs Net::SSLeay for STARTTLS: apt-get install libnet-ssleay-perl")
    w = online_world()
    out = subprocess.run(["ip", "netns", "exec", w.edge_ns, "swaks", "--server", f"{w.relay_ip}:587",
                          "--tls", "--tls-verify", "--tls-ca-path", w.relay_cert, "--auth", "LOGIN", "--auth-user", "edge", "--auth-password", "secret",
                          "--from", "me@edge.example", "--to", "c@remote2.example", "--helo", "gw.edge.example"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout[-2000:]
    assert [m["rcpts"] for m in wait_sinks(w, 1)] == [["c@remote2.example"]]


def test_relay_refuses_without_auth_and_with_refused_auth(online_world):
    w = online_world()
    with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
        submit(w, user=None)
    assert e.value.recipients["you@remote1.example"][0] == 554
    with pytest.raises(smtplib.SMTPAuthenticationError):
        submit(w, password="wrong")
    w.relay_faults(refuse_auth=True)
    with pytest.raises(smtplib.SMTPAuthenticationError) as e:
        submit(w)
    assert e.value.smtp_code == 535 and e.value.smtp_error.startswith(b"5.7.8")
    assert wait_sinks(w, 1, timeout_s=0.5) == []
    auths = w.relay_log("auth")             # smtplib's login() tries PLAIN, then LOGIN
    assert {(e["user"], e["ok"], e["tls"]) for e in auths} == {("edge", False, True)}
    assert [e["refused_by_fault"] for e in auths][-1] is True
    assert all("secret" not in str(e) and "wrong" not in str(e) for e in w.relay_log())


def etrn(w, arg):
    with w.in_edge():
        smtp = smtplib.SMTP(w.relay_ip, 25, local_hostname="gw.edge.example", timeout=10)
    with smtp:
        smtp.ehlo()
        features = dict(smtp.esmtp_features)
        code, text = smtp.docmd("ETRN", arg) if arg else smtp.docmd("ETRN")
    return code, text.decode(), features


def inject_by_smtp_inside_isp(w, rcpt):
    """Mail for the customer arriving from the Internet: SMTP from inside the ISP namespace."""
    with w.in_isp():
        smtp = smtplib.SMTP(w.relay_ip, 25, local_hostname="mx.remote1.example", timeout=10)
    with smtp:
        smtp.sendmail("far@remote1.example", [rcpt], b"Subject: inbound\r\n\r\nfrom afar\r\n")


@pytest.mark.parametrize("arg", ["edge.example", "@edge.example", "#edge.example"])
def test_etrn_delivers_held_mail_to_the_edge(online_world, arg):
    w = online_world()
    listener = EdgeMailListener(w)
    try:
        w.inject_held_mail("alice@edge.example")
        inject_by_smtp_inside_isp(w, "bob@edge.example")
        assert len(w.held_messages()) == 2
        code, text, features = etrn(w, arg)
        assert "etrn" in features
        assert (code, text) == (253, "OK, 2 pending messages for node edge.example started")
        got = listener.wait(2)
        assert sorted(r for m in got for r in m["rcpts"]) == ["alice@edge.example", "bob@edge.example"]
        assert all(m["peer"] == "10.64.0.1" for m in got)  # it came over the line
        end = time.monotonic() + 5
        while w.held_messages() and time.monotonic() < end:
            time.sleep(0.05)
        assert w.held_messages() == []
        assert etrn(w, arg)[:2] == (251, "OK, no messages waiting for node edge.example")
    finally:
        listener.close()


def test_etrn_keeps_mail_when_the_edge_does_not_answer(online_world):
    w = online_world()
    w.inject_held_mail("alice@edge.example")
    assert etrn(w, "edge.example")[0] == 253  # nobody listens on 10.64.0.2:25
    end = time.monotonic() + 5
    while time.monotonic() < end:
        log = w.isp_control("relay_log")["log"]
        if any(e["event"] == "etrn-delivery" for e in log):
            break
        time.sleep(0.05)
    assert [e["status"] for e in log if e["event"] == "etrn-delivery"] == ["deferred"]
    assert len(w.held_messages()) == 1


@pytest.mark.parametrize("faults, arg, want_code, want_etrn_in_ehlo", [
    ({}, "nosuch.example", 459, True),
    ({}, "", 501, True),
    ({}, "two words", 501, True),
    ({"etrn_reply": 458}, "edge.example", 458, True),
    ({"etrn_reply": 459}, "edge.example", 459, True),
    ({"etrn_reply": 250}, "edge.example", 250, True),
    ({"etrn_reply": 252}, "edge.example", 252, True),
    ({"no_etrn": True}, "edge.example", 500, False),
], ids=["not-customer", "empty", "syntax", "458", "459", "250", "252", "no-etrn"])
def test_etrn_replies_and_faults(online_world, faults, arg, want_code, want_etrn_in_ehlo):
    w = online_world()
    if faults:
        w.relay_faults(**faults)
    code, text, features = etrn(w, arg)
    assert code == want_code, text
    assert ("etrn" in features) is want_etrn_in_ehlo


def test_inject_refuses_foreign_domains(world):
    w = world()
    with pytest.raises(ValueError, match="not a customer domain"):
        w.inject_held_mail("x@remote1.example")


def test_two_etrns_at_once_deliver_each_message_once(online_world):
    w = online_world()
    listener = EdgeMailListener(w)
    try:
        for user in ("a", "b", "c"):
            w.inject_held_mail(f"{user}@edge.example")
        assert etrn(w, "edge.example")[0] == 253
        etrn(w, "@edge.example")  # while the first run may still be going
        end = time.monotonic() + 10
        while len(w.relay_log("etrn-delivery")) < 2 and time.monotonic() < end:
            time.sleep(0.05)      # until both runs have ended (the second waits for the first)
        runs = [(e["status"], e["delivered"]) for e in w.relay_log("etrn-delivery")]
        assert runs == [("sent", 3), ("empty", 0)], runs
        assert sorted(r for m in listener.messages for r in m["rcpts"]) == [
            "a@edge.example", "b@edge.example", "c@edge.example"]
    finally:
        listener.close()
