"""cli/flags.py - sendmail's command line, read as MUAs, cron and scripts write it.

Owns: ``parse_sendmail_args(argv, prog) -> SendmailArgs``, the queue-run
filter syntax (``QUEUE_FILTER``: ``R``/``S``/``I`` and a substring,
optionally prefixed with ``!``; ``edgemail queue run`` checks its filters
with it too) and ``usage(prog)``, the ``--help`` text of ``sendmail``,
``mailq`` and ``newaliases``.  The program's name picks the default mode:
``mailq`` lists the queue (``-bp``), ``newaliases`` reloads the aliases
(``-bi``).

Accepted flags: ``-t``, ``-i``/``-oi``, ``-f ADDR``/``-fADDR``/``-r ADDR``,
``-F NAME``, ``-B 8BITMIME|7BIT``, ``-N never|success,failure,delay``,
``-R full|hdrs``, ``-V envid``, ``-bm`` (default), ``-bp``, ``-bi``,
``-I`` (as ``-bi``), ``-bs``, ``-bh``, ``-bH``, ``-q[R|S|I|!R|!S|!I]SUBSTR``, ``-C FILE``
(config), ``--help``, ``--``.  Ignored without error: every other
``-oX...`` (``-oeX``/``-eX``/``-OErrorMode=X`` only set ``error_mode``:
m and e mail a refused recipient's report back, see sendmail.py; ``-odq``/``-odb``/``-odi``:
delivery is always deferred, ``-om``), ``-O opt=val``, ``-U``, ``-v``,
``-m``, ``-n``, ``-G``, ``-h N``, ``-L tag``, ``-A m|c``, ``-d...``, ``-X
file``, ``-M`` (a macro: ``-Mrlocal``), ``-p proto:host``, the obsolete
``-e X`` and ``-T``, and ``-c``: as in sendmail, ``-c`` is HoldExpensive (option c), a
flag without a value, and edgemail always holds expensive routes for the
link.  ``-q15m`` (a periodic queue-run daemon) is not what the daemon
needs: it schedules runs itself, so the interval is ignored and one queue
run is requested, with a note in ``SendmailArgs.notes``.

Never: reads stdin or a config file, talks to the daemon, or prints: it
only reads argv (pure, tested in process).

Fails: ``UsageError`` naming the flag for an unknown option, a missing or
bad value, an address given to a mode that takes none (``mailq x``: the
config file is ``-C FILE``), ``-q`` filters with ``-bp``, and the modes
edgemail does not have (``-bd``: the daemon is ``edgemail run``; ``-bt``,
``-bv``, ``-bD``, ``-bP``); the caller exits EX_USAGE (64).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from edgemail.cli.base import UsageError


class SendmailArgs:
    """The command line as parse_sendmail_args read it.  A plain class, not
    a dataclass: every ``sendmail`` call imports this module, and
    dataclasses (with inspect, ast, dis) cost it several milliseconds."""

    def __init__(self, mode: str = "m", **given) -> None:
        #: m submit, p list the queue, i newaliases, q queue run, s SMTP, h/H host status, help
        self.mode = mode
        self.extract = False              # -t
        self.ignore_dots = False          # -i / -oi
        self.sender: str | None = None    # -f / -r
        self.full_name: str | None = None  # -F
        self.body: str | None = None      # -B
        self.notify: frozenset[str] = frozenset()   # -N
        self.ret: str | None = None       # -R
        self.envid: str | None = None     # -V
        self.config: str | None = None    # -C
        self.verbose = False
        #: sendmail's ErrorMode (-oeX, -eX, -OErrorMode=X): p print (exit code), m mail
        #: back (a report to the sender as well), e as m and exit 0, q quiet
        self.error_mode = "p"
        self.queue_filters: list[str] = []
        self.notes: list[str] = []
        self.recipients: list[str] = []
        for key, value in given.items():
            if not hasattr(self, key):
                raise TypeError(f"SendmailArgs has no field {key!r}")
            setattr(self, key, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SendmailArgs) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"SendmailArgs({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


# flags that take a value (attached or as the next argument) and are ignored
_IGNORED_WITH_VALUE = set("OLAhXdMpe")       # -M macro, -p protocol, -e: sendmail's
_IGNORED_BARE = set("UvmnGscT")
#: a queue-run filter, as ``sendmail -q`` and ``edgemail queue run`` take it
QUEUE_FILTER = re.compile(r"(!?)([RSI])(.+)")
_DEFAULT_MODE = {"mailq": "p", "newaliases": "i"}
_MODE_NAMES = {"p": "-bp (list the queue)", "i": "-bi (newaliases)", "q": "-q (queue run)",
               "s": "-bs (SMTP on stdin)", "h": "-bh (host status)", "H": "-bH (purge host status)",
               "t": "-bt (address test mode: addresses on stdin)"}


class _Argv:
    """argv as the parser walks it: the next argument, a flag's value."""

    def __init__(self, argv: list[str]) -> None:
        self.argv, self.i = argv, 0

    def next(self) -> str | None:
        self.i += 1
        return self.argv[self.i - 1] if self.i <= len(self.argv) else None

    def rest(self) -> list[str]:
        out, self.i = self.argv[self.i:], len(self.argv)
        return out

    def value(self, flag: str, attached: str) -> str:
        if attached:
            return attached
        v = self.next()
        if v is None:
            raise UsageError(f"option -{flag} requires a value")
        return v


