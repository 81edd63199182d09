"""sendmail's command line and input handling (pure parts, in process), and
the console scripts by subprocess against the daemon (tests/system has the
whole-daemon flows)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgemail.cli.base import DataError, UsageError
from edgemail.cli.flags import parse_sendmail_args
from edgemail.cli.message import prepare, read_lines

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


# ---------------------------------------------------------------- flags

@pytest.mark.parametrize("argv, check", [
    (["-t", "-i"], lambda a: a.extract and a.ignore_dots),
    (["-oi", "a@x.example"], lambda a: a.ignore_dots and a.recipients == ["a@x.example"]),
    (["-ti"], lambda a: a.extract and a.ignore_dots),
    (["-f", "me@x.example"], lambda a: a.sender == "me@x.example"),
    (["-fme@x.example"], lambda a: a.sender == "me@x.example"),
    (["-r", "me@x.example"], lambda a: a.sender == "me@x.example"),
    (["-F", "Cron Daemon"], lambda a: a.full_name == "Cron Daemon"),
    (["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],       # Debian cron's exact call
     lambda a: a.full_name == "CronDaemon" and a.body == "8BITMIME" and a.recipients == ["root"]),
    (["-B", "7BIT"], lambda a: a.body == "7BIT"),
    (["-N", "success,delay"], lambda a: a.notify == {"SUCCESS", "DELAY"}),
    (["-Nnever"], lambda a: a.notify == {"NEVER"}),
    (["-R", "hdrs", "-V", "env1"], lambda a: a.ret == "HDRS" and a.envid == "env1"),
    (["-oem", "-oee", "-oep", "-odq", "-odb", "-odi", "-om", "-U", "-v", "-m", "-n"],
     lambda a: a.mode == "m" and a.recipients == []),
    (["-O", "DeliveryMode=b", "-OErrorMode=m", "-L", "tag", "-Am", "-h", "5"], lambda a: a.mode == "m"),
    (["-C", "/tmp/x.toml"], lambda a: a.config == "/tmp/x.toml"),
    (["--", "-weird@x.example"], lambda a: a.recipients == ["-weird@x.example"]),
    (["-bp"], lambda a: a.mode == "p"),
    (["-bs"], lambda a: a.mode == "s"),
    (["-bm", "a@x.example"], lambda a: a.mode == "m"),
    (["-q"], lambda a: a.mode == "q" and a.queue_filters == []),
    (["-qR@example.org", "-q!Sfoo", "-qIabc"],
     lambda a: a.queue_filters == ["R@example.org", "!Sfoo", "Iabc"]),
    (["-q15m"], lambda a: a.mode == "q" and a.queue_filters == [] and "ignored" in a.notes[0]),
    (["-c", "a@x.example"], lambda a: a.recipients == ["a@x.example"] and "HoldExpensive" in a.notes[0]),
    (["-Ac", "-q"], lambda a: a.mode == "q"),                                  # mailq -Ac, sendmail -Ac -q
    (["-t", "--help", "-Z"], lambda a: a.mode == "help"),
    # the exact argv of the programs (observed: tests/system/test_mail_programs.py)
    (["-oem", "-oi", "-B8BITMIME", "-N", "failure,delay", "-R", "hdrs", "--", "bob@x.example"],   # mutt
     lambda a: a.notify == {"FAILURE", "DELAY"} and a.ret == "HDRS" and a.recipients == ["bob@x.example"]),
    (["-f", "alice@x.example", "--", "bob@x.example", "carol@x.example"],                        # mutt
     lambda a: a.sender == "alice@x.example" and len(a.recipients) == 2),
    (["-i", "-t", "-f", "alice@x.example"], lambda a: a.extract and a.sender == "alice@x.example"),  # bsd-mailx -r
    (["-Mrlocal", "-p", "SMTP:lan-host", "-pESMTP", "-e", "m", "-T", "a@x.example"],     # sendmail's, ignored
     lambda a: a.mode == "m" and a.recipients == ["a@x.example"]),
    (["-I"], lambda a: a.mode == "i"),
    (["-oem"], lambda a: a.error_mode == "m"),
    (["-oee", "-oi"], lambda a: a.error_mode == "e" and a.ignore_dots),
    (["-O", "ErrorMode=q"], lambda a: a.error_mode == "q"),
    (["-em"], lambda a: a.error_mode == "m"),
    (["-oew"], lambda a: a.error_mode == "p"),
    ([], lambda a: a.error_mode == "p"),
    (["-odb", "-odq", "-bm", "-oQ/var/x", "-X/tmp/t", "-G", "-Am", "-U", "-V", "e1", "a@x.example"],
     lambda a: a.envid == "e1" and a.recipients == ["a@x.example"]),
], ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_flags(argv, check):
    a = parse_sendmail_args(argv)
    assert check(a), f"got {a}"


@pytest.mark.parametrize("argv, want", [
    (["-Z"], "unknown option"),
    (["-f"], "requires a value"),
    (["-Bfoo"], "-B takes"),
    (["-oex"], "ErrorMode takes"),
    (["-F", "Evil\r\nX-Injected: yes"], "-F takes a name on one line"),   # no header injection
    (["-FEvil\nBcc: x@evil.example"], "-F takes a name on one line"),
    (["-N", "never,success"], "-N takes"),
    (["-Rmaybe"], "-R takes"),
    (["-bd"], "edgemail run"),
    (["-qXfoo"], "bad queue option"),
    (["-bp", "/etc/edgemail/x.toml"], "-bp .* takes no addresses, got '/etc/edgemail/x.toml' .*-C FILE"),
    (["-bi", "root"], "-bi .* takes no addresses"),
    (["-bp", "-qRfoo"], "the listing is always the whole queue"),
], ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_bad_flags(argv, want):
    with pytest.raises(UsageError, match=want):
        parse_sendmail_args(argv)


def test_mailq_name_lists():
    assert parse_sendmail_args([], "mailq").mode == "p"
    assert parse_sendmail_args([], "newaliases").mode == "i"
    with pytest.raises(UsageError, match="takes no addresses"):
        parse_sendmail_args(["-c", "/etc/edgemail/edgemail.toml"], "mailq")


# ---------------------------------------------------------------- input hygiene

@pytest.mark.parametrize("raw, ignore_dots, want", [
    (b"a\nb\n", False, [b"a", b"b"]),
    (b"a\r\nb\r\n", False, [b"a", b"b"]),
    (b"a\rb\n", False, [b"a b"]),
    (b"a\0b\n", False, [b"ab"]),
    (b"a\n.\nb\n", False, [b"a"]),
    (b"a\n.\nb\n", True, [b"a", b".", b"b"]),
    (b"a\r\n.\r\nb", False, [b"a"]),
    (b"..x\n", False, [b".x"]),
    (b"..x\n", True, [b"..x"]),
    (b"no newline at end", False, [b"no newline at end"]),
    (b"\r.\r\n", False, [b" ."]),
], ids=["lf", "crlf", "bare-cr", "nul", "dot-ends", "dot-kept-i", "crlf-dot", "unstuff",
        "no-unstuff-i", "no-final-lf", "cr-dot-cr"])
def test_read_lines(raw, ignore_dots, want):
    assert read_lines(raw, ignore_dots=ignore_dots) == want


def _prep(raw: bytes, argv: list[str]):
    return prepare(raw, parse_sendmail_args(argv), sender="me@edge.example",
                   domain="edge.example", hostname="gw.edge.example", now=1_700_000_000)


def test_minus_t_takes_headers_strips_bcc_and_drops_cmdline():
    raw = (b"To: A <a@x.example>, b@x.example\nCc: c@x.example\nBcc: secret@x.example,\n"
           b" d@x.example\nSubject: hi\n\nbody\n")
    msg = _prep(raw, ["-t", "b@x.example"])
    assert msg.recipients == ("a@x.example", "c@x.example", "secret@x.example", "d@x.example")
    assert b"Bcc" not in msg.data and b"secret" not in msg.data
    assert b"\nSubject: hi\r\n" in msg.data and msg.data.endswith(b"\r\n\r\nbody\r\n")


def test_resent_headers_win_under_t():
    raw = b"To: a@x.example\nResent-To: r@x.example\nResent-Bcc: rb@x.example\n\nx\n"
    msg = _prep(raw, ["-t"])
    assert msg.recipients == ("r@x.example", "rb@x.example")
    assert b"Resent-Bcc" not in msg.data


def test_missing_headers_added_and_bare_names_qualified():
    msg = _prep(b"hello\n", ["-F", "Cron Daemon", "root"])
    assert msg.recipients == ("root@edge.example",)
    head, _, body = msg.data.partition(b"\r\n\r\n")
    assert body == b"hello\r\n"
    assert b"From: Cron Daemon <me@edge.example>" in head
    assert b"Date: " in head and b"Message-ID: <" in head
    assert not head.startswith(b"Received:")   # the daemon's submit op (or the maildrop path) adds it
    assert msg.msgid.endswith("@gw.edge.example")
    assert b"\n" not in msg.data.replace(b"\r\n", b"")


def test_existing_headers_kept_precedence_read():
    raw = b"From: x@y.example\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <m1@y>\nPrecedence: bulk\n\nb\n"
    msg = _prep(raw, ["a@x.example"])
    assert msg.msgid == "m1@y" and msg.precedence == -60
    assert msg.data.count(b"From:") == 1 and msg.data.count(b"Date:") == 1


@pytest.mark.parametrize("raw, argv, exc", [
    (b"Subject: x\n\nb\n", ["-t"], UsageError),
    (b"x\n", ["bad@@x"], DataError),
    (b"x\n", ["a@192.0.2.1"], DataError),
], ids=["no-recipients", "bad-address", "bare-ip-domain"])
def test_prepare_refuses(raw, argv, exc):
    with pytest.raises(exc):
        _prep(raw, argv)


@pytest.mark.parametrize("raw, field, what", [
    (b"To: a@x.example\rBcc: evil@evil.example\nSubject: x\n\nb\n", "To", "bare CR"),
    (b"Cc: a@x.example,\r evil@evil.example\r\n\r\nb\r\n", "Cc", "bare CR"),
    (b"To: a@x.example,\n evil@evil.example\r\nSubject: x\r\n\r\nb\r\n", "To", "bare LF"),
    (b"Subject: x\nBcc: evil@evil.example\r\nTo: a@x.example\r\n\r\nb\r\n", "Bcc", "bare LF"),
    (b"To: a@x.example\r\nResent-To: r@x.example\n\r\nb\r\n", "Resent-To", "bare LF"),
], ids=["cr-in-to", "cr-in-cc-fold", "lf-in-crlf-to", "lf-starts-bcc", "lf-ends-resent-to"])
def test_minus_t_refuses_recipient_fields_with_bare_cr_or_lf(raw, field, what):
    """Issue 16 §8: the header's text never becomes extra recipients; DataError is EX_DATAERR."""
    with pytest.raises(DataError, match=f"^{field}: header holds a {what}: not taking recipients"):
        _prep(raw, ["-t"])


