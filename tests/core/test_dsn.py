"""dsn: RFC 3464 reports parsed back with the stdlib email package."""

import email
import email.policy

import pytest

from edgemail.delivery import dsn
from edgemail.delivery.dsn import Dropped, RcptResult, Report
from edgemail.envelope import Envelope, Recipient

T0 = 1_700_000_000.0
ORIGINAL = (b"From: Ann <ann@lan.example>\r\nTo: bob@far.example\r\nSubject: quarterly\r\n"
            b"Message-ID: <q1@lan.example>\r\n\r\nsecret body line\r\n.dot line\r\n")


def env(mail_from="ann@lan.example", rcpts=(Recipient("bob@far.example"),), **kw):
    return Envelope(mail_from, tuple(rcpts), arrived=T0, client="[192.168.1.20]:4000", **kw)


def failed(rcpt=Recipient("bob@far.example"), **kw):
    base = dict(action="failed", status="5.1.1", diagnostic="550 5.1.1 <bob@far.example>... User unknown",
                remote_mta="mx.far.example", last_attempt=T0 + 60)
    base.update(kw)
    return RcptResult(rcpt, **base)


def build(e, results, **kw):
    return dsn.build(e, ORIGINAL, results, qid="AB12CD34000001", reporting_mta="gw.edge.example",
                     postmaster="postmaster@edge.example", now=T0 + 120, **kw)


def parse(report: Report):
    assert b"\n" not in report.data.replace(b"\r\n", b""), "bare LF in report"
    return email.message_from_bytes(report.data, policy=email.policy.default)


def status_blocks(msg):
    """message/delivery-status: [per-message fields, per-recipient fields...] as dicts."""
    part = [p for p in msg.walk() if p.get_content_type() == "message/delivery-status"][0]
    return [dict(block.items()) for block in part.get_payload()]


def test_failure_report_structure_and_fields():
    e = env(rcpts=(Recipient("bob@far.example", orcpt="rfc822;Bob+2Bx@far.example"),), envid="ENV+2D42")
    r = build(e, [failed(Recipient("bob@far.example", orcpt="rfc822;Bob+2Bx@far.example"))])
    assert isinstance(r, Report) and r.kind == "failure"
    assert r.mail_from == "" and r.recipients == ("ann@lan.example",)
    m = parse(r)
    assert m.get_content_type() == "multipart/report"
    assert m.get_param("report-type") == "delivery-status"
    assert m["Auto-Submitted"] == "auto-replied"
    assert m["To"].addresses[0].addr_spec == "ann@lan.example"
    parts = [p.get_content_type() for p in m.iter_parts()]
    assert parts == ["text/plain", "message/delivery-status", "message/rfc822"]
    per_msg, per_rcpt = status_blocks(m)
    assert per_msg == {"Reporting-MTA": "dns; gw.edge.example", "Original-Envelope-Id": "ENV-42",
                       "Arrival-Date": "Tue, 14 Nov 2023 22:13:20 +0000"}
    assert per_rcpt["Final-Recipient"] == "rfc822; bob@far.example"
    assert per_rcpt["Original-Recipient"] == "rfc822; Bob+x@far.example"
    assert per_rcpt["Action"] == "failed" and per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.far.example"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@far.example>... User unknown"
    assert per_rcpt["Last-Attempt-Date"] == "Tue, 14 Nov 2023 22:14:20 +0000"
    returned = list(m.iter_parts())[2].get_content()
    assert returned["Subject"] == "quarterly"
    assert "secret body line" in returned.get_content()
    assert r.envelope(T0).mail_from == "" and r.envelope(T0).recipients == (Recipient("ann@lan.example"),)


@pytest.mark.parametrize("ret,nobodyreturn,ctype,body_returned", [
    ("FULL", False, "message/rfc822", True),
    (None, False, "message/rfc822", True),
    ("HDRS", False, "text/rfc822-headers", False),
    ("FULL", True, "text/rfc822-headers", False),
], ids=["full", "default", "hdrs", "privacy-nobodyreturn"])
def test_ret_full_vs_headers(ret, nobodyreturn, ctype, body_returned):
    r = build(env(ret=ret), [failed()], nobodyreturn=nobodyreturn)
    last = list(parse(r).iter_parts())[2]
    assert last.get_content_type() == ctype
    assert (b"secret body line" in r.data) is body_returned
    assert b"Subject: quarterly" in r.data


