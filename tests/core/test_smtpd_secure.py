"""STARTTLS and AUTH in the server dialogue without I/O (issue 11 §1, §2):
the events the driver sees, the replies, what is reset and what is
dropped; the SASL exchanges; the credentials file; the sender check."""

from __future__ import annotations

import base64
import logging

import pytest

from edgemail.errors import ConfigError
from edgemail.smtpd.auth import Answer, Exchange, Prompt, may_send_as
from edgemail.smtpd.core import Dialogue, Settings, State
from edgemail.smtpd.credentials import AuthFailures, Credentials, hash_password, parse, verify_hash
from edgemail.smtpd.events import Authenticate, StartTls
from tests.core.test_smtpd_core import SETTINGS, _decide, codes

TLS = Settings(**{**SETTINGS.__dict__, "tls": True, "auth": ("PLAIN", "LOGIN")})
SUBMISSION = Settings(**{**TLS.__dict__, "submission": True, "require_tls": True})
PLAIN = base64.b64encode(b"\0alice\0s3cret").decode()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Client:
    """A dialogue with the driver's part played by hand."""

    def __init__(self, settings: Settings = TLS, *, trusted: bool = False, failures: int = 0,
                 owns=lambda user, sender: sender.startswith(user + "@")) -> None:
        self.core = Dialogue(settings, ip="192.0.2.7", relay="[192.0.2.7]:4000", trusted=trusted,
                             decide_rcpt=self.decide, has_room=lambda size: True,
                             auth_failures=lambda: failures, sender_ok=owns)
        self.core.greet()
        self.core.data_to_send()
        self.events: list = []

    def decide(self, address):
        text = str(address)
        return text, (None if self.core.may_relay or text.endswith("@edge.test")
                      else f"554 5.7.1 <{text}>... Relaying denied")

    def send(self, data: bytes) -> list[str]:
        self.core.receive_data(data)
        self.events.append(self.core.next_event())
        return self.core.data_to_send().decode().split("\r\n")[:-1]

    def starttls(self, pipelined: bytes = b"") -> list[str]:
        lines = self.send(b"STARTTLS\r\n" + pipelined)
        assert isinstance(self.events[-1], StartTls)
        self.core.tls_started()
        return lines

    def auth(self, data: bytes, ok: bool, failures: int = 1) -> list[str]:
        lines = self.send(data)
        event = self.events[-1]
        assert isinstance(event, Authenticate), (lines, event)
        self.core.auth_done(event, event.user if ok else None, 0 if ok else failures)
        return lines + self.core.data_to_send().decode().split("\r\n")[:-1]


def test_ehlo_offers_starttls_then_auth_after_it():
    c = Client()
    before = c.send(b"EHLO c\r\n")
    assert "250-STARTTLS" in before and not any("AUTH" in x for x in before)
    c.starttls()
    after = c.send(b"EHLO c\r\n")
    assert "250-AUTH PLAIN LOGIN" in after and not any("STARTTLS" in x for x in after)


