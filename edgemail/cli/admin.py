"""cli/admin.py - ``edgemail``, the administrator's command: the daemon, the
config, the dial policy, the queue, the status and the link manager.

Synopsis::

    edgemail [-c FILE] [--json] COMMAND ...      global options before or after COMMAND
    edgemail run [--syslog]                      the daemon, in the foreground
    edgemail config check [FILE]                 the effective config, or its and its files' errors (exit 78)
    edgemail policy check [FILE]                 a dial policy's errors (exit 78), or its summary
    edgemail queue list | show QID | run [FILTER...]
    edgemail status                              the daemon, the queue, the link, the next dial
    edgemail reload | hoststat | purgestat [--all]
    edgemail link explain [--offline [--at TIME]] | dial | hangup
    edgemail link hook ip-up|ip-down -- IFACE TTY SPEED LOCAL REMOTE [IPPARAM]
    edgemail import SENDMAIL.mc|.cf [--crontab FILE] [-o DIR] [--force]

Owns: the console script ``edgemail_main`` (also ``python -m edgemail``),
its argparse parser built from ``COMMANDS`` (every command and option has
its description: ``edgemail --help`` lists them all, ``edgemail COMMAND
--help`` describes one), and the commands that are one request printed
in words (``show.py``) or, with ``--json``, as JSON: ``queue list|show``
and ``status``; ``config check``.  The others live beside it and are
imported only when run: ``queue run``, ``reload``, ``hoststat``,
``purgestat`` (shared.py, which ``sendmail`` uses too), ``link``
(linkcmd.py), ``policy check`` and ``link explain --offline``
(policycmd.py), ``import`` (importcmd.py), ``run`` (daemon.run).

Global options: ``-c``/``-C``/``--config FILE`` (else $EDGEMAIL_CONFIG,
else /etc/edgemail/edgemail.toml) and ``--json``, accepted before or after
the command (``edgemail status -c F`` as ``edgemail -c F status``).

Never: touches the spool, the modem or pppd: every command but ``run``,
``config check``, ``policy check``, ``link explain --offline`` and
``import`` is one control request.

Fails: usage errors exit 64 (not argparse's 2) with the usage and a
pointer to ``--help``, a bad config 78, a bad ``queue run`` filter 64; a
failed request as ``base.ask`` says (75, 65, 76).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Callable

from edgemail.cli.base import (
    DEFAULT_CONFIG,
    EX_OK,
    EX_USAGE,
    Exit,
    UsageError,
    ask,
    err,
    load_config,
)

_FILE_HELP = "the file (default: [link] policy of the configuration)"
#: the command groups: ``edgemail GROUP COMMAND``
GROUPS = {"config": "the configuration file", "policy": "the dial policy file", "queue": "the mail queue",
          "link": "the link manager: would it dial, dial, hang up, the ppp hooks"}


def _opt(*names: str, **kw) -> tuple[tuple[str, ...], dict]:
    return names, kw


def _link_explain_options(p: argparse.ArgumentParser) -> None:
    from edgemail.cli.policycmd import offline_options
    offline_options(p)


def _import_options(p: argparse.ArgumentParser) -> None:
    from edgemail.cli.importcmd import options
    options(p)


#: (path, handler "module:function", one-line help, description, options or a function adding them)
COMMANDS: list[tuple[tuple[str, ...], str, str, str, list | Callable]] = [
    (("run",), "edgemail.cli.admin:_run", "run the daemon in the foreground",
     "The daemon, in the foreground: the SMTP listeners, the queue, delivery and the link manager "
     "(systemd runs it as Type=notify).  Its log lines go to stderr; --syslog adds /dev/log.",
     [_opt("--syslog", action="store_true", help="also log to /dev/log, facility mail")]),
    (("config", "check"), "edgemail.cli.admin:_config_check", "print the effective configuration, or its errors",
     "Read FILE as the daemon would, and every file it names (aliases and their includes, the dial "
     "policy, SmartHostAuthFile, SmartHostCAFile) with the daemon's own parsers; print the effective "
     "configuration with every default filled in (TOML; with --json as JSON), or every error as "
     "FILE:LINE: KEY: problem and exit 78.  Warnings (what the daemon starts with but will fail on "
     "later, such as a missing pppd) go to stderr and do not change the exit code.",
     [_opt("file", nargs="?", metavar="FILE", help=f"the file to check (default: -c FILE, $EDGEMAIL_CONFIG, "
           f"{DEFAULT_CONFIG})")]),
    (("policy", "check"), "edgemail.cli.policycmd:policy_check", "check a dial policy file",
     "Read a dial policy file as the daemon would: every bad line as FILE:LINE: FIELD: problem (exit "
     "78), or a summary of its rules, forbidden windows and settings.  No daemon needed.",
     [_opt("file", nargs="?", metavar="FILE", help=_FILE_HELP)]),
    (("queue", "list"), "edgemail.cli.admin:_queue_list", "list the queued messages (as mailq)",
     "The queue as mailq shows it; with --json one object per message (qid, size, created, from, "
     "held, priority, attempts, next_attempt, and each recipient's state, last reply, dsn, relay and "
     "last attempt).  With the daemon down, the spool read from disk (maildrop first), read-only: "
     "root, the daemon's user and group may.", []),
    (("queue", "show"), "edgemail.cli.admin:_queue_show", "one message: envelope, recipients, the message",
     "One queued message: its envelope, each recipient with its state and last reply, then the "
     "message itself.  Needs root, the edgemail user or its group.",
     [_opt("qid", metavar="QID", help="the queue id, as mailq shows it")]),
    (("queue", "run"), "edgemail.cli.shared:queue_run_command", "ask the daemon for a queue run",
     "Ask for a queue run, of the whole queue or of the messages the filters select (as sendmail "
     "-qR/-qS/-qI).  With the link down, only what needs no call is delivered.",
     [_opt("filters", nargs="*", metavar="FILTER", help="R<substr> (recipient), S<substr> (sender) or "
           "I<substr> (queue id), prefixed with ! to negate; several combine")]),
    (("status",), "edgemail.cli.admin:_status", "the daemon, the queue, the link and the next dial",
     "The daemon (pid, uptime, listeners), the queue and, with a link manager, the link's state and "
     "phase, the next dial and why, the budget left today, the last ETRN and the last call.", []),
    (("reload",), "edgemail.cli.shared:reload_command", "read the aliases and the dial policy again",
     "Check the aliases file, then have the daemon read it and the dial policy again (as SIGHUP and "
     "newaliases).  A broken file changes nothing and is named by FILE:LINE.", []),
    (("hoststat",), "edgemail.cli.shared:hoststat_command", "the host status (hosts that failed lately)",
     "The hosts delivery failed to lately and why (sendmail's hoststat, -bh).", []),
    (("purgestat",), "edgemail.cli.shared:purgestat_command", "forget expired host status",
     "Forget host status older than Timeout.hoststatus (sendmail's purgestat, -bH).",
     [_opt("--all", action="store_true", help="forget every host's status, expired or not")]),
    (("link", "explain"), "edgemail.cli.linkcmd:link_command", "would it dial now, why, and when next",
     "What the dial policy decides now and when it would dial next: the running daemon's view (its "
     "queue and today's calls), or with --offline the policy file's alone, for a queue it assumes.",
     _link_explain_options),
    (("link", "dial"), "edgemail.cli.linkcmd:link_command", "dial now, whatever the policy says",
     "Dial now, whatever the policy says (exit 75 while backing off after a failed dial).", []),
    (("link", "hangup"), "edgemail.cli.linkcmd:link_command", "hang up now",
     "Hang up now: pppd is stopped and the modem put on-hook; a queue run in flight is cut, nothing "
     "is lost.", []),
    (("link", "hook"), "edgemail.cli.linkcmd:link_command", "for /etc/ppp/ip-up.d and ip-down.d",
     "Tell the daemon that pppd brought the link up or down (pppd's arguments, its environment for "
     "the rest).  Exits 0 within a second when the daemon is down or slow: pppd never waits for it.",
     [_opt("event", choices=("ip-up", "ip-down"), help="which hook runs"),
      _opt("pppd_args", nargs="*", metavar="ARG", help="pppd's: IFACE TTY SPEED LOCAL REMOTE [IPPARAM]")]),
    (("import",), "edgemail.cli.importcmd:import_command", "an edgemail.toml and dial.policy from sendmail.mc",
     "Write edgemail.toml and dial.policy from a sendmail.mc (or sendmail.cf) and, with --crontab, the "
     "cron lines that ran the queue and ETRN.  Every option that cannot be carried over is named; the "
     "result passes `edgemail config check`.  Existing files are kept unless --force.", _import_options),
]


class Parser(argparse.ArgumentParser):
    """argparse with sysexits: a usage error exits 64 and points at --help."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        more = "lists the commands, `edgemail COMMAND --help` describes one" if self.prog == "edgemail" \
            else "describes every option"
        self.exit(EX_USAGE, f"{self.prog}: {message}\n(`{self.prog} --help` {more})\n")


