"""linklog: the link package's log is an interface (STYLE.md "Logging").

Mechanical checks that keep it one: every logging call in link/ (a logger
under any name, the logging module's functions, ``.log(level, ...)``) logs
exactly one line made by a linklog function and no %-arguments; every
linklog function is documented once in linklog's docstring, sampled here,
used somewhere in link/, and its output matches its template.
"""

from __future__ import annotations

import ast
import inspect
import pathlib
import re

import pytest

from link import linklog

ROOT = pathlib.Path(__file__).resolve().parents[2]
LEVELS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "log"}
NOT_LINES = {"clean"}

SAMPLES = {
    "state": ("HANGING_UP", "idle"),
    "dialing_stopped": ("pppd-exit(2,bad-options)", "pppd's options: [link] pppd_args, /etc/ppp/options"),
    "dialing_resumed": ("reload",),
    "dial_held": ("queued(1>=1)", "pppd-exit(4,no-kernel-ppp)"),
    "hook_refused": ("ip-up", "ppp0", "10.64.0.2", "ppp0 does not exist"),
    "port_error": ("inbound_active", AttributeError("'NoneType' object has no attribute 'active'")),
    "stop_run": ("max-connect",),
    "task_failed": ("dial", RuntimeError("boom")),
    "up_command_failed": (OSError(2, "No such file or directory"),),
    "dial_failed": (OSError(5, "Input/output error"),),
    "pppd_failed": ("cannot start /usr/sbin/pppd: Permission denied",),
    "pppd_exited": (16, "modem-hangup"),
    "hangup": ("dtr", "idle"),
    "hangup_failed": ("idle", "TIMEOUT"),
    "etrn_reply": ("example.org", 250, "Queuing for node example.org started"),
    "odmr_reply": ("example.org", 453, "You have no mail"),
    "netwatch_failed": (OSError(22, "Invalid argument"), 1.0),
    "call_ended": (311.42, 2048, 4096, "idle"),
    "accounting_failed": (OSError(28, "No space left on device"),),
    "port_failed": ("queue_summary", ValueError("spool gone")),
    "modem_garbage": ("/dev/ttyS0", b"\xff\xfe" * 40),
    "modem_info": ("/dev/ttyS0", "RING"),
    "dial_attempt_failed": ("5551234", 2, "BUSY"),
    "connected": ("5551234", 56000, 1),
    "dtr_ignored": ("/dev/ttyS0",),
    "pppd_started": (4711, "/dev/ttyS0"),
    "pppd_sigkill": (4711, 5.0),
    "command_ran": ("up", "/sbin/ifup", 0),
    "netlink_overflow": ("ppp0", 3),
    "state_file_corrupt": ("/var/lib/edgemail/link.json", "version 7, expected 1", "/var/lib/edgemail/link.json.corrupt"),
}


# --- the docstring -------------------------------------------------------------------

def documented() -> dict[str, str]:
    """linklog's docstring -> {function: template}."""
    lines = linklog.__doc__.splitlines()
    out: dict[str, str] = {}
    for i, line in enumerate(lines):
        if not line.startswith("  link: "):
            continue
        m = re.match(r"\s{8}(\w+)\(\)", lines[i + 1]) if i + 1 < len(lines) else None
        assert m, f"docstring line without its function on the next line: {line!r}"
        assert m.group(1) not in out, f"{m.group(1)}() documented twice"
        out[m.group(1)] = re.sub(r"\s+\[\w+\]$", "", line.strip())
    return out


def template_regex(template: str) -> re.Pattern:
    """``link: call=ended, connect=Ns, cause=C`` -> a regex: CAPITALS (capitals
    and digits, joined by _) are values, anything else (``s``) is literal."""
    parts = re.split(r"\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)", template)
    return re.compile("".join(".+?" if i % 2 else re.escape(p) for i, p in enumerate(parts)))


def line_functions() -> set[str]:
    return {name for name, f in inspect.getmembers(linklog, inspect.isfunction)
            if f.__module__ == linklog.__name__ and not name.startswith("_") and name not in NOT_LINES}


