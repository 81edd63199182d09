"""maillog: the log is an interface (STYLE.md "Logging").

Mechanical checks that keep it one: every formatting function has a
template in maillog's docstring and its output matches it; every logger
call in the edgemail package logs a line made by a maillog function; every
link-package line has its keys listed in maillog's docstring.
"""

from __future__ import annotations

import ast
import inspect
import pathlib
import re

import pytest

from edgemail import maillog
from edgemail.envelope import Envelope, Recipient

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOT_LINES = {"clean", "duration", "python_level", "setup"}
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
PEER = "[127.0.0.1]:50312"
ENV = Envelope("a@edge.example", (Recipient("b@far.example"),), size=2143, precedence=-60,
               msgid="m1@lan.example", client=PEER)

SAMPLES = {
    "received": (("7D3A1F09C2", ENV), {}),
    "delivery": (("7D3A1F09C2", "b@far.example"),
                 dict(delay=3620, xdelay=5.8, mailer="esmtp", pri=30000,
                      relay="mx.far.example[203.0.113.5]:25", dsn="2.0.0", stat="Sent (250 ok)")),
    "dsn_queued": (("7D3A1F09C2", "failure", "7D3A1F09C3", ["a@edge.example", "b@x.example"]), {}),
    "dsn_not_queued": (("7D3A1F09C2", "delay", OSError("No space left on device")), {}),
    "dsn_dropped": (("7D3A1F09C2", ["postmaster@edge.example"], "mailbox full"), {}),
    "queue_file_unreadable": (("7D3A1F09C2", "truncated record"), {}),
    "maildrop_import": (("7D3A1F09C2", "1700000000.42.ab12"), {}),
    "hook_failed": (("7D3A1F09C2", "on_commit"), {}),
    "spool_writer_error": (("7D3A1F09C2",), {}),
    "commit_helpers_unavailable": ((PermissionError(13, "Permission denied"),), {}),
    "reject": (("554 5.7.1 <c@far.example>... Relaying denied",),
               dict(cmd="RCPT", arg="TO:<c@far.example> NOTIFY=NEVER", relay=PEER)),
    "connect": ((PEER, "lan"), {}),
    "lost_connection": ((PEER, "DATA"), {}),
    "too_many_errors": ((PEER, "RCPT"), {}),
    "timeout": ((PEER, "MAIL"), {}),
    "refused": ((PEER, "421 4.3.2 too many sessions"), {}),
    "internal_error": ((PEER, "ETRN"), {}),
    "run_start": (("4711.3", "link-up", ["R@far.example"], 3), {}),
    "run_end": ((), dict(selected=3, attempted=2, sent=1, deferred=1, bounced=0, cut=1, stopped="link")),
    "link_up": ((), dict(cleared=2, nameservers=["10.64.0.1"], info={"iface": "ppp0", "local": ""})),
    "dialdelay": (("mx.far.example",), dict(wait_s=60, after="connect refused", link_coming=True)),
    "runner_warning": (("hoststat.json unreadable: bad json",), {}),
    "hoststatus_cleared": ((3,), {}),
    "demand_unroutable": (("kAM8oN00005713", "no route for x@y"), {}),
    "runner_internal_error": ((), {}),
    "authfile_owner": (("/etc/edgemail/smarthost.auth", 1000), {}),
    "no_auth": (("smart.example[192.0.2.1]:587",), {}),
    "dns_cache_unreadable": (("/var/spool/edgemail/dns.json", "Expecting value"), {}),
    "stale_tmp": ((3,), {}),
    "recovered": ((), dict(entries=1, tmp_removed=0, corrupt=0, maildrop=1)),
    "corrupt_file": (("7D3A1F09C2", "7D3A1F09C2.1", "bad record type"), {}),
    "queue_run_requested": ((["R@far.example", "!Sx"],), {}),
    "bad_request": (("unknown op 'x'",), {}),
    "control_internal_error": (("status",), {}),
    "starting": (("0.1", "/etc/edgemail/edgemail.toml"), {}),
    "running_as": (("edgemail (uid 105, gid 110, groups 20,30,110)",), {}),
    "ready": ((["lan=[127.0.0.1]:25"], "/run/edgemail/control", 0), {}),
    "stopping": (("SIGTERM",), {}),
    "stopped": ((), {}),
    "warning": (("running as root",), {}),
    "reloaded": (("SIGHUP",), dict(aliases=3, policy="/etc/edgemail/dial.policy",
                                   restart_needed=["MaxMessageSize", "smtpd"])),
    "reload_failed": (("newaliases", "/etc/aliases:3: no targets"), {}),
}


