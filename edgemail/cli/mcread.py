"""cli/mcread.py - what a sendmail.mc, a sendmail.cf and a crontab say (CORE).

NAME
    mcread - read_mc(text) and read_cf(text) -> [Item]; read_crontab(text) -> [CronJob]

DESCRIPTION
    The first half of ``edgemail import``: the files read into facts, each
    with its line and its text as written, in sendmail's own words
    (migrate.py decides what they become).  Both configuration forms give
    the same items, so the .mc and the .cf are carried over by one mapping:

        option       a sendmail option by its long name: ``DeliveryMode``,
                     ``DialDelay``, ``Timeout.connect`` (define(`confTO_CONNECT')
                     in a .mc, ``O Timeout.connect=1m`` in a .cf), ``AliasFile``
        smarthost    SMART_HOST / ``DS``             domain      LOCAL_DOMAIN / ``Cw``
        flags        a mailer's F= flags: SMTP_MAILER_FLAGS, RELAY_MAILER_FLAGS,
                     MODIFY_MAILER_FLAGS (value "+e", "-Z" or a whole set), ``M`` lines
        daemon       DAEMON_OPTIONS / ``O DaemonPortOptions=``
        feature      FEATURE(name, args)             mailer      MAILER(name)
        define       any other define()              macro       any other m4 macro
        class        a .cf class other than w        unread      text neither form explains

    The .mc is read as m4 reads it, as far as a configuration needs: quotes
    are `...' (nested), ``dnl`` deletes to the end of the line, a macro's
    arguments are split at top-level commas.  As sendmail's cf.m4 turns m4
    comments off, a macro inside a ``#`` line is still expanded, so it is
    read (and the item says so); the rest of a ``#`` line is a comment.  A
    name followed by a space before its parenthesis is not a call to m4
    (``define (X, Y)`` defines nothing): such lines are named as unread.

    The crontab may be a user's (five fields and a command) or the system's
    (with a user field); ``@hourly``-style lines are expanded.  A job is
    ``queue-run`` (``sendmail -q``, ``runq``), ``etrn`` (an ETRN script:
    the contrib etrn.pl and the like), ``poll`` (fetchmail) or ``other``.

NEVER
    Reads a file, the clock or the environment: the caller passes the text.

FAILURES
    None: what cannot be read becomes an ``unread`` item (or an ``other``
    job) naming the line, so the import can say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Item:
    kind: str            #: option, smarthost, domain, flags, daemon, feature, mailer, define, macro, class, unread
    name: str            #: the option's long name, the mailer, the feature, the macro ...
    value: str           #: its value, quotes removed
    line: int
    text: str            #: the line (or the macro call) as written, for the notes
    args: tuple[str, ...] = ()
    note: str = ""       #: what the reader saw about it (e.g. "inside a # comment")


@dataclass(frozen=True)
class CronJob:
    line: int
    fields: tuple[str, ...]      #: the five time fields ("" for @reboot)
    command: str
    kind: str                    #: queue-run, etrn, poll, other, zone
    args: tuple[str, ...] = ()   #: etrn: server, domains...; queue-run: its -q filters
    text: str = ""


#: .mc defines -> sendmail's long option names
CONF_OPTIONS = {
    "confDELIVERY_MODE": "DeliveryMode", "confDIAL_DELAY": "DialDelay", "confMIN_QUEUE_AGE": "MinQueueAge",
    "confMAX_QUEUE_RUN_SIZE": "MaxQueueRunSize", "confQUEUE_SORT_ORDER": "QueueSortOrder",
    "confMAX_MESSAGE_SIZE": "MaxMessageSize", "confMIN_FREE_BLOCKS": "MinFreeBlocks",
    "confMCI_CACHE_SIZE": "ConnectionCacheSize", "confMCI_CACHE_TIMEOUT": "ConnectionCacheTimeout",
    "confWORK_RECIPIENT_FACTOR": "RecipientFactor", "confWORK_CLASS_FACTOR": "ClassFactor",
    "confWORK_TIME_FACTOR": "RetryFactor", "confLOG_LEVEL": "LogLevel", "confPRIVACY_FLAGS": "PrivacyOptions",
    "confRUN_AS_USER": "RunAsUser", "confCON_EXPENSIVE": "HoldExpensive",
    "confHOST_STATUS_DIRECTORY": "HostStatusDirectory", "confDOMAIN_NAME": "$j", "ALIAS_FILE": "AliasFile",
    "QUEUE_DIR": "QueueDirectory", "confCW_FILE": "$=w file",
}
_URGENCY = {"URGENT": "urgent", "NORMAL": "normal", "NONURGENT": "non-urgent", "DSN": "dsn"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def option_name(define: str) -> str | None:
    """A .mc define's sendmail option name (confTO_QUEUEWARN_URGENT -> Timeout.queuewarn.urgent)."""
    if define in CONF_OPTIONS:
        return CONF_OPTIONS[define]
    if define.startswith("confTO_"):
        words = define[len("confTO_"):].split("_")
        if len(words) > 1 and words[-1] in _URGENCY and words[0] in ("QUEUEWARN", "QUEUERETURN"):
            return f"Timeout.{words[0].lower()}.{_URGENCY[words[-1]]}"
        return "Timeout." + ".".join(w.lower() for w in words)
    return None


