"""maillog: the log is an interface (STYLE.md "Logging").

Mechanical checks that keep it one: every formatting function has a
template in the catalogue (edgemail/maillog/__init__.py's docstring), lives
in the module its section names, is importable from the package, and its
output matches its template; every logging call in the edgemail package
(any logger under any name, any level, ``log.log``, ``logging.*``) logs a
line made by a maillog function.  The link package's lines are held to its
own catalogue (link/linklog.py) by test_linklog.py.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pathlib
import pkgutil
import re

import pytest

from edgemail import maillog
from edgemail.envelope import Envelope, Recipient

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: public functions of the package that make no line (exported) and text.py's
#: helpers of the line functions (not exported)
NOT_LINES = {"clean", "duration", "python_level", "setup"}
HELPERS = {"pairs", "addresses"}
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
    "queue_file_gone": (("7D3A1F09C2",), {}),
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
    "time_limit": ((PEER, "EHLO", "command line"), {}),
    "refused": ((PEER, "421 4.3.2 too many sessions"), {}),
    "internal_error": ((PEER, "ETRN"), {}),
    "pregreet": ((PEER,), {}),
    "tls_started": ((PEER, "TLSv1.3", "TLS_AES_256_GCM_SHA384", 256), {}),
    "tls_failed": ((PEER, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), {}),
    "tls_pipelined": ((PEER, 17), {}),
    "auth_ok": ((PEER, "alice", "PLAIN"), {}),
    "auth_failed": ((PEER, "alice", "LOGIN", 2), {}),
    "auth_busy": ((PEER, "alice", "PLAIN", 16), {}),
    "run_start": (("4711.3", "link-up", ["R@far.example"], 3), {}),
    "run_end": ((), dict(selected=3, attempted=2, sent=1, deferred=1, bounced=0, cut=1, stopped="link")),
    "link_up": ((), dict(cleared=2, nameservers=["10.64.0.1"], info={"iface": "ppp0", "local": ""})),
    "dialdelay": (("mx.far.example",), dict(wait_s=60, after="connect refused", link_coming=True)),
    "runner_warning": (("hoststat.json unreadable: bad json",), {}),
    "demand_unroutable": (("kAM8oN00005713", "no route for x@y"), {}),
    "runner_internal_error": ((), {}),
    "delivery_internal_error": (("kAM8oN00005713", "LocalProtocolError: sender address contains '\\r'"), {}),
    "clock_stepped": ((-31536000.0, 12), {}),
    "authfile_owner": (("/etc/edgemail/smarthost.auth", 1000), {}),
    "no_auth": (("smart.example[192.0.2.1]:587",), {}),
    "dns_cache_unreadable": (("/var/spool/edgemail/dns.json", "Expecting value"), {}),
    "etrn_result": (("192.0.2.25:25", "edge.example", 250, "2.0.0 Queuing for node edge.example started", "ok"), {}),
    "etrn_flush": (("@edge.example", "10.64.0.2", "edge", ["edge", ""], "253 2.0.0 OK, 2 pending"), {}),
    "atrn_turned": (("edge.example", PEER, "edge", ["edge"]), {}),
    "odmr_result": (("192.0.2.25:366", ["edge.example"], 453, "You have no mail", "nomail"), {}),
    "odmr_push_ended": (("192.0.2.25:366", 2, "closed"), {}),
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
    "aliases_reloaded": (("newaliases",), dict(aliases=3)),
    "reload_failed": (("newaliases", "/etc/aliases:3: no targets"), {}),
}


# ------------------------------------------------------------------ the docstring

def documented() -> tuple[dict[str, str], list[str]]:
    """maillog's docstring -> ({function: template}, [])."""
    lines = maillog.__doc__.splitlines()
    funcs: dict[str, str] = {}
    link: list[str] = []
    for i, line in enumerate(lines):
        if not re.match(r"  \S", line):
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


