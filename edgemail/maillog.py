"""maillog.py - every line edgemail writes to the mail log, and the log set-up.

Like qmail-log(5), this docstring lists every line; each line has one
formatting function below, so the format lives in one place and tests can
assert on it.  A line starts with the queue id (or ``NOQUEUE``, ``daemon``,
``spool``, ``control``, ``link``), then ``key=value`` pairs joined by ``, ``
(sendmail's and Postfix's format).  No timestamp: journald or syslog adds
one.  Values that come from peers (HELO names, addresses, reply text) are
passed through ``clean()``: control characters are escaped, so one log
event is always one line.  Message bodies and AUTH secrets are never logged.

Loggers: ``edgemail.smtpd``, ``edgemail.runner`` (also the SMTP client and
the MX resolver), ``edgemail.spool``, ``edgemail.control``,
``edgemail.daemon``, ``link``.

Lines (sendmail LogLevel at which each appears in brackets), each with the
function that formats it.  ``tests/core/test_maillog.py`` holds every
function to its template below and fails on any log call in the edgemail
package whose message is not made here.

Messages (``edgemail.smtpd``, ``edgemail.spool``, ``edgemail.runner``):

  QID: from=<ADDR>, size=N, class=C, nrcpts=N, msgid=<ID>, proto=P, relay=R   [5]
        received(): a message was committed to the spool; proto is
        ESMTP/SMTP/ESMTPA or ``local`` (sendmail/control socket), relay the
        client as ``[ip]:port`` or ``localhost (uid N)``.
  QID: to=<ADDR>, delay=D, xdelay=X, mailer=M, pri=P, relay=R, dsn=X.Y.Z, stat=S   [8]
        delivery(): one delivery attempt for one recipient; delays in
        sendmail's ``[D+]HH:MM:SS``; stat is ``Sent (...)``,
        ``Deferred: ...`` or the bounce reason.
  QID: dsn=KIND, report=NEWQID, to=<ADDR>[,<ADDR>...]   [5]
        dsn_queued(): a failure, delay or double-bounce report was queued.
  QID: dsn=KIND, status=not queued (REASON)   [1]
        dsn_not_queued(): the report could not be committed; retried later.
  QID: to=<ADDR>[,<ADDR>...], status=dropped (double bounce failed: REASON)   [4]
        dsn_dropped(): a double bounce that failed too: nothing is sent.
  QID: queue file unreadable, moved to corrupt/: REASON   [1]
        queue_file_unreadable(): found while delivering.
  QID: imported from maildrop/NAME   [5]
        maildrop_import(): a message ``sendmail`` left in maildrop/ while
        the daemon was down.
  QID: on_commit hook failed   [1]
        hook_failed(): the message is safe; with traceback.
  QID: internal error in spool writer   [1]
        spool_writer_error(): our bug; the commit fails, with traceback.
  spool: commit helpers unavailable, committing on threads: REASON   [1]
        commit_helpers_unavailable(): the helper processes could not be
        started (e.g. RunAsUser may not execute the interpreter).

SMTP sessions (``edgemail.smtpd``):

  NOQUEUE: ruleset=RULESET, arg1=ARG, relay=[ip]:port, reject=CODE X.Y.Z TEXT   [4]
        reject(): an SMTP command was refused (sendmail's ruleset form:
        relaying denied, size, recipient limits, bare LF on a strict
        listener...).  RULESET is sendmail's name for the stage:
        check_helo, check_mail, check_rcpt, check_data, check_etrn,
        check_vrfy, check_expn; any other command is check_cmd with the
        command as arg1.  arg1 is the address for MAIL/RCPT, the argument
        otherwise, and is left out when there is none.  relay= keeps the
        port, as on every other line, so a reject ties to its session.
  NOQUEUE: connect from [ip]:port, listener=NAME   [12]
        connect()
  NOQUEUE: lost connection after CMD from [ip]:port   [2]
        lost_connection()
  NOQUEUE: too many errors after CMD from [ip]:port   [2]
        too_many_errors()
  NOQUEUE: timeout waiting for input from [ip]:port after CMD   [2]
        timeout()
  NOQUEUE: connection refused, relay=[ip]:port, reply=REPLY   [4]
        refused(): session limits (max_sessions, per client) refused a
        connection.
  NOQUEUE: internal error after CMD from [ip]:port   [1]
        internal_error(): our bug: answered 451 4.3.0, traceback logged
        once, session goes on.

Queue runs, SMTP client, DNS (``edgemail.runner``):

  runner: queue run start, run=ID, reason=R, filters=F, selected=N   [5]
        run_start()
  runner: queue run end, selected=N, attempted=N, sent=N, deferred=N, bounced=N[, cut=N][, stopped=WHY]   [5]
        run_end(): cut counts deliveries cut by the link (not recorded);
        stopped is stop, budget or link.
  runner: link up, hoststatus_cleared=N, nameservers=LIST[, KEY=VALUE...]   [5]
        link_up(): the link-up hook's facts (iface, local, remote...).
  runner: dialdelay, host=H, wait=WAIT, after=REASON   [5]
        dialdelay(): sendmail's DialDelay; WAIT is ``Ns`` or
        ``link-up, max=Ns`` when a dial is on its way.
  runner: hoststatus cleared, hosts=N   [5]
        hoststatus_cleared(): the link came up: every host gets a new chance.
  QID: cannot route for the link demand: REASON   [1]
        demand_unroutable(): counted as waiting for the link.
  runner: warning: TEXT   [1]
        runner_warning(): host status or link-up time unreadable or not
        saved; no route to a first hop or no fresh peer DNS file after the
        link-up wait; the runner goes on without it.
  runner: internal error   [1]
        runner_internal_error(): our bug in one delivery; with traceback.
  smtpc: warning: SmartHostAuthFile PATH is owned by uid N, not root   [1]
        authfile_owner()
  smtpc: relay=R, auth=none (no AUTH offered; sending without authentication)   [1]
        no_auth(): credentials are configured but the server offers no AUTH.
  mx: warning: dns cache PATH unreadable (REASON); starting empty   [1]
        dns_cache_unreadable()

Spool, control socket, daemon:

  spool: removed N stale file(s) from tmp/   [5]
        stale_tmp()
  spool: recovered entries=N, tmp_removed=N, corrupt=N, maildrop=N   [1]
        recovered()
  NAME: moved to corrupt/NEWNAME: REASON   [1]
        corrupt_file(): an unreadable queue or maildrop file, kept for
        inspection.
  control: queue run requested: filters=LIST   [5]
        queue_run_requested()
  control: bad request: REASON   [4]
        bad_request()
  control: internal error in op OP   [1]
        control_internal_error(): our bug; with traceback.
  daemon: starting, version=V, config=PATH   [1]
        starting()
  daemon: ready, listeners=LIST, control=PATH, queued=N   [1]
        ready(): LIST is ``NAME=[ip]:port`` words.
  daemon: running as USER (uid N, gid N, groups N,N)   [1]
        running_as(): RunAsUser: root given up after binding the SMTP ports.
  daemon: stopping, reason=SIGNAL   [1]
        stopping()
  daemon: stopped   [1]
        stopped()
  daemon: warning: TEXT   [1]
        warning(): start-up problems, NOTIFY_SOCKET, maildrop pickup.
  daemon: reloaded, reason=R, aliases=N, policy=PATH, restart_needed=KEYS   [1]
        reloaded(): SIGHUP (systemctl reload) or ``newaliases``: the
        aliases and the dial policy are read again; KEYS (or ``none``)
        are config settings that changed and take effect at restart.
  daemon: reload failed, reason=R: ERROR   [1]
        reload_failed(): nothing changed; the daemon runs on as before.

Written by the link package (logger ``link``; link never imports edgemail,
so these are formatted in link/, not here; the test holds their keys to
this list):

  link: state=STATE, reason=R                      (manager) the state machine moved
  link: state=DIALING, number=N, attempt=N, result=R   (modem) a dial attempt failed
  link: state=CONNECTED, number=N, speed=S, attempt=N  (modem)
  link: modem=DEV, info=LINE                       (modem) an unsolicited line
  link: modem=DEV, garbage=BYTES                   (modem)
  link: modem=DEV, hangup=dtr-ignored, fallback=+++ATH0   (modem)
  link: pppd=started, pid=N, device=DEV            (ppp)
  link: pppd=PID, stop=sigkill, grace=Ns           (ppp)
  link: pppd=exited, status=N, cause=C             (manager)
  link: WHICH_command=ARGV0, status=N              (ppp) up/down command ran
  link: iface=IF, netlink=overflow, action=resync, resyncs=N   (netwatch)
  link: state_file=PATH, status=corrupt (REASON), moved_to=PATH   (accounting)
  link: call=ended, connect=Ns, sent=N, rcvd=N, cause=C   (manager)
  link: hangup=HOW, cause=C                        (manager)
  link: hangup=failed, cause=C, error=E            (manager)
  link: stop_run=CAUSE                             (manager)
  link: etrn=DOMAIN, reply=CODE TEXT               (manager)
  link: dial=failed, error=E                       (manager) the dialer raised
  link: pppd=failed, error=E                       (manager) pppd could not start
  link: up_command=failed, error=E                 (manager) external-link mode
  link: queue_summary=failed, error=E              (manager) the MTA port raised
  link: queue_run=failed, error=E                  (manager) the MTA port raised
  link: CALL=failed, error=E                       (manager) port call clear_host_status, stop_run
  link: etrn=failed, error=E                       (manager)
  link: accounting=failed, error=E                 (manager) the call was not recorded
  link: netwatch=failed, error=E, retry=1s         (manager)
  link: task=NAME, error=E                         (manager) a task ended by an exception

Set-up (``setup()``): one handler on stderr, the bare line (journald adds the unit and time); when
stderr is journald's (``$JOURNAL_STREAM`` set) each line gets the ``<N>``
syslog priority prefix journald understands.  Optionally a syslog handler
on /dev/log with facility mail.  sendmail's LogLevel maps to Python levels:
0 -> ERROR, 1-4 -> WARNING, 5-11 -> INFO, 12+ -> DEBUG (connections).
"""

