"""cli/shared.py - the daemon requests both command lines offer: the queue
listing, reading the aliases again, a queue run, the host status.

Owns: what ``sendmail``/``mailq``/``newaliases``, ``edgemail`` and the
``hoststat``/``purgestat`` programs have in common, each one function
that takes the loaded config and returns the exit code (PROG names the
program in its stderr lines; the queue listing's always say ``mailq:``):

    print_mailq(cfg)                         mailq, sendmail -bp, edgemail queue list
    reload_daemon(cfg, prog, reason)         newaliases, sendmail -bi, edgemail reload
    request_queue_run(cfg, filters, prog)    sendmail -q..., edgemail queue run
    print_hoststat(cfg, prog)                hoststat, sendmail -bh, edgemail hoststat
    purge_hoststat(cfg, prog, everything=)   purgestat, sendmail -bH, edgemail purgestat

and the two console scripts ``hoststat_main`` and ``purgestat_main``
(``-C``/``-c``/``--config``; ``purgestat --all``).

Never: reads the queue, the host status or the spool itself: the daemon
answers (its control socket), and this module prints what it says.  The
one thing checked here is the aliases file (``reload_daemon``), so that a
mistake is named by FILE:LINE before the daemon is asked, and is reported
even with the daemon down.

Fails: as ``base.ask`` does (75 daemon down or too slow, 65 refused, 76 a
reply of another version's form: the mailq listing is checked field by
field); a bad aliases file exits 65 and the daemon is not asked; a bad
config file exits 78.  ``newaliases`` with the daemon down is no failure:
the daemon reads the aliases when it starts.
"""

from __future__ import annotations

import sys

from edgemail.cli.base import (
    EX_CONFIG,
    EX_DATAERR,
    EX_OK,
    ask,
    config_path,
    control_failed,
    err,
    field,
)
from edgemail.config import loader as configmod
from edgemail.daemon.control import ControlClient, DaemonUnreachable
from edgemail.errors import ConfigError, ControlError


def listing(cfg, fmt: str):
    """(total, items) of the daemon's streamed queue_list; raises OtherVersion
    for a reply of another form."""
    it = ControlClient(cfg.control_socket, timeout=cfg.Timeout.control).stream("queue_list", format=fmt)
    return field(next(it), "total", int, "queue_list reply"), it


def print_mailq(cfg, out=None) -> int:
    """sendmail's mailq listing; the daemon sends each entry preformatted."""
    out = out or sys.stdout
    try:
        total, batches = listing(cfg, "mailq")
        if not total:
            out.write("Mail queue is empty\n")
            return EX_OK
        out.write(f"\t\t{cfg.spool_dir} ({total} request{'s' if total != 1 else ''})\n"
                  "-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n")
        for batch in batches:
            out.write(field(batch, "text", str, "queue listing"))
        out.write(f"\t\tTotal requests: {total}\n")
    except ControlError as exc:
        return control_failed("mailq", exc)
    return EX_OK


def reload_daemon(cfg, prog: str, reason: str) -> int:
    """``newaliases``, ``sendmail -bi``, ``edgemail reload``: check the aliases
    here (errors name FILE:LINE, exit 65), then have the daemon read them and
    the dial policy again (as SIGHUP does)."""
    from edgemail.delivery.aliases import load as load_aliases
    name = cfg.local.aliases or "(no aliases file)"
    try:
        count = len(load_aliases(cfg.local.aliases, cfg.local).entries)
    except ConfigError as exc:
        err(prog, str(exc))
        return EX_DATAERR
    try:
        reply = ControlClient(cfg.control_socket, timeout=cfg.Timeout.control).request("reload", reason=reason)
    except DaemonUnreachable:
        print(f"{name}: {count} aliases (the daemon is not running: it reads them when it starts)")
        return EX_OK
    except ControlError as exc:
        return control_failed(prog, exc)
    print(f"{name}: {reply.get('aliases', count)} aliases, read again by the daemon")
    if reply.get("restart_needed"):
        print(f"changed settings that take effect at restart: {', '.join(reply['restart_needed'])}")
    return EX_OK


def request_queue_run(cfg, filters: list[str], prog: str = "sendmail") -> int:
    reply, code = ask(cfg, prog, "queue_run", filters=filters)
    if reply and reply.get("message"):
        print(reply["message"])
    return code


def print_hoststat(cfg, prog: str) -> int:
    reply, code = ask(cfg, prog, "hoststat")
    if reply is not None:
        sys.stdout.write(reply.get("text", ""))
    return code


def purge_hoststat(cfg, prog: str, *, everything: bool = False) -> int:
    reply, code = ask(cfg, prog, "purgestat", all=everything)
    if reply is not None:
        purged = reply.get("purged", [])
        print(f"purged {len(purged)} host status entr{'y' if len(purged) == 1 else 'ies'}"
              + (f": {', '.join(purged)}" if purged else ""))
    return code


def _status_main(prog: str, fn, argv: list[str] | None) -> int:
    import argparse
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("-C", "-c", "--config", dest="config")
    if fn is purge_hoststat:
        p.add_argument("--all", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = configmod.load(config_path(args.config))
    except ConfigError as exc:
        err(prog, f"configuration error: {exc}")
        return EX_CONFIG
    if fn is purge_hoststat:
        return fn(cfg, prog, everything=args.all)
    return fn(cfg, prog)


def hoststat_main(argv: list[str] | None = None) -> int:
    """``hoststat``: sendmail's host status listing (as ``sendmail -bh``)."""
    return _status_main("hoststat", print_hoststat, argv)


def purgestat_main(argv: list[str] | None = None) -> int:
    """``purgestat``: forget expired host status (as ``sendmail -bH``)."""
    return _status_main("purgestat", purge_hoststat, argv)