def test_starttls_drops_what_was_pipelined_and_resets_the_session():
    c = Client()
    c.send(b"EHLO c\r\nMAIL FROM:<a@x.test>\r\n")
    lines = c.starttls(b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@far.test>\r\n")
    assert lines == ["220 2.0.0 Ready to start TLS"]
    assert c.events[-1] == StartTls(dropped=len(b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@far.test>\r\n"))
    assert c.core.held == 0 and c.core.helo is None and c.core.txn.mail_from is None
    assert c.send(b"MAIL FROM:<a@x.test>\r\n")[0].startswith("503 5.5.1 Error: send HELO first")
    assert c.core.proto == "SMTP" and c.send(b"EHLO c\r\n")[0].startswith("250")
    assert c.core.proto == "ESMTPS"


@pytest.mark.parametrize("settings, first, want", [
    (SETTINGS, b"STARTTLS\r\n", "454 4.7.0 TLS not available"),
    (TLS, b"STARTTLS now\r\n", "501 5.5.4"),
], ids=["not-offered", "argument"])
def test_starttls_refusals(settings, first, want):
    assert Client(settings).send(first)[0].startswith(want)


def test_starttls_twice_is_refused():
    c = Client()
    c.starttls()
    assert c.send(b"STARTTLS\r\n")[0] == "554 5.5.1 Error: TLS already active"


AUTH_REFUSED = [
    ("not offered", SETTINGS, False, b"EHLO c\r\nAUTH PLAIN\r\n", "502 5.5.1"),
    ("before TLS", TLS, False, b"EHLO c\r\nAUTH PLAIN " + PLAIN.encode() + b"\r\n", "538 5.7.11"),
    ("before EHLO", TLS, True, b"AUTH PLAIN\r\n", "503 5.5.1 Error: send EHLO first"),
    ("in a transaction", TLS, True, b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nAUTH PLAIN\r\n", "503 5.5.1"),
    ("other mechanism", TLS, True, b"EHLO c\r\nAUTH CRAM-MD5\r\n", "504 5.5.4"),
]


@pytest.mark.parametrize("name,settings,tls,data,want", AUTH_REFUSED, ids=[a[0] for a in AUTH_REFUSED])
def test_auth_refusals(name, settings, tls, data, want):
    c = Client(settings)
    if tls:
        c.starttls()
    lines = c.send(data)
    assert lines[-1].startswith(want), lines
    assert not any(isinstance(e, Authenticate) for e in c.events) and c.core.auth_user is None


@pytest.mark.parametrize("data", [
    b"AUTH PLAIN " + PLAIN.encode() + b"\r\n",
    b"AUTH PLAIN\r\n" + PLAIN.encode() + b"\r\n",
    b"AUTH LOGIN\r\n" + b64("alice").encode() + b"\r\n" + b64("s3cret").encode() + b"\r\n",
    b"AUTH LOGIN " + b64("alice").encode() + b"\r\n" + b64("s3cret").encode() + b"\r\n",
], ids=["plain-initial", "plain-334", "login", "login-initial"])
def test_auth_exchanges_end_in_one_authenticate(data):
    c = Client()
    c.starttls()
    c.send(b"EHLO c\r\n")
    lines = c.auth(data, ok=True)
    assert c.events[-1] == Authenticate(c.events[-1].mech, "alice", "s3cret")
    assert "s3cret" not in repr(c.events[-1])
    assert lines[-1] == "235 2.7.0 Authentication successful" and c.core.auth_user == "alice"
    assert c.send(b"AUTH PLAIN\r\n")[0].startswith("503 5.5.1 Error: already authenticated")
    c.send(b"EHLO c\r\n")
    assert c.core.proto == "ESMTPSA"


def test_auth_responses_are_never_commands_and_star_aborts():
    c = Client()
    c.starttls()
    c.send(b"EHLO c\r\n")
    assert c.send(b"AUTH LOGIN\r\n") == ["334 VXNlcm5hbWU6"]
    assert c.core.state is State.AUTH
    assert c.send(b"QUIT\r\n") == ["501 5.5.2 Cannot decode response"], "QUIT here is a response"
    assert c.send(b"AUTH PLAIN\r\n") == ["334 "]
    assert c.send(b"*\r\n") == ["501 5.0.0 Authentication aborted"]
    assert c.send(b"NOOP\r\n")[0].startswith("250"), "a command again after the exchange"


def test_failed_auth_is_535_then_421_at_the_limit(caplog):
    c = Client()
    c.starttls()
    c.send(b"EHLO c\r\n")
    with caplog.at_level(logging.INFO, logger="edgemail.smtpd"):
        lines = c.auth(b"AUTH PLAIN " + PLAIN.encode() + b"\r\n", ok=False, failures=2)
        assert lines == ["535 5.7.8 Authentication credentials invalid"]
        lines = c.auth(b"AUTH PLAIN " + PLAIN.encode() + b"\r\n", ok=False, failures=3)
    assert lines[-1] == "421 4.7.0 gw.test Error: too many failed authentications"
    assert c.core.state is State.CLOSED
    assert "s3cret" not in caplog.text and PLAIN not in caplog.text
    assert "AUTH failure (PLAIN): authentication failed, authid=alice" in caplog.text


def test_a_client_over_the_limit_is_421_at_auth():
    c = Client(failures=3)
    c.starttls()
    c.send(b"EHLO c\r\n")
    assert c.send(b"AUTH PLAIN\r\n")[-1].startswith("421 4.7.0")
    assert c.core.state is State.CLOSED


def test_submission_needs_tls_then_auth_then_relays_the_users_own_senders():
    c = Client(SUBMISSION)
    assert c.send(b"EHLO c\r\n")[0].startswith("250")
    assert c.send(b"MAIL FROM:<alice@edge.test>\r\n")[0].startswith("530 5.7.0 Must issue a STARTTLS")
    c.starttls()
    c.send(b"EHLO c\r\n")
    assert c.send(b"MAIL FROM:<alice@edge.test>\r\n")[0] == "530 5.7.0 Authentication required"
    c.auth(b"AUTH PLAIN " + PLAIN.encode() + b"\r\n", ok=True)
    assert c.send(b"MAIL FROM:<bob@edge.test>\r\n")[0] == \
        "553 5.7.1 <bob@edge.test>... Sender address rejected: not owned by user alice"
    assert codes(c.send(b"MAIL FROM:<alice@edge.test>\r\nRCPT TO:<x@far.test>\r\n")) == ["250", "250"]


def test_auth_parameter_on_mail_counts_as_empty_unless_authenticated():
    c = Client(TLS)
    c.starttls()
    c.send(b"EHLO c\r\n")
    assert c.send(b"MAIL FROM:<a@x.test> AUTH=alice@edge.test\r\n")[0].startswith("250")
    assert c.core.txn.mail.auth == "<>"
    assert c.send(b"RSET\r\nMAIL FROM:<a@x.test> AUTH=bad\x01\r\n")[-1].startswith("501 5.5.4 AUTH")
    c.send(b"RSET\r\n")
    c.auth(b"AUTH PLAIN " + PLAIN.encode() + b"\r\n", ok=True)
    c.send(b"MAIL FROM:<alice@edge.test> AUTH=alice@edge.test\r\n")
    assert c.core.txn.mail.auth == "alice@edge.test"
    assert Client(SETTINGS).send(b"EHLO c\r\nMAIL FROM:<a@x.test> AUTH=<>\r\n")[-1].startswith("555")


# ---------------------------------------------------------------- the exchanges

@pytest.mark.parametrize("mech, initial, lines, want", [
    ("PLAIN", None, [], Prompt("")),
    ("PLAIN", "=", [], "501 5.5.2 Cannot decode response"),
    ("PLAIN", "not base64!", [], "501 5.5.2 Cannot decode response"),
    ("PLAIN", b64("alice\0alice\0pw"), [], Answer("alice", "pw")),
    ("PLAIN", b64("bob\0alice\0pw"), [], "535 5.7.8 Authentication credentials invalid"),
    ("PLAIN", b64("\0\0pw"), [], "501 5.5.2 Cannot decode response"),
    ("PLAIN", base64.b64encode(b"\0al\xffice\0pw").decode(), [], "501 5.5.2 Cannot decode response"),
    ("LOGIN", None, [b64("alice")], Prompt("UGFzc3dvcmQ6")),
    ("LOGIN", None, [b64("alice"), "="], Answer("alice", "")),
    ("LOGIN", "=", ["="], "501 5.5.2 Cannot decode response"),
], ids=["plain-prompt", "plain-empty", "plain-junk", "plain-authzid-same", "plain-proxy",
        "plain-no-user", "plain-not-utf8", "login-password-prompt", "login-empty-password",
        "login-no-user"])
def test_exchange(mech, initial, lines, want):
    exchange = Exchange(mech)
    step = exchange.start(initial)
    for line in lines:
        step = exchange.line(line)
    assert step == want


@pytest.mark.parametrize("user, sender, want", [
    ("alice", "alice@edge.test", True),
    ("alice", "ALICE@Other.Test", True),
    ("alice", "bob@edge.test", False),
    ("alice", "", True),
    ("bob", "anyone@lan.edge.test", True),
    ("bob", "bob@edge.test", False),
    ("carol@far.test", "carol@far.test", True),
    ("carol@far.test", "carol@edge.test", False),
], ids=["own", "any-local-domain-any-case", "other", "null", "domain-entry", "table-replaces-default",
        "address-user", "address-user-other"])
def test_may_send_as(user, sender, want):
    logins = {"bob": ("@lan.edge.test",)}
    assert may_send_as(user, sender, logins, ("edge.test", "other.test")) is want


# ---------------------------------------------------------------- credentials

def test_hashes_verify_and_differ():
    h1, h2 = hash_password("pw", log2n=4), hash_password("pw", log2n=4)
    assert h1 != h2 and h1.startswith("$scrypt$ln=4,r=8,p=1$")
    assert verify_hash("pw", h1) and not verify_hash("pW", h1)


def test_credentials_file_errors_name_the_line(tmp_path):
    good = hash_password("pw", log2n=4)
    cases = [
        (f"# users\n\nalice:{good}\nbob\n", 4, "expected user:hash"),
        (f"alice:{good}\nalice:{good}\n", 2, "given twice"),
        ("alice:plaintext\n", 1, "expected a hash $scrypt$"),
        (f"a b:{good}\n", 1, "expected user:hash"),
        ("alice:$scrypt$ln=30,r=8,p=1$AAAA$AAAA\n", 1, "out of range"),
    ]
    for text, line, problem in cases:
        path = tmp_path / "passwd"
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            Credentials.load(str(path))
        assert err.value.line == line and problem in str(err.value), (text, err.value)
        assert good not in str(err.value)
    with pytest.raises(ConfigError, match="cannot read the AUTH credentials"):
        Credentials.load(str(tmp_path / "missing"))


def test_credentials_verify_known_and_unknown_users():
    creds = Credentials(parse([f"alice:{hash_password('pw', log2n=4)}"], "p"))
    assert creds.verify("alice", "pw")
    assert not creds.verify("alice", "wrong") and not creds.verify("mallory", "pw")


def test_auth_failures_count_per_client_within_the_window():
    f = AuthFailures(window=100)
    assert f.record("192.0.2.1", 0) == 1 and f.record("192.0.2.1", 50) == 2
    assert f.record("192.0.2.2", 50) == 1
    assert f.count("192.0.2.1", 120) == 1, "the first failure is past the window"
    f.clear("192.0.2.1")
    assert f.count("192.0.2.1", 120) == 0 and f.count("192.0.2.2", 120) == 1


def test_a_password_sent_after_a_refused_auth_is_never_logged(caplog):
    c = Client()
    c.send(b"EHLO c\r\n")
    with caplog.at_level(logging.WARNING, logger="edgemail.smtpd"):
        lines = c.send(b"AUTH LOGIN\r\n" + b64("alice").encode() + b"\r\n")
    assert lines[0].startswith("538 5.7.11") and lines[1].startswith("500"), lines
    assert b64("alice") not in caplog.text and "arg1=(after AUTH)" in caplog.text


def test_auth_plaintext_offers_and_takes_auth_before_tls():
    c = Client(Settings(**{**TLS.__dict__, "auth_plaintext": True}))
    assert "250-AUTH PLAIN LOGIN" in c.send(b"EHLO c\r\n")
    assert c.auth(b"AUTH PLAIN " + PLAIN.encode() + b"\r\n", ok=True)[-1].startswith("235")
    c.send(b"EHLO c\r\n")
    assert c.core.proto == "ESMTPA"
