"""CRAM-MD5 (RFC 2195) in the server dialogue without I/O: where it is
offered (over TLS; before TLS only on a cram_plaintext listener, and then
CRAM-MD5 alone), the exchange, the check against the secrets file, and the
file's own rules (owner, mode, lines)."""

from __future__ import annotations

import base64
import os

import pytest

from edgemail.errors import ConfigError
from edgemail.smtpd import cram
from edgemail.smtpd.auth import Answer, Exchange, Prompt
from edgemail.smtpd.core import Settings
from edgemail.smtpd.cram import CramSecrets
from edgemail.smtpd.events import Authenticate
from tests.core.test_smtpd_secure import TLS, Client, b64

CRAM_TLS = Settings(**{**TLS.__dict__, "auth": ("PLAIN", "LOGIN", "CRAM-MD5")})
CRAM_CLEAR = Settings(**{**CRAM_TLS.__dict__, "cram_plaintext": True})


def answer(challenge_b64: str, user: str, secret: bytes) -> str:
    challenge = base64.b64decode(challenge_b64).decode()
    return b64(f"{user} {cram.digest(secret, challenge)}")


def test_cram_is_offered_alone_before_tls_on_a_cram_plaintext_listener():
    c = Client(CRAM_CLEAR)
    assert "250-AUTH CRAM-MD5" in c.send(b"EHLO c\r\n")
    assert c.send(b"AUTH PLAIN " + b64("\0alice\0pw").encode() + b"\r\n")[0].startswith("538 5.7.11")
    c.starttls()
    assert "250-AUTH PLAIN LOGIN CRAM-MD5" in c.send(b"EHLO c\r\n")


def test_cram_is_not_offered_before_tls_elsewhere():
    c = Client(CRAM_TLS)
    assert not any("AUTH" in line for line in c.send(b"EHLO c\r\n"))
    assert c.send(b"AUTH CRAM-MD5\r\n")[0].startswith("538 5.7.11")


def test_the_cram_exchange_gives_the_user_the_digest_and_the_challenge():
    c = Client(CRAM_CLEAR)
    c.send(b"EHLO c\r\n")
    prompt = c.send(b"AUTH CRAM-MD5\r\n")
    assert len(prompt) == 1 and prompt[0].startswith("334 ")
    challenge = base64.b64decode(prompt[0][4:]).decode()
    assert challenge.startswith("<") and challenge.endswith("@gw.test>")
    lines = c.auth(answer(prompt[0][4:], "shop", b"sekrit").encode() + b"\r\n", ok=True)
    event = c.events[-1]
    assert isinstance(event, Authenticate) and event.mech == "CRAM-MD5" and event.challenge == challenge
    assert event.password == cram.digest(b"sekrit", challenge) and "sekrit" not in repr(event)
    assert lines == ["235 2.7.0 Authentication successful"] and c.core.auth_user == "shop"


def test_cram_refuses_an_initial_response_and_a_malformed_answer():
    assert Exchange("CRAM-MD5").start("c2hvcA==").startswith("501 5.5.2")
    ex = Exchange("CRAM-MD5", "gw.test")
    assert isinstance(ex.start(None), Prompt)
    assert ex.line(b64("shop nothex")) == "501 5.5.2 Cannot decode response"
    assert ex.line(b64("shop " + "0" * 32)) == Answer("shop", "0" * 32, ex.challenge)


def test_each_exchange_has_its_own_challenge():
    assert Exchange("CRAM-MD5", "h").challenge != Exchange("CRAM-MD5", "h").challenge


def secrets_file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "cram.secrets"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def test_verify_takes_the_right_digest_only(tmp_path):
    secrets = CramSecrets.load(secrets_file(tmp_path, "# shop's\nshop:a secret: with colons\n\n"))
    ch = "<1.2@gw.test>"
    assert secrets.verify("shop", ch, cram.digest(b"a secret: with colons", ch))
    assert secrets.verify("shop", ch, cram.digest(b"a secret: with colons", ch).upper())
    assert not secrets.verify("shop", ch, cram.digest(b"a secret", ch))
    assert not secrets.verify("shop", "<other@gw.test>", cram.digest(b"a secret: with colons", ch))
    assert not secrets.verify("nobody", ch, cram.digest(b"a secret: with colons", ch))
    assert "a secret" not in repr(secrets)


@pytest.mark.parametrize("mode", [0o644, 0o660, 0o604, 0o666])
def test_a_secrets_file_others_may_read_or_the_group_may_write_is_refused(tmp_path, mode):
    path = secrets_file(tmp_path, "shop:s\n", mode)
    with pytest.raises(ConfigError) as err:
        CramSecrets.load(path)
    assert f"mode {mode:04o}" in str(err.value) and path in str(err.value) and ":s" not in str(err.value)


def test_a_secrets_file_of_another_user_is_refused(tmp_path):
    path = secrets_file(tmp_path, "shop:s\n", 0o640)
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    os.chown(path, 4242, -1)
    with pytest.raises(ConfigError, match="owned by uid 4242"):
        CramSecrets.load(path)


@pytest.mark.parametrize("text, problem", [
    ("shop\n", "expected user:secret"), ("shop:\n", "empty secret"),
    ("shop:a\nshop:b\n", "given twice"), ("sh op:a\n", "expected user:secret")])
def test_bad_lines_name_the_line(tmp_path, text, problem):
    path = secrets_file(tmp_path, text, 0o640)
    with pytest.raises(ConfigError, match=problem) as err:
        CramSecrets.load(path)
    assert str(err.value).startswith(f"{path}:")
