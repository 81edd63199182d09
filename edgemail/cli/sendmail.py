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
daemon's first listener on loopback (bsrelay.py): the dialogue is the
daemon's own, each message gets the same ``Received: (from USER@localhost)``
line as a submission, and with the daemon down it fails with EX_TEMPFAIL
(there is no maildrop for an SMTP dialogue).

Never: delivers, queues or writes the spool itself: the one file it writes
is a maildrop file, through spool.store, and only when the daemon cannot
be reached.  Its messages go to stderr, prefixed ``sendmail:``; stdout
carries only what was asked for (the listing, the SMTP dialogue).

Fails (sysexits.h): 64 bad flags or no recipients, 65 bad address, message
larger than MaxMessageSize, or refused by the daemon, 66 stdin unreadable,
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
        return exc.code
    return _run_mode(cfg, a, prog)


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
    return _submit_stdin(cfg, a)


def login_name() -> str:
    try:
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("LOGNAME") or os.environ.get("USER") or f"uid{os.getuid()}"


# ====================================================================== submission

def _submit_stdin(cfg, a: SendmailArgs) -> int:
    from edgemail.cli.message import prepare, qualify      # here: mailq and -q never need them
    domain = cfg.local_domains[0]
    try:
        sender = qualify(a.sender, domain) if a.sender not in (None, "", "<>") else (
            "" if a.sender in ("", "<>") else qualify(login_name(), domain))
        raw = sys.stdin.buffer.read()
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
    return submit(cfg, _envelope(a, sender, msg), msg.data)


def _envelope(a: SendmailArgs, sender: str, msg: Prepared) -> Envelope:
    """The envelope of a message from the command line (proto local, the caller's uid)."""
    from edgemail.envelope import Envelope, Recipient
    return Envelope(mail_from=sender, recipients=tuple(Recipient(r, notify=a.notify) for r in msg.recipients),
                    ret=a.ret, envid=a.envid, body=a.body, size=len(msg.data), precedence=msg.precedence,
                    msgid=msg.msgid, proto="local", client=f"localhost (uid {os.getuid()})",
                    arrived=time.time())


def envelope_fields(env: Envelope) -> dict:
    """An Envelope as the control ``submit`` op carries it."""
    return {"mail_from": env.mail_from,
            "recipients": [{"address": r.address, "notify": sorted(r.notify), "orcpt": r.orcpt}
                           for r in env.recipients],
            "ret": env.ret, "envid": env.envid, "body": env.body, "precedence": env.precedence,
            "msgid": env.msgid}


def submit(cfg, env: Envelope, data: bytes) -> int:
    import base64
    client = ControlClient(cfg.control_socket, timeout=cfg.Timeout.control)
    try:
        reply = client.request("submit", **envelope_fields(env),
                               data_b64=base64.b64encode(data).decode("ascii"))
    except RequestFailed as exc:
        if "temporary: " in str(exc):     # spool full or failing: keep it (sendmail's clientmqueue)
            return _to_maildrop(cfg, env, data, f"the daemon cannot queue it now ({exc})")
        err("sendmail", f"the daemon refused the message: {exc}")
        return EX_DATAERR
    except DaemonUnreachable as exc:
        return _to_maildrop(cfg, env, data, str(exc))
    except ControlError as exc:
        err("sendmail", str(exc))
        return EX_TEMPFAIL
    if os.environ.get("EDGEMAIL_VERBOSE"):
        err("sendmail", f"queued as {reply.get('qid')}")
    return EX_OK


def _to_maildrop(cfg, env: Envelope, data: bytes, why: str) -> int:
    """The daemon is down: the message, with the trace line the daemon would
    have added (daemon/ops.py), into maildrop/ for the daemon's next start."""
    from dataclasses import replace

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
    err("sendmail", f"{why}; message left in the maildrop ({os.path.basename(str(name))}), "
                     "it will be queued when the daemon starts")
    return EX_OK