def parse_sendmail_args(argv: list[str], prog: str = "sendmail") -> SendmailArgs:
    """sendmail's command line -> SendmailArgs.  Raises UsageError."""
    a = SendmailArgs(mode=_DEFAULT_MODE.get(prog, "m"))
    args = _Argv(argv)
    while (arg := args.next()) is not None:
        if arg == "--":
            a.recipients += args.rest()
        elif arg == "--help":
            a.mode = "help"
            return a
        elif not arg.startswith("-") or arg == "-":
            a.recipients.append(arg)
        else:
            _flag(a, arg, args)
    if a.recipients and a.mode in _MODE_NAMES:
        first = a.recipients[0]
        hint = " (the configuration file is -C FILE)" if "/" in first or first.endswith(".toml") else ""
        raise UsageError(f"{_MODE_NAMES[a.mode]} takes no addresses, got {first!r}{hint}")
    return a


def _flag(a: SendmailArgs, arg: str, args: _Argv) -> None:
    flag, rest = arg[1], arg[2:]
    if flag in _VALUED:
        attr, convert = _VALUED[flag]
        setattr(a, attr, convert(args.value(flag, rest)))
    elif flag in _BARE:
        _BARE[flag](a, rest)
    elif flag in _IGNORED_WITH_VALUE:
        value = args.value(flag, rest)
        if flag == "e" or (flag == "O" and value.lower().startswith("errormode=")):
            _error_mode(a, value.rsplit("=", 1)[-1])
        else:
            a.notes.append(f"ignored -{flag} {value}")
    elif flag in _IGNORED_BARE:
        a.verbose = a.verbose or flag == "v"
        if flag == "c":
            a.notes.append("-c (HoldExpensive): always so here, expensive routes wait for the link")
    else:
        raise UsageError(f"unknown option {arg!r} (sendmail --help lists the options)")


def _one_of(flag: str, options: tuple[str, ...]) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text.upper() not in options:
            raise UsageError(f"-{flag} takes {' or '.join(options)}, got {text!r}")
        return text.upper()
    return convert


def _dsn_notify(text: str) -> frozenset[str]:
    words = frozenset(w.strip().upper() for w in text.split(",") if w.strip())
    if not words or not words <= {"NEVER", "SUCCESS", "FAILURE", "DELAY"} or ("NEVER" in words and len(words) > 1):
        raise UsageError(f"-N takes never or a list of success,failure,delay; got {text!r}")
    return words


