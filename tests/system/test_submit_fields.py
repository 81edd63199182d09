"""Issue 16 §8 (first half): the control socket's submit op, open to every
local user, checks every field it stores as the SMTP listener does and
refuses what only the daemon may set, with an error naming the field; a
refused request queues nothing.  The real daemon over its real unix socket;
the "*" route is expensive (no link), so what is accepted stays queued for
queue show to read."""

from __future__ import annotations

import base64
import json

import pytest

from daemon_harness import cli, control, start
from edgemail.daemon.control import RequestFailed

pytestmark = pytest.mark.timeout(60)

DATA = base64.b64encode(b"Subject: s\r\n\r\nx\r\n").decode()
GOOD = {"mail_from": "app@edge.example", "recipients": [{"address": "ops@far.example"}], "data_b64": DATA}

#: (what the request changes, the words the error must hold)
REFUSED = [
    ({"ret": "BOGUS"}, "bad envelope: RET must be FULL or HDRS"),
    ({"ret": "FULL\r\nRSET"}, "RET must be FULL or HDRS"),
    ({"envid": "x\r\nRSET"}, "ENVID must be xtext of at most 100 characters"),
    ({"envid": "x" * 101}, "ENVID must be xtext of at most 100 characters"),
    ({"body": "BINARYMIME"}, "BODY must be 7BIT or 8BITMIME"),
    ({"recipients": [{"address": "ops@far.example", "notify": ["SUCCESS", "NEVER"]}]},
     "recipient 1: NOTIFY must be NEVER or a list of SUCCESS,FAILURE,DELAY"),
    ({"recipients": [{"address": "ops@far.example", "orcpt": "rfc822;a\r\nRSET"}]},
     "recipient 1: ORCPT must be addr-type;xtext"),
    ({"recipients": [{"address": "ops@far.example"}, {"address": "b\x00ad@far.example"}]},
     "recipient 2 'b\\x00ad@far.example': bad local part"),
    ({"recipients": [{"address": "x@far.example> NOTIFY=SUCCESS"}]}, "text after the address"),
    ({"recipients": [{"address": "a" * 130 + "@far.example"}]}, "local part longer than 128 octets"),
    ({"mail_from": "p@edge.example\r\nRCPT TO:<evil@far.test>"}, "bad envelope: mail_from"),
    ({"mail_from": 7}, "mail_from must be a string"),
    ({"recipients": [{"address": "ops@far.example", "trusted": True}]}, "recipient 1 must be an object"),
    ({"recipients": [{"address": f"r{n}@far.example"} for n in range(101)]},
     "101 recipients, at most 100 (smtpd.MaxRecipientsPerMessage)"),
    ({"precedence": 100}, "precedence is set by the daemon (from the message's Precedence: header)"),
    ({"msgid": "x@y"}, "msgid is set by the daemon"),
    ({"client": "[192.0.2.1]:25"}, "client is set by the daemon (from SO_PEERCRED)"),
    ({"proto": "ESMTPA"}, "proto is set by the daemon"),
    ({"auth": "admin"}, "auth is set by the daemon"),
    ({"helo": "mx.example"}, "helo is set by the daemon"),
    ({"arrived": 0}, "arrived is set by the daemon"),
    ({"priority": -10**9}, "priority is set by the daemon"),
    ({"trusted": True}, "trusted is set by the daemon"),
    ({"flavour": 1}, "unknown field 'flavour'"),
    ({"data_b64": base64.b64encode(b"Subject: s\n\nRCPT TO:<x>\r\n").decode()},
     "bad message data: bare LF in line 1"),
    ({"data_b64": base64.b64encode(b"Subject: s\r\n\r\nx\ry\r\n").decode()}, "bare CR in line 3"),
    ({"data_b64": base64.b64encode(b"Subject: s\r\n\r\nx\0\r\n").decode()}, "NUL in line 3"),
]


def queued(d) -> list[dict]:
    return json.loads(cli(d, "edgemail", "queue", "list", "--json").stdout)


def test_submit_refuses_each_bad_field_and_queues_nothing(tmp_path):
    d = start(tmp_path)
    try:
        for change, words in REFUSED:
            with pytest.raises(RequestFailed) as refused:
                control(d).request("submit", **{**GOOD, **change})
            assert words in str(refused.value), (change, str(refused.value))
        assert queued(d) == []
    finally:
        assert d.stop() == 0


def test_submit_takes_precedence_and_msgid_from_the_headers(tmp_path):
    d = start(tmp_path)
    try:
        data = b"Precedence: bulk\r\nMessage-ID: <m1@edge.example>\r\nSubject: s\r\n\r\nx\r\n"
        reply = control(d).request("submit", **{**GOOD, "ret": "hdrs", "envid": "E+2B1",
                                                "recipients": [{"address": "ops@far.example",
                                                                "notify": ["failure", "delay"],
                                                                "orcpt": "rfc822;ops@far.example"}],
                                                "data_b64": base64.b64encode(data).decode()})
        shown = control(d).request("queue_show", qid=reply["qid"])
        assert (shown["msgid"], shown["proto"]) == ("m1@edge.example", "local"), shown
        assert shown["client"].startswith("localhost (uid "), shown
        (row,) = [e for e in queued(d) if e["qid"] == reply["qid"]]
        # class -60 (bulk): priority = size + 60 * ClassFactor + RecipientFactor, above a first-class one
        plain = control(d).request("submit", **GOOD)
        (first,) = [e for e in queued(d) if e["qid"] == plain["qid"]]
        assert row["priority"] > first["priority"], (row, first)
    finally:
        assert d.stop() == 0
    log = d.log.read_text()
    assert f"{reply['qid']}: from=<app@edge.example>" in log and "class=-60" in log, log


