"""cli/importcmd.py - ``edgemail import``: a sendmail set-up as edgemail.toml and dial.policy.

Synopsis::

    edgemail import SENDMAIL.mc|SENDMAIL.cf [--crontab FILE] [--queue-interval TIME]
                    [--domain DOMAIN]... [--lan NET]... [--timezone ZONE]
                    [-o DIR] [--force] [--dry-run] [--json]

Owns: the driver of the import: it reads the files (a .cf by its name or
its content, else m4 source), asks the cores (mcread.py reads, migrate.py
and migrateroutes.py decide, importrender.py writes the text), checks the
result as the daemon would read it (the config loader on the text, with
the path it will have, and link.policy.parse on the policy), and only then
writes DIR/edgemail.toml and DIR/dial.policy, fsynced, mode 0640.  It
prints what was carried over and, one per line, what was not and why;
then what ``config check`` finds of the files the new config names (an
aliases file that is still on the sendmail machine, say: cli/checks.py).

Defaults it takes from this machine, each said in the output: the zone the
cron lines ran in (--timezone, else $TZ, /etc/timezone or /etc/localtime's
link, else UTC), and its host name (socket.gethostname(), no DNS) as the
last local domain when it has a domain.

Never: overwrites a file without --force (the two files are checked before
either is written, and a new file is created exclusively); looks anything
up in DNS; touches sendmail's own files.

Fails: 64 bad options; 66 a file cannot be read; 65 no local domain can be
told (give --domain); 73 a file exists (use --force) or cannot be written;
70 (a bug) the result would not load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING

from edgemail.cli.base import EX_DATAERR, EX_NOINPUT, EX_OK, EX_SOFTWARE, Exit, UsageError, err

if TYPE_CHECKING:
    from edgemail.cli.migrate import Plan

EX_CANTCREAT = 73
FILES = ("edgemail.toml", "dial.policy")


def options(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SENDMAIL.mc", help="sendmail.mc (m4 source) or sendmail.cf to read")
    p.add_argument("--crontab", metavar="FILE", help="a crontab whose sendmail -q, ETRN and fetchmail lines "
                   "become the dial policy's rules (a user's or /etc/crontab)")
    p.add_argument("--queue-interval", metavar="TIME", help="sendmail -qTIME of a queue-run daemon (e.g. 1h): "
                   "a rule at that interval, when the crontab gives none")
    p.add_argument("--domain", action="append", default=[], metavar="DOMAIN",
                   help="a local domain, first (repeatable); needed when the file names none")
    p.add_argument("--lan", action="append", default=[], metavar="NET",
                   help="a network that may relay (lan_networks, repeatable), e.g. 192.168.1.0/24")
    p.add_argument("--timezone", metavar="ZONE", help="the zone the cron lines ran in (default: this machine's)")
    p.add_argument("-o", "--output-dir", default=".", metavar="DIR", help="where to write (default: .)")
    p.add_argument("--force", action="store_true", help="replace edgemail.toml and dial.policy if they exist")
    p.add_argument("--dry-run", action="store_true", help="print both files instead of writing them")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as exc:
        err("edgemail", f"import: cannot read {path}: {exc.strerror}")
        raise Exit(EX_NOINPUT) from None


def _is_cf(path: str, text: str) -> bool:
    if path.endswith(".cf"):
        return True
    if path.endswith((".mc", ".m4")):
        return False
    return "define(" not in text and any(line.startswith(("O ", "DS", "Cw", "M")) for line in text.splitlines())


def system_zone() -> tuple[str, str]:
    """(zone, how it was found) of this machine, for the cron lines."""
    if os.environ.get("TZ", "").strip(":"):
        return os.environ["TZ"].strip(":"), "$TZ"
    try:
        with open("/etc/timezone") as f:
            zone = f.read().strip()
        if zone:
            return zone, "/etc/timezone"
    except OSError:
        pass
    target = os.path.realpath("/etc/localtime")
    if "/zoneinfo/" in target:
        return target.split("/zoneinfo/", 1)[1], "/etc/localtime"
    return "UTC", "nothing said otherwise"


def _inputs(args: argparse.Namespace):
    import socket

    from edgemail.cli.migrate import Inputs
    from link import durations
    zone, how = (args.timezone, "--timezone") if args.timezone else system_zone()
    try:
        interval = durations.parse(args.queue_interval) if args.queue_interval else 0.0
    except ValueError as exc:
        raise UsageError(f"--queue-interval: {exc}") from None
    inputs = Inputs(source=os.path.basename(args.source), crontab=os.path.basename(args.crontab or ""),
                    zone=zone, domains=tuple(d.lower() for d in args.domain), lan=tuple(args.lan),
                    hostname=socket.gethostname(), queue_interval=interval)
    return inputs, f"{zone} ({how})"


def plan_of(args: argparse.Namespace) -> tuple[Plan, str]:
    """Read the files; the Plan and the zone's story.  Exit 65 when no local domain can be told."""
    from edgemail.cli import mcread, migrate, migrateroutes
    text = _read(args.source)
    items = mcread.read_cf(text) if _is_cf(args.source, text) else mcread.read_mc(text)
    jobs = mcread.read_crontab(_read(args.crontab)) if args.crontab else []
    inputs, zone = _inputs(args)
    plan = migrate.migrate(items, inputs)
    try:
        migrateroutes.finish(plan, jobs, inputs)
    except ValueError as exc:
        err("edgemail", f"import: {exc}")
        raise Exit(EX_DATAERR) from None
    return plan, zone if plan.zone == inputs.zone else f"{plan.zone} (the crontab's CRON_TZ)"