def _globals() -> Parser:
    g = Parser(add_help=False)
    g.add_argument("-c", "-C", "--config", metavar="FILE", default=argparse.SUPPRESS,
                   help=f"configuration file (default $EDGEMAIL_CONFIG or {DEFAULT_CONFIG})")
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="print the answer as JSON, for programs")
    return g


def _epilog() -> str:
    lines = ["commands:"] + [f"  {' '.join(path):16} {help_}" for path, _, help_, _, _ in COMMANDS]
    return "\n".join(lines + ["", "-c FILE and --json go before or after the command.",
                              "exit codes: 0 ok, 64 usage, 65 refused, 75 temporary (daemon down or slow), "
                              "76 a daemon of another version, 78 configuration"])


def build_parser() -> Parser:
    g = _globals()
    p = Parser(prog="edgemail", parents=[g], epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
               description="edgemail: a dial-on-demand edge mail appliance (an MTA held in deferred mode, and "
                           "a link manager that decides when to call).")
    top = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="what to do (all of them below)")
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, handler, help_, description, options in COMMANDS:
        where = top
        if len(path) == 2:
            if path[0] not in groups:
                grp = top.add_parser(path[0], help=GROUPS[path[0]], description=GROUPS[path[0]], parents=[g])
                groups[path[0]] = grp.add_subparsers(dest=f"{path[0]}_cmd", required=True, metavar="COMMAND",
                                                     help=f"what to do with {GROUPS[path[0]].split(':')[0]}")
            where = groups[path[0]]
        leaf = where.add_parser(path[-1], help=help_, description=description, parents=[g])
        leaf.set_defaults(handler=handler)
        if callable(options):
            options(leaf)
        else:
            for names, kw in options:
                leaf.add_argument(*names, **kw)
    return p