def test_sendmail_t_refuses_a_bare_cr_in_to_exit_65_nothing_queued(tmp_path):
    d = start(tmp_path)
    try:
        r = cli(d, "sendmail", "-t", input=b"To: ops@far.example\rBcc: evil@evil.example\nSubject: x\n\nb\n")
        assert r.returncode == 65, r
        assert r.stderr == (b"sendmail: To: header holds a bare CR: not taking recipients from it (-t); "
                            b"fix the line ends (CRLF or LF throughout)\n"), r.stderr
        r = cli(d, "sendmail", "-t", input=b"To: ops@far.example,\n evil@evil.example\r\nSubject: x\r\n\r\nb\r\n")
        assert r.returncode == 65 and b"To: header holds a bare LF" in r.stderr, r
        assert queued(d) == []
        r = cli(d, "sendmail", "-t", input=b"To: ops@far.example\nSubject: x\n\nb\n")
        assert r.returncode == 0, r
        (entry,) = queued(d)
        assert [x["address"] for x in control(d).request("queue_show", qid=entry["qid"])["recipients"]] \
            == ["ops@far.example"]
    finally:
        assert d.stop() == 0


def test_maildrop_files_get_the_submit_checks_forged_fields_replaced_bad_ones_quarantined(tmp_path):
    """A maildrop file is written by any local user while the daemon is down:
    its envelope is rebuilt as a submit request's (daemon-only fields from
    the daemon), one that fails the checks goes to corrupt/."""
    import os
    import time

    from edgemail.envelope import Envelope, Recipient
    from edgemail.spool.maildrop import write_maildrop
    d = start(tmp_path)
    assert d.stop() == 0
    drop = tmp_path / "spool" / "maildrop"
    forged = Envelope("app@edge.example", (Recipient("ops@far.example"),), proto="ESMTPA", auth="admin",
                      client="[192.0.2.1]:25", helo="mx.far.example", precedence=100, msgid="forged@x",
                      size=30, arrived=0.0)
    data = b"Message-ID: <real@edge.example>\r\nSubject: s\r\n\r\nx\r\n"
    write_maildrop(str(drop), forged, data, now=time.time() + 10 * 86400)      # "created" in 10 days
    bad = Envelope("app@edge.example", (Recipient("ops@far.example"),), ret="FULL\r\nRSET", size=30)
    bad_name = os.path.basename(write_maildrop(str(drop), bad, data))
    d.start()
    try:
        (entry,) = queued(d)
        shown = control(d).request("queue_show", qid=entry["qid"])
        assert (shown["proto"], shown["msgid"]) == ("local", "real@edge.example"), shown
        assert shown["client"] == f"localhost (uid {os.getuid()})", shown
        assert shown["created"] <= time.time(), shown
        assert shown["priority"] > 0, shown         # class 0 from the headers: precedence=100 would be -180000+
        assert (tmp_path / "spool" / "corrupt" / bad_name).exists()
        assert os.listdir(drop) == []
    finally:
        assert d.stop() == 0
    log = d.log.read_text()
    assert "RET must be FULL or HDRS" in log and "192.0.2.1" not in log, log


#: (an address over the limits, the words every entry point says about it)
OVER = [("a" * 129 + "@far.example", "local part longer than 128 octets (129)"),
        ("u@" + "b" * 64 + ".far.example", "domain label bbbbbbbbbbbbbbbbbbbb... of 64 octets, longer than 63")]


@pytest.mark.parametrize("address,words", OVER, ids=["local-part", "label"])
def test_the_listener_sendmail_and_submit_refuse_an_address_over_the_limits_alike(tmp_path, address, words):
    import smtplib
    d = start(tmp_path)
    try:
        with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
            s.ehlo("lan-host.edge.example")
            s.mail("app@edge.example")
            code, text = s.rcpt(address)
        assert code == 501 and text.decode().startswith(f"5.1.3 Bad recipient address syntax: {words}"), text
        r = cli(d, "sendmail", "-f", "app@edge.example", address, input=b"Subject: s\n\nx\n")
        assert r.returncode == 65 and words in r.stderr.decode(), (r.returncode, r.stderr)
        r = cli(d, "sendmail", "-f", address, "ops@far.example", input=b"Subject: s\n\nx\n")
        assert r.returncode == 65 and words in r.stderr.decode(), (r.returncode, r.stderr)
        with pytest.raises(RequestFailed) as refused:
            control(d).request("submit", **{**GOOD, "recipients": [{"address": address}]})
        assert words in str(refused.value), str(refused.value)
        assert queued(d) == []
    finally:
        assert d.stop() == 0
