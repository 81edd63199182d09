"""An ordinary local user (nobody, via setpriv) against the daemon's control
socket, as on an installed router: sendmail queues at once (not through the
maildrop), mailq lists, and what needs an administrator is refused by name;
PrivacyOptions restrictmailq / restrictqrun close the listing and queue runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from daemon_harness import BIN, control, start

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play another user")]

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


def _nobody_can_run_python() -> str | None:
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) missing"
    r = subprocess.run([*AS_NOBODY, str(BIN / "python"), "-c", "import edgemail"],
                       capture_output=True, timeout=30)
    return None if r.returncode == 0 else f"nobody cannot run the virtualenv: {r.stderr.decode()[-200:]}"


@pytest.fixture
def shared_dir():
    """A directory every user may pass through (pytest's tmp_path is 0700)."""
    why = _nobody_can_run_python()
    if why:
        pytest.skip(why)
    d = Path(tempfile.mkdtemp(prefix="edgemail-users-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def as_nobody(daemon, program: str, *args: str, input: bytes | None = None):
    daemon.config.chmod(0o644)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EDGEMAIL_CONFIG": str(daemon.config)}
    return subprocess.run([*AS_NOBODY, str(BIN / program), *args], input=input,
                          capture_output=True, env=env, timeout=30)


MESSAGE = b"From: nobody@edge.example\nTo: anna@far.example\nSubject: from a user\n\nhi\n"


def test_an_ordinary_user_submits_lists_and_is_refused_the_rest(shared_dir):
    d = start(shared_dir)
    try:
        r = as_nobody(d, "sendmail", "-t", input=MESSAGE)
        assert r.returncode == 0, r.stderr
        assert "maildrop" not in r.stderr.decode()                  # through the socket
        listing = as_nobody(d, "mailq")
        assert listing.returncode == 0, listing.stderr
        text = listing.stdout.decode()
        assert "<nobody@edge.example>" in text and "anna@far.example" in text
        assert os.listdir(shared_dir / "spool" / "maildrop") == []
        assert "relay=localhost (uid 65534)" in d.log.read_text()
        qid = text.split("\n")[2].split()[0].rstrip("*!")
        for argv in (["edgemail", "reload"], ["edgemail", "queue", "show", qid]):
            r = as_nobody(d, *argv)
            assert r.returncode == 65, (argv, r.stdout, r.stderr)
            assert "permission denied (uid 65534)" in r.stderr.decode()
        assert control(d).request("queue_show", qid=qid)["qid"] == qid   # root may
    finally:
        d.kill()


def test_privacy_options_restrict_the_listing_and_queue_runs(shared_dir):
    d = start(shared_dir, {"PrivacyOptions": ["authwarnings", "restrictmailq", "restrictqrun"]})
    try:
        for argv in (["mailq"], ["sendmail", "-q"]):
            r = as_nobody(d, *argv)
            assert r.returncode == 65 and "permission denied" in r.stderr.decode(), (argv, r.stderr)
        r = as_nobody(d, "sendmail", "-t", input=MESSAGE)          # submitting stays open
        assert r.returncode == 0, r.stderr
    finally:
        d.kill()


def test_restrictexpand_hides_alias_expansions_from_an_ordinary_user(shared_dir):
    aliases = shared_dir / "aliases"
    aliases.write_text("root: admin\n")
    cfg = shared_dir / "c.toml"
    cfg.write_text(f'local_domains = ["x.example"]\nPrivacyOptions = "restrictexpand"\n[local]\n'
                   f'users = ["admin"]\naliases = "{aliases}"\n[spool]\ndirectory = "{shared_dir}/spool"\n')
    for path in (aliases, cfg):
        path.chmod(0o644)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EDGEMAIL_CONFIG": str(cfg)}
    user = subprocess.run([*AS_NOBODY, str(BIN / "sendmail"), "-bv", "root"], capture_output=True, env=env, timeout=30)
    assert (user.returncode, user.stdout) == (0, b"root... deliverable\n"), user.stderr
    root = subprocess.run([str(BIN / "sendmail"), "-bv", "root"], capture_output=True, env=env, timeout=30)
    assert root.stdout.startswith(b"admin@x.example... deliverable: mailer local"), root.stdout
