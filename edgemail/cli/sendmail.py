"""cli/sendmail.py - ``sendmail``, ``mailq`` and ``newaliases``: sendmail(8)
as MUAs, cron and scripts call it, and the submission of a message.

Synopsis::

    sendmail [flags] [address ...]       submit stdin (DeliveryMode=deferred always)
    sendmail -t [-i] [...]               recipients from To:/Cc:/Bcc:, Bcc: removed
    sendmail -bp | mailq                 list the queue
    sendmail -bi | newaliases            check the aliases, then the daemon reads them again
    sendmail -q[R|S|I|!R|!S|!I]SUBSTR    ask the daemon for a queue run (filters as sendmail)
    sendmail -bh | -bH                   host status: print (hoststat), purge (purgestat)
    sendmail -bs                         SMTP on stdin/stdout
    sendmail -bv ADDR... | -bt           the route of each address (addrtest.py), nothing sent

Owns: the console scripts ``sendmail_main`` (also ``newaliases``: the
program's name picks the mode) and ``mailq_main``, the choice of what a
mode does once the config is loaded, and where a submitted message goes.
The flags are read by flags.py, the message is made by message.py, and the
requests ``mailq``, ``-bi``, ``-q`` and ``-bh``/``-bH`` share with
``edgemail`` are in shared.py.

Where the message goes: with the daemon running, through the control socket
(``submit``); the daemon prepends ``Received: (from USER@localhost) by
HOST (edgemail); DATE`` (USER: the uid the kernel names), commits it and
returns the queue id.  With the daemon down, with the same line (USER:
our login name), into the spool's maildrop/ directory (fsynced), which the
daemon imports at start-up and every few seconds while it runs; a note on
stderr says so.  The same when the daemon answers that it cannot queue the
message now (its spool is full or failing: "temporary: ..."), as sendmail's
submission program keeps such a message in its clientmqueue: exit 0, the
message waits in maildrop/ until there is room.  Nothing is lost in any
case.  If the connection breaks after the request was sent the
message goes to maildrop as well, so a duplicate is possible, never a loss.

``-bs`` (SMTP on stdin/stdout, as PHP mailers use it) is relayed to the
daemon's loopback listener (bsrelay.py chooses it): the dialogue is the
daemon's own, each message gets the same ``Received: (from USER@localhost)``
line as a submission, and with the daemon down it fails with EX_TEMPFAIL
(there is no maildrop for an SMTP dialogue).

Never: delivers, queues or writes the spool itself: the one file it writes
is a maildrop file, through spool.store, and only when the daemon cannot
be reached.  Its messages go to stderr, prefixed ``sendmail:``; stdout
carries only what was asked for (the listing, the SMTP dialogue).

Unknown local users (delivery/users.py): the daemon leaves out every
recipient routing refuses permanently and says so; each is reported on
stderr in sendmail's words (``sendmail: NoSuchUser@edge.example... User
unknown``), the message is queued for the others (none: nothing is queued)
and the exit is 67 (EX_NOUSER), as sendmail's.  With the daemon down the
same check runs here, with the same Router, passwd asked for each
recipient's local part (``pwd.getpwnam``), never read whole.  Under ErrorMode m or e
(``-oem``, as cron and mutt call sendmail; ``-oee``, ``-OErrorMode=m``) the
refused recipients' failure report also goes to the sender with the message
(cli/mailback.py; e then exits 0), so cron's output for a mistyped MAILTO
is not lost.

A config that cannot be loaded (exit 78) leaves the message, read from
stdin, appended to ~/dead.letter (mbox form), as sendmail does with mail
it cannot send: the reply says where.

Fails (sysexits.h): 64 bad flags or no recipients, 65 bad address, a
recipient header with a bare CR/LF under -t (cli/message.py), message
larger than MaxMessageSize, or refused by the daemon, 66 stdin unreadable, 67
a recipient is an unknown local user,
75 the daemon broke off, or is down (or refused for a temporary reason)
and the maildrop is not writable, 78 bad config file.
"""

from __future__ import annotations

import os
import sys
import time