def defined() -> dict[str, str]:
    """Every public function the package's modules define -> its module's short name."""
    out = {}
    for info in pkgutil.iter_modules(maillog.__path__):
        module = importlib.import_module(f"{maillog.__name__}.{info.name}")
        for name, f in inspect.getmembers(module, inspect.isfunction):
            if f.__module__ == module.__name__ and not name.startswith("_"):
                assert name not in out, f"{name}() defined in {out[name]}.py and {info.name}.py"
                out[name] = info.name
    return out


def line_functions() -> set[str]:
    return set(defined()) - NOT_LINES - HELPERS


def sections() -> dict[str, str]:
    """The catalogue: line function -> the module its section names (``Messages (messages.py; ...``)."""
    out, module = {}, None
    for line in maillog.__doc__.splitlines():
        if re.match(r"\S", line):
            m = re.search(r"\((\w+)\.py\b", line)
            module = m.group(1) if m else None
        elif m := re.match(r"\s{8}(\w+)\(\)", line):
            out[m.group(1)] = module
    return out


def test_every_line_function_is_documented_and_sampled():
    funcs, _ = documented()
    assert set(funcs) == line_functions(), (
        f"in the docstring only: {set(funcs) - line_functions()}; "
        f"functions not in the docstring: {line_functions() - set(funcs)}")
    assert set(SAMPLES) == line_functions()


def test_every_line_function_lives_where_its_section_says_and_is_exported():
    where = defined()
    wrong = {f: (module, where[f]) for f, module in sections().items() if where.get(f) != module}
    assert not wrong, f"function: (section's module, where it is): {wrong}"
    for name in set(where) - HELPERS:
        module = importlib.import_module(f"{maillog.__name__}.{where[name]}")
        got = getattr(maillog, name, None)
        assert got is getattr(module, name), f"maillog.{name} is {got}, want {module.__name__}.{name}"
    assert set(maillog.__all__) >= set(where) - HELPERS


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

#: log calls in edgemail/ whose message is not a line function's, per file: debts.
#: etrn.py logs its own line (issue 12 item 5) while it is rewritten on the smtpc
#: core; the lead moves that line into the catalogue.  Remove an entry when it is
#: paid: a count that no longer matches fails the test, so the set only shrinks.
KNOWN_UNFORMATTED: dict[str, int] = {}

#: Logger and LoggerAdapter methods (and logging's functions) that write a record;
#: ``log`` takes the level first
METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "log"}
#: what makes or names a logger
_LOGGER_MAKERS = {"getLogger", "getChild", "Logger", "LoggerAdapter", "getLoggerClass"}
_LOGGER_TYPES = {"Logger", "LoggerAdapter", "RootLogger"}


def _name(node: ast.expr) -> str:
    """The identifier an expression ends in: ``log``, ``self._log`` -> ``_log``."""
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


