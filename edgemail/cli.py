"""cli.py - the command line: ``sendmail``, ``mailq`` and ``edgemail``.

sendmail(8) as MUAs, cron and scripts call it::

    sendmail [flags] [address ...]       submit stdin (DeliveryMode=deferred always)
    sendmail -t [-i] [...]               recipients from To:/Cc:/Bcc:, Bcc: removed
    sendmail -bp | mailq                 list the queue
    sendmail -q[R|S|I|!R|!S|!I]SUBSTR    ask the daemon for a queue run (filters as sendmail)

Accepted flags: ``-t``, ``-i``/``-oi``, ``-f ADDR``/``-fADDR``/``-r ADDR``,
``-F NAME``, ``-B 8BITMIME|7BIT``, ``-N never|success,failure,delay``,
``-R full|hdrs``, ``-V envid``, ``-bm`` (default), ``-bp``, ``-bi`` (as
``newaliases``: check the aliases, then the daemon reads them again), ``-C
FILE`` (config), ``--``.  Ignored
without error: every other ``-oX...`` (``-oem``, ``-oee``, ``-oep``,
``-odq``/``-odb``/``-odi``: delivery is always deferred, ``-om``), ``-O
opt=val``, ``-U``, ``-v``, ``-m``, ``-n``, ``-G``, ``-h N``, ``-L tag``,
``-A m|c``, ``-d...``, ``-X file``.  ``-q15m`` (a periodic queue-run
daemon) is not what the daemon needs: it schedules runs itself, so the
interval is ignored and one queue run is requested, with a note.
``-bs`` (SMTP on stdin/stdout, as PHP mailers use it) is relayed to the
daemon's first listener on loopback: the dialogue is the daemon's own, and
with the daemon down it fails with EX_TEMPFAIL (there is no maildrop for an
SMTP dialogue).  ``-bd``, ``-bt``, ``-bv`` are refused with the reason (EX_USAGE).
``-bh`` prints the host status, ``-bH`` purges expired entries (as the
``hoststat`` and ``purgestat`` commands and ``edgemail hoststat|purgestat``).

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
[--json]`` (link state, queue demand, next policy action, budget left,
last ETRN, last call), ``hoststat``, ``purgestat [--all]``, ``link
explain`` (would it dial now, why, when next), ``link dial``, ``link
hangup``, and ``link hook ip-up|ip-down -- IFACE TTY SPEED LOCAL REMOTE
[IPPARAM]`` for the ppp hooks (pppd's argument order; the environment's
CONNECT_TIME, BYTES_SENT, BYTES_RCVD are passed on for ip-down).  A hook
gives up after HOOK_TIMEOUT_S and exits 0 when the daemon is down (pppd
must never wait for us).  The config file is
``-c/--config`` (``-C`` for sendmail), else
$EDGEMAIL_CONFIG, else /etc/edgemail/edgemail.toml.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import sys
import time
from dataclasses import dataclass, field

from . import config as configmod
from .control import ControlClient, DaemonUnreachable, RequestFailed
from .envelope import Envelope, Recipient, precedence_class
from .errors import ConfigError, ControlError, SpoolError

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT = 0, 64, 65, 66
EX_SOFTWARE, EX_TEMPFAIL, EX_PROTOCOL, EX_CONFIG = 70, 75, 76, 78
DEFAULT_CONFIG = "/etc/edgemail/edgemail.toml"
#: sendmail -bs: how long to wait for the server's last replies after stdin ends
BS_DRAIN_S = 5.0
#: a ppp hook's whole conversation with the daemon (pppd runs it without waiting)
HOOK_TIMEOUT_S = 0.8
#: pppd environment passed on by the hooks (ip-down's accounting among them)
HOOK_ENV = ("CONNECT_TIME", "BYTES_SENT", "BYTES_RCVD", "LINKNAME", "DNS1", "DNS2", "PPPD_PID")


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
    from .address import AddressError, parse_address     # lazily: mailq does not need it
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
    import email.utils
    return [addr for _, addr in email.utils.getaddresses(values) if addr]


def prepare(raw: bytes, a: SendmailArgs, *, sender: str, domain: str, hostname: str,
            now: float) -> Prepared:
    """Build the message to queue and its recipients.  Raises DataError/UsageError."""
    import email.utils       # here: mailq and -q never need it
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
        return reload_daemon(cfg, "newaliases" if prog == "newaliases" else "sendmail", "newaliases")
    if a.mode in ("h", "H"):
        return print_hoststat(cfg, "sendmail") if a.mode == "h" else purge_hoststat(cfg, "sendmail")
    if a.mode == "q":
        for note in a.notes:
            if note.startswith("-q"):
                _err("sendmail", note)
        return request_queue_run(cfg, a.queue_filters)
    if a.mode == "s":
        return smtp_on_stdio(cfg)
    return _submit_stdin(cfg, a)


def smtp_on_stdio(cfg) -> int:
    """``sendmail -bs``: relay stdin/stdout to the daemon's SMTP listener."""
    import socket
    import threading
    reply, code = ask(cfg, "sendmail", "status")
    if reply is None:
        return code
    try:
        _, _, port = reply["listeners"][0].rpartition(":")
        address = cfg.listeners[0].address
        conn = socket.create_connection((address, int(port)), timeout=cfg.Timeout.command)
    except (IndexError, KeyError, ValueError, OSError) as exc:
        _err("sendmail", f"-bs: cannot reach the daemon's SMTP listener: {exc}")
        return EX_TEMPFAIL
    conn.settimeout(None)
    closed = threading.Event()

    def upstream() -> None:
        stdin = sys.stdin.buffer
        while chunk := stdin.read1(65536):
            conn.sendall(chunk)
        # stdin ended: give the server time to answer what was pipelined (a
        # half-close would make aiosmtpd drop the session), then hang up.
        if not closed.wait(BS_DRAIN_S):
            conn.shutdown(socket.SHUT_RDWR)

    threading.Thread(target=upstream, daemon=True).start()
    out = sys.stdout.buffer
    while chunk := conn.recv(65536):
        out.write(chunk)
        out.flush()
    closed.set()
    conn.close()
    return EX_OK


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
            "msgid": env.msgid}


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