from __future__ import annotations

import logging
import os
import sys

from edgemail.envelope import Envelope

NOQUEUE = "NOQUEUE"

_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\\": "\\\\"}


def clean(text: object) -> str:
    """Peer-supplied text made safe for one log line (no CR/LF/controls)."""
    s = str(text)
    if s.isprintable() and "\\" not in s:
        return s
    return "".join(_ESCAPES.get(c) or (c if c.isprintable() else f"\\x{ord(c):02x}") for c in s)


def _pairs(*pairs: tuple[str, object]) -> str:
    return ", ".join(f"{k}={clean(v)}" for k, v in pairs if v is not None)


def duration(seconds: float) -> str:
    """sendmail's delay format: ``HH:MM:SS`` or ``D+HH:MM:SS``; negatives clamp to 0."""
    s = max(0, int(round(seconds)))
    days, s = divmod(s, 86400)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}+{text}" if days else text


# ------------------------------------------------------------------ messages

def received(qid: str, env: Envelope, *, relay: str | None = None) -> str:
    """The line for a message committed to the spool."""
    return f"{qid}: " + _pairs(
        ("from", f"<{env.mail_from}>"), ("size", env.size), ("class", env.precedence),
        ("nrcpts", env.nrcpts), ("msgid", f"<{env.msgid}>" if env.msgid else None),
        ("proto", env.proto), ("relay", relay if relay is not None else (env.client or "localhost")))


