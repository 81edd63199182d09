"""maillog - every line edgemail writes to the mail log, and the log set-up.

Like qmail-log(5), this docstring is the one list of every line; each line
has one formatting function, so the format lives in one place and tests can
assert on it.  The functions live in one module per section below (the
section names its module) and are all importable from here:
``maillog.received(...)``.  A line starts with the queue id (or ``NOQUEUE``, ``daemon``,
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
function to its template below and to the module its section names, and
fails on any logging call in the edgemail package (any logger, any level,
``logging.*`` too) whose message is not one line function's result.

Messages (messages.py; ``edgemail.smtpd``, ``edgemail.spool``, ``edgemail.runner``):

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
  QID: queue file gone (removed by hand?), dropped from the queue   [1]
        queue_file_gone(): the entry's file is not in queue/ or hold/ when
        mailq lists it or the runner reads it: it leaves the queue (mailq
        shows what is on disk, never a ghost).
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

SMTP sessions (sessions.py; ``edgemail.smtpd``):

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
        lost_connection(): CMD is the last command, or Postfix's stage
        names: "DATA content" (the body was being read: that message is
        lost) and "END-OF-MESSAGE" (after the dot: the reply to it, 250 or
        a refusal, was said; a 250 message is queued).  Timeouts and "too
        many errors" name the stage the same way.
  NOQUEUE: too many errors after CMD from [ip]:port   [2]
        too_many_errors()
  NOQUEUE: timeout waiting for input from [ip]:port after CMD   [2]
        timeout()
  NOQUEUE: LIMIT time limit exceeded for [ip]:port after CMD   [2]
        time_limit(): LIMIT is "command line" (a line not complete within
        Timeout.command of the previous reply: slowloris) or "session"
        ([smtpd] max_session_time); 421 4.4.2, closed.
  NOQUEUE: connection refused, relay=[ip]:port, reply=REPLY   [4]
        refused(): session limits (max_sessions, per client) or the
        connection rate (client_connection_rate_limit: ``421 4.7.0 ...
        too many connections from ADDR``) refused a connection.
  NOQUEUE: internal error after CMD from [ip]:port   [1]
        internal_error(): our bug: answered 451 4.3.0, traceback logged
        once, session goes on.
  NOQUEUE: rejecting commands from [ip]:port due to pre-greeting traffic   [4]
        pregreet(): the client talked during greet_pause (554 5.5.0, closed);
        pipelining where RFC 2920 forbids it is a reject() line (554 5.5.0).
  NOQUEUE: STARTTLS=server, relay=[ip]:port, version=V, cipher=C, bits=N   [5]
        tls_started(): a STARTTLS handshake finished (sendmail's form).
  NOQUEUE: STARTTLS=server, relay=[ip]:port, error=ERROR   [4]
        tls_failed(): the handshake failed or timed out; the session ends.
  NOQUEUE: STARTTLS=server, relay=[ip]:port, discarded=N (bytes pipelined after STARTTLS)   [4]
        tls_pipelined(): plaintext sent after STARTTLS before the
        handshake; dropped unread (never commands after it).
  NOQUEUE: AUTH=server, relay=[ip]:port, authid=USER, mech=MECH   [5]
        auth_ok(): SMTP AUTH succeeded (sendmail's form).
  NOQUEUE: AUTH failure (MECH): authentication failed, authid=USER, relay=[ip]:port, failures=N   [4]
        auth_failed(): 535 5.7.8; N is the client's failures within
        auth_failure_window (421 at max_auth_failures).  Never the password.
  NOQUEUE: AUTH busy (MECH): too many authentication checks pending, authid=USER, relay=[ip]:port, pending=N   [4]
        auth_busy(): 454 4.7.0, the check was not queued (auth_max_pending
        overall or auth_max_pending_per_client); N checks are in progress;
        no failure counted.  Never the password.

Queue runs, SMTP client, DNS (runs.py; ``edgemail.runner``):

  runner: queue run start, run=ID, reason=R, filters=F, selected=N   [5]
        run_start()
  runner: queue run end, selected=N, attempted=N, sent=N, deferred=N, bounced=N[, cut=N][, stopped=WHY]   [5]
        run_end(): cut counts deliveries cut by the link (not recorded);
        stopped is stop, budget or link.
  runner: link up, hoststatus_cleared=N, nameservers=LIST[, KEY=VALUE...]   [5]
        link_up(): the link-up run's facts: the hosts whose status it
        cleared (the one clearing per call), the name servers, the hook's
        facts (iface, local, remote...).
  runner: dialdelay, host=H, wait=WAIT, after=REASON   [5]
        dialdelay(): sendmail's DialDelay; WAIT is ``Ns`` or
        ``link-up, max=Ns`` when a dial is on its way.
  QID: cannot route for the link demand: REASON   [1]
        demand_unroutable(): routing raised (a bug; with traceback): the
        message does not count as waiting for the link (no call for it).
  runner: warning: TEXT   [1]
        runner_warning(): host status or link-up time unreadable or not
        saved; no route to a first hop or no fresh peer DNS file after the
        link-up wait; the runner goes on without it.
  runner: internal error   [1]
        runner_internal_error(): our bug in one delivery; with traceback.
  QID: internal error while delivering, dsn=4.3.0, deferred: ERROR   [1]
        delivery_internal_error(): delivering QID raised (our bug, or
        queued content nothing expected); with traceback, once per
        attempt; the message is deferred 4.3.0 with its normal backoff and
        the run goes on with the others.
  runner: wall clock stepped, step=STEP, rebased=N   [1]
        clock_stepped(): the wall clock moved STEP (``+Ns``/``-Ns``) more than
        the monotonic clock; the queued messages' stamps were moved with it
        (no expiry, no stall); the host status was cleared.
  smtpc: warning: SmartHostAuthFile PATH is owned by uid N, not root   [1]
        authfile_owner()
  smtpc: relay=R, auth=none (no AUTH offered; sending without authentication)   [1]
        no_auth(): credentials are configured but the server offers no AUTH.
  mx: warning: dns cache PATH unreadable (REASON); starting empty   [1]
        dns_cache_unreadable()
  etrn: relay=HOST:PORT, arg=ARG, reply=CODE TEXT, result=RESULT   [5]
        etrn_result(): one ETRN argument asked of the ISP's relay; RESULT is
        ok, deferred, unsupported or error (code 0: no answer); logged at
        warning level unless ok (logger ``edgemail.etrn``).

ISP mode and ODMR (isp.py; ``edgemail.runner``, ``edgemail.odmr``):

  NOQUEUE: etrn=NODE, relay=[ip][, auth=USER], customers=LIST, reply=CODE TEXT   [5]
        etrn_flush(): an ETRN for held mail was taken (its flush started,
        nothing waiting, or our line down); LIST names the customers
        (``lan``: a hold route of [routes]); refusals are reject() lines.
  NOQUEUE: atrn=NODE, relay=[ip]:port, auth=USER, customers=LIST, reply=250 reversing   [5]
        atrn_turned(): ATRN taken (RFC 2645): the connection turns around
        and the held mail goes over it (its run_start/run_end follow).
  odmr: relay=HOST:PORT, domains=LIST, reply=CODE TEXT, result=RESULT   [5]
        odmr_result(): the ISP's answer to our ATRN; RESULT is ok,
        nomail, refused or error (code 0: no answer); warning unless
        ok or nomail.
  odmr: relay=HOST:PORT, push=ended, messages=N, reason=R   [5]
        odmr_push_ended(): the ISP's push over our connection is over
        (N messages committed; R: closed, timeout, error...).

Spool, control socket, daemon (daemon.py; ``edgemail.spool``, ``.control``, ``.daemon``):

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
  daemon: reloaded, reason=R, aliases=N, policy=PATH[, tls=N][, auth_users=N], restart_needed=KEYS   [1]
        reloaded(): SIGHUP (systemctl reload) or ``edgemail reload``: the
        aliases, the dial policy, the listeners' TLS certificates (tls:
        how many) and the AUTH credentials (auth_users: how many users)
        are read again; KEYS (or ``none``) are config settings that
        changed and take effect at restart.
  daemon: reloaded, reason=R, aliases=N, only=aliases   [1]
        aliases_reloaded(): ``newaliases``: the aliases alone were read
        again (the config and the dial policy are not its business).
  daemon: reload failed, reason=R: ERROR   [1]
        reload_failed(): nothing changed; the daemon runs on as before.

Written by the link package (logger ``link``): link never imports edgemail,
so its lines are catalogued in link/linklog.py, one function per line, and
held there by tests/core/test_linklog.py.

Shared pieces (text.py): ``clean()`` escapes peer text, ``duration()``
makes sendmail's ``[D+]HH:MM:SS``, ``NOQUEUE``.

Set-up (handlers.py: ``setup()``, ``python_level()``): one handler on
stderr, the bare line (journald adds the unit and time; with
``$JOURNAL_STREAM`` each line gets journald's ``<N>`` priority prefix),
optionally syslog on /dev/log with facility mail; sendmail's LogLevel maps
to Python levels: 0 -> ERROR, 1-4 -> WARNING, 5-11 -> INFO, 12+ -> DEBUG.
"""

