"""cli/admin.py - ``edgemail``, the administrator's command: the daemon, the
config, the queue, the status and the link manager.

Synopsis::

    edgemail [-c FILE] run [--syslog]            the daemon, in the foreground
    edgemail config check [FILE]                 the effective config, or its errors (exit 78)
    edgemail queue list [--json] | show QID | run [FILTER...]
    edgemail status [--json]                     link state, queue demand, next policy action,
                                                 budget left, last ETRN, last call
    edgemail reload | hoststat | purgestat [--all]
    edgemail link explain | dial | hangup        would it dial now, why, when next
    edgemail link hook ip-up|ip-down -- IFACE TTY SPEED LOCAL REMOTE [IPPARAM]

Owns: the console script ``edgemail_main`` (also ``python -m edgemail``),
its argparse parser, and the subcommands only ``edgemail`` has: ``config
check``, ``queue list --json``, ``queue show``, ``status`` (``status_text``
for people, the reply as it came with ``--json``), and ``link``.  ``queue
list``, ``queue run``, ``reload``, ``hoststat`` and ``purgestat`` are the
requests shared.py makes for ``sendmail`` too.  The config file is
``-c/--config`` (also after ``run``), else $EDGEMAIL_CONFIG, else
/etc/edgemail/edgemail.toml.

``link hook`` is for the ppp hooks (/etc/ppp/ip-up.d, ip-down.d): pppd's
arguments in pppd's order, the ``IFNAME``, ``IPLOCAL``, ``IPREMOTE`` and
``IPPARAM`` variables where an argument is missing, and the environment's
CONNECT_TIME, BYTES_SENT, BYTES_RCVD (ip-down's accounting) among
``HOOK_ENV`` passed on.  A hook gives up after HOOK_TIMEOUT_S and exits 0
when the daemon is down, too slow, or the config unreadable: pppd must
never wait for us, and the daemon learns of the link from netlink anyway.
Only a refusal by the daemon exits 75.

Never: touches the spool, the modem or pppd: every subcommand but ``run``
and ``config check`` is one control request, and ``run`` hands over to
daemon.run (imported only then, so the other subcommands stay light).

Fails: argparse's usage errors exit 64 (not 2), a bad config 78, a bad
``queue run`` filter 64; a failed request as ``base.ask`` says (75, 65,
76), and ``link explain|dial|hangup`` with ``[link] mode = "none"`` says
there is no link manager.
"""

from __future__ import annotations

import base64
import json
import os
import sys

from edgemail.cli.base import (
    DEFAULT_CONFIG,
    EX_CONFIG,
    EX_DATAERR,
    EX_OK,
    EX_TEMPFAIL,
    EX_USAGE,
    ask,
    config_path,
    control_failed,
    err,
    field,
    other_version,
)
from edgemail.cli.flags import QUEUE_FILTER
from edgemail.cli.shared import (
    listing,
    print_hoststat,
    print_mailq,
    purge_hoststat,
    reload_daemon,
    request_queue_run,
)
from edgemail.config import loader as configmod
from edgemail.daemon.control import ControlClient, RequestFailed
from edgemail.errors import ConfigError, ControlError

#: a ppp hook's whole conversation with the daemon (pppd runs it without waiting)
HOOK_TIMEOUT_S = 0.8
#: pppd environment passed on by the hooks (ip-down's accounting among them)
HOOK_ENV = ("CONNECT_TIME", "BYTES_SENT", "BYTES_RCVD", "LINKNAME", "DNS1", "DNS2", "PPPD_PID")


