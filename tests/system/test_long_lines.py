"""Issue 17 §1: lines over 998 octets are accepted and made sendable at
accept time (smtpd/longlines.py).  swaks (a 2,000-character line) and
``sendmail -t`` (a 6,000-character line) to the real daemon; the message
is relayed over real sockets to an SMTP sink (aiosmtpd, which itself refuses
lines over 1,001 octets), where it decodes (email package) to the original
text with every line within 998 octets.  A message within the limits
arrives byte for byte."""

from __future__ import annotations

import email
import email.policy
import subprocess

import pytest

from daemon_harness import cli, free_port, start, wait_for

pytestmark = pytest.mark.timeout(90)
aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")


class _Sink:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.original_content)
        return "250 2.0.0 OK"


@pytest.fixture
def world(tmp_path):
    sink = _Sink()
    port = free_port()
    controller = aiosmtpd_controller.Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    daemon = start(tmp_path, {"routes": {"sink.example": f"relay:[127.0.0.1]:{port}"}})
    yield daemon, sink
    daemon.kill()
    controller.stop()


def _arrived(sink: _Sink, daemon, n: int) -> bytes:
    wait_for(lambda: len(sink.messages) >= n, f"message {n} at the sink", daemon.log)
    return sink.messages[n - 1]


def _check(raw: bytes, text: str, *, strip: bool = False) -> email.message.Message:
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg["MIME-Version"] == "1.0"
    got = msg.get_content().replace("\r\n", "\n")
    if strip:                                     # swaks ends the body with empty lines of its own
        got, text = got.rstrip("\n"), text.rstrip("\n")
    assert got == text
    return msg


def test_swaks_2000_character_line(world):
    daemon, sink = world
    text = "report: " + "x" * 2000 + "\nend\n"
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{daemon.port}", "--helo", "till-3.lan",
                        "--from", "cron@edge.example", "--to", "ops@sink.example",
                        "--header", "Subject: long", "--body", text.rstrip("\n")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<-  250 2.0.0 Ok: queued as" in r.stdout or "<-  250" in r.stdout.split("\n.\n")[-1]
    raw = _arrived(sink, daemon, 1)
    msg = _check(raw, text, strip=True)
    assert msg["Subject"] == "long"


def test_sendmail_6000_character_line(world):
    daemon, sink = world
    text = "start\n" + "".join(chr(ord("a") + i % 26) for i in range(6000)) + "\nt\u00e9l\u00e9 =fin \n"
    r = cli(daemon, "sendmail", "-t", "-oi",
            input=b"To: ops@sink.example\nSubject: cron output\n\n" + text.encode())
    assert r.returncode == 0, r.stderr
    msg = _check(_arrived(sink, daemon, 1), text)
    assert msg.get_content_charset() == "utf-8"


def test_a_message_within_the_limits_arrives_byte_for_byte(world):
    daemon, sink = world
    body = (b"DKIM-Signature: v=1; a=rsa-sha256; d=edge.example; s=s; bh=x; b=y\r\n"
            b"From: cron@edge.example\r\nTo: ops@sink.example\r\nSubject: short\r\n\r\n"
            + b"y" * 998 + b"\r\nline  with trailing space \r\n")
    import smtplib
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as s:
        s.sendmail("cron@edge.example", ["ops@sink.example"], body)
    raw = _arrived(sink, daemon, 1)
    assert raw.endswith(body)                     # after our Received: line, the same bytes


def test_multipart_only_the_long_part_is_re_encoded(world):
    daemon, sink = world
    short = b"Content-Type: text/plain\r\n\r\nshort part\r\n"
    long_part = b"Content-Type: text/csv\r\n\r\n" + b",".join([b"field"] * 600) + b"\r\n"
    body = (b"From: cron@edge.example\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"=b=\"\r\n\r\n"
            b"--=b=\r\n" + short + b"--=b=\r\n" + long_part + b"--=b=--\r\n")
    import smtplib
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=10) as s:
        s.sendmail("cron@edge.example", ["ops@sink.example"], body)
    raw = _arrived(sink, daemon, 1)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert b"--=b=\r\n" + short + b"--=b=\r\n" in raw          # the short part byte for byte
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    first, second = msg.iter_parts()
    assert second["Content-Transfer-Encoding"] == "quoted-printable"
    assert second.get_payload(decode=True) == b",".join([b"field"] * 600)