def test_delay_warning_fields_and_notify_rules():
    rcpts = (Recipient("a@far.example"), Recipient("b@far.example", notify=frozenset({"DELAY"})),
             Recipient("c@far.example", notify=frozenset({"FAILURE"})),
             Recipient("d@far.example", notify=frozenset({"NEVER"})))
    results = [RcptResult(rc, "delayed", "4.4.1", "421 4.4.1 try later", "mx.far.example",
                          T0 + 60, will_retry_until=T0 + 5 * 86400) for rc in rcpts]
    r = build(env(rcpts=rcpts), results)
    assert r.kind == "delay"
    m = parse(r)
    blocks = status_blocks(m)[1:]
    assert [b["Final-Recipient"] for b in blocks] == ["rfc822; a@far.example", "rfc822; b@far.example"]
    assert blocks[0]["Action"] == "delayed" and blocks[0]["Will-Retry-Until"] == "Sun, 19 Nov 2023 22:13:20 +0000"
    assert list(m.iter_parts())[2].get_content_type() == "text/rfc822-headers"
    assert m["Subject"].startswith("Warning: could not send message")


def test_nobody_wants_it_gives_none():
    rc = Recipient("c@far.example", notify=frozenset({"FAILURE"}))
    assert build(env(rcpts=(rc,)), [RcptResult(rc, "delayed", "4.4.1")]) is None
    never = Recipient("n@far.example", notify=frozenset({"NEVER"}))
    assert build(env(rcpts=(never,)), [failed(never)]) is None


@pytest.mark.parametrize("notify,action,want", [
    (frozenset(), "failed", True), (frozenset(), "delayed", True), (frozenset(), "delivered", False),
    (frozenset({"SUCCESS"}), "delivered", True), (frozenset({"SUCCESS"}), "relayed", True),
    (frozenset({"SUCCESS"}), "failed", False), (frozenset({"DELAY"}), "delayed", True),
    (frozenset({"never"}), "failed", False),
])
def test_wants(notify, action, want):
    assert dsn.wants(Recipient("x@y", notify=notify), action) is want


def test_success_and_relayed():
    rc = Recipient("bob@edge.example", notify=frozenset({"SUCCESS"}))
    r = build(env(rcpts=(rc,)), [RcptResult(rc, "delivered", "2.0.0", last_attempt=T0 + 1)])
    assert r.kind == "success" and status_blocks(parse(r))[1]["Action"] == "delivered"
    r = build(env(rcpts=(rc,)), [RcptResult(rc, "relayed", "2.0.0", "250 2.0.0 ok", "smarthost.isp.example")])
    assert status_blocks(parse(r))[1]["Action"] == "relayed"
    assert b"secret body line" not in r.data


def test_owner_gets_failures_not_delays():
    r = build(env(), [failed()], errors_to="team-request@edge.example")
    assert r.recipients == ("team-request@edge.example",)
    d = build(env(), [failed(action="delayed", status="4.4.1")], errors_to="team-request@edge.example")
    assert d.recipients == ("ann@lan.example",)


def test_null_sender_failure_is_a_double_bounce_to_postmaster():
    bounce = env(mail_from="")
    r = build(bounce, [failed(Recipient("bob@far.example", notify=frozenset({"NEVER"})))])
    assert r.kind == "double-bounce" and r.recipients == ("postmaster@edge.example",) and r.mail_from == ""
    assert dsn.is_double_bounce(r.envelope(T0))
    assert parse(r)["Subject"].startswith("Postmaster notify")
    # never a report about a report: no delay warnings or receipts for <>
    assert build(bounce, [failed(action="delayed", status="4.4.1")]) is None
    assert build(bounce, [failed(action="delivered", status="2.0.0")]) is None


def test_failing_double_bounce_is_dropped_with_a_log_line():
    db = Envelope("", (Recipient("postmaster@edge.example"),), envid=f"{dsn.DOUBLE_BOUNCE_ENVID}.X", arrived=T0)
    got = dsn.build(db, ORIGINAL, [failed(Recipient("postmaster@edge.example"), diagnostic="mailbox full\r\nX: y")],
                    qid="QQ", reporting_mta="gw", postmaster="postmaster@edge.example", now=T0)
    assert isinstance(got, Dropped)
    assert got.log_line == "QQ: to=<postmaster@edge.example>, status=dropped (double bounce failed: mailbox full X: y)"


def test_mixed_kinds_refused():
    with pytest.raises(ValueError, match="one report per kind"):
        build(env(), [failed(), failed(action="delayed", status="4.0.0")])


def test_peer_text_cannot_inject_fields():
    r = build(env(), [failed(diagnostic="550 no\r\nAction: delivered", remote_mta="mx\r\nStatus: 2.0.0")])
    per_rcpt = status_blocks(parse(r))[1]
    assert per_rcpt["Action"] == "failed" and per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 550 no Action: delivered"


def test_eight_bit_original_marks_report_8bitmime():
    e = env()
    r = dsn.build(e, ORIGINAL.replace(b"secret", "gehe\u0301im".encode()), [failed()], qid="Q",
                  reporting_mta="gw", postmaster="p@x", now=T0)
    assert r.eight_bit and r.envelope(T0).body == "8BITMIME"
    assert b"Content-Transfer-Encoding: 8bit" in r.data