@pytest.mark.parametrize("raw, argv, want", [
    (b"To: a@x.example\nSubject: x\n\nbody\r\n", ["-t"], ("a@x.example",)),      # LF header, CR LF body
    (b"To: a@x.example\r\nSubject: x\ry\r\n\r\nb\rc\nd\n", ["-t"], ("a@x.example",)),  # not a recipient field
    (b"To: a@x.example\rBcc: evil@evil.example\n\nb\n", ["b@x.example"], ("b@x.example",)),  # no -t
], ids=["lf-header", "cr-in-subject-and-body", "without-t"])
def test_minus_t_bare_line_ends_elsewhere_are_only_hygiene(raw, argv, want):
    assert _prep(raw, argv).recipients == want


@pytest.mark.parametrize("field, want", [
    (b"To: bob", b"To: bob@edge.example"),                              # bsd-mailx: mail -s hi bob
    (b"To: bob, carol@x.example", b"To: bob@edge.example, carol@x.example"),
    (b'Cc: "Bob B." <bob>,\r\n  carol (comment)', b'Cc: "Bob B." <bob@edge.example>, comment <carol@edge.example>'),
    (b"From: root", b"From: root@edge.example"),
    (b"Reply-To: Al <al>", b"Reply-To: Al <al@edge.example>"),
    (b"To: a@x.example, B <b@x.example>", b"To: a@x.example, B <b@x.example>"),  # qualified: as it came
    (b"To: undisclosed-recipients:;", b"To: undisclosed-recipients:;"),       # a group: as it came
    (b"Subject: bob", b"Subject: bob"),
    (b"To: \xff bob", b"To: \xff bob"),                                      # not UTF-8: as it came
], ids=["one", "mixed", "names-comments-folded", "from", "reply-to", "qualified", "group", "subject",
        "not-utf8"])
