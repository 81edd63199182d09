"""CRAM-MD5 over real sockets with an independent client (Python's smtplib,
which prefers CRAM-MD5 when offered): after STARTTLS on a TLS listener,
before it only where cram_plaintext says so; the secrets read again on
reload, all or nothing (fetchmail's ODMR: tests/system/test_isp_mode.py)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl

import pytest

from edgemail.errors import ConfigError
from edgemail.smtpd.listener import reload_secrets
from tests.io.smtpd_helpers import make_store, running
from tests.io.test_smtpd_tls import make_cert

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("cram-tls"), "cram.test")


@pytest.fixture
def secrets(tmp_path):
    path = tmp_path / "cram.secrets"
    path.write_text("shop:shop's cram secret\n")
    path.chmod(0o600)
    return path


def login(port: int, password: str, *, tls: bool) -> tuple[int, bytes, str]:
    """smtplib's login (CRAM-MD5 when offered): (code, text, the mechanisms EHLO offered)."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="c.test", timeout=10) as s:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            s.starttls(context=ctx)
        s.ehlo("c.test")
        offered = s.esmtp_features.get("auth", "").strip()
        try:
            code, text = s.login("shop", password)
        except smtplib.SMTPAuthenticationError as exc:
            code, text = exc.smtp_code, exc.smtp_error
        return code, text, offered


async def test_cram_md5_after_starttls(example_config, cert, secrets, caplog):
    caplog.set_level(logging.INFO, logger="edgemail.smtpd")
    cfg = example_config(listen=[{"name": "t", "address": "127.0.0.1", "port": 0, "greet_pause": 0,
                                  "tls_cert": cert[0], "tls_key": cert[1]}],
                         smtpd={"cram_secrets": str(secrets)})
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        good = await asyncio.to_thread(login, smtpd.port, "shop's cram secret", tls=True)
        bad = await asyncio.to_thread(login, smtpd.port, "a guess", tls=True)
    assert good[2] == "CRAM-MD5", "no auth_file: CRAM-MD5 alone"
    assert good[:2] == (235, b"2.7.0 Authentication successful"), good
    assert bad[0] == 535
    assert "authid=shop, mech=CRAM-MD5" in caplog.text and "AUTH failure (CRAM-MD5)" in caplog.text
    assert "cram secret" not in caplog.text and "guess" not in caplog.text


async def test_cram_md5_before_tls_only_where_the_listener_says_so(example_config, cert, secrets):
    listen = {"name": "t", "address": "127.0.0.1", "port": 0, "greet_pause": 0,
              "tls_cert": cert[0], "tls_key": cert[1]}
    for cram_plaintext in (False, True):
        cfg = example_config(listen=[{**listen, "cram_plaintext": cram_plaintext}],
                             smtpd={"cram_secrets": str(secrets)})
        async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
            if cram_plaintext:
                got = await asyncio.to_thread(login, smtpd.port, "shop's cram secret", tls=False)
                assert got[0] == 235 and got[2] == "CRAM-MD5", got
            else:
                with pytest.raises(smtplib.SMTPNotSupportedError):
                    await asyncio.to_thread(login, smtpd.port, "shop's cram secret", tls=False)


async def test_the_secrets_are_read_again_on_reload_and_a_loose_file_changes_nothing(
        example_config, cert, secrets):
    cfg = example_config(listen=[{"name": "t", "address": "127.0.0.1", "port": 0, "greet_pause": 0,
                                  "cram_plaintext": True}], smtpd={"cram_secrets": str(secrets)})
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        secrets.write_text("shop:the new secret\n")
        secrets.chmod(0o644)
        with pytest.raises(ConfigError, match="mode 0644"):
            reload_secrets([smtpd])
        assert (await asyncio.to_thread(login, smtpd.port, "shop's cram secret", tls=False))[0] == 235
        secrets.chmod(0o640)
        assert reload_secrets([smtpd])() == (0, 1)
        assert (await asyncio.to_thread(login, smtpd.port, "the new secret", tls=False))[0] == 235
        assert (await asyncio.to_thread(login, smtpd.port, "shop's cram secret", tls=False))[0] == 535
