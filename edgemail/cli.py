"""cli.py - the command line: ``sendmail``, ``mailq`` and ``edgemail``.

sendmail(8) as MUAs, cron and scripts call it::

    sendmail [flags] [address ...]       submit stdin (DeliveryMode=deferred always)
    sendmail -t [-i] [...]               recipients from To:/Cc:/Bcc:, Bcc: removed
    sendmail -bp | mailq                 list the queue
    sendmail -q[R|S|I|!R|!S|!I]SUBSTR    ask the daemon for a queue run (filters as sendmail)

Accepted flags: ``-t``, ``-i``/``-oi``, ``-f ADDR``/``-fADDR``/``-r ADDR``,
``-F NAME``, ``-B 8BITMIME|7BIT``, ``-N never|success,failure,delay``,
``-R full|hdrs``, ``-V envid``, ``-bm`` (default), ``-bp``, ``-bi`` (no-op:
aliases are read by the daemon), ``-C FILE`` (config), ``--``.  Ignored
without error: every other ``-oX...`` (``-oem``, ``-oee``, ``-oep``,
``-odq``/``-odb``/``-odi``: delivery is always deferred, ``-om``), ``-O
opt=val``, ``-U``, ``-v``, ``-m``, ``-n``, ``-G``, ``-h N``, ``-L tag``,
``-A m|c``, ``-d...``, ``-X file``.  ``-q15m`` (a periodic queue-run
daemon) is not what the daemon needs: it schedules runs itself, so the
interval is ignored and one queue run is requested, with a note.
``-bs``, ``-bd``, ``-bt``, ``-bv`` are refused with the reason (EX_USAGE).

Input hygiene (DESIGN.md): LF and CRLF line ends become CRLF, a bare CR
becomes a space, NUL bytes are dropped.  Without ``-i`` a line holding only
``.`` ends the input and a leading ``..`` becomes ``.`` (sendmail's
collect()).  Missing Date:, Message-ID: and From: headers are added (From:
from ``-F``/``-f`` or the login name); unqualified addresses get the first
local domain.  Under ``-t`` the recipients are the To:/Cc:/Bcc: addresses
(Resent-* when present) minus those on the command line (sendmail's
semantics), and Bcc: lines are removed.

Where the message goes: with the daemon running, through the control socket
(``submit``); the daemon commits it and returns the queue id.  With the
daemon down, into the spool's maildrop/ directory (fsynced), which the
daemon imports at start-up; a note on stderr says so.  Nothing is lost in
either case.  If the connection breaks after the request was sent the
message goes to maildrop as well, so a duplicate is possible, never a loss.

Exit codes (sysexits.h): 0 ok, 64 usage, 65 data error (bad address,
too big), 66 no input, 75 temporary failure, 78 configuration error.

``edgemail`` subcommands: ``run``, ``config check FILE``, ``queue list
[--json]``, ``queue show QID``, ``queue run [FILTER...]``, ``status
[--json]``.  The config file is ``-c/--config`` (``-C`` for sendmail), else
$EDGEMAIL_CONFIG, else /etc/edgemail/edgemail.toml.
"""

from __future__ import annotations

import argparse
import base64
import email.utils
import json
import os
import pwd
import re
import sys
import time
from dataclasses import dataclass, field

from . import config as configmod
from .address import AddressError, parse_address
from .control import ControlClient, DaemonUnreachable, RequestFailed
from .envelope import Envelope, Recipient, precedence_class
from .errors import ConfigError, ControlError, SpoolError

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT = 0, 64, 65, 66
EX_SOFTWARE, EX_TEMPFAIL, EX_CONFIG = 70, 75, 78
DEFAULT_CONFIG = "/etc/edgemail/edgemail.toml"


class UsageError(Exception):
    """Bad command line (EX_USAGE)."""


class DataError(Exception):
    """Bad message or address (EX_DATAERR)."""


def config_path(explicit: str | None) -> str:
    return explicit or os.environ.get("EDGEMAIL_CONFIG") or DEFAULT_CONFIG


def _err(prog: str, text: str) -> None:
    print(f"{prog}: {text}", file=sys.stderr)


# ====================================================================== sendmail flags

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
_QUEUE_FILTER = re.compile(r"(!?)([RSI])(.+)")


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
    if rest in ("m", "p", "i"):
        a.mode = rest
    elif rest == "s":
        raise UsageError("-bs (SMTP on stdin) is not supported: talk SMTP to the daemon's listener")
    elif rest == "d":
        raise UsageError("-bd: the daemon is started with `edgemail run`")
    elif rest in ("t", "v", "D", "P", "h", "H"):
        raise UsageError(f"-b{rest} is not supported by edgemail")
    else:
        raise UsageError(f"unknown mode -b{rest}")


