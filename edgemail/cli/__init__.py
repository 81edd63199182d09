"""cli - the command line: ``sendmail``, ``mailq``, ``newaliases``,
``hoststat``, ``purgestat`` and ``edgemail``.

NAME
    edgemail.cli - the programs local users, MUAs, cron, scripts and the
    ppp hooks run; the console scripts of pyproject.toml point here

MODULES
    sendmail.py   sendmail(8) and mailq: modes, submission (control socket,
                  else the maildrop), -bs relayed to the daemon's listener
    flags.py      sendmail's flags -> SendmailArgs, and their --help (pure)
    message.py    stdin -> the message to queue and its recipients (pure)
    addrtest.py   sendmail -bv (verify addresses) and -bt (address test mode)
    admin.py      ``edgemail``: its parser (every command, described), run,
                  config check, queue list|show, status; ``hoststat`` and
                  ``purgestat``
    show.py       the daemon's replies in words (pure)
    linkcmd.py    ``edgemail link explain|dial|hangup|hook``
    policycmd.py  ``edgemail policy check``, ``link explain --offline``
    importcmd.py  ``edgemail import``: sendmail.mc/.cf and crontab ->
                  edgemail.toml and dial.policy, with mcread.py (reading
                  the .mc, .cf and crontab) and migrate.py (what they
                  become), both pure
    shared.py     the requests both command lines make: mailq listing,
                  reload (newaliases), queue run, host status
    spoolview.py  the spool read from disk, read-only, when the daemon is
                  down (mailq, sendmail -bp, queue list)
    checks.py     ``config check``: every file the config names, with the
                  daemon's parsers
    base.py       exit codes, the config path and file, stderr, one control
                  request and the exit code of its failure

    Imports point one way: sendmail and admin -> shared -> base; sendmail
    -> message -> flags -> base.  The entry points below import their
    program's module only when called, and ``edgemail`` imports a
    command's module only when that command runs, so ``mailq`` and
    ``sendmail -t`` load no argparse and nothing of the others.

EXIT CODES (sysexits.h)
    0 ok, 64 usage, 65 data error (bad address, too big, refused), 66 no
    input, 75 temporary failure (daemon down or slow), 76 a daemon of
    another version, 78 configuration error; 141 (as a shell reports a C
    program killed by SIGPIPE) when the reader of stdout went away
    (``mailq | head``): quietly, no traceback (``quietly``).

NEVER
    Runs the daemon's work in-process: every program is a client of the
    control socket (``edgemail run`` excepted, which is the daemon), and
    the files written here are a maildrop file when the daemon is down and
    what ``edgemail import`` is asked to write.
"""

from __future__ import annotations

import os
import sys

__all__ = ["edgemail_main", "sendmail_main", "mailq_main", "hoststat_main", "purgestat_main"]

#: what a shell reports for a program a closed pipe killed (128 + SIGPIPE), as C's mailq would be
EX_PIPE = 141


def quietly(main, argv: list[str] | None) -> int:
    """Run MAIN; a reader that went away (``mailq | head``) ends it quietly:
    stdout is pointed at /dev/null, so neither the rest of the output nor
    the flush at exit raises again, and no traceback is printed."""
    try:
        code = main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EX_PIPE


def edgemail_main(argv: list[str] | None = None) -> int:
    from edgemail.cli.admin import edgemail_main as main
    return quietly(main, argv)


def sendmail_main(argv: list[str] | None = None) -> int:
    from edgemail.cli.sendmail import sendmail_main as main
    return quietly(main, argv)


def mailq_main(argv: list[str] | None = None) -> int:
    from edgemail.cli.sendmail import mailq_main as main
    return quietly(main, argv)


def hoststat_main(argv: list[str] | None = None) -> int:
    from edgemail.cli.admin import hoststat_main as main
    return quietly(main, argv)


def purgestat_main(argv: list[str] | None = None) -> int:
    from edgemail.cli.admin import purgestat_main as main
    return quietly(main, argv)