from edgemail.cli.base import (
    EX_DATAERR,
    EX_NOINPUT,
    EX_NOUSER,
    EX_OK,
    EX_TEMPFAIL,
    EX_USAGE,
    DataError,
    Exit,
    UsageError,
    err,
    load_config,
    load_light_config,
)
from edgemail.cli.flags import SendmailArgs, parse_sendmail_args, usage
from edgemail.cli.shared import (
    print_hoststat,
    print_mailq,
    purge_hoststat,
    reload_daemon,
    request_queue_run,
)
from edgemail.daemon.client import ControlClient, DaemonUnreachable, RequestFailed
from edgemail.errors import ControlError, SpoolError

TYPE_CHECKING = False     # not typing's (nor the envelope's dataclasses): start-up is a call's cost
if TYPE_CHECKING:
    from edgemail.cli.message import Prepared
    from edgemail.envelope import Envelope


def replace(obj, **changes):
    """dataclasses.replace, imported once a message is made (mailq never needs it)."""
    from dataclasses import replace as replace_fields
    return replace_fields(obj, **changes)

def sendmail_main(argv: list[str] | None = None) -> int:
    prog = os.path.basename(sys.argv[0]) if argv is None else "sendmail"
    return _main(prog if prog in ("mailq", "newaliases") else "sendmail", sys.argv[1:] if argv is None else argv)


def mailq_main(argv: list[str] | None = None) -> int:
    return _main("mailq", sys.argv[1:] if argv is None else argv)


def _main(prog: str, argv: list[str]) -> int:
    try:
        a = parse_sendmail_args(argv, prog)
    except UsageError as exc:
        err(prog, f"{exc}")
        return EX_USAGE
    if a.mode == "help":
        sys.stdout.write(usage(prog))
        return EX_OK
    if a.verbose:
        for note in a.notes:
            err(prog, note)
    try:
        # submission and the listing need six values: the daemon's snapshot of them
        light = a.mode in ("m", "p")
        cfg = load_light_config(a.config, prog) if light else load_config(a.config, prog)
    except Exit as exc:
        if a.mode == "m":
            _dead_letter(prog)
        return exc.code
    try:
        return _run_mode(cfg, a, prog)
    except Exit as exc:          # the snapshot's config, loaded whole for a path that needs it, is wrong
        return exc.code