def test_every_line_function_is_documented_and_sampled():
    assert line_functions() == set(documented()), "functions and docstring differ"
    assert line_functions() == set(SAMPLES), "functions and samples differ"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_line_matches_its_template(name):
    line = getattr(linklog, name)(*SAMPLES[name])
    template = documented()[name]
    assert template_regex(template).fullmatch(line), f"got {line!r}, want {template!r}"
    assert "\n" not in line and "\r" not in line


def test_values_from_outside_stay_on_one_line():
    line = linklog.etrn_reply("example.org", 250, "ok\r\nlink: state=UP, reason=forged")
    assert line == "link: etrn=example.org, reply=250 ok\\r\\nlink: state=UP, reason=forged"
    assert linklog.modem_info("/dev/ttyS0", "RING\r\n") == "link: modem=/dev/ttyS0, info='RING\\r\\n'"


def test_the_regex_rejects_another_line():
    pattern = template_regex(documented()["pppd_exited"])
    assert not pattern.fullmatch(linklog.pppd_started(4711, "/dev/ttyS0"))
    assert not pattern.fullmatch(linklog.pppd_exited(16, "modem-hangup").replace("status=", "code="))


# --- the callers -----------------------------------------------------------------------

def _sources() -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text()) for p in sorted((ROOT / "link").glob("*.py"))
            if p.name != "linklog.py"}


def _from_logging(tree: ast.Module) -> set[str]:
    """Logging functions imported by name (``from logging import info as say``: say)."""
    return {a.asname or a.name for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module == "logging"
            for a in node.names if a.name in LEVELS}


def _logging_calls(tree: ast.Module):
    """(call, its message argument) for every call of a logging method or function."""
    plain = _from_logging(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        if (isinstance(f, ast.Attribute) and name in LEVELS) or (isinstance(f, ast.Name) and name in plain):
            yield node, name


def problems(tree: ast.Module, where: str) -> list[str]:
    """What is wrong with the logging calls of one module ([] when all is well)."""
    out = []
    for call, name in _logging_calls(tree):
        if name == "exception" and not call.args and not call.keywords:
            continue                            # Task.exception(): a logger's needs a message
        args = call.args[1:] if name == "log" else call.args
        args += [k.value for k in call.keywords if k.arg == "msg"]
        at = f"{where}:{call.lineno}"
        if len(args) != 1:
            out.append(f"{at}: {name}() with {len(args)} message arguments (want one linklog line)")
            continue
        msg = args[0]
        f = msg.func if isinstance(msg, ast.Call) else None
        if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "linklog"
                and f.attr in line_functions()):
            out.append(f"{at}: {name}() of a message not made by a linklog function")
    return out


def test_every_logging_call_in_link_logs_a_linklog_line():
    found = [p for where, tree in _sources().items() for p in problems(tree, where)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("code", [
    'log.info("link: state=%s", s)',
    'log.info(f"link: state={s}")',
    'logger.warning("x")',
    'self.log.error("link: pppd=failed")',
    'logging.getLogger("link").info("x")',
    'logging.warning("x")',
    'log.log(logging.INFO, "link: x")',
    'log.info(linklog.state(s, r), extra)',
    'log.info(msg="link: x")',
    'log.exception(msg=text)',
    'log.info(linklog.no_such_line())',
    'log.info(other.state(s, r))',
    'from logging import info\ninfo("x")',
    'from logging import warning as say\nsay("link: x")',
], ids=lambda c: c.splitlines()[-1][:40])
def test_the_check_catches_a_stray_call(code):
    assert problems(ast.parse(code), "m.py")


@pytest.mark.parametrize("code", [
    "log.info(linklog.state(s, r))",
    "self._log.warning(linklog.port_failed(name, e))",
    "log.log(logging.INFO, linklog.stop_run(c))",
    "log.error(msg=linklog.task_failed(n, e), exc_info=True)",
    "task.exception()",
])
def test_the_check_passes_a_catalogue_call(code):
    assert problems(ast.parse(code), "m.py") == []


def test_every_line_function_is_used():
    text = "\n".join(p.read_text() for p in (ROOT / "link").glob("*.py") if p.name != "linklog.py")
    unused = sorted(f for f in line_functions() if not re.search(rf"\blinklog\.{f}\(", text))
    assert not unused, f"documented lines nobody writes: {unused}"


def test_the_scan_sees_the_callers():
    calls = [c for tree in _sources().values() for c in _logging_calls(tree)]
    assert len(calls) >= len(SAMPLES), calls