def _same(text: str) -> str:
    return text


def _full_name(text: str) -> str:
    """-F NAME: one line of text (a line break would start a header field of its own)."""
    if any(ord(c) < 32 and c != "\t" or c == "\x7f" for c in text):
        raise UsageError(f"-F takes a name on one line without control characters, got {text!r}")
    return text


#: flags with a value -> (SendmailArgs attribute, converter)
_VALUED: dict[str, tuple[str, Callable]] = {
    "f": ("sender", _same), "r": ("sender", _same), "F": ("full_name", _full_name), "V": ("envid", _same),
    "C": ("config", _same), "B": ("body", _one_of("B", ("8BITMIME", "7BIT"))),
    "R": ("ret", _one_of("R", ("FULL", "HDRS"))), "N": ("notify", _dsn_notify),
}


def _extract(a: SendmailArgs, rest: str) -> None:
    a.extract = True
    a.ignore_dots = a.ignore_dots or rest == "i"      # "-ti" as some scripts write it


def _ignore_dots(a: SendmailArgs, rest: str) -> None:
    a.ignore_dots = True


def _option(a: SendmailArgs, rest: str) -> None:
    if rest[:1] == "i" and rest[1:] in ("", "True", "true"):
        a.ignore_dots = True      # -oi; -oeX is ErrorMode; every other -oX is ignored
    elif rest[:1] == "e" and rest[1:]:
        _error_mode(a, rest[1:])


def _error_mode(a: SendmailArgs, mode: str) -> None:
    """ErrorMode: m and e mail a refused recipient's report back; p and q do not
    (w, sendmail's old write-to-terminal, is p here)."""
    a.error_mode = {"w": "p"}.get(mode[:1].lower(), mode[:1].lower())
    if a.error_mode not in ("p", "m", "e", "q"):
        raise UsageError(f"ErrorMode takes p, m, e, q or w, got {mode!r}")


def _mode(a: SendmailArgs, rest: str) -> None:
    if rest in ("m", "p", "i", "s", "h", "H", "v", "t"):
        a.mode = rest                 # h/H host status: -bh print, -bH purge; v verify, t address test
    elif rest == "d":
        raise UsageError("-bd: the daemon is started with `edgemail run`")
    elif rest in ("D", "P"):
        raise UsageError(f"-b{rest} is not supported by edgemail")
    else:
        raise UsageError(f"unknown mode -b{rest}")


def _queue_flag(a: SendmailArgs, rest: str) -> None:
    """-q, -q15m, -qRsubstr, -q!Ssubstr, -qIsubstr (several accumulate)."""
    if a.mode == "p":
        raise UsageError(f"-q{rest} with -bp (mailq): the listing is always the whole queue")
    a.mode = "q"
    if rest in ("", "f", "p"):
        return
    m = QUEUE_FILTER.fullmatch(rest)
    if m:
        a.queue_filters.append(m.group(1) + m.group(2) + m.group(3))
        return
    from link import durations
    try:
        durations.parse(rest[1:] if rest[:1] == "p" else rest)
    except ValueError:
        raise UsageError(f"bad queue option -q{rest}: expected -q, -qR<substr>, -qS<substr>, "
                         "-qI<substr> (optionally with !) or an interval") from None
    a.notes.append(f"-q{rest}: the daemon schedules queue runs itself (dial policy); "
                   "the interval is ignored and one queue run is requested now")


_BARE: dict[str, Callable[[SendmailArgs, str], None]] = {
    "t": _extract, "i": _ignore_dots, "o": _option, "b": _mode, "q": _queue_flag,
    "I": lambda a, rest: _mode(a, "i"),          # sendmail's -I: initialise the aliases (-bi)
}


