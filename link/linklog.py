"""linklog.py - every line the link package writes to the log (logger ``link``).

NAME
    linklog - one formatting function per log line; the lines, listed once

DESCRIPTION
    Like qmail-log(5) and edgemail/maillog/ (which link never imports),
    this docstring lists every line the link package logs, each with the
    function below that formats it, so a line's shape lives in one place and
    tests can assert on it.  A line starts with ``link: ``, then
    ``key=value`` pairs joined by ``, `` (sendmail's format).  No timestamp:
    journald or syslog adds one.  Values that come from outside (modem
    lines, the ISP's replies, error texts) are made safe with clean() (or
    repr-quoted): control characters are escaped, so one event is one line.
    A module logs ``log.LEVEL(linklog.NAME(...))`` and nothing else;
    tests/core/test_linklog.py fails on any other logging call in link/ and
    holds each function to its template here.  In a template, CAPITALS are
    values; the level each line is logged at is in brackets.

THE LINES
  The state machine (link.manager):

  link: state=STATE, reason=R   [info]
        state(): the FSM moved to STATE (IDLE, DIALING, CONNECTING, UP,
        HANGING_UP, BACKOFF) because of R (a dial reason, a dial result,
        ppp0-up(ADDR), ppp0-down, pppd-exit(N,CAUSE), timer, idle, ...).
  link: dialing=stopped, cause=C, until=reload (fix: FIX)   [error]
        dialing_stopped(): our setup is wrong (pppd exited with one of
        link.ppp.CONFIG_ERRORS, pppd or the up command cannot be run):
        no dial is made until a reload, a restart or an operator's dial.
  link: dialing=resumed, reason=R   [info]
        dialing_resumed(): a reload or an operator's dial lifted the stop.
  link: dial=held, reason=R, stopped=C   [warning]
        dial_held(): the policy would dial (R) but dialling is stopped (C).

  The call (link.calls):

  link: stop_run=CAUSE   [info]
        stop_run(): the line is going down with a queue run or ETRN under
        way: the MTA is asked to stop it (nothing grows a backoff).
  link: etrn=DOMAIN, reply=CODE TEXT   [info]
        etrn_reply(): the ISP's answer to ETRN for one domain (code 0: none).
  link: odmr=DOMAIN, reply=CODE TEXT   [info]
        odmr_reply(): the ISP's answer to ATRN for one domain (RFC 2645:
        250 and the push is over, 453 no mail, 450/451/530; code 0: none).
  link: netwatch=failed, error=E, retry=Ns   [warning]
        netwatch_failed(): the netlink watcher failed; it is restarted.
  link: call=ended, connect=Ns, sent=N, rcvd=N, cause=C   [info]
        call_ended(): a call that came up is over (counters or pppd's
        ip-down environment).
  link: accounting=failed, error=E   [error]
        accounting_failed(): the call could not be written to the ledger.
  link: task=NAME, error=E   [error]
        task_failed(): a task of the call ended by an exception (our bug;
        with its traceback).
  link: hook=ip-up, iface=IF, local=ADDR, result=refused (WHY)   [warning]
        hook_refused(): the ip-up hook says the line is up and netlink
        contradicts it (no such interface, not up, not that address):
        nothing acts on it (no state change, no run, no call booked).

  The line (link.line):

  link: up_command=failed, error=E   [warning]
        up_command_failed(): external-link mode: the up command did not run.
  link: dial=failed, error=E   [warning]
        dial_failed(): the modem driver raised while dialing (tty gone).
  link: pppd=failed, error=E   [error]
        pppd_failed(): pppd could not be started.
  link: pppd=exited, status=N, cause=C   [info]
        pppd_exited(): pppd's exit status and its pppd(8) cause word.
  link: hangup=HOW, cause=C   [info]
        hangup(): the modem is on-hook; HOW is dtr or ath.
  link: hangup=failed, cause=C, error=E   [warning]
        hangup_failed(): the modem did not answer after the hang-up.

  The MTA's port (link.port):

  link: CALL=failed, error=E   [warning]
        port_failed(): a port call met the trouble it may meet (OSError:
        the spool, a socket) in queue_summary, queue_run, etrn,
        clear_host_status, stop_run, inbound_active or link_down; it
        counts as done, on the safe side (no dial, no hang-up).
  link: CALL=error, error=E   [error]
        port_error(): a port call raised anything else (a bug in the MTA's
        port), with its traceback; counted as done on the same safe side.

  The modem (link.modem):

  link: modem=DEV, garbage=BYTES   [warning]
        modem_garbage(): bytes that are no Hayes line (repr, at most 64).
  link: modem=DEV, info=LINE   [info]
        modem_info(): an unsolicited or informational line (repr).
  link: state=DIALING, number=N, attempt=N, result=R   [info]
        dial_attempt_failed(): one number of one round did not connect.
  link: state=CONNECTED, number=N, speed=S, attempt=N   [info]
        connected(): CONNECT; speed is None when the modem gave none.
  link: modem=DEV, hangup=dtr-ignored, fallback=+++ATH0   [warning]
        dtr_ignored(): the modem stayed online after the DTR drop.

  pppd and the external link (link.ppp):

  link: pppd=started, pid=N, device=DEV   [info]
        pppd_started()
  link: pppd=PID, stop=sigkill, grace=Ns   [warning]
        pppd_sigkill(): pppd outlived SIGTERM by the grace time.
  link: WHICH_command=ARGV0, status=N   [info]
        command_ran(): external mode's up or down command ended.

  The interface (link.netwatch) and the ledger (link.accounting):

  link: iface=IF, netlink=overflow, action=resync, resyncs=N   [warning]
        netlink_overflow(): ENOBUFS: the watcher re-reads the interface.
  link: state_file=PATH, status=corrupt (REASON), moved_to=PATH   [warning]
        state_file_corrupt(): the ledger starts empty.

NEVER
    Logs (the caller does), or writes message contents or secrets.
"""