def control_failed(prog: str, exc: ControlError) -> int:
    """Say why a control request failed; the exit code for it: the daemon
    refused (bad request, 65), answered in another version's form (76), or
    could not be reached or answer in time (75)."""
    _err(prog, str(exc))
    if isinstance(exc, OtherVersion):
        return EX_PROTOCOL
    return EX_DATAERR if isinstance(exc, RequestFailed) else EX_TEMPFAIL


def ask(cfg, prog: str, op: str, **fields) -> tuple[dict | None, int]:
    """One control request -> (reply, EX_OK), or (None, exit code) after saying why on stderr."""
    try:
        return ControlClient(cfg.control_socket, timeout=cfg.Timeout.control).request(op, **fields), EX_OK
    except ControlError as exc:
        return None, control_failed(prog, exc)


def reload_daemon(cfg, prog: str, reason: str) -> int:
    """``newaliases``, ``sendmail -bi``, ``edgemail reload``: check the aliases
    here (errors name FILE:LINE, exit 65), then have the daemon read them and
    the dial policy again (as SIGHUP does)."""
    from .aliases import load as load_aliases
    name = cfg.local.aliases or "(no aliases file)"
    try:
        count = len(load_aliases(cfg.local.aliases, cfg.local).entries)
    except ConfigError as exc:
        _err(prog, str(exc))
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


# ====================================================================== mailq

def mailq_main(argv: list[str] | None = None) -> int:
    return sendmail_main(["-bp", *(sys.argv[1:] if argv is None else argv)])


class OtherVersion(ControlError):
    """The daemon answered in a form this program does not read: most likely
    a daemon of another edgemail version still running after an upgrade."""


def _other_version(what: str, came: str) -> OtherVersion:
    return OtherVersion(f"the daemon's {what} is not in the form this program reads ({came}): is the "
                        "running daemon another version of edgemail? Restart it from this installation")