class _Scan:
    """One module's logging, found by what names are bound to, not by what they are called.

    A logger is: ``logging.getLogger(...)`` (and getChild, Logger(...),
    LoggerAdapter(...), ``logging.root``), any name or attribute assigned one
    anywhere in the module or annotated as one, a name imported from an
    edgemail module where it is a logger, and, so that loggers passed in as
    arguments are caught too, any name with ``log`` in it.  The ``logging``
    module itself (under any alias) and functions imported from it log too.
    """

    def __init__(self, tree: ast.Module, imported_loggers: set[str] = frozenset()) -> None:
        self.tree = tree
        self.modules = {"logging"}            # names bound to the logging module
        self.functions: set[str] = set()      # logging's functions imported bare (info, log, ...)
        self.makers: set[str] = set()         # getLogger imported bare
        self.loggers = set(imported_loggers)
        self._bindings()

    def _bindings(self) -> None:
        nodes = list(ast.walk(self.tree))
        for node in nodes:
            if isinstance(node, ast.Import):
                self.modules |= {a.asname or a.name for a in node.names if a.name == "logging"}
            elif isinstance(node, ast.ImportFrom) and node.module == "logging":
                for a in node.names:
                    bucket = self.functions if a.name in METHODS else self.makers
                    bucket.add(a.asname or a.name)
        for _ in range(3):                    # aliases of aliases: ``out = log``
            for node in nodes:
                for target, value in _assignments(node):
                    if self.is_logger(value):
                        self.loggers.add(_name(target))
                if isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
                    if _name(node.annotation) in _LOGGER_TYPES:
                        self.loggers.add(node.arg if isinstance(node, ast.arg) else _name(node.target))

    def is_logger(self, node: ast.expr | None) -> bool:
        if isinstance(node, ast.NamedExpr):
            return self.is_logger(node.value)
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Call):                  # logging.getLoggerClass()(...)
                return self.is_logger(func)
            made_by = isinstance(func, ast.Attribute) or _name(func) in self.makers
            return _name(func) in _LOGGER_MAKERS and made_by
        if isinstance(node, ast.Attribute) and node.attr == "root" and _name(node.value) in self.modules:
            return True
        name = _name(node) if isinstance(node, (ast.Name, ast.Attribute)) else ""
        if not name or name in ("maillog", "logging"):
            return False
        return name in self.loggers or "log" in name.lower()

    def writer(self, call: ast.Call) -> str | None:
        """The logging method a call is (``info``, ``log`` ...), or None."""
        func = call.func
        if isinstance(func, ast.Name):
            return func.id if func.id in self.functions else None
        if isinstance(func, ast.Attribute) and func.attr in METHODS:
            if _name(func.value) in self.modules or self.is_logger(func.value):
                return func.attr
        return None

    def indirect(self, node: ast.AST, called: set[int]) -> bool:
        """A logging method taken without being called (a callback, getattr): its message is unseen."""
        if isinstance(node, ast.Attribute) and node.attr in METHODS and id(node) not in called:
            return _name(node.value) in self.modules or self.is_logger(node.value)
        return (isinstance(node, ast.Call) and _name(node.func) == "getattr" and bool(node.args)
                and self.is_logger(node.args[0]))


def _assignments(node: ast.AST):
    if isinstance(node, ast.Assign):
        yield from ((t, node.value) for t in node.targets)
    elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
        yield node.target, node.value


def _made_by_maillog(call: ast.Call, method: str) -> bool:
    """The record's message is ``maillog.<line function>(...)`` and nothing formats it further."""
    n = 2 if method == "log" else 1
    args = list(call.args) + [k.value for k in call.keywords if k.arg == "msg"]
    msg = args[n - 1] if len(args) == n else None
    return (isinstance(msg, ast.Call) and isinstance(msg.func, ast.Attribute)
            and isinstance(msg.func.value, ast.Name) and msg.func.value.id == "maillog"
            and msg.func.attr in line_functions() and not any(isinstance(a, ast.Starred) for a in call.args))


def unformatted_log_calls(source: str, filename: str = "<src>",
                          imported_loggers: set[str] = frozenset()) -> list[str]:
    """Logging calls whose message is not ``maillog.<line function>(...)``, and logging
    methods used without a call (their messages cannot be checked)."""
    tree = ast.parse(source, filename)
    scan = _Scan(tree, imported_loggers)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    called = {id(c.func) for c in calls}
    bad = []
    for node in ast.walk(tree):
        method = scan.writer(node) if isinstance(node, ast.Call) else None
        if (method is not None and not _made_by_maillog(node, method)) or scan.indirect(node, called):
            bad.append(f"{filename}:{node.lineno}: {ast.unparse(node)[:100]}")
    return bad