_SENDMAIL_USAGE = """\
usage: {prog} [flags] [address ...] < message

Submit a message (read from stdin) to edgemail, as sendmail(8) does.  Mail is
queued at once and never delivered from here (DeliveryMode is always deferred):
the daemon delivers local and LAN mail at once and holds mail for the Internet
until the link is up.  With the daemon down the message is kept, fsynced, in the
spool's maildrop/ and queued when the daemon starts.

Modes:
  -bm              submit a message (default)
  -bp              list the queue (as mailq)
  -bi              check the aliases file, then have the daemon read it again (newaliases)
  -bs              speak SMTP on stdin/stdout (relayed to the daemon's listener)
  -bv ADDR...      verify addresses: the route of each (after aliases), nothing is sent
  -bt              address test mode: the route of each address read from stdin
  -bh, -bH         print the host status (hoststat), forget expired host status (purgestat)
  -q[!]R|S|I SUBSTR
                   ask the daemon for a queue run: recipient, sender or queue id containing
                   SUBSTR (! negates; several filters combine); -q alone runs the whole queue;
                   -q15m (an interval) asks for one run now: the dial policy schedules runs
Submission:
  -t               recipients from the To:, Cc: and Bcc: headers (Bcc: is removed)
  -i, -oi          a line with a single dot does not end the message
  -f ADDR, -r ADDR envelope sender
  -F NAME          the sender's full name, for the From: header
  -B 8BITMIME|7BIT body type
  -N never|success,failure,delay
                   DSN NOTIFY for every recipient
  -R full|hdrs     DSN RET: what a bounce returns
  -V ENVID         DSN ENVID
  -oem, -oee       ErrorMode m / e: a refused recipient's report is mailed back to the
                   sender with the message as well (e: and exit 0); -oep (default) prints
Other:
  -C FILE          configuration file (default $EDGEMAIL_CONFIG or /etc/edgemail/edgemail.toml)
  -v               say what is ignored and where the message went
  -c               HoldExpensive (sendmail's -c): always so, expensive routes wait for the link
  --help           this text
Accepted and ignored as sendmail's: -oX (other options), -O opt=val, -U, -m, -n, -G,
  -h N, -L tag, -A m|c, -d..., -X file, -Mxvalue, -p proto:host, -e x, -T; -I is -bi.

Exit codes (sysexits.h): 0 queued, 64 usage, 65 bad address or message, 66 stdin
unreadable, 75 temporary failure (try again), 78 configuration error.
"""

_MAILQ_USAGE = """\
usage: mailq [-C FILE] [-v]

List the mail queue as sendmail's mailq does: queue id (with ! when held), size,
queue time, sender, and each recipient still waiting, with the reason of the last
failure.  The same as `sendmail -bp`; `edgemail queue list --json` gives it as JSON.

  -C FILE          configuration file (default $EDGEMAIL_CONFIG or /etc/edgemail/edgemail.toml)
  -v               say which flags were ignored
  --help           this text

Exit codes: 0 listed (with the daemon down: the spool as it stands, read-only), 75 the
daemon broke off, or is down and the spool is not ours to read, 76 a daemon of another
version, 78 configuration error.
"""

_NEWALIASES_USAGE = """\
usage: newaliases [-C FILE]

Check the aliases file ([local] aliases in the configuration) and have the daemon read
it again, with the dial policy (as `edgemail reload` or SIGHUP).  An error names
FILE:LINE and changes nothing (exit 65).  With the daemon down the file is checked
only: the daemon reads it when it starts.

  -C FILE          configuration file (default $EDGEMAIL_CONFIG or /etc/edgemail/edgemail.toml)
  --help           this text
"""


def usage(prog: str) -> str:
    """The --help text of sendmail, mailq or newaliases."""
    if prog == "mailq":
        return _MAILQ_USAGE
    if prog == "newaliases":
        return _NEWALIASES_USAGE
    return _SENDMAIL_USAGE.format(prog=prog)