def test_unqualified_header_addresses_get_the_local_domain(field, want):
    """As sendmail rewrites a submission's headers: bsd-mailx writes `To: bob`, and
    whoever replies to all from outside needs a domain."""
    msg = _prep(field + b"\nX-Other: 1\n\nbody\n", ["-i", "someone@edge.example"])
    assert msg.data.split(b"\r\nX-Other: 1\r\n")[0] == want


def test_long_qualified_list_is_folded():
    names = b", ".join(b"user%d" % i for i in range(8))
    head = _prep(b"To: " + names + b"\n\nb\n", ["-t"]).data.partition(b"\r\n\r\n")[0]
    assert b"To: user0@edge.example,\r\n\tuser1@edge.example," in head
    assert max(len(line) for line in head.split(b"\r\n")) < 78


@pytest.mark.parametrize("argv, want", [
    (["Bob <bob@x.example>"], ("bob@x.example",)),
    (["<bob@x.example>", "carol"], ("bob@x.example", "carol@edge.example")),
    (["bob@x.example,carol@x.example"], ("bob@x.example", "carol@x.example")),   # Debian cron's MAILTO
    (['"Smith, J" <j@x.example>, k@x.example'], ("j@x.example", "k@x.example")),
    (['"a,b"@x.example'], ('"a,b"@x.example',)),
], ids=["display-name", "angle-and-bare", "comma-list", "comma-in-name", "comma-in-quoted-local"])
def test_command_line_recipients_as_sendmail_takes_them(argv, want):
    assert _prep(b"Subject: x\n\nb\n", ["-i", *argv]).recipients == want