def delivery(qid: str, to: str, *, delay: float, xdelay: float, mailer: str, pri: int,
             relay: str, dsn: str, stat: str) -> str:
    """One delivery attempt for one recipient (written by the runner)."""
    return f"{qid}: " + _pairs(
        ("to", f"<{to}>"), ("delay", duration(delay)), ("xdelay", duration(xdelay)),
        ("mailer", mailer), ("pri", pri), ("relay", relay), ("dsn", dsn), ("stat", stat))


#: sendmail's ruleset for the stage a refused command belongs to
RULESETS = {"HELO": "check_helo", "EHLO": "check_helo", "MAIL": "check_mail", "RCPT": "check_rcpt",
            "DATA": "check_data", "ETRN": "check_etrn", "VRFY": "check_vrfy", "EXPN": "check_expn"}


def reject(reply: str, *, cmd: str, arg: str | None, relay: str, qid: str = NOQUEUE) -> str:
    """An SMTP command refused, in sendmail's ruleset form; `reply` is the
    full reply text (``554 5.7.1 ...``), `arg` the command's argument."""
    ruleset = RULESETS.get(cmd, "check_cmd")
    if ruleset == "check_cmd":
        arg1: str | None = f"{cmd[:20]} {arg}".strip() if arg else cmd[:20]
    elif cmd in ("MAIL", "RCPT") and arg:
        path = arg.partition(":")[2].strip()      # the path, without the parameters
        arg1 = path[:path.find(">") + 1] if path.startswith("<") and ">" in path else path.split(" ")[0]
    else:
        arg1 = arg or None
    return f"{qid}: " + _pairs(("ruleset", ruleset), ("arg1", arg1), ("relay", relay), ("reject", reply))


