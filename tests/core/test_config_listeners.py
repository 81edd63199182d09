"""[smtpd] and [[listen]]'s TLS, AUTH and submission keys (issue 11 §1, §2;
issue 16 §1's greet_pause): defaults, the rules between keys, and errors
that name the line of the listener they are in."""

from __future__ import annotations

import subprocess

import pytest

from edgemail.config import loader as config
from edgemail.errors import ConfigError

BASE = 'local_domains = ["a.example"]\n'
LAN = '[[listen]]\nname = "lan"\naddress = "127.0.0.1"\nport = 25\n'


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=t", "-keyout", str(d / "k.pem"), "-out",
                    str(d / "c.pem")], check=True, capture_output=True)
    return d / "c.pem", d / "k.pem"


def load(tmp_path, text):
    p = tmp_path / "e.toml"
    p.write_text(text)
    return p, config.load(p)


def errors(tmp_path, text) -> str:
    p = tmp_path / "e.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as ei:
        config.load(p)
    return str(ei.value).replace(str(p), "F")


def test_defaults(tmp_path):
    _, cfg = load(tmp_path, BASE + LAN + '[[listen]]\nname = "wan"\naddress = "10.0.0.1"\nstrict = true\n')
    lan, wan = cfg.listeners
    assert (lan.greet_pause, wan.greet_pause) == (0.0, 0.5), "sendmail's greet_pause on strict listeners"
    assert not lan.tls and not lan.auth and not lan.submission and not lan.require_tls
    assert cfg.smtpd.auth_file == "" and cfg.smtpd.max_auth_failures == 3 and cfg.smtpd.sender_login == {}


def test_a_submission_listener_with_tls_and_auth(tmp_path, cert):
    crt, key = cert
    (tmp_path / "passwd").write_text("")
    _, cfg = load(tmp_path, BASE + '[smtpd]\nauth_file = "passwd"\n[smtpd.sender_login]\n'
                  'alice = ["alice@a.example", "@b.example"]\n' + LAN +
                  f'[[listen]]\nname = "sub"\naddress = "127.0.0.1"\nport = 587\nsubmission = true\n'
                  f'require_tls = true\ntls_cert = "{crt}"\ntls_key = "{key}"\ngreet_pause = "2s"\n')
    lan, sub = cfg.listeners
    assert cfg.smtpd.auth_file == str(tmp_path / "passwd"), "relative to the config file"
    assert cfg.smtpd.sender_login == {"alice": ("alice@a.example", "@b.example")}
    assert lan.auth and sub.auth, "auth_file set: AUTH offered by default"
    assert sub.tls and sub.submission and sub.require_tls and sub.greet_pause == 2.0
    assert "submission = true" in config.dump(cfg)


@pytest.mark.parametrize("text, want", [
    (LAN + LAN.replace("lan", "two") + 'tls_cert = "/x.pem"\n',
     "F:10: listen.tls_cert: listener 'two': tls_cert and tls_key go together"),
    (LAN + 'require_tls = true\n', "F:6: listen.require_tls: listener 'lan': require_tls needs tls_cert"),
    (LAN + 'submission = true\n', "F:6: listen.submission: listener 'lan': a submission listener needs AUTH"),
    (LAN + 'auth = true\n', "F:6: listen.auth: listener 'lan': auth = true needs [smtpd] auth_file"),
    (LAN + 'greet_pause = "soon"\n', "F:6: listen.greet_pause: expected a duration"),
    (LAN + LAN.replace("lan", "two") + 'tls = true\n', "F:10: listen.tls: unknown key"),
    ('[smtpd.sender_login]\nbob = ["bob"]\n', "F:3: smtpd.sender_login.bob: expected addresses or @domains"),
    ('[smtpd]\nauth_file = 3\n', "F:3: smtpd.auth_file: expected a string"),
    ('[smtpd]\nmax_session_time = "0s"\n', "F:3: smtpd.max_session_time: expected a duration above 0"),
    ('[smtpd]\nconnection_rate_time_unit = "0s"\n',
     "F:3: smtpd.connection_rate_time_unit: expected a duration above 0"),
    ('[smtpd]\nclient_connection_rate_limit = -1\n', "F:3: smtpd.client_connection_rate_limit: expected"),
    ('[smtpd]\nauth_max_pending = 0\n', "F:3: smtpd.auth_max_pending: expected 1 or more"),
    ('[smtpd]\nauth_max_pending_per_client = 0\n', "F:3: smtpd.auth_max_pending_per_client: expected 1 or more"),
], ids=["cert-without-key-2nd-listener", "require-tls", "submission-no-auth", "auth-no-file",
        "greet-pause", "unknown-key-2nd-listener", "sender-login", "auth-file-type", "session-time-zero",
        "rate-unit-zero", "rate-limit-negative", "auth-pending-zero", "auth-pending-per-client-zero"])
def test_errors_name_the_line_of_their_listener(tmp_path, text, want):
    assert want in errors(tmp_path, BASE + text)


def test_a_certificate_that_does_not_load_is_a_config_error(tmp_path, cert):
    crt, _ = cert
    (tmp_path / "bad.key").write_text("not a key\n")
    got = errors(tmp_path, BASE + LAN + f'tls_cert = "{crt}"\ntls_key = "bad.key"\n')
    assert "F:6: listen.tls_cert: listener 'lan': cannot load the certificate" in got
    got = errors(tmp_path, BASE + LAN + 'tls_cert = "none.pem"\ntls_key = "none.key"\n')
    assert "F:6: listen.tls_cert: listener 'lan': cannot read" in got


def test_submission_needs_a_way_to_authenticate(tmp_path):
    (tmp_path / "passwd").write_text("")
    got = errors(tmp_path, BASE + '[smtpd]\nauth_file = "passwd"\n' + LAN + 'submission = true\n')
    assert "AUTH is offered only after STARTTLS" in got
    _, cfg = load(tmp_path, BASE + '[smtpd]\nauth_file = "passwd"\n' + LAN +
                  'submission = true\nauth_plaintext = true\n')
    assert cfg.listeners[0].submission and cfg.listeners[0].auth_plaintext


def test_cram_secrets_and_cram_plaintext(tmp_path):
    """[smtpd] cram_secrets alone turns AUTH on (CRAM-MD5); cram_plaintext needs it."""
    got = errors(tmp_path, BASE + LAN + 'cram_plaintext = true\n')
    assert "F:6: listen.cram_plaintext: listener 'lan': cram_plaintext needs [smtpd] cram_secrets" in got
    _, cfg = load(tmp_path, BASE + '[smtpd]\ncram_secrets = "cram"\n' + LAN + 'cram_plaintext = true\n')
    assert cfg.smtpd.cram_secrets == str(tmp_path / "cram") and cfg.smtpd.auth_file == ""
    assert cfg.listeners[0].auth and cfg.listeners[0].cram_plaintext