def _header(args: argparse.Namespace, name: str, zone: str) -> list[str]:
    given = args.source + (f" and the crontab {args.crontab}" if args.crontab else "")
    return [f"{name} written by `edgemail import` from {given}", f"on {time.strftime('%Y-%m-%d %H:%M %Z')}; cron "
            f"times are read in {zone}.", "Each setting says where it came from."]


def texts(args: argparse.Namespace) -> tuple[dict[str, str], Plan]:
    """The two files' text, checked as the daemon would read them; and the Plan."""
    from edgemail.cli.importrender import config_text, policy_text
    plan, zone = plan_of(args)
    out = {"edgemail.toml": config_text(plan, _header(args, "edgemail.toml", zone)),
           "dial.policy": policy_text(plan, _header(args, "dial.policy", zone))}
    _check(out, args.output_dir)
    return out, plan


def _check(out: dict[str, str], directory: str) -> None:
    import tomllib

    from edgemail.config.loader import from_dict
    from edgemail.errors import ConfigError
    from link.policy import PolicyError, parse
    path = os.path.join(os.path.abspath(directory), "edgemail.toml")
    try:
        from_dict(tomllib.loads(out["edgemail.toml"]), path=path, text=out["edgemail.toml"])
        parse(out["dial.policy"], file="dial.policy")
    except (ConfigError, PolicyError, tomllib.TOMLDecodeError) as exc:
        err("edgemail", f"import: the result would not load (a bug in edgemail import, please report it):\n{exc}")
        raise Exit(EX_SOFTWARE) from None


def write(out: dict[str, str], directory: str, *, force: bool) -> list[str]:
    """Write the files (none if one exists and not FORCE); their paths."""
    from link.fileio import fsync_dir, write_atomically, write_new
    paths = [os.path.join(directory, name) for name in FILES]
    existing = [p for p in paths if os.path.lexists(p)]
    if existing and not force:
        err("edgemail", f"import: {', '.join(existing)} exist(s): nothing written (--force replaces them)")
        raise Exit(EX_CANTCREAT)
    try:
        os.makedirs(directory, exist_ok=True)
        for path, name in zip(paths, FILES):
            if force:
                write_atomically(path, out[name], 0o644)
            else:
                write_new(path, out[name].encode(), 0o644)
        fsync_dir(directory)
    except OSError as exc:
        err("edgemail", f"import: cannot write {exc.filename or directory}: {exc.strerror}")
        raise Exit(EX_CANTCREAT) from None
    return paths


def files_to_mend(config: str) -> list[str]:
    """What config check says of the files the written config names (an
    aliases file still on the sendmail machine, say), errors first."""
    from edgemail.cli.checks import check_files
    from edgemail.config.loader import load
    found = check_files(load(config))
    return found.errors + found.warnings


def import_command(args: argparse.Namespace) -> int:
    """``edgemail import``."""
    out, plan = texts(args)
    if args.dry_run:
        for name in FILES:
            sys.stdout.write(f"==> {os.path.join(args.output_dir, name)} <==\n{out[name]}\n")
        return EX_OK
    paths = write(out, args.output_dir, force=args.force)
    todo = files_to_mend(paths[0])
    if getattr(args, "json", False):
        from edgemail.cli.show import print_json
        print_json({"wrote": paths, "carried": plan.carried, "not_carried": plan.dropped, "to_mend": todo})
        return EX_OK
    print(f"wrote {paths[0]} and {paths[1]}")
    print("carried over:\n" + "".join(f"  {c}\n" for c in plan.carried), end="")
    print("not carried over:\n" + "".join(f"  {d}\n" for d in plan.dropped), end="")
    if todo:
        print("files it names, as `edgemail config check` finds them here:\n" + "".join(f"  {t}\n" for t in todo),
              end="")
    print(f"next: edgemail config check {paths[0]}; edgemail policy check {paths[1]}")
    return EX_OK
