"""cli/flags.py - sendmail's command line, read as MUAs, cron and scripts write it.

Owns: ``parse_sendmail_args(argv, prog) -> SendmailArgs`` and the queue-run
filter syntax (``QUEUE_FILTER``: ``R``/``S``/``I`` and a substring,
optionally prefixed with ``!``; ``edgemail queue run`` checks its filters
with it too).  The program's name picks the default mode: ``mailq`` lists
the queue (``-bp``), ``newaliases`` reloads the aliases (``-bi``).

Accepted flags: ``-t``, ``-i``/``-oi``, ``-f ADDR``/``-fADDR``/``-r ADDR``,
``-F NAME``, ``-B 8BITMIME|7BIT``, ``-N never|success,failure,delay``,
``-R full|hdrs``, ``-V envid``, ``-bm`` (default), ``-bp``, ``-bi``,
``-bs``, ``-bh``, ``-bH``, ``-q[R|S|I|!R|!S|!I]SUBSTR``, ``-C FILE``
(config), ``--``.  Ignored without error: every other ``-oX...``
(``-oem``, ``-oee``, ``-oep``, ``-odq``/``-odb``/``-odi``: delivery is
always deferred, ``-om``), ``-O opt=val``, ``-U``, ``-v``, ``-m``, ``-n``,
``-G``, ``-h N``, ``-L tag``, ``-A m|c``, ``-d...``, ``-X file``.  ``-q15m``
(a periodic queue-run daemon) is not what the daemon needs: it schedules
runs itself, so the interval is ignored and one queue run is requested,
with a note in ``SendmailArgs.notes``.

Never: reads stdin or a config file, talks to the daemon, or prints: it
only reads argv (pure, tested in process).

Fails: ``UsageError`` naming the flag for an unknown option, a missing or
bad value, and the modes edgemail does not have (``-bd``: the daemon is
``edgemail run``; ``-bt``, ``-bv``, ``-bD``, ``-bP``); the caller exits
EX_USAGE (64).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgemail.cli.base import UsageError
from edgemail.config import loader as configmod


@dataclass
class SendmailArgs:
    mode: str = "m"                   # m: deliver, p: print queue, i: newaliases, q: queue run
    extract: bool = False             # -t
    ignore_dots: bool = False         # -i / -oi
    sender: str | None = None         # -f / -r
    full_name: str | None = None      # -F
    body: str | None = None           # -B
    notify: frozenset[str] = frozenset()   # -N
    ret: str | None = None            # -R
    envid: str | None = None          # -V
    config: str | None = None         # -C
    verbose: bool = False
    queue_filters: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)


# flags that take a value (attached or as the next argument) and are ignored
_IGNORED_WITH_VALUE = set("OLAhXd")
_IGNORED_BARE = set("UvmnGs")
#: a queue-run filter, as ``sendmail -q`` and ``edgemail queue run`` take it
QUEUE_FILTER = re.compile(r"(!?)([RSI])(.+)")


def parse_sendmail_args(argv: list[str], prog: str = "sendmail") -> SendmailArgs:
    """sendmail's command line -> SendmailArgs.  Raises UsageError."""
    a = SendmailArgs()
    if prog in ("mailq",):
        a.mode = "p"
    elif prog == "newaliases":
        a.mode = "i"
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            a.recipients += argv[i:]
            break
        if not arg.startswith("-") or arg == "-":
            a.recipients.append(arg)
            continue
        flag, rest = arg[1], arg[2:]

        def value() -> str:
            nonlocal i
            if rest:
                return rest
            if i >= len(argv):
                raise UsageError(f"option -{flag} requires a value")
            i += 1
            return argv[i - 1]

        if flag == "t":
            a.extract = True
            if rest == "i":          # "-ti" as some scripts write it
                a.ignore_dots = True
        elif flag == "i":
            a.ignore_dots = True
        elif flag in "fr":
            a.sender = value()
        elif flag == "F":
            a.full_name = value()
        elif flag == "B":
            a.body = _one_of("B", value(), ("8BITMIME", "7BIT"))
        elif flag == "N":
            a.notify = _dsn_notify(value())
        elif flag == "R":
            a.ret = _one_of("R", value(), ("FULL", "HDRS"))
        elif flag == "V":
            a.envid = value()
        elif flag == "C":
            a.config = value()
        elif flag == "o":
            if rest == "i" or rest.startswith("i") and rest[1:] in ("", "True", "true"):
                a.ignore_dots = True      # -oi; every other -oX is ignored
        elif flag == "b":
            _mode(a, rest)
        elif flag == "q":
            _queue_flag(a, rest)
        elif flag in _IGNORED_WITH_VALUE:
            v = value()
            a.notes.append(f"ignored -{flag} {v}")
        elif flag in _IGNORED_BARE:
            a.verbose = a.verbose or flag == "v"
        else:
            raise UsageError(f"unknown option {arg!r}")
    return a


def _one_of(flag: str, text: str, options: tuple[str, ...]) -> str:
    if text.upper() not in options:
        raise UsageError(f"-{flag} takes {' or '.join(options)}, got {text!r}")
    return text.upper()


def _dsn_notify(text: str) -> frozenset[str]:
    words = frozenset(w.strip().upper() for w in text.split(",") if w.strip())
    if not words or not words <= {"NEVER", "SUCCESS", "FAILURE", "DELAY"} or ("NEVER" in words and len(words) > 1):
        raise UsageError(f"-N takes never or a list of success,failure,delay; got {text!r}")
    return words


def _mode(a: SendmailArgs, rest: str) -> None:
    if rest in ("m", "p", "i", "s"):
        a.mode = rest
    elif rest == "d":
        raise UsageError("-bd: the daemon is started with `edgemail run`")
    elif rest in ("h", "H"):
        a.mode = rest                 # host status: -bh print, -bH purge
    elif rest in ("t", "v", "D", "P"):
        raise UsageError(f"-b{rest} is not supported by edgemail")
    else:
        raise UsageError(f"unknown mode -b{rest}")


def _queue_flag(a: SendmailArgs, rest: str) -> None:
    """-q, -q15m, -qRsubstr, -q!Ssubstr, -qIsubstr (several accumulate)."""
    a.mode = "q"
    if rest in ("", "f", "p"):
        return
    m = QUEUE_FILTER.fullmatch(rest)
    if m:
        a.queue_filters.append(m.group(1) + m.group(2) + m.group(3))
        return
    if rest[:1] == "p":
        rest = rest[1:]
    try:
        configmod.parse_duration(rest)
    except ValueError:
        raise UsageError(f"bad queue option -q{rest}: expected -q, -qR<substr>, -qS<substr>, "
                         "-qI<substr> (optionally with !) or an interval") from None
    a.notes.append(f"-q{rest}: the daemon schedules queue runs itself (dial policy); "
                   "the interval is ignored and one queue run is requested now")