# ------------------------------------------------------------------ the docstring

def documented() -> tuple[dict[str, str], list[str]]:
    """maillog's docstring -> ({function: template}, [link-package templates])."""
    lines = maillog.__doc__.splitlines()
    funcs: dict[str, str] = {}
    link: list[str] = []
    for i, line in enumerate(lines):
        if not re.match(r"  \S", line):
            continue
        if line.lstrip().startswith("link:"):
            link.append(re.split(r"\s{2,}\(", line.strip())[0])
            continue
        m = re.match(r"\s{8}(\w+)\(\)", lines[i + 1]) if i + 1 < len(lines) else None
        assert m, f"docstring line without its function on the next line: {line!r}"
        assert m.group(1) not in funcs, f"{m.group(1)}() documented twice"
        funcs[m.group(1)] = line.strip()
    return funcs, link


_TOKEN = re.compile(r"\[ip\]:port|\[ip\]|\[(?=,)|\]|\.\.\.|NOQUEUE|\b[A-Z][A-Z0-9_]*(?:\.[A-Z]+)*\b")
_TOKENS = {"[ip]:port": r"\[[0-9a-f.:]+\]:\d+", "[ip]": r"\[[0-9a-f.:]+\]", "[": "(?:", "]": ")?",
           "...": ".*?", "NOQUEUE": "NOQUEUE"}


def template_regex(template: str) -> re.Pattern:
    """``QID: to=<ADDR>[, cut=N]   [5]`` -> a regex: capitals are values,
    ``[, ...]`` optional, ``[ip]:port`` a peer; the rest literal."""
    template = re.sub(r"\s+\[\d+(?:/\d+)?\]$", "", template)
    out, pos = [], 0
    for m in _TOKEN.finditer(template):
        out += [re.escape(template[pos:m.start()]), _TOKENS.get(m.group(), ".+?")]
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


def line_functions() -> set[str]:
    return {name for name, f in inspect.getmembers(maillog, inspect.isfunction)
            if f.__module__ == maillog.__name__ and not name.startswith("_") and name not in NOT_LINES}


def test_every_line_function_is_documented_and_sampled():
    funcs, _ = documented()
    assert set(funcs) == line_functions(), (
        f"in the docstring only: {set(funcs) - line_functions()}; "
        f"functions not in the docstring: {line_functions() - set(funcs)}")
    assert set(SAMPLES) == line_functions()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_line_matches_its_template(name):
    args, kwargs = SAMPLES[name]
    got = getattr(maillog, name)(*args, **kwargs)
    template = documented()[0][name]
    assert template_regex(template).fullmatch(got), f"{name}(): got {got!r}, want {template!r}"
    assert "\n" not in got


def test_template_regex_can_refuse():
    rx = template_regex("QID: to=<ADDR>, dsn=X.Y.Z[, cut=N]   [5]")
    assert rx.fullmatch("Q1: to=<a@b>, dsn=2.0.0") and rx.fullmatch("Q1: to=<a@b>, dsn=2.0.0, cut=1")
    assert not rx.fullmatch("Q1: to=<a@b>, status=2.0.0")
    assert not template_regex("NOQUEUE: connect from [ip]:port").fullmatch("NOQUEUE: connect from x")


# ------------------------------------------------------------------ the reject line

