"""`edgemail config check` checks every file the config names with the daemon's own
parsers (issue 17 §3): what it passes the daemon starts with, what the daemon refuses it
names, every error as FILE:LINE.  The real console script and the real daemon."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from daemon_harness import BIN, ROOT, start, write_config

pytestmark = pytest.mark.timeout(90)

BAD_ALIASES = """\
# the admin's aliases
postmaster: root
root: admin
procmail: "|/usr/bin/procmail -d kim"
log:
  /var/log/mail-copy
lists: :include:no-such.list
root: someone-else
ok: kim
"""
BAD_POLICY_LINES = "daily 25:00 dial\nset idle_hangup = soon\n"


def check(cfg) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGEMAIL_CONFIG"}
    return subprocess.run([str(BIN / "edgemail"), "config", "check", str(cfg)], capture_output=True, text=True,
                          timeout=30, env=env)


def daemon_exit(cfg) -> tuple[int, str]:
    """`edgemail run` on CFG, expected to refuse: its exit code and what it said."""
    r = subprocess.run([sys.executable, "-m", "edgemail", "run", "-c", str(cfg)], capture_output=True,
                       text=True, timeout=30, cwd=str(ROOT))
    return r.returncode, r.stderr


def _configs(tmp_path):
    aliases, policy = tmp_path / "aliases", tmp_path / "dial.policy"
    aliases.write_text(BAD_ALIASES)
    good_policy = (ROOT / "etc" / "dial.policy").read_text()
    policy.write_text(good_policy + BAD_POLICY_LINES)
    cfg = write_config(tmp_path, {"local": {"aliases": str(aliases)},
                                  "link": {"mode": "external", "policy": str(policy),
                                           "up_command": ["/bin/true"], "down_command": ["/bin/true"]}})
    return cfg, aliases, policy, good_policy


def test_every_bad_line_of_every_named_file_is_named_and_the_daemon_agrees(tmp_path):
    cfg, aliases, policy, good_policy = _configs(tmp_path)
    r = check(cfg)
    assert r.returncode == 78, (r.stdout, r.stderr)
    assert r.stdout == ""                                  # no effective config for a config that fails
    policy_lines = len(good_policy.splitlines())
    for want in (f"{aliases}:4: '|/usr/bin/procmail -d kim': program targets are refused",
                 f"{aliases}:5: '/var/log/mail-copy': file targets are refused",
                 f"{aliases}:7: cannot read {tmp_path}/no-such.list",
                 f"{aliases}:8: duplicate alias 'root' (first on line 3)",
                 f"{policy}:{policy_lines + 1}: ", f"{policy}:{policy_lines + 2}: "):
        assert want in r.stderr, (want, r.stderr)
    assert f"{aliases}:9" not in r.stderr and f"{aliases}:2" not in r.stderr

    code, said = daemon_exit(cfg)                          # the daemon refuses what the check refused
    assert code == 78 and f"{policy}:{policy_lines + 1}" in said, said

    policy.write_text(good_policy)                         # the policy mended: the aliases still stop both
    assert check(cfg).returncode == 78
    code, said = daemon_exit(cfg)
    assert code == 78 and f"{aliases}:4:" in said, said

    aliases.write_text("postmaster: root\nroot: kim\n")
    r = check(cfg)
    assert r.returncode == 0, r.stderr
    assert 'DeliveryMode = "deferred"' in r.stdout


def test_what_the_check_passes_the_daemon_starts_with(tmp_path):
    aliases = tmp_path / "aliases"
    aliases.write_text("postmaster: root\nroot: kim\nstaff: :include:staff.list\n")
    (tmp_path / "staff.list").write_text("# the staff\nkim, lee\n")
    cfg = write_config(tmp_path, {"local": {"aliases": str(aliases)}})
    r = check(cfg)
    assert r.returncode == 0, r.stderr
    d = start(tmp_path, {"local": {"aliases": str(aliases)}})
    try:
        assert d.proc.poll() is None
    finally:
        d.kill()


def test_smart_host_files_are_read_as_delivery_reads_them(tmp_path):
    auth, ca = tmp_path / "smarthost.auth", tmp_path / "ca.pem"
    auth.write_text("customer secret\n")
    auth.chmod(0o644)                                      # others may read the password
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    cfg = write_config(tmp_path, {"SmartHostAuthFile": str(auth), "SmartHostCAFile": str(ca)})
    r = check(cfg)
    assert r.returncode == 78, r.stderr
    assert f"{auth}: SmartHostAuthFile: mode 0644 lets other users read it" in r.stderr, r.stderr
    assert f"{ca}: SmartHostCAFile: not a usable CA file" in r.stderr, r.stderr
    assert "customer" not in r.stderr and "secret" not in r.stderr            # never the credentials

    auth.chmod(0o600)
    auth.write_text("only-a-user\n")
    ca.unlink()
    r = check(cfg)
    assert r.returncode == 78
    assert f"{auth}:1: SmartHostAuthFile: expected one line \"user password\"" in r.stderr, r.stderr
    assert "only-a-user" not in r.stderr

    auth.write_text("customer secret\n")
    cfg = write_config(tmp_path, {"SmartHostAuthFile": str(tmp_path / "not-yet.auth")})
    r = check(cfg)                                         # a file still to be made: a warning, exit 0
    assert r.returncode == 0, r.stderr
    assert f"{tmp_path}/not-yet.auth: SmartHostAuthFile: warning: does not exist (yet)" in r.stderr


def test_users_keys_checked_and_the_daemon_agrees(tmp_path):
    """Issue 17 §4: local.users_file read with the daemon's parser (FILE:LINE),
    local.create_mailboxes a boolean; the daemon refuses the same file."""
    users = tmp_path / "users"
    users.write_text("# staff\nkim\nbob smith\n")
    cfg = write_config(tmp_path, {"local": {"users_file": str(users)}})
    r = check(cfg)
    assert r.returncode == 78, (r.stdout, r.stderr)
    assert f"{users}:3: 'bob smith' is not a user name" in r.stderr, r.stderr
    code, said = daemon_exit(cfg)
    assert code == 78 and f"{users}:3: 'bob smith' is not a user name" in said, said
    users.write_text("kim\n")
    assert check(cfg).returncode == 0
    bad = write_config(tmp_path, {"local": {"create_mailboxes": "yes"}})
    r = check(bad)
    assert r.returncode == 78 and "local.create_mailboxes: expected true or false, got 'yes'" in r.stderr, r.stderr


def test_alias_ending_at_an_unknown_user_is_a_warning(tmp_path):
    aliases = tmp_path / "aliases"
    aliases.write_text("postmaster: root\nroot: admin\noffice: alice, bob\n")
    cfg = write_config(tmp_path, {"local": {"aliases": str(aliases), "create_mailboxes": False,
                                            "users": ["alice", "bob"], "system_users": False}})
    r = check(cfg)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        f"{aliases}: local.aliases: warning: {name} -> admin@edge.example: not a local user "
        f"([local] users, users_file, passwd): RCPT TO:<{name}> is refused 550 5.1.1"
        for name in ("postmaster", "root")]


def test_the_smtpd_credentials_file_is_read_as_the_daemon_reads_it(tmp_path):
    """[smtpd] auth_file with a line that is no scrypt hash: the daemon refuses
    to start on it, so the check must not pass it (it did: rc 0)."""
    from edgemail.smtpd.credentials import hash_password
    passwd = tmp_path / "smtpd.passwd"
    passwd.write_text(f"alice:{hash_password('pw', log2n=4)}\n# a comment\nbob:plaintext-password\n")
    cfg = write_config(tmp_path, {"smtpd": {"auth_file": str(passwd)}})
    r = check(cfg)
    assert r.returncode == 78, (r.stdout, r.stderr)
    assert f"{passwd}:3: user 'bob': expected a hash" in r.stderr, r.stderr
    assert "plaintext-password" not in r.stderr               # never the secret itself
    code, said = daemon_exit(cfg)
    assert code == 78 and f"{passwd}:3: user 'bob'" in said, said
    passwd.write_text(f"alice:{hash_password('pw', log2n=4)}\nbob:{hash_password('pw2', log2n=4)}\n")
    r = check(cfg)
    assert r.returncode == 0, r.stderr


def test_errors_in_the_config_itself_do_not_hide_those_of_the_files_it_names(tmp_path):
    """One run names every error it can: with a bad value in edgemail.toml
    the aliases and credentials files were not read at all (one error
    printed, the next run found the rest)."""
    aliases, passwd = tmp_path / "aliases", tmp_path / "smtpd.passwd"
    aliases.write_text("postmaster: root\nroot: admin\nbad line without colon\n")
    passwd.write_text("bob:plaintext-password\n")
    cfg = write_config(tmp_path, {"MinQueueAge": "soon", "local": {"aliases": str(aliases)},
                                  "smtpd": {"auth_file": str(passwd)}})
    r = check(cfg)
    assert r.returncode == 78 and r.stdout == "", (r.stdout, r.stderr)
    assert "MinQueueAge: expected a duration" in r.stderr, r.stderr
    assert f"{aliases}:3: expected \"name: target, ...\"" in r.stderr, r.stderr
    assert f"{passwd}:1: user 'bob': expected a hash" in r.stderr, r.stderr


def test_the_odmr_secret_file_is_read_as_the_atrn_call_reads_it(tmp_path):
    """[link] odmr's secret_file: read only at call time by the daemon, so the
    check is the one place a bad one shows before a call fails (it passed: rc 0)."""
    secret = tmp_path / "odmr.secret"
    secret.write_text("hunter2-odmr\n")
    secret.chmod(0o644)                                    # others may read the password
    odmr = {"host": "192.0.2.25", "user": "edge", "secret_file": str(secret), "domains": ["edge.example"]}
    policy = tmp_path / "dial.policy"
    policy.write_text((ROOT / "etc" / "dial.policy").read_text())
    link = {"mode": "external", "up_command": ["/bin/true"], "down_command": ["/bin/true"], "etrn_host": "",
            "policy": str(policy), "odmr": odmr}
    cfg = write_config(tmp_path, {"link": link})
    r = check(cfg)
    assert r.returncode == 78, (r.stdout, r.stderr)
    assert f"{secret}: link.odmr.secret_file: mode 0644 lets other users read it" in r.stderr, r.stderr
    secret.chmod(0o600)
    secret.write_text("# only a comment\n")
    r = check(cfg)
    assert r.returncode == 78 and f"{secret}: link.odmr.secret_file: empty; expected the password" in r.stderr, \
        r.stderr
    secret.write_text("hunter2-odmr\n")
    r = check(cfg)
    assert r.returncode == 0, r.stderr
    assert "hunter2" not in r.stdout + r.stderr                 # never the secret itself
    secret.unlink()
    r = check(cfg)                                         # a file still to be made: a warning, exit 0
    assert r.returncode == 0, r.stderr
    assert f"{secret}: link.odmr.secret_file: warning: does not exist (yet)" in r.stderr, r.stderr