def _field(obj, key: str, kind: type, what: str):
    """obj[key] when it is a KIND, else OtherVersion naming what came instead."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        got = f"keys {', '.join(sorted(map(str, obj))[:6])}" if isinstance(obj, dict) else type(obj).__name__
        raise _other_version(what, f"no {key!r} {kind.__name__}; got {got}")
    return value


def _listing(cfg, fmt: str):
    """(total, items) of the daemon's streamed queue_list; raises OtherVersion
    for a reply of another form."""
    it = ControlClient(cfg.control_socket, timeout=cfg.Timeout.control).stream("queue_list", format=fmt)
    return _field(next(it), "total", int, "queue_list reply"), it


def print_mailq(cfg, out=None) -> int:
    """sendmail's mailq listing; the daemon sends each entry preformatted."""
    out = out or sys.stdout
    try:
        total, batches = _listing(cfg, "mailq")
        if not total:
            out.write("Mail queue is empty\n")
            return EX_OK
        out.write(f"\t\t{cfg.spool_dir} ({total} request{'s' if total != 1 else ''})\n"
                  "-----Q-ID----- --Size-- -----Q-Time----- ------------Sender/Recipient-----------\n")
        for batch in batches:
            out.write(_field(batch, "text", str, "queue listing"))
        out.write(f"\t\tTotal requests: {total}\n")
    except ControlError as exc:
        return control_failed("mailq", exc)
    return EX_OK


# ====================================================================== edgemail

def _parser():
    import argparse
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
    sub.add_parser("reload", help="the daemon reads the aliases and the dial policy again (as SIGHUP)")
    sub.add_parser("hoststat", help="host status: hosts that failed lately (sendmail -bh)")
    ps = sub.add_parser("purgestat", help="forget expired host status (sendmail -bH)")
    ps.add_argument("--all", action="store_true", help="forget every host's status")
    st = sub.add_parser("status", help="daemon status: link, queue, next dial, budget, last ETRN and call")
    st.add_argument("--json", action="store_true")
    lk = sub.add_parser("link", help="the link manager").add_subparsers(dest="link_cmd", required=True)
    lk.add_parser("explain", help="would it dial now, and why / when next")
    lk.add_parser("dial", help="dial now, whatever the policy says")
    lk.add_parser("hangup", help="hang up now")
    hk = lk.add_parser("hook", help="for /etc/ppp/ip-up.d and ip-down.d: tell the daemon")
    hk.add_argument("event", choices=("ip-up", "ip-down"))
    hk.add_argument("pppd_args", nargs="*", metavar="IFACE TTY SPEED LOCAL REMOTE [IPPARAM]")
    return p


def edgemail_main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:          # argparse: 2 on a usage error; sysexits says 64
        return EX_USAGE if exc.code == 2 else (exc.code or EX_OK)
    if args.cmd == "config":
        return config_check(args.file or config_path(args.config))
    path = config_path(getattr(args, "run_config", None) or args.config)
    try:
        cfg = configmod.load(path)
    except ConfigError as exc:
        _err("edgemail", f"configuration error:\n{exc}")
        return EX_OK if getattr(args, "link_cmd", None) == "hook" else EX_CONFIG
    if args.cmd == "link":
        return _link(cfg, args)
    if args.cmd == "run":
        from .daemon import run
        return run(cfg, syslog=args.syslog)
    if args.cmd == "status":
        return _status(cfg, args.json)
    if args.cmd == "reload":
        return reload_daemon(cfg, "edgemail", "edgemail reload")
    if args.cmd == "hoststat":
        return print_hoststat(cfg, "edgemail")
    if args.cmd == "purgestat":
        return purge_hoststat(cfg, "edgemail", everything=args.all)
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
        _, batches = _listing(cfg, "rows")
        rows = (row for batch in batches for row in _field(batch, "rows", list, "queue listing"))
        out = sys.stdout
        out.write("[")
        for n, row in enumerate(rows):
            try:
                qid, size, created, sender, held, rcpts = row
                recipients = [{"address": r, "status": s, "last_reply": t} for r, s, t in rcpts]
            except (TypeError, ValueError):
                raise _other_version("queue listing", f"a row {str(row)[:80]}") from None
            out.write(("," if n else "") + "\n" + json.dumps(
                {"qid": qid, "size": size, "created": created, "from": sender, "held": bool(held),
                 "recipients": recipients}))
        out.write("\n]\n")
    except ControlError as exc:
        return control_failed("edgemail", exc)
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
    elif "queue" in reply:
        sys.stdout.write(status_text(reply))
    else:
        _print_fields(reply)
    return EX_OK