from __future__ import annotations

_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t", "\\": "\\\\"}


def clean(text: object) -> str:
    """Text from outside made safe for one log line (no CR/LF/controls)."""
    s = str(text)
    if s.isprintable() and "\\" not in s:
        return s
    return "".join(_ESCAPES.get(c) or (c if c.isprintable() else f"\\x{ord(c):02x}") for c in s)


# --- the state machine ---------------------------------------------------------

def state(state: str, reason: str) -> str:
    return f"link: state={state}, reason={clean(reason)}"


def dialing_stopped(cause: str, fix: str) -> str:
    return f"link: dialing=stopped, cause={clean(cause)}, until=reload (fix: {clean(fix)})"


def dialing_resumed(reason: str) -> str:
    return f"link: dialing=resumed, reason={clean(reason)}"


def dial_held(reason: str, stopped: str) -> str:
    return f"link: dial=held, reason={clean(reason)}, stopped={clean(stopped)}"


# --- the call ------------------------------------------------------------------

def stop_run(cause: str) -> str:
    return f"link: stop_run={cause}"


def etrn_reply(domain: str, code: int, text: str) -> str:
    return f"link: etrn={clean(domain)}, reply={code} {clean(text)}"


def odmr_reply(domain: str, code: int, text: str) -> str:
    return f"link: odmr={clean(domain)}, reply={code} {clean(text)}"


def netwatch_failed(error: object, retry_s: float) -> str:
    return f"link: netwatch=failed, error={clean(error)}, retry={retry_s:g}s"


def call_ended(connect_s: float, sent: int, rcvd: int, cause: str) -> str:
    return f"link: call=ended, connect={connect_s:.1f}s, sent={sent:d}, rcvd={rcvd:d}, cause={cause}"


def accounting_failed(error: object) -> str:
    return f"link: accounting=failed, error={clean(error)}"


def task_failed(name: str, error: BaseException | None) -> str:
    return f"link: task={name}, error={error!r}"


def hook_refused(event: str, iface: str, local: str, why: str) -> str:
    return f"link: hook={event}, iface={clean(iface)}, local={clean(local)}, result=refused ({clean(why)})"


# --- the line ------------------------------------------------------------------

def up_command_failed(error: object) -> str:
    return f"link: up_command=failed, error={clean(error)}"


def dial_failed(error: object) -> str:
    return f"link: dial=failed, error={clean(error)}"


def pppd_failed(error: object) -> str:
    return f"link: pppd=failed, error={clean(error)}"


def pppd_exited(status: int, cause: str) -> str:
    return f"link: pppd=exited, status={status:d}, cause={cause}"


def hangup(how: str, cause: str) -> str:
    return f"link: hangup={how}, cause={cause}"


def hangup_failed(cause: str, error: object) -> str:
    return f"link: hangup=failed, cause={cause}, error={clean(error)}"


# --- the MTA's port --------------------------------------------------------------

def port_failed(call: str, error: object) -> str:
    return f"link: {call}=failed, error={clean(error)}"


def port_error(call: str, error: BaseException) -> str:
    return f"link: {call}=error, error={clean(repr(error))}"


# --- the modem ---------------------------------------------------------------------

def modem_garbage(device: str, data: bytes) -> str:
    return f"link: modem={device}, garbage={data[:64]!r}"


def modem_info(device: str, line: str) -> str:
    return f"link: modem={device}, info={line!r}"


def dial_attempt_failed(number: str, attempt: int, result: str) -> str:
    return f"link: state=DIALING, number={number}, attempt={attempt:d}, result={result}"


def connected(number: str, speed: int | None, attempt: int) -> str:
    return f"link: state=CONNECTED, number={number}, speed={speed}, attempt={attempt:d}"


def dtr_ignored(device: str) -> str:
    return f"link: modem={device}, hangup=dtr-ignored, fallback=+++ATH0"


# --- pppd and the external link ----------------------------------------------------

def pppd_started(pid: int, device: str) -> str:
    return f"link: pppd=started, pid={pid:d}, device={device}"


def pppd_sigkill(pid: int, grace_s: float) -> str:
    return f"link: pppd={pid:d}, stop=sigkill, grace={grace_s:g}s"


def command_ran(which: str, argv0: str, status: int) -> str:
    return f"link: {which}_command={argv0}, status={status:d}"


# --- the interface and the ledger ---------------------------------------------------

def netlink_overflow(iface: str, resyncs: int) -> str:
    return f"link: iface={iface}, netlink=overflow, action=resync, resyncs={resyncs:d}"


def state_file_corrupt(path: str, reason: object, moved_to: str) -> str:
    return f"link: state_file={path}, status=corrupt ({clean(reason)}), moved_to={moved_to}"