def connect(peer: str, listener: str) -> str:
    return f"{NOQUEUE}: connect from {clean(peer)}, listener={clean(listener)}"


def lost_connection(peer: str, after: str) -> str:
    return f"{NOQUEUE}: lost connection after {clean(after)} from {clean(peer)}"


def too_many_errors(peer: str, after: str) -> str:
    return f"{NOQUEUE}: too many errors after {clean(after)} from {clean(peer)}"


def timeout(peer: str, after: str) -> str:
    return f"{NOQUEUE}: timeout waiting for input from {clean(peer)} after {clean(after)}"


def refused(peer: str, reply: str) -> str:
    return f"{NOQUEUE}: connection refused, relay={clean(peer)}, reply={clean(reply)}"


def internal_error(peer: str, after: str) -> str:
    return f"{NOQUEUE}: internal error after {clean(after)} from {clean(peer)}"


def maildrop_import(qid: str, name: str) -> str:
    return f"{qid}: imported from maildrop/{clean(name)}"


def hook_failed(qid: str, hook: str) -> str:
    return f"{qid}: {clean(hook)} hook failed"


def spool_writer_error(qid: str) -> str:
    return f"{qid}: internal error in spool writer"


def commit_helpers_unavailable(reason: object) -> str:
    return f"spool: commit helpers unavailable, committing on threads: {clean(str(reason))}"


def queue_file_unreadable(qid: str, reason: object) -> str:
    return f"{qid}: queue file unreadable, moved to corrupt/: {clean(reason)}"


def _addrs(recipients) -> str:
    return ",".join(f"<{clean(r)}>" for r in recipients)


def dsn_queued(qid: str, kind: str, report: str, recipients) -> str:
    return f"{qid}: dsn={clean(kind)}, report={report}, to={_addrs(recipients)}"


def dsn_not_queued(qid: str, kind: str, reason: object) -> str:
    return f"{qid}: dsn={clean(kind)}, status=not queued ({clean(reason)})"


def dsn_dropped(qid: str, recipients, reason: object) -> str:
    return f"{qid}: to={_addrs(recipients)}, status=dropped (double bounce failed: {clean(reason)})"


# ------------------------------------------------------------------ runner, SMTP client, DNS

def run_start(run: str, reason: str, filters, selected: int) -> str:
    return "runner: queue run start, " + _pairs(
        ("run", run), ("reason", reason), ("filters", ",".join(filters) or "none"), ("selected", selected))


def run_end(*, selected: int, attempted: int, sent: int, deferred: int, bounced: int,
            cut: int = 0, stopped: str = "") -> str:
    return "runner: queue run end, " + _pairs(
        ("selected", selected), ("attempted", attempted), ("sent", sent), ("deferred", deferred),
        ("bounced", bounced), ("cut", cut or None), ("stopped", stopped or None))


def link_up(*, cleared: int, nameservers, info: dict) -> str:
    return "runner: link up, " + _pairs(
        ("hoststatus_cleared", cleared), ("nameservers", ",".join(nameservers) or "none"),
        *((k, v) for k, v in sorted(info.items()) if v))


def dialdelay(host: str, *, wait_s: float, after: str, link_coming: bool) -> str:
    wait = f"link-up, max={wait_s:g}s" if link_coming else f"{wait_s:g}s"
    return f"runner: dialdelay, host={clean(host)}, wait={wait}, after={clean(after)}"


def hoststatus_cleared(hosts: int) -> str:
    return f"runner: hoststatus cleared, hosts={hosts}"


def demand_unroutable(qid: str, reason: str) -> str:
    return f"{qid}: cannot route for the link demand: {clean(reason)}"


def runner_warning(text: str) -> str:
    return f"runner: warning: {clean(text)}"


def runner_internal_error() -> str:
    return "runner: internal error"


def authfile_owner(path: str, uid: int) -> str:
    return f"smtpc: warning: SmartHostAuthFile {clean(path)} is owned by uid {uid}, not root"