# ---------------------------------------------------------------- console scripts

def _run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=30, **kw)


def test_edgemail_usage_error_exit_64():
    r = _run([str(BIN / "edgemail"), "queue", "frobnicate"])
    assert r.returncode == 64 and b"invalid choice" in r.stderr
    assert _run([str(BIN / "edgemail"), "--help"]).returncode == 0


def test_sendmail_usage_error_exit_64():
    r = _run([str(BIN / "sendmail"), "-Z"])
    assert r.returncode == 64, r.stderr
    assert b"unknown option" in r.stderr


def test_sendmail_bad_config_exit_78_the_message_kept_in_dead_letter(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('local_domains = ["x.example"]\nDeliveryMode = "background"\n')
    env = {**os.environ, "HOME": str(tmp_path)}
    r = _run([str(BIN / "sendmail"), "-C", str(bad), "a@x.example"], input=b"Subject: keep\n\nx\n", env=env)
    assert r.returncode == 78
    assert f"{bad}:2: DeliveryMode".encode() in r.stderr
    dead = tmp_path / "dead.letter"
    assert f"the message is not queued: saved in {dead}".encode() in r.stderr, r.stderr
    text = dead.read_text()
    assert text.startswith("From ") and text.endswith("Subject: keep\n\nx\n\n"), text
    assert oct(dead.stat().st_mode & 0o777) == "0o600"


def test_config_check_good_prints_effective_config():
    r = _run([str(BIN / "edgemail"), "config", "check", str(ROOT / "etc" / "edgemail.toml")])
    assert r.returncode == 0, r.stderr
    assert b'DeliveryMode = "deferred"' in r.stdout and b"[[listen]]" in r.stdout


def test_config_check_bad_exit_78_names_file_line_key(tmp_path):
    text = (ROOT / "etc" / "edgemail.toml").read_text().replace('MinFreeBlocks = 100', 'MinFreeBlocks = "lots"')
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    line = next(n for n, s in enumerate(text.splitlines(), 1) if s.startswith("MinFreeBlocks"))
    r = _run([str(BIN / "edgemail"), "config", "check", str(bad)])
    assert r.returncode == 78
    assert f"{bad}:{line}: MinFreeBlocks:".encode() in r.stderr, r.stderr


def test_edgemail_queue_list_daemon_down(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'local_domains = ["x.example"]\n[control]\nsocket = "{tmp_path}/none.sock"\n'
                   f'[spool]\ndirectory = "{tmp_path}/spool"\n')
    r = _run([sys.executable, "-m", "edgemail", "-c", str(cfg), "queue", "list"])
    assert r.returncode == 0, r.stderr                   # the spool read from disk: nothing queued yet
    assert b"the daemon is not running" in r.stderr and b"Queue status...\n" in r.stdout
    assert f"\t\t{tmp_path}/spool is empty\n".encode() in r.stdout, r.stdout


# ---------------------------------------------------------------- mailq text, log lines and log set-up

def _entry(held=False, reply=""):
    from edgemail.envelope import Envelope, RcptStatus, Recipient
    from edgemail.spool.record import QueueEntry
    env = Envelope("s@edge.example", (Recipient("a@x.example"), Recipient("b@x.example")), size=1234)
    status = {"a@x.example": RcptStatus.DEFERRED, "b@x.example": RcptStatus.QUEUED}
    return QueueEntry("kAM8abc0012345", env, 1_700_000_000.0, 1234, 0, 1, 0.0, held, status,
                      {"a@x.example": reply} if reply else {}, False)


def test_mailq_entry_like_sendmail():
    from edgemail.daemon.listing import mailq_entry
    text = mailq_entry(_entry(held=True, reply="Connection refused by mx.x.example"))
    lines = text.splitlines()
    assert lines[0].startswith("kAM8abc0012345!    1234 ") and lines[0].endswith(" <s@edge.example>")
    assert lines[1].strip() == "(Deferred: Connection refused by mx.x.example)"
    assert lines[2].strip() == "<a@x.example>" and lines[3].strip() == "<b@x.example>"
    assert mailq_entry(_entry()).splitlines()[0][14] == " "


def test_log_lines_one_line_each():
    from edgemail import maillog
    from edgemail.envelope import Envelope, Recipient
    env = Envelope("a@x.example", (Recipient("b@y.example"),), size=10, msgid="m@x", proto="ESMTP",
                   client="[192.0.2.1]:2525")
    assert maillog.received("Q1", env) == ("Q1: from=<a@x.example>, size=10, class=0, nrcpts=1, "
                                           "msgid=<m@x>, proto=ESMTP, relay=[192.0.2.1]:2525")
    assert maillog.delivery("Q1", "b@y.example", delay=90061, xdelay=3, mailer="esmtp", pri=30010,
                            relay="mx.y.example. [192.0.2.5]", dsn="2.0.0", stat="Sent (ok)") == (
        "Q1: to=<b@y.example>, delay=1+01:01:01, xdelay=00:00:03, mailer=esmtp, pri=30010, "
        "relay=mx.y.example. [192.0.2.5], dsn=2.0.0, stat=Sent (ok)")
    line = maillog.reject("550 5.6.0 bare LF", cmd="DATA", arg="x\r\nInjected: 1", relay="[192.0.2.1]:1")
    assert "\n" not in line and "\r" not in line and "x\\r\\nInjected: 1" in line


def test_log_setup_levels_journal_prefix_and_syslog(tmp_path, monkeypatch):
    import io
    import logging
    import socket as s
    from edgemail import maillog
    assert [maillog.python_level(n) for n in (0, 1, 5, 9, 12)] == [
        logging.ERROR, logging.WARNING, logging.INFO, logging.INFO, logging.DEBUG]
    sock = s.socket(s.AF_UNIX, s.SOCK_DGRAM)
    sock.bind(str(tmp_path / "log"))
    sock.settimeout(5)
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    out = io.StringIO()
    try:
        maillog.setup(9, stream=out, syslog=True, syslog_address=str(tmp_path / "log"))
        logging.getLogger("edgemail.smtpd").info("Q1: from=<a@x.example>")
        logging.getLogger("edgemail.smtpd").debug("not at LogLevel 9")
        got = sock.recv(4096)
    finally:
        maillog.setup(9)
        sock.close()
    assert out.getvalue() == "<6>Q1: from=<a@x.example>\n"
    assert got.startswith(b"<22>edgemail[") and got.endswith(b"]: Q1: from=<a@x.example>\x00")


# ---------------------------------------------------------------- a daemon of another version

@pytest.mark.parametrize("items, header", [
    ([{"qid": "kAM8abc0012345", "size": 10}], {"total": 1}),     # rows where text was expected
    ([{"text": 5}], {"total": 1}),
    ([], {"count": 1}),                                          # no total in the header
])
async def test_mailq_against_a_daemon_of_another_version(example_config, tmp_path, items, header):
    """mailq and `queue list --json` name the mismatch (exit 76, EX_PROTOCOL), never a traceback."""
    import asyncio
    from edgemail.daemon.control import ControlServer, Stream

    async def old_listing(req):
        return Stream(iter(items), header)
    cfg = example_config()
    srv = ControlServer(cfg.control_socket, {"queue_list": old_listing})
    await srv.start()
    try:
        config = tmp_path / "c.toml"
        config.write_text(f'local_domains = ["edge.example"]\n[control]\nsocket = "{cfg.control_socket}"\n')
        for cmd in (["-c", "import sys; from edgemail.cli import mailq_main; sys.exit(mailq_main())",
                     "-C", str(config)],
                    ["-m", "edgemail", "-c", str(config), "queue", "list", "--json"]):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await proc.communicate()
            assert proc.returncode == 76, (cmd, err)
            assert b"Traceback" not in err and b"another version of edgemail" in err, err
    finally:
        await srv.close()


def test_sendmail_strips_the_mbox_from_line_and_root_takes_its_sender(tmp_path):
    """A message saved from an mbox starts with "From addr date": sendmail's collect() removes it;
    root without -f sends as that address (as with -f)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'local_domains = ["x.example"]\n[local]\nusers = ["bob"]\n'
                   f'[control]\nsocket = "{tmp_path}/none.sock"\n'
                   f'[spool]\ndirectory = "{tmp_path}/spool"\n')
    (tmp_path / "spool" / "maildrop").mkdir(parents=True)
    msg = b"From carol@x.example Thu Dec  3 12:00:00 2026\nSubject: saved\n\nbody\n"
    r = _run([str(BIN / "sendmail"), "-C", str(cfg), "-i", "bob@x.example"], input=msg)
    assert r.returncode == 0, r.stderr
    (drop,) = (tmp_path / "spool" / "maildrop").iterdir()
    data = drop.read_bytes()
    assert b"From carol@x.example Thu" not in data and b"Subject: saved\r\n" in data, data
    assert (b"From: carol@x.example\r\n" in data) == (os.geteuid() == 0), data   # the header From: made from it
    env = _run([sys.executable, "-m", "edgemail", "-c", str(cfg), "queue", "list", "--json"])
    assert (b"carol@x.example" in env.stdout) == (os.geteuid() == 0), env.stdout


def _routes_config(tmp_path, privacy: str = "authwarnings") -> Path:
    aliases = tmp_path / "aliases"
    aliases.write_text("root: admin\nlist: bob, carol\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'local_domains = ["x.example"]\nSmartHost = "[192.0.2.25]:25"\nPrivacyOptions = "{privacy}"\n'
                   f'[control]\nsocket = "{tmp_path}/none.sock"\n[spool]\ndirectory = "{tmp_path}/spool"\n'
                   f'[local]\naliases = "{aliases}"\nusers = ["admin", "bob", "carol"]\nsystem_users = false\nmaildir = "/m/%u"\n'
                   '[routes]\n"x.example" = "local"\n"lan.example" = "relay:[192.168.1.10]:25"\n'
                   '"*" = { route = "smarthost", expensive = true }\n')
    return cfg


def test_sendmail_bv_says_each_route_and_sends_nothing(tmp_path):
    cfg = _routes_config(tmp_path)
    r = _run([str(BIN / "sendmail"), "-C", str(cfg), "-bv", "root", "list", "pc@lan.example", "far@remote.test"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "admin@x.example... deliverable: mailer local, maildir /m/admin, user admin@x.example, via root",
        "bob@x.example... deliverable: mailer local, maildir /m/bob, user bob@x.example, via list",
        "carol@x.example... deliverable: mailer local, maildir /m/carol, user carol@x.example, via list",
        "pc@lan.example... deliverable: mailer relay, host [192.168.1.10]:25, user pc@lan.example",
        "far@remote.test... deliverable: mailer smarthost, host [192.0.2.25]:25 (waits for the link), "
        "user far@remote.test"]
    bad = _run([str(BIN / "sendmail"), "-C", str(cfg), "-bv", "nobody@x.example"])
    assert bad.returncode == 67 and bad.stdout == b"nobody@x.example... 550 5.1.1 <nobody@x.example>... User unknown\n"
    assert not (tmp_path / "spool").exists()                                # nothing queued, nothing made


def test_sendmail_bv_knows_the_users_the_daemon_knows(tmp_path):
    """-bv routes with the daemon's users: the system's passwd counts (system_users)."""
    import pwd
    name = next((n for n in ("nobody", "daemon", "bin") if n in {p.pw_name for p in pwd.getpwall()}), None)
    if name is None:
        pytest.skip("no nobody/daemon/bin account in passwd")
    cfg = _routes_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("system_users = false", "system_users = true"))
    r = _run([str(BIN / "sendmail"), "-C", str(cfg), "-bv", f"{name}@x.example"])
    assert r.returncode == 0 and r.stdout.startswith(f"{name}@x.example... deliverable: mailer local".encode()), r


def test_sendmail_bt_reads_addresses_from_stdin(tmp_path):
    r = _run([str(BIN / "sendmail"), "-C", str(_routes_config(tmp_path)), "-bt"], input=b"3,0 root\n/tryflags HS\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines()[2:] == [
        "(ruleset 3,0 skipped: edgemail has no rulesets)", "> root",
        "admin@x.example... deliverable: mailer local, maildir /m/admin, user admin@x.example, via root",
        "> /tryflags HS", "/tryflags: not supported (edgemail has no rulesets or macros)"]


def test_error_report_for_refused_recipients_goes_to_the_sender():
    """sendmail -oem: the report (cli/mailback.py) for what the daemon refused at submission."""
    from edgemail.cli.mailback import error_report
    from edgemail.envelope import Envelope, Recipient
    env = Envelope("root@edge.example", (Recipient("nosuchuser@edge.example"), Recipient("bob@edge.example")))
    refused = [{"address": "nosuchuser@edge.example", "reply": "550 5.1.1 <nosuchuser@edge.example>... User unknown"}]
    data = b"Subject: Cron <root@gw> backup\r\n\r\nthe job's output\r\n"
    renv, report = error_report(env, data, refused, hostname="gw.edge.example",
                                postmaster="postmaster@edge.example", now=1_700_000_000)
    assert renv.mail_from == "" and [r.address for r in renv.recipients] == ["root@edge.example"]
    assert b"Final-Recipient: rfc822; nosuchuser@edge.example" in report and b"Status: 5.1.1" in report
    assert b"bob@edge.example" not in report.split(b"the job's output")[0].split(b"message/delivery-status")[1] \
        and b"the job's output" in report
    assert error_report(Envelope("", env.recipients), data, refused, hostname="h", postmaster="p@h", now=0) is None
    assert error_report(env, data, [], hostname="h", postmaster="p@h", now=0) is None


_PWD_SPY = '''
import os, pwd
_real = pwd.getpwnam
def _note(line):
    with open(os.environ["PWD_SPY_LOG"], "a") as f:
        f.write(line + "\\n")
def _getpwall():
    _note("getpwall")
    return []
def _getpwnam(name):
    _note("getpwnam " + name)
    return _real(name)
pwd.getpwall, pwd.getpwnam = _getpwall, _getpwnam
'''


def test_sendmail_daemon_down_asks_passwd_per_name_never_for_all(tmp_path):
    """With the daemon down sendmail checks each recipient's local part with
    pwd.getpwnam, never by reading all of passwd (an LDAP directory, with NSS):
    the real program, with pwd watched from a sitecustomize on its path."""
    import pwd
    name = next((n for n in ("nobody", "daemon", "bin") if n in {p.pw_name for p in pwd.getpwall()}), None)
    if name is None:
        pytest.skip("no nobody/daemon/bin account in passwd")
    cfg = _routes_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("system_users = false", "system_users = true"))
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "sitecustomize.py").write_text(_PWD_SPY)
    log = tmp_path / "pwd.log"
    (tmp_path / "spool" / "maildrop").mkdir(parents=True)      # as the daemon made it when it ran
    env = {**os.environ, "PYTHONPATH": f"{spy}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PWD_SPY_LOG": str(log)}
    r = _run([str(BIN / "sendmail"), "-C", str(cfg), f"{name}@x.example", "nosuchuser@x.example", "bob@x.example"],
             input=b"Subject: x\n\nbody\n", env=env)
    assert r.returncode == 67, r.stderr
    assert "sendmail: nosuchuser@x.example... User unknown\n" in r.stderr.decode(), r.stderr
    assert "left in the maildrop" in r.stderr.decode(), r.stderr
    asked = log.read_text().splitlines()
    assert "getpwall" not in asked, asked
    assert f"getpwnam {name}" in asked and "getpwnam nosuchuser" in asked, asked
    assert "getpwnam bob" not in asked, "a name in local.users needs no lookup"
    assert len(list((tmp_path / "spool" / "maildrop").glob("*"))) == 1
