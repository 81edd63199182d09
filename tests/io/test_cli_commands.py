"""The console scripts as an administrator meets them (issue 13 §3-§4): --help
on each, global options before or after the command, sendmail's -c/-C,
`policy check`, `link explain --offline`, and `edgemail import` on the seed
documents' configurations, checked with `edgemail config check`.  Real
subprocesses, no daemon (tests/system has the flows against one)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from edgemail.cli.admin import build_parser

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
FIXTURES = ROOT / "tests" / "core" / "fixtures" / "sendmail"
POLICY = ROOT / "etc" / "dial.policy"


def run(program: str, *args: str, cwd=None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "EDGEMAIL_CONFIG"}
    return subprocess.run([str(BIN / program), *args], capture_output=True, text=stdin is None, timeout=30,
                          cwd=cwd, env=env, input=stdin)


@pytest.fixture
def config_down(tmp_path) -> Path:
    """A config whose daemon is not running (its control socket does not exist)."""
    cfg = tmp_path / "c.toml"
    (tmp_path / "spool" / "maildrop").mkdir(parents=True)
    cfg.write_text(f'local_domains = ["x.example"]\nhostname = "gw.x.example"\n[spool]\n'
                   f'directory = "{tmp_path}/spool"\n[control]\nsocket = "{tmp_path}/none.sock"\n'
                   f'[link]\npolicy = "{POLICY}"\n[local]\nusers = ["a"]\n')
    return cfg


# ---------------------------------------------------------------- --help

@pytest.mark.parametrize("program, words", [
    ("edgemail", ["config check", "policy check", "queue show", "link explain", "import", "--json"]),
    ("sendmail", ["-bp", "-bs", "-q[!]R|S|I", "-C FILE", "HoldExpensive", "Exit codes"]),
    ("mailq", ["-C FILE", "sendmail -bp"]),
    ("newaliases", ["-C FILE", "FILE:LINE"]),
    ("hoststat", ["--config", "--json"]),
    ("purgestat", ["--all", "--config"]),
])
def test_help_of_every_console_script_exits_0_and_describes(program, words):
    r = run(program, "--help")
    assert r.returncode == 0, r.stderr
    for w in words:
        assert w in r.stdout, (w, r.stdout)


def _parsers(p: argparse.ArgumentParser, path=()):
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_every_command_and_option_of_edgemail_has_a_description():
    missing = []
    for path, p in _parsers(build_parser()):
        if not p.description:
            missing.append(f"{' '.join(path)}: no description")
        missing += [f"{' '.join(path)} {a.dest}: no help" for a in p._actions if not a.help]
    assert not missing, missing


# ---------------------------------------------------------------- global options, -c and -C

@pytest.mark.parametrize("args", [
    ["-c", "{cfg}", "status"], ["status", "-c", "{cfg}"], ["status", "--config", "{cfg}", "--json"],
    ["--json", "queue", "list", "-C", "{cfg}"], ["queue", "-c", "{cfg}", "list"],
])
def test_global_options_before_or_after_the_command(config_down, args):
    r = run("edgemail", *[a.format(cfg=config_down) for a in args])
    if "list" in args:           # the queue is read from the config's spool on disk: the options were read
        assert r.returncode == 0 and f"as it stands in {config_down.parent}/spool" in r.stderr, r.stderr
    else:
        assert r.returncode == 75 and "daemon not running" in r.stderr, r.stderr   # not 64: the options were read


def test_usage_errors_exit_64_and_point_at_help():
    r = run("edgemail", "status", "--frobnicate")
    assert r.returncode == 64 and "unrecognized arguments: --frobnicate" in r.stderr
    assert "`edgemail COMMAND --help` describes one" in r.stderr
    assert run("edgemail", "run", "--json").returncode == 64


def test_mailq_and_sendmail_take_the_config_as_sendmail_does(config_down):
    for args in (["-C", str(config_down)], [f"-C{config_down}"], ["-c", "-C", str(config_down)]):
        r = run("mailq", *args)
        assert r.returncode == 0 and f"as it stands in {config_down.parent}/spool" in r.stderr, (args, r.stderr)
    r = run("mailq", "-c", str(config_down))                  # -c is HoldExpensive: no value
    assert r.returncode == 64 and "the configuration file is -C FILE" in r.stderr, r.stderr
    r = run("sendmail", "-C", str(config_down), "-bp")
    assert r.returncode == 0 and f"{config_down.parent}/spool is empty" in r.stdout, r.stderr


def test_sendmail_submission_carries_a_received_header(config_down, tmp_path):
    r = run("sendmail", "-C", str(config_down), "-t", stdin=b"To: a@x.example\nSubject: hi\n\nbody\n")
    assert r.returncode == 0, r.stderr
    (drop,) = (tmp_path / "spool" / "maildrop").iterdir()
    data = drop.read_bytes()
    assert b"Received: (from " in data and b"@localhost)\r\n\tby gw.x.example (edgemail);\r\n\t" in data


# ---------------------------------------------------------------- policy check, explain --offline

def test_policy_check_good_prints_a_summary():
    r = run("edgemail", "policy", "check", str(POLICY))
    assert r.returncode == 0, r.stderr
    assert f"{POLICY}: OK: 3 rule(s), 1 forbidden window(s), timezone Europe/Berlin" in r.stdout
    assert "budget 80 calls and 240 minutes a day" in r.stdout
    data = json.loads(run("edgemail", "policy", "check", "--json", str(POLICY)).stdout)
    assert data["timezone"] == "Europe/Berlin" and len(data["rules"]) == 3


def test_policy_check_names_every_bad_line_exit_78(tmp_path, config_down):
    bad = tmp_path / "bad.policy"
    bad.write_text("timezone Europe/Berlin\n*/15 8-25 * * mon-fri queue-run\nset idle_hangup = soon\n"
                   "0 * * * * dial\n")
    r = run("edgemail", "policy", "check", str(bad))
    assert r.returncode == 78 and r.stdout == ""
    assert r.stderr.splitlines() == [f"{bad}:2: hour: 25 out of range 0-23",
                                     f"{bad}:3: idle_hangup: 'soon': expected a duration such as 90s, 15m, 1h30m, "
                                     "5d or seconds",
                                     f"{bad}:4: action: unknown action 'dial', expected queue-run, etrn, odmr, poll"]
    assert run("edgemail", "policy", "check", "-c", str(config_down)).returncode == 0   # [link] policy
    assert run("edgemail", "policy", "check", str(tmp_path / "none")).returncode == 78


def test_link_explain_offline_needs_no_daemon(config_down):
    r = run("edgemail", "-c", str(config_down), "link", "explain", "--offline", "--at", "2024-06-03T07:50")
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(":", 1) for line in r.stdout.splitlines())
    assert "1 message(s) waiting for the link" in lines["assuming"]
    assert lines["at"].strip() == "Mon 2024-06-03 07:50 CEST"
    assert lines["next dial"].strip().startswith("Mon 2024-06-03 08:00 CEST (in 10 minutes) because rule line ")
    assert lines["next dial"].endswith("; actions etrn queue-run")
    r = run("edgemail", "link", "explain", "--offline", "--policy", str(POLICY), "--at", "2024-06-02T03:10",
            "--queued", "0", "--json")                         # Sunday, in the maintenance window
    data = json.loads(r.stdout)
    assert data["decision"]["dial"] is False and "forbidden window" in data["decision"]["reason"]
    assert data["next_dial"]["at"] == "2024-06-02T04:00:00+02:00" and data["assumed"]["queued"] == 0
    bad = run("edgemail", "link", "explain", "--offline", "--policy", str(POLICY), "--at", "soonish")
    assert bad.returncode == 64 and "--at takes a time" in bad.stderr


# ---------------------------------------------------------------- import

@pytest.mark.parametrize("source, extra", [
    ("dialup.mc", ["--crontab", "office.crontab", "--lan", "192.168.1.0/24"]),
    ("dialup.cf", ["--crontab", "dialup-etrn.crontab", "--domain", "edge.example"]),
    ("redhat.mc", ["--domain", "office.example"]),
    ("laptop-submit.mc", ["--crontab", "msp.crontab", "--domain", "laptop.example"]),
    ("irix.mc", ["--domain", "foo.com", "--queue-interval", "29m"]),
])
def test_import_of_each_seed_configuration_passes_config_check(tmp_path, source, extra):
    args = [str(FIXTURES / a) if a.endswith((".crontab",)) else a for a in extra]
    r = run("edgemail", "import", str(FIXTURES / source), *args, "--timezone", "Europe/Berlin", "-o", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert f"wrote {tmp_path}/edgemail.toml and {tmp_path}/dial.policy" in r.stdout
    assert "not carried over:" in r.stdout
    check = run("edgemail", "config", "check", str(tmp_path / "edgemail.toml"))
    aliases = tomllib.loads((tmp_path / "edgemail.toml").read_text()).get("local", {}).get("aliases", "")
    assert check.returncode == 0, check.stderr
    if aliases and not os.path.exists(aliases):   # the sendmail machine's file, not on this one: no aliases,
        assert check.stderr == (f"{aliases}: local.aliases: warning: does not exist: no aliases (sendmail too "
                                "runs without its alias file); create it, then newaliases\n"), check.stderr
        assert f"as `edgemail config check` finds them here:\n  {check.stderr}" in r.stdout, r.stdout
    assert run("edgemail", "policy", "check", str(tmp_path / "dial.policy")).returncode == 0


def test_import_never_overwrites_without_force(tmp_path):
    (tmp_path / "dial.policy").write_text("# mine\n")
    args = ["import", str(FIXTURES / "laptop-submit.mc"), "--domain", "l.example", "-o", str(tmp_path)]
    r = run("edgemail", *args)
    assert r.returncode == 73 and "nothing written (--force replaces them)" in r.stderr
    assert (tmp_path / "dial.policy").read_text() == "# mine\n" and not (tmp_path / "edgemail.toml").exists()
    r = run("edgemail", *args, "--force", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["wrote"] == [str(tmp_path / "edgemail.toml"), str(tmp_path / "dial.policy")]
    assert "queue-run" in (tmp_path / "dial.policy").read_text()
    assert oct((tmp_path / "edgemail.toml").stat().st_mode & 0o777) == "0o644"     # no secrets in it


def test_import_says_what_is_missing(tmp_path):
    r = run("edgemail", "import", str(FIXTURES / "redhat.mc"), "-o", str(tmp_path))
    assert r.returncode == 65 and "give --domain DOMAIN" in r.stderr, r.stderr
    assert not list(tmp_path.iterdir())
    r = run("edgemail", "import", str(tmp_path / "sendmail.mc"))
    assert r.returncode == 66 and "cannot read" in r.stderr
