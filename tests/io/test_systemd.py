"""systemd unit, drop-in, sysusers and tmpfiles snippets: verified by systemd itself."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "edgemail.service"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze not installed")


def unit_copy(tmp_path, dropin=False):
    # verify checks that ExecStart exists: point it at this interpreter
    text = UNIT.read_text().replace("/usr/bin/edgemail", sys.executable)
    (tmp_path / "edgemail.service").write_text(text)
    if dropin:
        d = tmp_path / "edgemail.service.d"
        d.mkdir()
        shutil.copy(ROOT / "systemd" / "edgemail.service.d" / "external-link.conf", d)
    return tmp_path / "edgemail.service"


@pytest.mark.parametrize("dropin", [False, True], ids=["modem", "external-link"])
def test_unit_verifies_clean(tmp_path, dropin):
    unit = unit_copy(tmp_path, dropin)
    r = subprocess.run(["systemd-analyze", "verify", unit.name], cwd=tmp_path,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""


def test_verify_catches_a_broken_unit(tmp_path):
    # the check above can fail: a typo in Type= is reported
    unit = unit_copy(tmp_path)
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notfiy"))
    r = subprocess.run(["systemd-analyze", "verify", unit.name], cwd=tmp_path,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 or r.stderr


def test_unit_promises():
    text = UNIT.read_text()
    for line in ("Type=notify", "User=edgemail", "SupplementaryGroups=dialout dip",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE", "WatchdogSec=",
                 "StateDirectory=edgemail", "RuntimeDirectory=edgemail", "ProtectSystem=strict",
                 "PrivateTmp=yes", "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK"):
        assert line in text, line
    ext = (ROOT / "systemd" / "edgemail.service.d" / "external-link.conf").read_text()
    assert "NoNewPrivileges=yes" in ext and "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n" in ext


def test_security_report_offline(tmp_path):
    unit = unit_copy(tmp_path)
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", unit.name],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "Overall exposure level" in r.stdout, r.stdout + r.stderr
    level = float(r.stdout.split("Overall exposure level for edgemail.service:")[1].split()[0])
    assert level < 5.0, r.stdout[-400:]


def _fake_root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nmail:x:8:\n")
    return tmp_path


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers missing")
def test_sysusers_creates_user_in_dialout_and_dip(tmp_path):
    root = _fake_root(tmp_path)
    r = subprocess.run(["systemd-sysusers", "--root", str(root), str(ROOT / "systemd" / "edgemail.sysusers.conf")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    passwd = (root / "etc" / "passwd").read_text()
    group = (root / "etc" / "group").read_text()
    assert "\nedgemail:" in passwd and "nologin" in passwd
    members = {line.split(":")[0]: line.split(":")[3] for line in group.splitlines()}
    assert "edgemail" in members["dialout"] and "edgemail" in members["dip"]


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="systemd-tmpfiles missing")
def test_tmpfiles_creates_spool_and_maildrop(tmp_path):
    root = _fake_root(tmp_path)
    subprocess.run(["systemd-sysusers", "--root", str(root), str(ROOT / "systemd" / "edgemail.sysusers.conf")],
                   check=True, capture_output=True, timeout=30)
    r = subprocess.run(["systemd-tmpfiles", "--create", "--root", str(root),
                        str(ROOT / "systemd" / "edgemail.tmpfiles.conf")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    drop = root / "var" / "spool" / "edgemail" / "maildrop"
    assert oct(drop.stat().st_mode & 0o7777) == "0o1733"
    assert oct((root / "var" / "spool" / "edgemail").stat().st_mode & 0o777) == "0o751"   # others may pass, not list
