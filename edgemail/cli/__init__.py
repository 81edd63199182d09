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
    another version, 78 configuration error.

NEVER
    Runs the daemon's work in-process: every program is a client of the
    control socket (``edgemail run`` excepted, which is the daemon), and
    the files written here are a maildrop file when the daemon is down and
    what ``edgemail import`` is asked to write.
"""

from __future__ import annotations

__all__ = ["edgemail_main", "sendmail_main", "mailq_main", "hoststat_main", "purgestat_main"]


def edgemail_main(argv: list[str] | None = None) -> int:
    from edgemail.cli.admin import edgemail_main as main
    return main(argv)


def sendmail_main(argv: list[str] | None = None) -> int:
    from edgemail.cli.sendmail import sendmail_main as main
    return main(argv)


def mailq_main(argv: list[str] | None = None) -> int:
    from edgemail.cli.sendmail import mailq_main as main
    return main(argv)


def hoststat_main(argv: list[str] | None = None) -> int:
    from edgemail.cli.admin import hoststat_main as main
    return main(argv)


def purgestat_main(argv: list[str] | None = None) -> int:
    from edgemail.cli.admin import purgestat_main as main
    return main(argv)
