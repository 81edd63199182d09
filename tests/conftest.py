"""Shared test helpers: the example config with a temporary spool, root checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "etc" / "edgemail.toml"


@pytest.fixture(autouse=True, scope="session")
def _runtime_dir(tmp_path_factory):
    """Daemons started by tests write their config snapshot for the command
    line (edgemail/config/snapshot.py) here, not into the machine's
    /run/edgemail; the console scripts the tests run read it from here."""
    if os.environ.get("EDGEMAIL_RUNTIME_DIR"):
        yield
        return
    where = tmp_path_factory.mktemp("runtime")
    where.chmod(0o755)
    os.environ["EDGEMAIL_RUNTIME_DIR"] = str(where)
    yield
    os.environ.pop("EDGEMAIL_RUNTIME_DIR", None)


def is_root() -> bool:
    return os.geteuid() == 0


def pytest_collection_modifyitems(config, items):
    if is_root():
        return
    skip = pytest.mark.skip(reason="needs root (network namespaces, TUN); CI runs as root")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def example_config(tmp_path):
    """Load etc/edgemail.toml with the spool, control socket and listeners moved
    into tmp_path and onto loopback (ephemeral ports)."""
    from edgemail.config import loader as config

    def make(**overrides):
        base = {
            "spool": {"directory": str(tmp_path / "spool")},
            "control": {"socket": str(tmp_path / "control.sock")},
            "listen": [{"name": "lan", "address": "127.0.0.1", "port": 0, "strict": False}],
            # tests send to many made-up users; the default (refused at RCPT)
            # is tested with create_mailboxes = false (tests/io/test_users.py)
            "local": {"maildir": str(tmp_path / "mail" / "%u" / "Maildir"), "create_mailboxes": True},
            "link": {"state_file": str(tmp_path / "link.json"), "etrn_host": "127.0.0.1:1"},
            # The example's smart host is the hardware-sim ISP (192.0.2.25):
            # never let a test address it from the root namespace.
            "SmartHost": "[127.0.0.1]:1",
            # no pppd writes a peer DNS file here: tests name their nameservers
            "dns": {"peer_dns_file": ""},
        }
        return config.load(EXAMPLE_CONFIG, config._merge(base, overrides))

    return make
