"""smtpd/longlines.py: lines over 998 octets made sendable; everything else untouched."""

import base64
import email
import email.policy

import pytest

from edgemail.smtpd.data import DataCollector
from edgemail.smtpd.longlines import Unsendable, fold_line, make_sendable, too_long


def lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


@pytest.mark.parametrize("message", [
    b"",
    b"Subject: x\r\n\r\n" + b"y" * 998 + b"\r\n",
    b"Subject: " + b"z" * 989 + b"\r\n\r\nbody\r\n",
    b"From: a\r\n\r\ntrailing space \r\n\xff\xfe 8-bit\r\n",
], ids=["empty", "body-998", "header-998", "8bit-short"])
def test_within_the_limits_is_the_same_object(message):
    assert not too_long(message)
    assert make_sendable(message) is message


def test_too_long_counts_octets_without_the_crlf():
    assert not too_long(b"x" * 998 + b"\r\n")
    assert too_long(b"x" * 999 + b"\r\n")
    assert too_long(b"a\r\n" + b"x" * 999)
    assert not too_long(b"x" * 998 + b"\r\r\n" + b"y" * 500 + b"\r\n")   # CRs before the LF do not count
    assert too_long(b"y" * 500 + b"\n" + b"x" * 998 + b"z\r\n")


def test_plain_message_gets_mime_headers_and_decodes_to_the_original():
    body = b"one\r\n" + b"\xc3\xa9" * 700 + b"\r\n.leading dot\r\nend \r\n"
    out = make_sendable(b"From: a@edge.example\r\nSubject: s\r\n\r\n" + body)
    assert max(map(len, lines(out))) <= 76
    head = out.split(b"\r\n\r\n", 1)[0]
    assert head.endswith(b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
                         b"Content-Transfer-Encoding: quoted-printable")
    msg = email.message_from_bytes(out)
    assert msg.get_payload(decode=True) == body


def test_not_utf8_is_unknown_8bit():
    out = make_sendable(b"From: a\r\n\r\n" + b"\xe9" * 1200 + b"\r\n")
    assert b"Content-Type: text/plain; charset=unknown-8bit\r\n" in out


def test_existing_cte_replaced_and_content_type_kept():
    msg = (b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + b"\xe9" * 1500 + b"\r\n")
    out = make_sendable(msg)
    assert out.count(b"Content-Transfer-Encoding") == 1
    assert b"Content-Type: text/plain; charset=iso-8859-1\r\n" in out
    assert email.message_from_bytes(out).get_payload(decode=True) == b"\xe9" * 1500 + b"\r\n"


def test_base64_on_one_line_is_wrapped():
    data = bytes(range(256)) * 10
    msg = (b"MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(data) + b"\r\n")
    out = make_sendable(msg)
    assert max(map(len, lines(out))) == 76
    assert email.message_from_bytes(out).get_payload(decode=True) == data


def test_multipart_touches_only_the_long_part_and_nested_message():
    inner = b"Subject: inner\r\n\r\n" + b"q" * 1500 + b"\r\n"
    body = (b"From: a\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XY\r\n\r\n"
            b"preamble\r\n--XY\r\nContent-Type: text/plain\r\n\r\nshort\r\n"
            b"--XY\r\nContent-Type: message/rfc822\r\n\r\n" + inner +
            b"--XY--\r\n" + b"e" * 1200 + b"\r\n")
    out = make_sendable(body)
    assert max(map(len, lines(out))) <= 998
    assert out.startswith(b"From: a\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XY\r\n\r\n"
                          b"preamble\r\n--XY\r\nContent-Type: text/plain\r\n\r\nshort\r\n--XY\r\n"
                          b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n")
    msg = email.message_from_bytes(out, policy=email.policy.default)
    _, wrapped = msg.iter_parts()
    (enclosed,) = wrapped.iter_parts()
    assert enclosed["Content-Transfer-Encoding"] == "quoted-printable"
    assert enclosed.get_payload(decode=True) == b"q" * 1500      # the CRLF before --XY-- is the delimiter's
    assert "MIME-Version" not in enclosed         # not the top level: only the CTE is set


def test_long_header_folded_at_spaces_within_78():
    words = b" ".join(b"w%d" % i for i in range(400))
    out = make_sendable(b"Subject: " + words + b"\r\nX: y\r\n\r\nbody\r\n")
    head = out.split(b"\r\n\r\n", 1)[0]
    assert max(map(len, lines(head))) <= 78
    assert head.endswith(b"\r\nX: y") and out.endswith(b"\r\n\r\nbody\r\n")
    msg = email.message_from_bytes(out, policy=email.policy.default)
    assert msg["Subject"] == words.decode()


def test_header_without_spaces_is_unsendable():
    with pytest.raises(Unsendable, match=r"header X-Blob: a line of 1508 octets with no space"):
        fold_line(b"X-Blob: " + b"b" * 1500)


def test_collector_reencodes_at_the_end_of_data_and_refuses_the_unfoldable():
    c = DataCollector(strict=True, limit=100_000)
    assert c.feed(b"Subject: s\r\n\r\n" + b"x" * 2000 + b"\r\n.\r\n")
    assert c.refusal is None and max(map(len, lines(c.message()))) <= 76
    c = DataCollector(strict=True, limit=100_000)
    assert c.feed(b"X-Blob: " + b"b" * 1500 + b"\r\n\r\nbody\r\n.\r\n")
    assert c.refusal.startswith("554 5.6.0 Message not sendable: header X-Blob: a line of 1508 octets")
