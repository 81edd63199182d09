"""The Debian package, installed into a clean Debian 12 root as an admin would (issue 13 §1).

`make test` (as root) prepares the root once with debootstrap (.cache/debroot-bookworm) and
the dependencies' wheels (.cache/wheels); this test builds the .deb from the tree without the
network, installs it into a throw-away overlay of that root (chroot), and checks what Debian
expects of an MTA: the programs and the unit where they belong, the user and its folders,
`edgemail config check`, `sendmail -t` and `sendmail -bp` (the maildrop listed with no daemon)
working, edited conffiles kept on reinstall, and
after `dpkg --purge` nothing of the package left but its system user (Debian policy 9.2).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgemail.smtpd.credentials import hash_password

ROOT = Path(__file__).resolve().parents[2]
DEBROOT = ROOT / ".cache" / "debroot-bookworm"
WHEELS = ROOT / ".cache" / "wheels"
#: what a package run changes in a root without being the package's (dpkg's own records, logs, caches)
NOT_OURS = ("var/lib/dpkg/", "var/log/", "var/cache/", "etc/ld.so.cache", "tmp/", "run/", "proc/", "dev/",
            "root/", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/subuid", "etc/subgid",
            "var/lib/systemd/deb-systemd-helper-", "etc/systemd/system/multi-user.target.wants/edgemail.service",
            "var/lib/systemd/", "var/lib/ucf/")

pytestmark = [pytest.mark.root, pytest.mark.slow]


def run(*cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if not (WHEELS / ".done").exists():
        pytest.skip("no wheels in .cache/wheels (make test prepares them)")
    out = tmp_path_factory.mktemp("deb")
    r = run(sys.executable, str(ROOT / "packaging/deb/build.py"), "--out", str(out), "--wheels", str(WHEELS))
    return Path(r.stdout.strip())


@pytest.fixture
def chroot(tmp_path):
    """A writable overlay of the cached Debian 12 root, mounted for one test and always removed."""
    if not (DEBROOT / ".done").exists():
        pytest.skip("no Debian 12 root in .cache (make test makes it with debootstrap, as root)")
    upper, work, merged = tmp_path / "upper", tmp_path / "work", tmp_path / "root"
    for d in (upper, work, merged):
        d.mkdir()
    run("mount", "-t", "overlay", "overlay", "-o", f"lowerdir={DEBROOT},upperdir={upper},workdir={work}",
        str(merged))
    try:
        run("mount", "-t", "proc", "proc", str(merged / "proc"))
        try:
            yield merged
        finally:
            run("umount", str(merged / "proc"), check=False)
    finally:
        run("umount", str(merged), check=False)


def inside(root: Path, *cmd, check=True, **kw):
    return run("chroot", str(root), *cmd, check=check, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                              "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"},
               **kw)


def files(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            path = os.path.normpath(os.path.join(rel, name))
            if not path.startswith(NOT_OURS) and path + "/" not in NOT_OURS:
                out.add(path)
    return out


def test_the_control_fields_make_it_an_mta(deb):
    fields = run("dpkg-deb", "-f", str(deb)).stdout
    for line in ("Architecture: all", "Provides: mail-transport-agent", "Conflicts: mail-transport-agent",
                 "Replaces: mail-transport-agent", "Section: mail"):
        assert line in fields, fields
    conffiles = run("dpkg-deb", "-I", str(deb), "conffiles").stdout.split()
    assert sorted(conffiles) == ["/etc/edgemail/aliases", "/etc/edgemail/dial.policy", "/etc/edgemail/edgemail.toml",
                                 "/etc/ppp/ip-down.d/edgemail", "/etc/ppp/ip-up.d/edgemail",
                                 "/etc/ppp/peers/edgemail"]
    listing = run("dpkg-deb", "-c", str(deb)).stdout
    for path in ("./usr/sbin/sendmail", "./usr/bin/mailq", "./usr/bin/newaliases", "./usr/bin/edgemail",
                 "./lib/systemd/system/edgemail.service", "./usr/lib/sysusers.d/edgemail.conf",
                 "./usr/lib/tmpfiles.d/edgemail.conf", "./etc/edgemail/edgemail.toml",
                 "./etc/ppp/ip-up.d/edgemail", "./usr/lib/edgemail/python/edgemail/__init__.py"):
        assert f" {path}\n" in listing + "\n", path
    assert ".so\n" not in listing and "/demo/" not in listing


def test_install_check_reinstall_purge(deb, chroot):
    before = files(chroot)
    shutil.copy(deb, chroot / "tmp" / deb.name)
    inside(chroot, "dpkg", "-i", f"/tmp/{deb.name}")

    # the user, its groups, and the folders the daemon needs
    ident = inside(chroot, "id", "edgemail").stdout
    assert "(dialout)" in ident and "(dip)" in ident and "(mail)" in ident, ident
    spool = inside(chroot, "stat", "-c", "%U:%G %a", "/var/spool/edgemail", "/var/spool/edgemail/maildrop",
                   "/etc/edgemail", "/etc/edgemail/edgemail.toml", "/etc/edgemail/dial.policy").stdout.split("\n")
    assert spool[:5] == ["edgemail:edgemail 751", "edgemail:edgemail 1733", "root:root 755",
                         "root:root 644", "root:root 644"], spool

    check = inside(chroot, "edgemail", "config", "check", "/etc/edgemail/edgemail.toml")
    assert 'DeliveryMode = "deferred"' in check.stdout

    # a local user submits while the daemon is down: the message waits in maildrop/
    msg = "From: root\nTo: postmaster\nSubject: installed\n\nhello\n"
    sub = inside(chroot, "sendmail", "-t", "-i", input=msg, check=False)
    assert sub.returncode == 0, sub.stderr
    assert os.listdir(chroot / "var/spool/edgemail/maildrop"), "nothing in maildrop/"
    # no daemon runs in the root: sendmail -bp lists the maildrop from disk, read-only
    listing = inside(chroot, "sendmail", "-bp")
    assert "the daemon is not running" in listing.stderr, listing.stderr
    drops = listing.stdout.split("Queue status...")[0]
    assert "/var/spool/edgemail/maildrop (1 request)" in drops and "<postmaster@" in drops, listing.stdout
    assert "Subject" not in listing.stdout

    # an edited conffile survives a reinstall
    toml = chroot / "etc/edgemail/edgemail.toml"
    toml.write_text(toml.read_text() + "\n# edited by the admin\n")
    inside(chroot, "dpkg", "--force-confold", "-i", f"/tmp/{deb.name}")
    assert toml.read_text().endswith("# edited by the admin\n")
    assert list((chroot / "usr/lib/edgemail/python/edgemail").glob("__pycache__/*.pyc")), "not byte-compiled"

    inside(chroot, "dpkg", "--purge", "edgemail")
    (chroot / "tmp" / deb.name).unlink()
    left = files(chroot) - before
    assert not left, f"left after purge: {sorted(left)[:20]}"
    assert "edgemail" in (chroot / "etc/passwd").read_text()     # the system user stays (policy 9.2)


AS_NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--")
#: the daemon in the root: the shipped unit's user (RunAsUser, started as root as procd/sysvinit would),
#: one loopback listener, no link, the shipped aliases replaced by none (root's mail stays root's)
TEST_CONFIG = """hostname = "gw.edge.example"
local_domains = ["edge.example"]
DeliveryMode = "deferred"
RunAsUser = "edgemail"
[spool]
directory = "/var/spool/edgemail"
[control]
socket = "/run/edgemail/control.sock"
[[listen]]
name = "lo"
address = "127.0.0.1"
port = 2525
tls_cert = "/etc/edgemail/tls/cert.pem"
tls_key = "/etc/edgemail/tls/key.pem"
[routes]
"edge.example" = "local"
[local]
maildir = "/var/mail/%u/Maildir"
[link]
mode = "none"
"""


def _wait(pred, what: str, log: Path, timeout: float = 60.0):
    import time
    end = time.monotonic() + timeout
    while not (got := pred()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return got


def test_an_ordinary_user_submits_and_lists_and_root_gets_local_mail(deb, chroot, tmp_path):
    """Issue 13 QA: nobody's `sendmail -t` and `mailq` (the config is world-readable, the secrets
    are not in it); the daemon, as user edgemail in group mail, delivers to /var/mail/root."""
    shutil.copy(deb, chroot / "tmp" / deb.name)
    inside(chroot, "dpkg", "-i", f"/tmp/{deb.name}")
    secret = chroot / "etc/edgemail/smarthost.auth"
    secret.write_text("customer secret\n")
    os.chown(secret, 0, int(inside(chroot, "getent", "group", "edgemail").stdout.split(":")[2]))
    secret.chmod(0o640)

    msg = "From: nobody\nTo: root@edge.example\nSubject: from a user\n\nhello root\n"
    sub = inside(chroot, *AS_NOBODY, "sendmail", "-t", "-i", input=msg, check=False)
    assert sub.returncode == 0, sub.stderr
    assert "message left in the maildrop" in sub.stderr, sub.stderr
    assert len(os.listdir(chroot / "var/spool/edgemail/maildrop")) == 1
    check = inside(chroot, *AS_NOBODY, "edgemail", "config", "check", check=False)
    assert check.returncode == 0, check.stderr        # the secret is not readable: said, not an error
    assert "SmartHostAuthFile: warning: not checked: uid 65534 may not read it" in check.stderr, check.stderr
    secret.chmod(0o644)
    check = inside(chroot, "edgemail", "config", "check", check=False)
    assert ("/etc/edgemail/smarthost.auth: SmartHostAuthFile: mode 0644 lets other users read it" in check.stderr
            and check.returncode == 78), check.stderr
    secret.chmod(0o640)
    key = chroot / "etc/edgemail/smtpd.passwd"
    key.write_text(f"alice:{hash_password('a secret', log2n=4)}\n")      # a good line: its mode is the point
    key.chmod(0o644)
    (chroot / "etc/edgemail/edgemail.toml").write_text((chroot / "etc/edgemail/edgemail.toml").read_text().replace(
        '# auth_file = "/etc/edgemail/smtpd.passwd"', 'auth_file = "/etc/edgemail/smtpd.passwd"'))
    check = inside(chroot, "edgemail", "config", "check")
    assert ("/etc/edgemail/smtpd.passwd: smtpd.auth_file: warning: every local user may read it (mode 0644): "
            "chgrp edgemail /etc/edgemail/smtpd.passwd; chmod 0640 /etc/edgemail/smtpd.passwd") in check.stderr

    (chroot / "etc/edgemail/test.toml").write_text(TEST_CONFIG)
    tls = chroot / "etc/edgemail/tls"
    tls.mkdir()
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=gw.edge.example",
        "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem"))
    os.chown(tls / "key.pem", 0, os.stat(secret).st_gid)
    (tls / "key.pem").chmod(0o640)             # the daemon's group reads it; nobody's sendmail loads the config
    log = tmp_path / "daemon.log"
    with open(log, "w") as out:
        daemon = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up 2>/dev/null || true; exec "
                                   f"chroot {chroot} /usr/bin/edgemail run -c /etc/edgemail/test.toml"],
                                  stdout=out, stderr=subprocess.STDOUT, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    try:
        mailbox = chroot / "var/mail/root/Maildir/new"
        got = _wait(lambda: mailbox.is_dir() and os.listdir(mailbox), "the message in /var/mail/root", log)
        assert "from=<nobody@edge.example>" in log.read_text() and "imported from maildrop/" in log.read_text()
        text = (mailbox / got[0]).read_text()
        assert "hello root" in text and "Received: (from nobody@localhost)" in text, text
        owner = inside(chroot, "stat", "-c", "%U:%G", "/var/mail/root").stdout.strip()
        assert owner == "edgemail:mail", owner
        env = {"EDGEMAIL_CONFIG": "/etc/edgemail/test.toml"}
        second = inside(chroot, "env", *(f"{k}={v}" for k, v in env.items()), *AS_NOBODY, "sendmail", "root",
                        input="Subject: two\n\nagain\n", check=False)
        assert second.returncode == 0 and "maildrop" not in second.stderr, second.stderr
        listing = inside(chroot, "env", *(f"{k}={v}" for k, v in env.items()), *AS_NOBODY, "mailq", check=False)
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.startswith(("Mail queue is empty", "\t\t/var/spool/edgemail")), listing.stdout
        _wait(lambda: len(os.listdir(mailbox)) == 2, "the second message in /var/mail/root", log)
        assert "stat=Sent" in log.read_text() or "status=sent" in log.read_text(), log.read_text()[-2000:]
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