def edgemail_main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser(), sys.argv[1:] if argv is None else argv)


def dispatch(p: Parser, argv: list[str]) -> int:
    """Parse ARGV and run the command's handler (imported only now); its exit code."""
    try:
        args = p.parse_args(argv)
        module, _, name = args.handler.partition(":")
        return getattr(importlib.import_module(module), name)(args)
    except SystemExit as exc:          # --help (0) or a usage error (64)
        return exc.code if isinstance(exc.code, int) else EX_USAGE
    except UsageError as exc:
        err(p.prog, str(exc))
        return EX_USAGE
    except Exit as exc:
        return exc.code


def _json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _config(args: argparse.Namespace):
    return load_config(getattr(args, "config", None), "edgemail")


def _run(args: argparse.Namespace) -> int:
    if _json(args):
        raise UsageError("run: --json has no meaning for the daemon (edgemail status --json asks it)")
    cfg = _config(args)
    from edgemail.daemon.run import run
    return run(cfg, syslog=args.syslog)


def _config_check(args: argparse.Namespace) -> int:
    """The config and every file it names (cli/checks.py), as the daemon reads them."""
    from edgemail.cli.base import config_path
    from edgemail.cli.checks import check_files, check_files_despite
    from edgemail.config import loader
    from edgemail.errors import ConfigError
    path = args.file or config_path(getattr(args, "config", None))
    try:
        cfg = loader.load(path)
    except ConfigError as exc:
        found = check_files_despite(str(path))
        for line in [str(exc), *found.errors, *found.warnings]:
            print(line, file=sys.stderr)
        raise Exit(78) from None
    found = check_files(cfg)
    for line in found.errors + found.warnings:
        print(line, file=sys.stderr)
    if found.errors:
        raise Exit(78)
    if _json(args):
        _print_config_json(cfg)
    else:
        sys.stdout.write(loader.dump(cfg))
    return EX_OK


def _print_config_json(cfg) -> None:
    import dataclasses
    import json

    def plain(o):
        return sorted(o) if isinstance(o, (set, frozenset)) else str(o)
    print(json.dumps(dataclasses.asdict(cfg), indent=2, default=plain))


def _queue_list(args: argparse.Namespace) -> int:
    from edgemail.cli.shared import print_mailq, queue_json
    cfg = _config(args)
    return queue_json(cfg) if _json(args) else print_mailq(cfg)


def _queue_show(args: argparse.Namespace) -> int:
    import base64
    from edgemail.cli.show import print_json, queue_show_text
    reply, code = ask(_config(args), "edgemail", "queue_show", qid=args.qid, data=True)
    if reply is None:
        return code
    reply.pop("ok", None)
    if _json(args):
        print_json(reply)
        return EX_OK
    data = base64.b64decode(reply.pop("data_b64", ""))
    sys.stdout.write(queue_show_text(reply, time.time()) + "\n")
    sys.stdout.flush()
    sys.stdout.buffer.write(data.replace(b"\r\n", b"\n"))
    return EX_OK


def _status(args: argparse.Namespace) -> int:
    from edgemail.cli.show import print_json, status_text
    reply, code = ask(_config(args), "edgemail", "status")
    if reply is None:
        return code
    reply.pop("ok", None)
    if _json(args):
        print_json(reply)
    else:
        sys.stdout.write(status_text(reply, time.time()))
    return EX_OK


# ---------------------------------------------------------------- hoststat, purgestat

def _status_program(prog: str, description: str, argv: list[str] | None, *, purge: bool) -> int:
    p = Parser(prog=prog, parents=[_globals()], description=description)
    if purge:
        p.add_argument("--all", action="store_true", help="forget every host's status, expired or not")
    p.set_defaults(handler="edgemail.cli.shared:" + ("purgestat_command" if purge else "hoststat_command"),
                   prog=prog)
    return dispatch(p, sys.argv[1:] if argv is None else argv)


def hoststat_main(argv: list[str] | None = None) -> int:
    """``hoststat``: sendmail's host status listing (as ``sendmail -bh``)."""
    return _status_program("hoststat", "The hosts delivery failed to lately and why, as sendmail's hoststat "
                           "(sendmail -bh, edgemail hoststat).", argv, purge=False)


def purgestat_main(argv: list[str] | None = None) -> int:
    """``purgestat``: forget expired host status (as ``sendmail -bH``)."""
    return _status_program("purgestat", "Forget host status older than Timeout.hoststatus, as sendmail's "
                           "purgestat (sendmail -bH, edgemail purgestat).", argv, purge=True)