def _parser():
    import argparse
    p = argparse.ArgumentParser(prog="edgemail", description="dial-on-demand edge mail appliance")
    p.add_argument("-c", "--config", help=f"config file (default $EDGEMAIL_CONFIG or {DEFAULT_CONFIG})")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("-c", "--config", dest="run_config", help="config file")
    run.add_argument("--syslog", action="store_true", help="also log to /dev/log, facility mail")
    cfg = sub.add_parser("config", help="configuration").add_subparsers(dest="config_cmd", required=True)
    chk = cfg.add_parser("check", help="print the effective config, or its errors (exit 78)")
    chk.add_argument("file", nargs="?")
    q = sub.add_parser("queue", help="the queue").add_subparsers(dest="queue_cmd", required=True)
    ql = q.add_parser("list", help="list queued messages (as mailq)")
    ql.add_argument("--json", action="store_true")
    qs = q.add_parser("show", help="one message: envelope, state and content")
    qs.add_argument("qid")
    qr = q.add_parser("run", help="ask for a queue run; filters as sendmail -q: R<substr>, S<substr>, "
                                  "I<substr>, prefixed with ! to negate")
    qr.add_argument("filters", nargs="*")
    sub.add_parser("reload", help="the daemon reads the aliases and the dial policy again (as SIGHUP)")
    sub.add_parser("hoststat", help="host status: hosts that failed lately (sendmail -bh)")
    ps = sub.add_parser("purgestat", help="forget expired host status (sendmail -bH)")
    ps.add_argument("--all", action="store_true", help="forget every host's status")
    st = sub.add_parser("status", help="daemon status: link, queue, next dial, budget, last ETRN and call")
    st.add_argument("--json", action="store_true")
    lk = sub.add_parser("link", help="the link manager").add_subparsers(dest="link_cmd", required=True)
    lk.add_parser("explain", help="would it dial now, and why / when next")
    lk.add_parser("dial", help="dial now, whatever the policy says")
    lk.add_parser("hangup", help="hang up now")
    hk = lk.add_parser("hook", help="for /etc/ppp/ip-up.d and ip-down.d: tell the daemon")
    hk.add_argument("event", choices=("ip-up", "ip-down"))
    hk.add_argument("pppd_args", nargs="*", metavar="IFACE TTY SPEED LOCAL REMOTE [IPPARAM]")
    return p


def edgemail_main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:          # argparse: 2 on a usage error; sysexits says 64
        return EX_USAGE if exc.code == 2 else (exc.code or EX_OK)
    if args.cmd == "config":
        return config_check(args.file or config_path(args.config))
    path = config_path(getattr(args, "run_config", None) or args.config)
    try:
        cfg = configmod.load(path)
    except ConfigError as exc:
        err("edgemail", f"configuration error:\n{exc}")
        return EX_OK if getattr(args, "link_cmd", None) == "hook" else EX_CONFIG
    return _run_command(cfg, args)


def _run_command(cfg, args) -> int:
    """Do what the subcommand asks, with the config loaded."""
    if args.cmd == "link":
        return _link(cfg, args)
    if args.cmd == "run":
        from edgemail.daemon.run import run
        return run(cfg, syslog=args.syslog)
    if args.cmd == "status":
        return _status(cfg, args.json)
    if args.cmd == "reload":
        return reload_daemon(cfg, "edgemail", "edgemail reload")
    if args.cmd == "hoststat":
        return print_hoststat(cfg, "edgemail")
    if args.cmd == "purgestat":
        return purge_hoststat(cfg, "edgemail", everything=args.all)
    return _queue(cfg, args)


def _queue(cfg, args) -> int:
    """``edgemail queue list|show|run``."""
    if args.queue_cmd == "list":
        return print_mailq(cfg) if not args.json else _queue_json(cfg)
    if args.queue_cmd == "show":
        return _queue_show(cfg, args.qid)
    bad = [f for f in args.filters if not QUEUE_FILTER.fullmatch(f)]
    if bad:
        err("edgemail", f"bad filter(s) {bad}: expected R<substr>, S<substr> or I<substr>, optionally prefixed with !")
        return EX_USAGE
    return request_queue_run(cfg, args.filters, "edgemail")