def module_loggers() -> dict[str, set[str]]:
    """edgemail module -> the names it binds to a logger (others may import them)."""
    out = {}
    for path in sorted((ROOT / "edgemail").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = _Scan(ast.parse(path.read_text())).loggers
    return out


def _imported_loggers(tree: ast.Module, loggers: dict[str, set[str]]) -> set[str]:
    return {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            for a in node.names if a.name in loggers.get(node.module or "", ())}


CAUGHT = {
    "format-args": "log.warning('x %s', y)",
    "f-string": "log.info(f'x {y}')",
    "not-a-line": "logging.getLogger('a').info(maillog.nosuch())",
    "line-plus-text": "log.info(maillog.stopped() + ' now')",
    "line-and-args": "log.info(maillog.stopped(), y)",
    "log-log": "log.log(logging.INFO, 'x %s', y)",
    "log-log-one-arg": "log.log(maillog.stopped())",
    "debug": "log.debug('x')",
    "critical": "log.critical('x')",
    "exception": "log.exception('x')",
    "warn": "log.warn('x')",
    "fatal": "log.fatal('x')",
    "module-function": "logging.info('x')",
    "module-log": "logging.log(20, 'x')",
    "module-alias": "import logging as L\nL.error('x')",
    "imported-function": "from logging import warning as w\nw('x')",
    "imported-getlogger": "from logging import getLogger\ngetLogger(__name__).info('x')",
    "other-name": "out = logging.getLogger('a')\nout.info('x')",
    "attribute": "self.sink = logging.getLogger('a')\nself.sink.warning('x')",
    "alias-of-alias": "a = logging.getLogger('a')\nb = a\nb.error('x')",
    "annotated-param": "def f(sink: logging.Logger):\n    sink.info('x')",
    "annotated-assign": "sink: Logger = make()\nsink.info('x')",
    "root": "logging.root.info('x')",
    "child": "c = logging.getLogger('a').getChild('b')\nc.info('x')",
    "adapter": "a = logging.LoggerAdapter(base, {})\na.info('x')",
    "walrus": "(w := logging.getLogger('a')).info('x')",
    "msg-keyword": "log.info(msg='x')",
    "starred": "log.info(*parts)",
    "callback": "loop.call_soon(log.info, 'x')",
    "bound-method": "say = log.warning\nsay('x')",
    "getattr": "getattr(log, 'info')('x')",
}
PASSES = {
    "line": "log.info(maillog.stopped())",
    "line-exc-info": "log.error(maillog.stale_tmp(1), exc_info=True)",
    "log-log-line": "log.log(logging.INFO, maillog.stopped())",
    "msg-keyword-line": "log.info(msg=maillog.stopped())",
    "module-line": "logging.warning(maillog.warning('x'))",
    "other-name-line": "out = logging.getLogger('a')\nout.info(maillog.stopped())",
    "not-logging": "daemon.log.read_text()\nreader.error('', 'k', 'bad')\nfut.exception()\nlogging.WARNING",
    "set-level": "logging.getLogger('mail.log').setLevel(logging.WARNING)",
}


@pytest.mark.parametrize("src", CAUGHT.values(), ids=CAUGHT.keys())
def test_checker_catches_every_form_of_logging_call(src):
    got = unformatted_log_calls(src)
    assert len(got) == 1, f"got {got}, want this one call found: {src!r}"


@pytest.mark.parametrize("src", PASSES.values(), ids=PASSES.keys())
def test_checker_passes_lines_made_by_maillog(src):
    assert unformatted_log_calls(src) == []


def test_checker_follows_a_logger_imported_from_another_module():
    src = "from edgemail.x import sink\nsink.info('x')\n"
    assert unformatted_log_calls(src) == []            # the name alone says nothing
    imported = _imported_loggers(ast.parse(src), {"edgemail.x": {"sink"}})
    assert len(unformatted_log_calls(src, imported_loggers=imported)) == 1


def test_every_edgemail_log_line_is_made_by_maillog():
    loggers = module_loggers()
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "edgemail").rglob("*.py")):
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        bad = unformatted_log_calls(text, name, _imported_loggers(ast.parse(text), loggers))
        if bad:
            found[name] = bad
    unknown = [b for name, bad in found.items() if name not in KNOWN_UNFORMATTED for b in bad]
    assert not unknown, "log lines not formatted by a maillog function:\n" + "\n".join(unknown)
    assert {name: len(bad) for name, bad in found.items()} == KNOWN_UNFORMATTED, found


def test_every_line_function_is_used():
    package = ROOT / "edgemail" / "maillog"
    text = "\n".join(p.read_text() for p in (ROOT / "edgemail").rglob("*.py") if package not in p.parents)
    unused = sorted(f for f in line_functions() if not re.search(rf"\bmaillog\.{f}\(", text))
    assert not unused, f"documented lines nobody writes: {unused}"
