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

and, for ``edgemail``'s parser, the same as commands of its parsed
arguments (``queue_run_command``, ``reload_command``, ``hoststat_command``,
``purgestat_command``: with ``--json`` they print the daemon's reply as
JSON) and ``queue_json`` (``edgemail queue list --json``).  The
``hoststat`` and ``purgestat`` console scripts are admin.py's.

Never: reads the queue, the host status or the spool itself while the
daemon runs: the daemon answers (its control socket), and this module
prints what it says.  With the daemon down, the listing is the spool read
from disk, read-only (cli/spoolview.py: the maildrop, then the queue; a
note on stderr says so; a user who may not read the spool's files is told
who may, exit 75).  The one thing checked here is the aliases file
(``reload_daemon``), so that a mistake is named by FILE:LINE before the
daemon is asked, and is reported even with the daemon down.

Fails: as ``base.ask`` does (75 daemon down or too slow, 65 refused, 76 a
reply of another version's form: the mailq listing is checked field by
field); a bad aliases file exits 65 and the daemon is not asked; a bad
config file exits 78.  ``newaliases`` with the daemon down is no failure:
the daemon reads the aliases when it starts.
"""

from __future__ import annotations

import json
import sys

from edgemail.cli.base import (
    EX_DATAERR,
    EX_OK,
    EX_TEMPFAIL,
    EX_USAGE,
    ask,
    control_failed,
    err,
    field,
    load_config,
    other_version,
)
from edgemail.cli.flags import QUEUE_FILTER
from edgemail.daemon.client import ControlClient, DaemonUnreachable
from edgemail.errors import ConfigError, ControlError


def listing(cfg, fmt: str):
    """(first line, items) of the daemon's streamed queue_list (its total, and
    how many files corrupt/ holds); raises OtherVersion for another form."""
    it = ControlClient(cfg.control_socket, timeout=cfg.Timeout.control).stream("queue_list", format=fmt)
    head = next(it)
    field(head, "total", int, "queue_list reply")
    return head, it


def print_mailq(cfg, out=None) -> int:
    """sendmail's mailq listing; the daemon sends each entry preformatted.
    With the daemon down, the spool read from disk (cli/spoolview.py)."""
    from edgemail.daemon.listing import corrupt_line
    out = out or sys.stdout
    try:
        head, batches = listing(cfg, "mailq")
        total, damaged = head["total"], corrupt_line(cfg.spool_dir, head.get("corrupt", 0))
        if not total:
            out.write("Mail queue is empty\n" + damaged)
            return EX_OK
        out.write(f"\t\t{cfg.spool_dir} ({total} request{'s' if total != 1 else ''})\n"
                  "-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n")
        for batch in batches:
            out.write(field(batch, "text", str, "queue listing"))
        out.write(f"\t\tTotal requests: {total}\n" + damaged)
    except DaemonUnreachable as exc:
        return _from_disk(cfg, exc, "mailq", lambda q: spoolview().print_disk_mailq(q, out))
    except ControlError as exc:
        return control_failed("mailq", exc)
    return EX_OK


def spoolview():
    from edgemail.cli import spoolview as module
    return module


def _from_disk(cfg, why: DaemonUnreachable, prog: str, show) -> int:
    """The daemon is down (WHY): SHOW(the spool read from disk), or say who may read it (75)."""
    view = spoolview()
    try:
        queue = view.read_spool(cfg.spool_dir, cfg.RetryFactor)
    except view.NoAccess as exc:
        err(prog, f"{why}, and {exc}")
        return EX_TEMPFAIL
    for note in view.notes(queue):
        err(prog, note)
    show(queue)
    return EX_OK


def reload_daemon(cfg, prog: str, reason: str, *, as_json: bool = False, only: str = "") -> int:
    """``newaliases``, ``sendmail -bi``, ``edgemail reload``: check the aliases
    here (errors name FILE:LINE, exit 65), then have the daemon read them and
    the dial policy again (as SIGHUP does); ``only="aliases"`` (newaliases):
    the aliases alone, whatever state the other files are in."""
    from edgemail.cli.checks import alias_errors
    from edgemail.delivery.aliases import load as load_aliases
    name = cfg.local.aliases or "(no aliases file)"
    try:
        table = load_aliases(cfg.local.aliases, cfg.local)
    except ConfigError:
        for error in alias_errors(cfg.local.aliases, cfg.local):      # every bad entry, FILE:LINE each
            err(prog, str(error))
        return EX_DATAERR
    count = len(table.entries)
    if table.missing:
        err(prog, f"warning: {name} does not exist: no aliases")
    try:
        fields = {"only": only} if only else {}
        reply = ControlClient(cfg.control_socket, timeout=cfg.Timeout.control).request("reload", reason=reason, **fields)
    except DaemonUnreachable:
        if as_json:
            _print_json({"aliases": count, "reloaded": False, "daemon": "not running"})
        else:
            print(f"{name}: {count} aliases (the daemon is not running: it reads them when it starts)")
        return EX_OK
    except ControlError as exc:
        return control_failed(prog, exc)
    reply.pop("ok", None)
    if as_json:
        _print_json(reply)
        return EX_OK
    print(f"{name}: {reply.get('aliases', count)} aliases, read again by the daemon")
    if reply.get("restart_needed"):
        print(f"changed settings that take effect at restart: {', '.join(reply['restart_needed'])}")
    return EX_OK


def request_queue_run(cfg, filters: list[str], prog: str = "sendmail", *, as_json: bool = False) -> int:
    reply, code = ask(cfg, prog, "queue_run", filters=filters)
    if reply is not None and as_json:
        reply.pop("ok", None)
        _print_json(reply)
    elif reply and reply.get("message"):
        print(reply["message"])
    return code


def print_hoststat(cfg, prog: str, *, as_json: bool = False) -> int:
    reply, code = ask(cfg, prog, "hoststat")
    if reply is not None:
        if as_json:
            _print_json({"text": reply.get("text", "")})
        else:
            sys.stdout.write(reply.get("text", ""))
    return code


def purge_hoststat(cfg, prog: str, *, everything: bool = False, as_json: bool = False) -> int:
    reply, code = ask(cfg, prog, "purgestat", all=everything)
    if reply is not None:
        purged = reply.get("purged", [])
        if as_json:
            _print_json({"purged": purged})
        else:
            print(f"purged {len(purged)} host status entr{'y' if len(purged) == 1 else 'ies'}"
                  + (f": {', '.join(purged)}" if purged else ""))
    return code


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def queue_json(cfg) -> int:
    """``edgemail queue list --json``: one object per message, streamed as the
    daemon sends them (with the daemon down: read from disk, maildrop first)."""
    out = sys.stdout
    try:
        _, batches = listing(cfg, "rows")
        rows = (row_object(row) for batch in batches for row in field(batch, "rows", list, "queue listing"))
        _write_json_list(out, rows)
    except DaemonUnreachable as exc:
        return _from_disk(cfg, exc, "edgemail", lambda q: _write_json_list(out, spoolview().disk_rows(q)))
    except ControlError as exc:
        return control_failed("edgemail", exc)
    return EX_OK


def _write_json_list(out, objects) -> None:
    out.write("[")
    for n, obj in enumerate(objects):
        out.write(("," if n else "") + "\n" + json.dumps(obj))
    out.write("\n]\n")


def row_object(row) -> dict:
    """A queue_list row as the object ``--json`` prints (daemon/listing.py);
    a row of another form is OtherVersion."""
    from edgemail.daemon.listing import row_object as read_row
    try:
        return read_row(row)
    except (TypeError, ValueError):
        raise other_version("queue listing", f"a row {str(row)[:80]}") from None


# ---------------------------------------------------------------- as edgemail's commands

def _json(args) -> bool:
    return bool(getattr(args, "json", False))


def queue_run_command(args) -> int:
    """``edgemail queue run [FILTER...]``."""
    bad = [f for f in args.filters if not QUEUE_FILTER.fullmatch(f)]
    if bad:
        err("edgemail", f"bad filter(s) {', '.join(bad)}: expected R<substr>, S<substr> or I<substr>, "
                        "optionally prefixed with !")
        return EX_USAGE
    cfg = load_config(getattr(args, "config", None), "edgemail")
    return request_queue_run(cfg, args.filters, "edgemail", as_json=_json(args))


def reload_command(args) -> int:
    cfg = load_config(getattr(args, "config", None), "edgemail")
    return reload_daemon(cfg, "edgemail", "edgemail reload", as_json=_json(args))


def hoststat_command(args) -> int:
    cfg = load_config(getattr(args, "config", None), getattr(args, "prog", "edgemail"))
    return print_hoststat(cfg, getattr(args, "prog", "edgemail"), as_json=_json(args))


def purgestat_command(args) -> int:
    prog = getattr(args, "prog", "edgemail")
    cfg = load_config(getattr(args, "config", None), prog)
    return purge_hoststat(cfg, prog, everything=args.all, as_json=_json(args))