# ---------------------------------------------------------------- the .mc

class _Scanner:
    """m4's reading of a .mc, as far as configurations need it."""

    def __init__(self, text: str) -> None:
        self.text, self.i, self.line = text, 0, 1
        self.items: list[Item] = []
        self.loose: dict[int, str] = {}          #: text outside macros, per line
        self.comment_lines: set[int] = set()

    def peek(self, k: int = 0) -> str:
        return self.text[self.i + k] if self.i + k < len(self.text) else ""

    def advance(self) -> str:
        c = self.text[self.i]
        self.i += 1
        if c == "\n":
            self.line += 1
        return c

    def at_line_start(self) -> bool:
        start = self.text.rfind("\n", 0, self.i) + 1
        return not self.text[start:self.i].strip()

    def skip_to_eol(self) -> None:
        while self.peek() and self.advance() != "\n":
            pass

    def quoted(self) -> str:
        """A `...' string (the caller saw the backquote); nested quotes kept."""
        self.advance()
        depth, out = 1, []
        while self.peek():
            c = self.advance()
            depth += (c == "`") - (c == "'")
            if depth == 0:
                break
            out.append(c)
        return "".join(out)

    def arguments(self) -> list[str] | None:
        """A macro's arguments after its '(' (quotes removed); None if never closed."""
        self.advance()
        args, cur, depth = [], [], 1
        while self.peek():
            c = self.peek()
            if c == "`":
                cur.append(self.quoted())
                continue
            self.advance()
            depth += (c == "(") - (c == ")")
            if depth == 0 or (c == "," and depth == 1):
                args.append("".join(cur).strip())
                cur = []
                if depth == 0:
                    return args
            else:
                cur.append(c)
        return None


def read_mc(text: str) -> list[Item]:
    """The items of a sendmail.mc (m4 source)."""
    s = _Scanner(text)
    while s.peek():
        c = s.peek()
        if c == "#" and s.at_line_start():
            s.comment_lines.add(s.line)
            s.advance()
        elif c == "`":
            line = s.line
            s.loose[line] = s.loose.get(line, "") + "`" + s.quoted() + "'"
        elif _NAME.match(c):
            _word(s)
        else:
            if not c.isspace() and s.line not in s.comment_lines:
                s.loose[s.line] = s.loose.get(s.line, "") + c
            s.advance()
    lines = text.splitlines()
    for n, loose in sorted(s.loose.items()):
        if loose.strip() and n not in s.comment_lines:
            s.items.append(Item("unread", "", loose.strip(), n, lines[n - 1].strip() if n <= len(lines) else loose))
    return sorted(s.items, key=lambda it: it.line)