def config_check(path: str) -> int:
    try:
        cfg = configmod.load(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EX_CONFIG
    sys.stdout.write(configmod.dump(cfg))
    return EX_OK


def _queue_json(cfg) -> int:
    try:
        _, batches = listing(cfg, "rows")
        rows = (row for batch in batches for row in field(batch, "rows", list, "queue listing"))
        out = sys.stdout
        out.write("[")
        for n, row in enumerate(rows):
            try:
                qid, size, created, sender, held, rcpts = row
                recipients = [{"address": r, "status": s, "last_reply": t} for r, s, t in rcpts]
            except (TypeError, ValueError):
                raise other_version("queue listing", f"a row {str(row)[:80]}") from None
            out.write(("," if n else "") + "\n" + json.dumps(
                {"qid": qid, "size": size, "created": created, "from": sender, "held": bool(held),
                 "recipients": recipients}))
        out.write("\n]\n")
    except ControlError as exc:
        return control_failed("edgemail", exc)
    return EX_OK


def _print_fields(reply: dict) -> None:
    """A reply as ``key: value`` lines (lists and dicts as JSON), without ``ok``."""
    for key, value in reply.items():
        if key != "ok":
            print(f"{key}: {json.dumps(value) if isinstance(value, (list, dict)) else value}")


def _queue_show(cfg, qid: str) -> int:
    reply, code = ask(cfg, "edgemail", "queue_show", qid=qid, data=True)
    if reply is None:
        return code
    data = base64.b64decode(reply.pop("data_b64", ""))
    _print_fields(reply)
    print()
    sys.stdout.flush()
    sys.stdout.buffer.write(data.replace(b"\r\n", b"\n"))
    return EX_OK


def _status(cfg, as_json: bool) -> int:
    reply, code = ask(cfg, "edgemail", "status")
    if reply is None:
        return code
    reply.pop("ok", None)
    if as_json:
        print(json.dumps(reply, indent=2))
    elif "queue" in reply:
        sys.stdout.write(status_text(reply))
    else:
        _print_fields(reply)
    return EX_OK


def _age(seconds) -> str:
    s = int(seconds or 0)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def status_text(r: dict) -> str:
    """``edgemail status`` for people (the daemon's status reply with a link manager)."""
    link, q, nxt = r.get("link", {}), r.get("queue", {}), r.get("next", {})
    lines = [f"daemon:      pid {r.get('pid')}, up {_age(r.get('uptime_s'))}, version {r.get('version')}",
             f"link:        {link.get('state')} (mode {link.get('mode')}, phase {link.get('phase')}, "
             f"failed dials {link.get('failed_dials', 0)})",
             f"queue:       {q.get('count', 0)} message(s), {q.get('expensive', 0)} for the link, "
             f"{q.get('due', 0)} due, oldest {_age(q.get('oldest_age_s'))}, {q.get('urgent', 0)} urgent"]
    when = "now" if nxt.get("dial") else (nxt.get("at") or "no dial planned")
    lines.append(f"next:        {when} ({nxt.get('reason', '')})")
    b = r.get("budget_left") or {}
    lines.append("budget left: " + ", ".join(
        f"{'unlimited' if b.get(k) is None else b[k]} {k}" for k in ("calls", "minutes")))
    e = r.get("last_etrn")
    lines.append("last ETRN:   " + ("none" if not e else f"{'ok' if e.get('ok') else 'FAILED'} at {e.get('at')}: "
                 + "; ".join(f"{x['domain']} {x['code']} {x['text']}" for x in e.get("replies", []))))
    c = r.get("last_call")
    lines.append("last call:   " + ("none" if not c else
                 f"{c.get('start')}, {c.get('connect_s', 0):.1f}s, sent {c.get('bytes_sent')} B, "
                 f"rcvd {c.get('bytes_rcvd')} B, cause {c.get('cause') or '-'}"))
    return "\n".join(lines) + "\n"


# ====================================================================== link

def _link(cfg, args) -> int:
    if args.link_cmd == "hook":
        return link_hook(cfg, args.event, args.pppd_args, os.environ)
    op = {"explain": "link_explain", "dial": "link_dial", "hangup": "link_hangup"}[args.link_cmd]
    reply, code = ask(cfg, "edgemail", op)
    if reply is None:
        if code == EX_DATAERR and cfg.link.mode == "none":
            err("edgemail", "no link manager: [link] mode is \"none\" in the configuration")
        return code
    reply.pop("ok", None)
    if "text" in reply:
        print(reply["text"])
    else:
        _print_fields(reply)
    return EX_OK


def hook_request(event: str, argv: list[str], env) -> dict:
    """pppd's ip-up/ip-down arguments and environment -> the control request's fields."""
    names = ("iface", "tty", "speed", "local", "remote", "ipparam")
    fields = dict(zip(names, argv))
    for key, var in (("iface", "IFNAME"), ("local", "IPLOCAL"), ("remote", "IPREMOTE"), ("ipparam", "IPPARAM")):
        fields.setdefault(key, env.get(var, ""))
    fields["env"] = {k: env[k] for k in HOOK_ENV if k in env}
    return fields


def link_hook(cfg, event: str, argv: list[str], env) -> int:
    """``edgemail link hook ip-up|ip-down -- ARGS``: tell the daemon; never keep pppd waiting."""
    op = "link_up" if event == "ip-up" else "link_down"
    try:
        reply = ControlClient(cfg.control_socket, timeout=HOOK_TIMEOUT_S).request(op, **hook_request(event, argv, env))
    except RequestFailed as exc:
        err("edgemail", f"{event}: the daemon refused: {exc}")
        return EX_TEMPFAIL
    except (ControlError, OSError) as exc:     # down, or too slow to answer: netlink tells it anyway
        err("edgemail", f"{event}: daemon not reachable ({exc}); nothing to tell")
        return EX_OK
    reply.pop("ok", None)
    _print_fields(reply)
    return EX_OK