def _queue_flag(a: SendmailArgs, rest: str) -> None:
    """-q, -q15m, -qRsubstr, -q!Ssubstr, -qIsubstr (several accumulate)."""
    a.mode = "q"
    if rest in ("", "f", "p"):
        return
    m = _QUEUE_FILTER.fullmatch(rest)
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


# ====================================================================== the message

@dataclass(frozen=True)
class Prepared:
    data: bytes
    recipients: tuple[str, ...]
    msgid: str
    precedence: int


def read_lines(raw: bytes, *, ignore_dots: bool) -> list[bytes]:
    """stdin bytes -> lines without line ends (CR/LF hygiene, the lone-dot end)."""
    raw = raw.replace(b"\0", b"")
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for line in lines:
        line = line.replace(b"\r", b" ")
        if not ignore_dots and line[:1] == b".":
            if line == b".":
                break
            if line[:2] == b"..":
                line = line[1:]
        out.append(line)
    return out


_HEADER = re.compile(rb"[!-9;-~]+:")


def split_header(lines: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Header lines (continuations folded into their field) and body lines."""
    fields: list[bytes] = []
    for n, line in enumerate(lines):
        if line == b"":
            return fields, lines[n + 1:]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif _HEADER.match(line):
            fields.append(line)
        else:
            return fields, lines[n:]
    return fields, []


def _name(field_: bytes) -> str:
    return field_.split(b":", 1)[0].decode("ascii", "replace").strip().lower()


def _value(field_: bytes) -> str:
    return field_.split(b":", 1)[1].decode("utf-8", "replace").replace("\r\n", "").strip()


def qualify(addr: str, domain: str) -> str:
    """Parse one address; a bare local part gets `domain`.  Raises DataError."""
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    if addr and "@" not in addr:
        addr = f"{addr}@{domain}"
    try:
        return str(parse_address(addr))
    except AddressError as exc:
        raise DataError(f"bad address {addr!r}: {exc}") from None


def header_recipients(fields: list[bytes]) -> list[str]:
    """To/Cc/Bcc addresses (Resent-To/Cc/Bcc instead when any Resent- header exists)."""
    names = {_name(f) for f in fields}
    resent = any(n.startswith("resent-") for n in names)
    want = {"resent-to", "resent-cc", "resent-bcc"} if resent else {"to", "cc", "bcc"}
    values = [_value(f) for f in fields if _name(f) in want]
    return [addr for _, addr in email.utils.getaddresses(values) if addr]


def prepare(raw: bytes, a: SendmailArgs, *, sender: str, domain: str, hostname: str,
            now: float) -> Prepared:
    """Build the message to queue and its recipients.  Raises DataError/UsageError."""
    fields, body = split_header(read_lines(raw, ignore_dots=a.ignore_dots))
    cmdline = [qualify(r, domain) for arg in a.recipients for r in _split_list(arg)]
    if a.extract:
        drop = {r.lower() for r in cmdline}
        found = [qualify(r, domain) for r in header_recipients(fields)]
        rcpts = [r for r in dict.fromkeys(found) if r.lower() not in drop]
        fields = [f for f in fields if _name(f) not in ("bcc", "resent-bcc")]
    else:
        rcpts = list(dict.fromkeys(cmdline))
    if not rcpts:
        raise UsageError("no recipients: give addresses or use -t with To:/Cc:/Bcc: headers")
    names = {_name(f) for f in fields}
    added = []
    if "from" not in names:
        added.append(b"From: " + (email.utils.formataddr((a.full_name, sender)) if a.full_name
                                  else sender).encode())
    if "date" not in names:
        added.append(b"Date: " + email.utils.formatdate(now, localtime=True).encode())
    msgid = next((_value(f) for f in fields if _name(f) == "message-id"), "")
    if not msgid:
        msgid = f"<{time.strftime('%Y%m%d%H%M%S', time.gmtime(now))}.{os.getpid()}.{os.urandom(4).hex()}@{hostname}>"
        added.append(b"Message-ID: " + msgid.encode())
    precedence = precedence_class(next((_value(f) for f in fields if _name(f) == "precedence"), None))
    data = b"\r\n".join(fields + added + [b""] + body) + b"\r\n"
    return Prepared(data, tuple(rcpts), msgid.strip("<>"), precedence)


def _split_list(arg: str) -> list[str]:
    """sendmail accepts "a@x, b@y" as one argument."""
    return [x for x in (p.strip() for p in arg.split(",")) if x]


# ====================================================================== sendmail

def login_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("LOGNAME") or os.environ.get("USER") or f"uid{os.getuid()}"


def sendmail_main(argv: list[str] | None = None) -> int:
    prog = os.path.basename(sys.argv[0]) if argv is None else "sendmail"
    argv = sys.argv[1:] if argv is None else argv
    try:
        a = parse_sendmail_args(argv, prog)
    except UsageError as exc:
        _err("sendmail", str(exc))
        return EX_USAGE
    if a.verbose:
        for note in a.notes:
            _err("sendmail", note)
    try:
        cfg = configmod.load(config_path(a.config))
    except ConfigError as exc:
        _err("sendmail", f"configuration error: {exc}")
        return EX_CONFIG
    if a.mode == "p":
        return print_mailq(cfg)
    if a.mode == "i":
        _err("sendmail", "aliases are read by the daemon at start-up; nothing to rebuild")
        return EX_OK
    if a.mode == "q":
        for note in a.notes:
            if note.startswith("-q"):
                _err("sendmail", note)
        return request_queue_run(cfg, a.queue_filters)
    return _submit_stdin(cfg, a)


def _submit_stdin(cfg, a: SendmailArgs) -> int:
    domain = cfg.local_domains[0]
    try:
        sender = qualify(a.sender, domain) if a.sender not in (None, "", "<>") else (
            "" if a.sender in ("", "<>") else qualify(login_name(), domain))
        raw = sys.stdin.buffer.read()
        msg = prepare(raw, a, sender=sender or f"MAILER-DAEMON@{domain}", domain=domain,
                      hostname=cfg.hostname, now=time.time())
    except UsageError as exc:
        _err("sendmail", str(exc))
        return EX_USAGE
    except DataError as exc:
        _err("sendmail", str(exc))
        return EX_DATAERR
    except OSError as exc:
        _err("sendmail", f"cannot read the message from stdin: {exc.strerror}")
        return EX_NOINPUT
    if len(msg.data) > cfg.MaxMessageSize:
        _err("sendmail", f"message too large: {len(msg.data)} bytes, MaxMessageSize is {cfg.MaxMessageSize}")
        return EX_DATAERR
    env = Envelope(mail_from=sender, recipients=tuple(Recipient(r, notify=a.notify) for r in msg.recipients),
                   ret=a.ret, envid=a.envid, body=a.body, size=len(msg.data), precedence=msg.precedence,
                   msgid=msg.msgid, proto="local", client=f"localhost (uid {os.getuid()})",
                   arrived=time.time())
    return submit(cfg, env, msg.data)


def envelope_fields(env: Envelope) -> dict:
    """An Envelope as the control ``submit`` op carries it."""
    return {"mail_from": env.mail_from,
            "recipients": [{"address": r.address, "notify": sorted(r.notify), "orcpt": r.orcpt}
                           for r in env.recipients],
            "ret": env.ret, "envid": env.envid, "body": env.body, "precedence": env.precedence,
            "msgid": env.msgid, "proto": env.proto, "client": env.client}


def submit(cfg, env: Envelope, data: bytes) -> int:
    client = ControlClient(cfg.control_socket, timeout=cfg.Timeout.control)
    try:
        reply = client.request("submit", **envelope_fields(env),
                               data_b64=base64.b64encode(data).decode("ascii"))
    except RequestFailed as exc:
        _err("sendmail", f"the daemon refused the message: {exc}")
        return EX_TEMPFAIL if "temporary" in str(exc) else EX_DATAERR
    except DaemonUnreachable as exc:
        return _to_maildrop(cfg, env, data, str(exc))
    except ControlError as exc:
        _err("sendmail", str(exc))
        return EX_TEMPFAIL
    if os.environ.get("EDGEMAIL_VERBOSE"):
        _err("sendmail", f"queued as {reply.get('qid')}")
    return EX_OK


def _to_maildrop(cfg, env: Envelope, data: bytes, why: str) -> int:
    from .spool import store
    directory = os.path.join(cfg.spool_dir, "maildrop")
    try:
        name = store.write_maildrop(directory, env, data)
    except (OSError, SpoolError) as exc:
        _err("sendmail", f"{why}; and cannot write to the maildrop {directory}: {exc}")
        return EX_TEMPFAIL
    _err("sendmail", f"{why}; message left in the maildrop ({os.path.basename(str(name))}), "
                     "it will be queued when the daemon starts")
    return EX_OK


def ask(cfg, prog: str, op: str, **fields) -> tuple[dict | None, int]:
    """One control request -> (reply, EX_OK), or (None, exit code) after saying why on stderr."""
    try:
        return ControlClient(cfg.control_socket, timeout=cfg.Timeout.control).request(op, **fields), EX_OK
    except RequestFailed as exc:
        _err(prog, str(exc))
        return None, EX_DATAERR
    except ControlError as exc:
        _err(prog, str(exc))
        return None, EX_TEMPFAIL


def request_queue_run(cfg, filters: list[str], prog: str = "sendmail") -> int:
    reply, code = ask(cfg, prog, "queue_run", filters=filters)
    if reply and reply.get("message"):
        print(reply["message"])
    return code


# ====================================================================== mailq

def mailq_main(argv: list[str] | None = None) -> int:
    return sendmail_main(["-bp", *(sys.argv[1:] if argv is None else argv)])


def _listing(cfg):
    """(header, rows) from the daemon: rows are [qid, size, created, from, held, [[rcpt, status, reply], ...]]."""
    it = ControlClient(cfg.control_socket, timeout=cfg.Timeout.control).stream("queue_list")
    header = next(it)

    def rows():
        for batch in it:
            yield from batch["rows"]
    return header, rows()


def print_mailq(cfg, out=None) -> int:
    out = out or sys.stdout
    try:
        header, rows = _listing(cfg)
        total = header.get("total", 0)
        if not total:
            print("Mail queue is empty", file=out)
            return EX_OK
        w = out.write
        w(f"\t\t{cfg.spool_dir} ({total} request{'s' if total != 1 else ''})\n")
        w("-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n")
        for qid, size, created, sender, held, rcpts in rows:
            w(_mailq_entry(qid, size, created, sender, held, rcpts))
        w(f"\t\tTotal requests: {total}\n")
    except ControlError as exc:
        _err("mailq", str(exc))
        return EX_TEMPFAIL
    return EX_OK


def _mailq_entry(qid, size, created, sender, held, rcpts) -> str:
    stamp = time.strftime("%a %b %d %H:%M", time.localtime(created))
    lines = [f"{qid}{'!' if held else ' '}{size:>8} {stamp} <{sender}>\n"]
    if held:
        lines.append("      (on hold)\n")
    for rcpt, status, reply in rcpts:
        if reply:
            lines.append(f"                 ({status}: {reply[:60]})\n")
        lines.append(f"\t\t\t\t\t <{rcpt}>\n")
    return "".join(lines)


# ====================================================================== edgemail

def _parser() -> argparse.ArgumentParser:
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
    st = sub.add_parser("status", help="daemon status")
    st.add_argument("--json", action="store_true")
    return p


def edgemail_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.cmd == "config":
        return config_check(args.file or config_path(args.config))
    path = config_path(getattr(args, "run_config", None) or args.config)
    try:
        cfg = configmod.load(path)
    except ConfigError as exc:
        _err("edgemail", f"configuration error:\n{exc}")
        return EX_CONFIG
    if args.cmd == "run":
        from .daemon import run
        return run(cfg, syslog=args.syslog)
    if args.cmd == "status":
        return _status(cfg, args.json)
    if args.queue_cmd == "list":
        return print_mailq(cfg) if not args.json else _queue_json(cfg)
    if args.queue_cmd == "show":
        return _queue_show(cfg, args.qid)
    bad = [f for f in args.filters if not _QUEUE_FILTER.fullmatch(f)]
    if bad:
        _err("edgemail", f"bad filter(s) {bad}: expected R<substr>, S<substr> or I<substr>, optionally prefixed with !")
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
        header, rows = _listing(cfg)
        out = sys.stdout
        out.write("[")
        for n, (qid, size, created, sender, held, rcpts) in enumerate(rows):
            out.write(("," if n else "") + "\n" + json.dumps(
                {"qid": qid, "size": size, "created": created, "from": sender, "held": bool(held),
                 "recipients": [{"address": r, "status": s, "last_reply": t} for r, s, t in rcpts]}))
        out.write("\n]\n")
    except ControlError as exc:
        _err("edgemail", str(exc))
        return EX_TEMPFAIL
    return EX_OK


def _print_fields(reply: dict) -> None:
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
    else:
        _print_fields(reply)
    return EX_OK
