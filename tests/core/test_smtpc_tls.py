"""smtpc/tls.py: the TLS policies and the credentials file, and the names
session.py and the package keep exporting after the split."""

from __future__ import annotations

import os

import pytest

import edgemail.smtpc as pkg
from edgemail.errors import ConfigError
from edgemail.smtpc import results, session, tls


@pytest.mark.parametrize("name", ["TlsPolicy", "MX_TLS", "SMARTHOST_TLS", "Credentials", "load_credentials",
                                  "DeliveryResult", "RcptResult", "SmtpTimeout"])
def test_names_are_the_same_objects_everywhere(name):
    home = tls if hasattr(tls, name) else results
    assert getattr(pkg, name) is getattr(session, name) is getattr(home, name)


def test_policies():
    assert (tls.MX_TLS.mode, tls.MX_TLS.verify) == ("may", False)
    assert tls.SMARTHOST_TLS.verify and tls.SMARTHOST_TLS.context().check_hostname
    assert not tls.MX_TLS.context().check_hostname


@pytest.mark.parametrize("mode, text, want", [
    (0o600, "# comment\nrelay s3cret word\n", ("relay", "s3cret word")),
    (0o644, "relay pw\n", "lets other users read it"),
    (0o600, "justone\n", "expected one line"),
    (0o600, "\n# nothing\n", "empty"),
], ids=["ok", "world-readable", "one-field", "empty"])
def test_load_credentials(tmp_path, mode, text, want):
    path = tmp_path / "auth"
    path.write_text(text)
    os.chmod(path, mode)
    if isinstance(want, tuple):
        cred = tls.load_credentials(str(path))
        assert (cred.user, cred.password) == want and "s3cret" not in repr(cred)
    else:
        with pytest.raises(ConfigError, match=want):
            tls.load_credentials(str(path))