def no_auth(relay: str) -> str:
    return f"smtpc: relay={clean(relay)}, auth=none (no AUTH offered; sending without authentication)"


def dns_cache_unreadable(path: str, reason: object) -> str:
    return f"mx: warning: dns cache {clean(path)} unreadable ({clean(reason)}); starting empty"


# ------------------------------------------------------------------ spool, control, daemon

def recovered(*, entries: int, tmp_removed: int, corrupt: int, maildrop: int) -> str:
    return "spool: recovered " + _pairs(("entries", entries), ("tmp_removed", tmp_removed),
                                        ("corrupt", corrupt), ("maildrop", maildrop))


def stale_tmp(count: int) -> str:
    return f"spool: removed {count} stale file(s) from tmp/"


def corrupt_file(name: str, moved_to: str, reason: object) -> str:
    return f"{clean(name)}: moved to corrupt/{clean(moved_to)}: {clean(reason)}"


def queue_run_requested(filters: list[str]) -> str:
    return f"control: queue run requested: filters={clean(','.join(filters) or 'none')}"


def bad_request(reason: str) -> str:
    return f"control: bad request: {clean(reason)}"


def control_internal_error(op: str) -> str:
    return f"control: internal error in op {clean(op)}"


def starting(version: str, config: str) -> str:
    return "daemon: starting, " + _pairs(("version", version), ("config", config))


def ready(listeners: list[str], control: str, queued: int) -> str:
    return "daemon: ready, " + _pairs(("listeners", " ".join(listeners) or "none"),
                                      ("control", control), ("queued", queued))


def stopping(reason: str) -> str:
    return f"daemon: stopping, reason={clean(reason)}"


def stopped() -> str:
    return "daemon: stopped"


def reloaded(reason: str, *, aliases: int, policy: str, restart_needed: list[str]) -> str:
    return "daemon: reloaded, " + _pairs(("reason", reason), ("aliases", aliases),
                                         ("policy", policy or "none"),
                                         ("restart_needed", ",".join(restart_needed) or "none"))


def reload_failed(reason: str, error: object) -> str:
    return f"daemon: reload failed, reason={clean(reason)}: {clean(error)}"


def running_as(identity: str) -> str:
    return f"daemon: running as {clean(identity)}"


def warning(text: str) -> str:
    return f"daemon: warning: {clean(text)}"


# ------------------------------------------------------------------ set-up

def python_level(log_level: int) -> int:
    """sendmail LogLevel -> Python logging level."""
    if log_level <= 0:
        return logging.ERROR
    if log_level < 5:
        return logging.WARNING
    if log_level < 12:
        return logging.INFO
    return logging.DEBUG


class _JournalFormatter(logging.Formatter):
    """Prefix ``<N>`` (syslog priority) so journald files the line at the right level."""

    _PRIO = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self._PRIO.get(record.levelno, 6)}>" + super().format(record)


def setup(log_level: int = 9, *, stream=None, syslog: bool = False,
          syslog_address: str = "/dev/log") -> logging.Logger:
    """Configure the ``edgemail`` and ``link`` loggers; returns ``edgemail``'s.

    Idempotent: handlers installed by an earlier call are replaced.
    """
    stream = stream if stream is not None else sys.stderr
    handlers: list[logging.Handler] = []
    h = logging.StreamHandler(stream)
    fmt = "%(message)s"
    h.setFormatter(_JournalFormatter(fmt) if os.environ.get("JOURNAL_STREAM") else logging.Formatter(fmt))
    handlers.append(h)
    if syslog:
        from logging.handlers import (
            SysLogHandler,  # here: only the daemon needs it (mailq starts faster)
        )
        sh = SysLogHandler(address=syslog_address, facility=SysLogHandler.LOG_MAIL)
        sh.ident = f"edgemail[{os.getpid()}]: "
        sh.setFormatter(logging.Formatter("%(message)s"))
        handlers.append(sh)
    level = python_level(log_level)
    for name in ("edgemail", "link"):
        logger = logging.getLogger(name)
        for old in [x for x in logger.handlers if getattr(x, "_edgemail", False)]:
            logger.removeHandler(old)
        for x in handlers:
            x._edgemail = True  # type: ignore[attr-defined]
            logger.addHandler(x)
        logger.setLevel(level)
        logger.propagate = False
    # aiosmtpd logs every session at INFO with its own format: keep only its warnings.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    return logging.getLogger("edgemail")