@pytest.mark.parametrize("cmd, arg, want", [
    ("RCPT", "TO:<c@far.example> NOTIFY=NEVER",
     "NOQUEUE: ruleset=check_rcpt, arg1=<c@far.example>, relay=[127.0.0.1]:50312, reject=R"),
    ("MAIL", "FROM:<a@x.example> SIZE=99999999",
     "NOQUEUE: ruleset=check_mail, arg1=<a@x.example>, relay=[127.0.0.1]:50312, reject=R"),
    ("MAIL", "FROM:a@x.example", "NOQUEUE: ruleset=check_mail, arg1=a@x.example, relay=[127.0.0.1]:50312, reject=R"),
    ("DATA", None, "NOQUEUE: ruleset=check_data, relay=[127.0.0.1]:50312, reject=R"),
    ("ETRN", "far.example", "NOQUEUE: ruleset=check_etrn, arg1=far.example, relay=[127.0.0.1]:50312, reject=R"),
    ("EHLO", "", "NOQUEUE: ruleset=check_helo, relay=[127.0.0.1]:50312, reject=R"),
    ("BDAT", "10 LAST", "NOQUEUE: ruleset=check_cmd, arg1=BDAT 10 LAST, relay=[127.0.0.1]:50312, reject=R"),
    ("RCPT", "TO:<x\r\ny>", "NOQUEUE: ruleset=check_rcpt, arg1=<x\\r\\ny>, relay=[127.0.0.1]:50312, reject=R"),
], ids=["rcpt", "mail", "mail-bare", "data", "etrn", "helo-empty", "other", "crlf-escaped"])
def test_reject_line(cmd, arg, want):
    assert maillog.reject("R", cmd=cmd, arg=arg, relay=PEER) == want


# ------------------------------------------------------------------ the code

def _is_logger(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return "log" in node.id.lower() and node.id != "maillog"
    return isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "getLogger"


def unformatted_log_calls(source: str, filename: str = "<src>") -> list[str]:
    """Logger calls whose message is not ``maillog.<line function>(...)``."""
    allowed = line_functions()
    bad = []
    for node in ast.walk(ast.parse(source, filename)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS and _is_logger(node.func.value)):
            continue
        msg = node.args[0] if node.args else None
        ok = (isinstance(msg, ast.Call) and isinstance(msg.func, ast.Attribute)
              and isinstance(msg.func.value, ast.Name) and msg.func.value.id == "maillog"
              and msg.func.attr in allowed and len(node.args) == 1)
        if not ok:
            bad.append(f"{filename}:{node.lineno}: {ast.unparse(node)[:100]}")
    return bad


def test_checker_finds_a_bare_log_call():
    src = ("log.info(maillog.stopped())\nlog.warning('x %s', y)\n"
           "logging.getLogger('a').info(maillog.nosuch())\nlog.error(maillog.stale_tmp(1), exc_info=True)\n"
           "daemon.log.read_text()\n")
    assert [b.split(":")[1] for b in unformatted_log_calls(src)] == ["2", "3"]


def test_every_edgemail_log_line_is_made_by_maillog():
    bad = []
    for path in sorted((ROOT / "edgemail").rglob("*.py")):
        if path.name != "maillog.py":
            bad += unformatted_log_calls(path.read_text(), str(path.relative_to(ROOT)))
    assert not bad, "log lines not formatted by a maillog function:\n" + "\n".join(bad)


def test_every_line_function_is_used():
    text = "\n".join(p.read_text() for p in (ROOT / "edgemail").rglob("*.py") if p.name != "maillog.py")
    unused = sorted(f for f in line_functions() if not re.search(rf"\bmaillog\.{f}\(", text))
    assert not unused, f"documented lines nobody writes: {unused}"


def keys(text: str) -> tuple[str, ...]:
    """The ``key=`` names of a line or a format string, values' shapes ignored."""
    text = re.sub(r"\{[^}]*\}|%[-.\d]*[sdrgf]", "X", text)
    return tuple(re.sub(r"^[A-Z][A-Z0-9]*(?=_|$)", "X", k) for k in re.findall(r"([\w%]+)=", text))


def link_formats() -> list[tuple[str, str]]:
    """Every string in the link package that starts a log line (``link: ...``)."""
    found = []
    for path in sorted((ROOT / "link").glob("*.py")):
        tree = ast.parse(path.read_text())
        parts = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
        for node in ast.walk(tree):
            if id(node) in parts:
                continue
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
            else:
                continue
            if text.startswith("link: ") and "=" in text:
                found.append((f"{path.name}:{node.lineno}", text))
    return found


def test_link_package_lines_are_listed():
    listed = {keys(t) for t in documented()[1]}
    formats = link_formats()
    assert len(formats) >= 20, formats          # the scan sees the link package's lines
    missing = [f"{where}: {text}" for where, text in formats if keys(text) not in listed]
    assert not missing, "link lines not in maillog's docstring:\n" + "\n".join(missing)