from __future__ import annotations

from edgemail.maillog.daemon import (
    bad_request,
    control_internal_error,
    corrupt_file,
    queue_run_requested,
    ready,
    recovered,
    aliases_reloaded,
    reload_failed,
    reloaded,
    running_as,
    stale_tmp,
    starting,
    stopped,
    stopping,
    warning,
)
from edgemail.maillog.handlers import python_level, setup
from edgemail.maillog.isp import atrn_turned, etrn_flush, odmr_push_ended, odmr_result
from edgemail.maillog.messages import (
    commit_helpers_unavailable,
    delivery,
    dsn_dropped,
    dsn_not_queued,
    dsn_queued,
    hook_failed,
    maildrop_import,
    queue_file_gone,
    queue_file_unreadable,
    received,
    spool_writer_error,
)
from edgemail.maillog.runs import (
    authfile_owner,
    clock_stepped,
    delivery_internal_error,
    demand_unroutable,
    dialdelay,
    dns_cache_unreadable,
    etrn_result,
    link_up,
    no_auth,
    run_end,
    run_start,
    runner_internal_error,
    runner_warning,
)
from edgemail.maillog.sessions import (
    RULESETS,
    auth_busy,
    auth_failed,
    auth_ok,
    connect,
    internal_error,
    lost_connection,
    pregreet,
    refused,
    reject,
    time_limit,
    timeout,
    tls_failed,
    tls_pipelined,
    tls_started,
    too_many_errors,
)
from edgemail.maillog.text import NOQUEUE, clean, duration