def _age(seconds) -> str:
    s = int(seconds or 0)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def status_text(r: dict) -> str:
    """``edgemail status`` for people (the daemon's status reply with a link manager)."""
    link, q, nxt = r.get("link", {}), r.get("queue", {}), r.get("next", {})
    lines = [f"daemon:      pid {r.get('pid')}, up {_age(r.get('uptime_s'))}, version {r.get('version')}",
             f"link:        {link.get('state')} (mode {link.get('mode')}, phase {link.get('phase')}, "
             f"failed dials {link.get('failed_dials', 0)})",
             f"queue:       {q.get('count', 0)} message(s), {q.get('expensive', 0)} for the link, "
             f"{q.get('due', 0)} due, oldest {_age(q.get('oldest_age_s'))}, {q.get('urgent', 0)} urgent"]
    when = "now" if nxt.get("dial") else (nxt.get("at") or "no dial planned")
    lines.append(f"next:        {when} ({nxt.get('reason', '')})")
    b = r.get("budget_left") or {}
    lines.append("budget left: " + ", ".join(
        f"{'unlimited' if b.get(k) is None else b[k]} {k}" for k in ("calls", "minutes")))
    e = r.get("last_etrn")
    lines.append("last ETRN:   " + ("none" if not e else f"{'ok' if e.get('ok') else 'FAILED'} at {e.get('at')}: "
                 + "; ".join(f"{x['domain']} {x['code']} {x['text']}" for x in e.get("replies", []))))
    c = r.get("last_call")
    lines.append("last call:   " + ("none" if not c else
                 f"{c.get('start')}, {c.get('connect_s', 0):.1f}s, sent {c.get('bytes_sent')} B, "
                 f"rcvd {c.get('bytes_rcvd')} B, cause {c.get('cause') or '-'}"))
    return "\n".join(lines) + "\n"


# ====================================================================== link

def _link(cfg, args) -> int:
    if args.link_cmd == "hook":
        return link_hook(cfg, args.event, args.pppd_args, os.environ)
    op = {"explain": "link_explain", "dial": "link_dial", "hangup": "link_hangup"}[args.link_cmd]
    reply, code = ask(cfg, "edgemail", op)
    if reply is None:
        if code == EX_DATAERR and cfg.link.mode == "none":
            _err("edgemail", "no link manager: [link] mode is \"none\" in the configuration")
        return code
    reply.pop("ok", None)
    if "text" in reply:
        print(reply["text"])
    else:
        _print_fields(reply)
    return EX_OK


def hook_request(event: str, argv: list[str], env) -> dict:
    """pppd's ip-up/ip-down arguments and environment -> the control request's fields."""
    names = ("iface", "tty", "speed", "local", "remote", "ipparam")
    fields = dict(zip(names, argv))
    for key, var in (("iface", "IFNAME"), ("local", "IPLOCAL"), ("remote", "IPREMOTE"), ("ipparam", "IPPARAM")):
        fields.setdefault(key, env.get(var, ""))
    fields["env"] = {k: env[k] for k in HOOK_ENV if k in env}
    return fields


def link_hook(cfg, event: str, argv: list[str], env) -> int:
    """``edgemail link hook ip-up|ip-down -- ARGS``: tell the daemon; never keep pppd waiting."""
    op = "link_up" if event == "ip-up" else "link_down"
    try:
        reply = ControlClient(cfg.control_socket, timeout=HOOK_TIMEOUT_S).request(op, **hook_request(event, argv, env))
    except RequestFailed as exc:
        _err("edgemail", f"{event}: the daemon refused: {exc}")
        return EX_TEMPFAIL
    except (ControlError, OSError) as exc:     # down, or too slow to answer: netlink tells it anyway
        _err("edgemail", f"{event}: daemon not reachable ({exc}); nothing to tell")
        return EX_OK
    reply.pop("ok", None)
    _print_fields(reply)
    return EX_OK


# ====================================================================== host status

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
        _err(prog, f"configuration error: {exc}")
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
