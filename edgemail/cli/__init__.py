"""cli - the command line: ``sendmail``, ``mailq``, ``newaliases``,
``hoststat``, ``purgestat`` and ``edgemail``.

NAME
    edgemail.cli - the programs local users, MUAs, cron, scripts and the
    ppp hooks run; the console scripts of pyproject.toml point here

MODULES
    sendmail.py   sendmail(8) and mailq: modes, submission (control socket,
                  else the maildrop), -bs relayed to the daemon's listener
    flags.py      sendmail's flags -> SendmailArgs (pure)
    message.py    stdin -> the message to queue and its recipients (pure)
    admin.py      ``edgemail``: run, config check, queue, status, reload,
                  hoststat, purgestat, link explain|dial|hangup|hook
    shared.py     the requests both command lines make: mailq listing,
                  reload (newaliases), queue run, host status; and the
                  ``hoststat`` and ``purgestat`` programs
    base.py       exit codes, the config path, stderr, one control request
                  and the exit code of its failure

    Imports point one way: sendmail and admin -> shared, flags -> base;
    sendmail -> message -> flags.  The rest of edgemail imports only the entry
    points below (__main__.py: ``python -m edgemail``).

EXIT CODES (sysexits.h)
    0 ok, 64 usage, 65 data error (bad address, too big, refused), 66 no
    input, 75 temporary failure (daemon down or slow), 76 a daemon of
    another version, 78 configuration error.

NEVER
    Runs the daemon's work in-process: every program is a client of the
    control socket (``edgemail run`` excepted, which is the daemon), and
    the only file written here is a maildrop file when the daemon is down.
"""

from edgemail.cli.admin import edgemail_main
from edgemail.cli.sendmail import mailq_main, sendmail_main
from edgemail.cli.shared import hoststat_main, purgestat_main

__all__ = ["edgemail_main", "sendmail_main", "mailq_main", "hoststat_main", "purgestat_main"]