def _dead_letter(prog: str) -> None:
    """No usable config: the message read from stdin is appended to
    ~/dead.letter (as sendmail saves what it cannot send), never lost."""
    import pwd
    try:
        data = sys.stdin.buffer.read()
        home = os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir      # mailx's $HOME/dead.letter
    except (OSError, KeyError):
        return
    if not data.strip():
        return
    path = os.path.join(home, "dead.letter")
    stamp = time.strftime("%a %b %d %H:%M:%S %Y")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(f"From {login_name()} {stamp}\n".encode() + data.replace(b"\r\n", b"\n").rstrip(b"\n")
                    + b"\n\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        err(prog, f"the message is not queued and could not be saved in {path}: {exc.strerror}")
        return
    err(prog, f"the message is not queued: saved in {path}")


def _run_mode(cfg, a: SendmailArgs, prog: str) -> int:
    """Do what the command line's mode asks, with the config loaded."""
    if a.mode == "p":
        return print_mailq(cfg)
    if a.mode == "i":
        return reload_daemon(cfg, "newaliases" if prog == "newaliases" else "sendmail", "newaliases", only="aliases")
    if a.mode in ("h", "H"):
        return print_hoststat(cfg, "sendmail") if a.mode == "h" else purge_hoststat(cfg, "sendmail")
    if a.mode == "q":
        for note in a.notes:
            if note.startswith("-q"):
                err("sendmail", note)
        return request_queue_run(cfg, a.queue_filters)
    if a.mode == "s":
        from edgemail.cli.bsrelay import smtp_on_stdio
        return smtp_on_stdio(cfg, login_name())
    if a.mode in ("v", "t"):
        from edgemail.cli import addrtest
        return addrtest.verify(cfg, a.recipients) if a.mode == "v" else addrtest.address_test(cfg, sys.stdin)
    return _submit_stdin(cfg, a)


def login_name() -> str:
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("LOGNAME") or os.environ.get("USER") or f"uid{os.getuid()}"


# ====================================================================== submission

def _submit_stdin(cfg, a: SendmailArgs) -> int:
    from edgemail.cli.message import prepare, qualify, strip_unix_from   # here: mailq and -q never need them
    domain = cfg.local_domains[0]
    try:
        raw, unix_from = strip_unix_from(sys.stdin.buffer.read())
        given = a.sender if a.sender is not None or os.getuid() != 0 else unix_from   # root: as sendmail -f
        sender = qualify(given, domain) if given not in (None, "", "<>") else (
            "" if given in ("", "<>") else qualify(login_name(), domain))
        msg = prepare(raw, a, sender=sender or f"MAILER-DAEMON@{domain}", domain=domain,
                      hostname=cfg.hostname, now=time.time())
    except UsageError as exc:
        err("sendmail", str(exc))
        return EX_USAGE
    except DataError as exc:
        err("sendmail", str(exc))
        return EX_DATAERR
    except OSError as exc:
        err("sendmail", f"cannot read the message from stdin: {exc.strerror}")
        return EX_NOINPUT
    if len(msg.data) > cfg.MaxMessageSize:
        err("sendmail", f"message too large: {len(msg.data)} bytes, MaxMessageSize is {cfg.MaxMessageSize}")
        return EX_DATAERR
    return submit(cfg, Draft(a, sender, msg), msg.data, a.error_mode)


class Draft:
    """The envelope of a message from the command line (proto local, the
    caller's uid) as the submit op carries it; the Envelope itself (envelope.py,
    with the dataclasses every call would pay milliseconds to import) is made
    only when the message goes to the maildrop or back to its sender."""

    __slots__ = ("a", "sender", "msg", "arrived")

    def __init__(self, a: SendmailArgs, sender: str, msg: Prepared) -> None:
        self.a, self.sender, self.msg, self.arrived = a, sender, msg, time.time()

    def fields(self) -> dict:
        """envelope_fields() of the envelope this makes."""
        return {"mail_from": self.sender,
                "recipients": [{"address": r, "notify": sorted(self.a.notify), "orcpt": None}
                               for r in self.msg.recipients],
                "ret": self.a.ret, "envid": self.a.envid, "body": self.a.body}

    def envelope(self, size: int) -> Envelope:
        from edgemail.envelope import Envelope, Recipient
        a, msg = self.a, self.msg
        return Envelope(mail_from=self.sender, recipients=tuple(Recipient(r, notify=a.notify) for r in msg.recipients),
                        ret=a.ret, envid=a.envid, body=a.body, size=size, precedence=msg.precedence,
                        msgid=msg.msgid, proto="local", client=f"localhost (uid {os.getuid()})",
                        arrived=self.arrived)


def whole(env: Envelope | Draft, data: bytes) -> Envelope:
    """ENV as an Envelope of DATA's size."""
    return replace(env, size=len(data)) if not isinstance(env, Draft) else env.envelope(len(data))


def envelope_fields(env: Envelope) -> dict:
    """An Envelope as the control ``submit`` op carries it (what a client may
    say: the daemon derives precedence and msgid from the headers itself and
    refuses them in a request, daemon/submission.py)."""
    return {"mail_from": env.mail_from,
            "recipients": [{"address": r.address, "notify": sorted(r.notify), "orcpt": r.orcpt}
                           for r in env.recipients],
            "ret": env.ret, "envid": env.envid, "body": env.body}


def submit(cfg, env: Envelope | Draft, data: bytes, error_mode: str = "p") -> int:
    from binascii import b2a_base64   # base64.b64encode without base64 (and struct) to import

    from edgemail.smtpd.longlines import Unsendable, make_sendable
    try:
        data = make_sendable(data)          # lines over 998 octets: daemon up or down, the same bytes
    except Unsendable as exc:
        err("sendmail", f"message not sendable: {exc}")
        return EX_DATAERR
    fields = env.fields() if isinstance(env, Draft) else envelope_fields(env)
    client = ControlClient(cfg.control_socket, timeout=cfg.Timeout.control)
    try:
        reply = client.request("submit", **fields,
                               data_b64=b2a_base64(data, newline=False).decode("ascii"))
    except RequestFailed as exc:
        if "temporary: " in str(exc):     # spool full or failing: keep it (sendmail's clientmqueue)
            return _to_maildrop(cfg, whole(env, data), data, f"the daemon cannot queue it now ({exc})")
        err("sendmail", f"the daemon refused the message: {exc}")
        return EX_DATAERR
    except DaemonUnreachable as exc:
        env = whole(env, data)
        kept, refused = _check_locally(cfg, env)
        rc = _report_refused(refused, _to_maildrop(cfg, kept, data, str(exc)) if kept.recipients else EX_OK)
        return _mail_back(cfg, env, data, refused, error_mode, rc)
    except ControlError as exc:
        err("sendmail", str(exc))
        return EX_TEMPFAIL
    if os.environ.get("EDGEMAIL_VERBOSE") and reply.get("qid"):
        err("sendmail", f"queued as {reply.get('qid')}")
    refused = reply.get("refused") or []
    return _mail_back(cfg, env, data, refused, error_mode, _report_refused(refused, EX_OK))


def _mail_back(cfg, env: Envelope | Draft, data: bytes, refused: list[dict], error_mode: str, rc: int) -> int:
    """ErrorMode m or e (-oem, -oee): the refused recipients' report goes to the
    sender too (cli/mailback.py), with the message; e then exits 0."""
    if error_mode not in ("m", "e") or not refused:
        return rc
    from edgemail.cli.mailback import error_report
    env = whole(env, data)
    made = error_report(env, data, refused, hostname=cfg.hostname,
                        postmaster=f"postmaster@{cfg.local_domains[0]}", now=time.time())
    if made is not None and submit(cfg, *made) == EX_OK:    # the null sender: never mailed back
        err("sendmail", f"the message went back to {env.mail_from} with the error (-oe{error_mode})")
    return EX_OK if error_mode == "e" else rc


def _report_refused(refused: list[dict], rc: int) -> int:
    """Say each refused recipient as sendmail does ("ADDR... User unknown");
    exit 67 (EX_NOUSER) for an unknown user, as sendmail does even when the
    message was queued for the others, 65 for any other permanent refusal."""
    for r in refused:
        err("sendmail", _refusal_text(r["address"], r["reply"]))
    if any(" 5.1.1 " in r["reply"] for r in refused):
        return EX_NOUSER
    return EX_DATAERR if refused else rc


def _refusal_text(address: str, reply: str) -> str:
    """"550 5.1.1 <a@b>... User unknown" -> "a@b... User unknown" (sendmail's
    words); a reply of another shape is quoted whole."""
    _, dots, text = reply.partition("... ")
    return f"{address}... {text}" if dots else f"{address}... {reply}"


def _check_locally(cfg, env: Envelope) -> tuple[Envelope, list[dict]]:
    """The daemon is down: the same recipient check with our own Router (the
    aliases, local users and passwd as this user reads them); a file we may
    not read leaves the check to the daemon, which bounces what it refuses."""
    from edgemail.delivery.users import local_router
    from edgemail.errors import ConfigError
    try:
        router = local_router(cfg)
    except (ConfigError, OSError):
        return env, []
    replies = [(r, router.check_rcpt(r.address)) for r in env.recipients]
    refused = [{"address": r.address, "reply": reply} for r, reply in replies if reply and reply[0] == "5"]
    keep = tuple(r for r, reply in replies if not (reply and reply[0] == "5"))
    return replace(env, recipients=keep), refused


def _to_maildrop(cfg, env: Envelope, data: bytes, why: str) -> int:
    """The daemon is down: the message, with the trace line the daemon would
    have added (daemon/ops.py), into maildrop/ for the daemon's next start."""
    from edgemail.daemon.ops import received_local
    from edgemail.spool import store
    directory = os.path.join(cfg.spool_dir, "maildrop")
    data = received_local(login_name(), cfg.hostname, time.time()) + data
    env = replace(env, size=len(data))
    try:
        name = store.write_maildrop(directory, env, data)
    except (OSError, SpoolError) as exc:
        err("sendmail", f"{why}; and cannot write to the maildrop {directory}: {exc}")
        return EX_TEMPFAIL
    err("sendmail", f"{why}; message left in the maildrop ({os.path.basename(str(name))}): the daemon "
                     "queues it from there when it starts, or, while it runs, within 10 s once it has room")
    return EX_OK