def _word(s: _Scanner) -> None:
    m = _NAME.match(s.text, s.i)
    assert m is not None
    name, line, start = m.group(), s.line, s.i
    s.i = m.end()
    if name == "dnl":
        s.skip_to_eol()
        return
    if s.peek() != "(":
        rest = s.text[s.i:s.text.find("\n", s.i) if "\n" in s.text[s.i:] else len(s.text)]
        if rest.lstrip().startswith("(") and (name.isupper() or name == "define") and line not in s.comment_lines:
            s.items.append(Item("unread", name, "", line, f"{name}{rest}".strip(),
                                note=f"a space before the parenthesis: m4 does not pass {name} its arguments"))
            s.skip_to_eol()
        elif line not in s.comment_lines:
            s.loose[line] = s.loose.get(line, "") + name
        return
    args = s.arguments()
    call = s.text[start:s.i].strip()
    if args is None:
        s.items.append(Item("unread", name, "", line, call[:80], note="quotes or parentheses never closed"))
        return
    note = "inside a # comment, which m4 still expands in a .mc" if line in s.comment_lines else ""
    s.items.extend(_call_items(name, args, line, " ".join(call.split()), note))


def _call_items(name: str, args: list[str], line: int, call: str, note: str) -> list[Item]:
    """What one macro call says."""
    first = args[0] if args else ""
    rest = tuple(args[1:])
    if name == "define":
        return [_define(first, args[1] if len(args) > 1 else "", line, call, note)]
    if name == "LOCAL_DOMAIN":
        return [Item("domain", d, d, line, call, note=note) for d in first.split()]
    if name == "MODIFY_MAILER_FLAGS":
        return [Item("flags", first.lower(), rest[0] if rest else "", line, call, note=note)]
    kinds = {"FEATURE": "feature", "MAILER": "mailer", "DAEMON_OPTIONS": "daemon"}
    if name in kinds:
        return [Item(kinds[name], first if name != "DAEMON_OPTIONS" else "DaemonPortOptions", first if name ==
                     "DAEMON_OPTIONS" else (rest[0] if rest else ""), line, call, rest, note)]
    return [Item("macro", name, first, line, call, rest, note)]


def _define(key: str, value: str, line: int, call: str, note: str) -> Item:
    if key == "SMART_HOST":
        return Item("smarthost", "SMART_HOST", value, line, call, note=note)
    if key.endswith("_MAILER_FLAGS"):
        return Item("flags", key[: -len("_MAILER_FLAGS")].lower(), "=" + value, line, call, note=note)
    option = option_name(key)
    if option:
        return Item("option", option, value, line, call, (key,), note)
    return Item("define", key, value, line, call, note=note)


# ---------------------------------------------------------------- the .cf

#: .cf line kinds that are the configuration's machinery, not its settings
_CF_MACHINERY = {"S": "rulesets", "R": "rewriting rules", "K": "map definitions", "H": "header definitions",
                 "P": "precedence definitions", "T": "trusted users", "E": "environment lines", "V": "version"}


def _cf_lines(text: str) -> list[tuple[int, str]]:
    """(line number, logical line): comments dropped, continuation lines joined."""
    out: list[tuple[int, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.startswith("#"):
            continue
        if raw[0] in " \t" and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + raw.strip())
        else:
            out.append((n, raw.rstrip()))
    return out


def read_cf(text: str) -> list[Item]:
    """The items of a sendmail.cf."""
    items: list[Item] = []
    machinery: dict[str, int] = {}
    for n, line in _cf_lines(text):
        kind = line[0]
        if kind in _CF_MACHINERY:
            machinery[_CF_MACHINERY[kind]] = machinery.get(_CF_MACHINERY[kind], 0) + 1
        else:
            items.extend(_cf_line(kind, line[1:], n, line))
    if machinery:
        what = ", ".join(f"{count} {name}" for name, count in machinery.items())
        items.append(Item("unread", "machinery", what, 0, what, note="the .cf's own machinery"))
    return items


def _cf_line(kind: str, body: str, n: int, line: str) -> list[Item]:
    if kind == "O":
        return [_cf_option(body, n, line)]
    if kind == "D":
        name, value = _cf_name(body)
        known = {"S": "smarthost", "j": "option", "M": "macro", "R": "macro", "H": "macro"}
        if name in known:
            return [Item(known[name], {"j": "$j", "S": "DS"}.get(name, "D" + name), value.strip(), n, line)]
        return []
    if kind in "CF":
        name, value = _cf_name(body)
        if name == "w" and kind == "C":
            return [Item("domain", d, d, n, line) for d in value.split()]
        if name in ("w", "m", "R") or len(name) > 1:
            return [Item("class", f"{kind}{{{name}}}" if len(name) > 1 else f"{kind}{name}", value.strip(), n, line)]
        return []
    if kind == "M":
        return [_cf_mailer(body, n, line)]
    return [Item("unread", kind, body, n, line)]


def _cf_name(body: str) -> tuple[str, str]:
    """`D{name}value` / `Dxvalue` -> (name, value)."""
    if body.startswith("{") and "}" in body:
        name, _, value = body[1:].partition("}")
        return name, value
    return body[:1], body[1:]


def _cf_option(body: str, n: int, line: str) -> Item:
    if not body.startswith(" "):
        return Item("unread", "O" + body[:1], body, n, line, note="an old one-letter option")
    name, _, value = body.strip().partition("=")
    name, value = name.strip(), value.strip() if _ else "True"
    if name == "DaemonPortOptions":
        return Item("daemon", name, value, n, line)
    return Item("option", name, value, n, line)


def _cf_mailer(body: str, n: int, line: str) -> Item:
    name, _, rest = body.partition(",")
    m = re.search(r"\bF=([^,]*)", rest)
    return Item("flags", name.strip().lower(), "=" + (m.group(1).strip() if m else ""), n, line)


# ---------------------------------------------------------------- the crontab

_SPECIAL = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@weekly": "0 0 * * 0",
            "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *"}