__all__ = [
    "NOQUEUE", "RULESETS", "clean", "duration", "python_level", "setup",
    # messages.py
    "received", "delivery", "dsn_queued", "dsn_not_queued", "dsn_dropped", "queue_file_unreadable",
    "queue_file_gone", "maildrop_import", "hook_failed", "spool_writer_error", "commit_helpers_unavailable",
    # sessions.py
    "reject", "connect", "lost_connection", "too_many_errors", "timeout", "time_limit", "refused", "internal_error",
    "pregreet", "tls_started", "tls_failed", "tls_pipelined", "auth_ok", "auth_failed",
    "auth_busy",
    # runs.py
    "run_start", "run_end", "link_up", "dialdelay", "demand_unroutable",
    "runner_warning", "runner_internal_error", "delivery_internal_error", "clock_stepped", "authfile_owner",
    "no_auth", "dns_cache_unreadable", "etrn_result",
    # isp.py
    "etrn_flush", "atrn_turned", "odmr_result", "odmr_push_ended",
    # daemon.py
    "recovered", "stale_tmp", "corrupt_file", "queue_run_requested", "bad_request",
    "control_internal_error", "starting", "ready", "running_as", "stopping", "stopped", "warning",
    "reloaded", "aliases_reloaded", "reload_failed",
]