_ENV = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def read_crontab(text: str) -> list[CronJob]:
    """The jobs (and CRON_TZ lines) of a crontab, user or system form."""
    jobs = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        env = _ENV.match(line)
        if env:
            if env.group(1) in ("CRON_TZ", "TZ"):
                jobs.append(CronJob(n, (), "", "zone", (env.group(2).strip().strip("\"'"),), line))
            continue
        jobs += _jobs(n, line)
    return jobs


def _jobs(n: int, line: str) -> list[CronJob]:
    """One job per command of the line: ``sendmail -q; etrn.pl HOST DOMAIN``
    (or joined by &&, ||, |) is a queue run and an ETRN at the same time."""
    words = line.split()
    if words[0].startswith("@"):
        spec = _SPECIAL.get(words[0].lower())
        if spec is None:
            return [CronJob(n, (), " ".join(words[1:]), "other", (), line)]
        words = spec.split() + words[1:]
    if len(words) < 6:
        return [CronJob(n, tuple(words[:5]), "", "other", (), line)]
    out = []
    for command in _SEPARATOR.split(" ".join(words[5:])):
        if command.strip():
            kind, args = classify(command.split())
            out.append(CronJob(n, tuple(words[:5]), command.strip(), kind, args, line))
    return out


#: what joins two commands on a cron line (``2>&1`` is a redirection, not a separator)
_SEPARATOR = re.compile(r"\s*(?:;|&&|\|\||\|)\s*")
_REDIRECT = re.compile(r"^[0-9]*[<>]")


def _base(word: str) -> str:
    return word.rsplit("/", 1)[-1].lower()


def classify(words: list[str]) -> tuple[str, tuple[str, ...]]:
    """What a cron command does for mail: (kind, its arguments)."""
    bases = [_base(w) for w in words]
    for i, b in enumerate(bases):
        if "etrn" in b:
            return "etrn", _operands(words[i + 1:])
        if b == "runq":
            return "queue-run", ()
        if b in ("sendmail", "mailq") and any(w.startswith("-q") for w in words[i + 1:]):
            return "queue-run", tuple(w[2:] for w in words[i + 1:] if w.startswith("-q") and len(w) > 2)
        if b == "fetchmail":
            return "poll", ()
    return "other", ()


def _operands(words: list[str]) -> tuple[str, ...]:
    """An ETRN script's server and domains: its words without options and
    redirections (``>/dev/null``, ``2>&1``, or ``> FILE``: FILE too)."""
    out: list[str] = []
    skip = False
    for w in words:
        if skip:
            skip = False
        elif _REDIRECT.match(w):
            skip = _REDIRECT.sub("", w).lstrip("&") == ""
        elif not w.startswith(("-", "&")):
            out.append(w)
    return tuple(out)
