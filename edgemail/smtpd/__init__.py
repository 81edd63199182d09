"""smtpd - the SMTP listener: a sans-IO dialogue driven on the running event loop.

Accepts mail from LAN clients, local programs over loopback, and the ISP
(which pushes held mail to us after ETRN), and makes it durable in the
spool.  Accepting never makes a DNS query and never touches the link
(invariant 1); a 250 after DATA means the message is fsynced (invariant 2);
only trusted clients relay (invariant 4); bad input gets a clear reply
(invariant 5).

Modules (drivers first, then the sans-IO parts; none imports a driver):
  listener     SmtpListener: binding, serving, closing; the Services its sessions
               share; reload_secrets (certificates and credentials, SIGHUP)
  session      SmtpSession: one connection's driver (reads, writes, timeout,
               greet_pause, flow control, the commit, ETRN, the TLS handshake
               and the password check as tasks, session log lines)
  tls          the server's TLS context (TLS 1.2+), what a handshake is logged as
  credentials  the AUTH credentials file (user:scrypt-hash), AuthFailures per
               client, the pending checks' caps (454 4.7.0 beyond),
               ``python3 -m edgemail.smtpd.credentials USER``
  cram         CRAM-MD5's secrets file (user:secret) and check
  userfile     the one parser of those two files' user:VALUE lines
  policy       RelayPolicy (trust, relay decision), Admission (session counts,
               ConnectionRate: connections per client, 421 4.7.0 beyond)
  core         Dialogue: the server dialogue, bytes in, replies and events out;
               SMTP synchronisation
  secure       STARTTLS, AUTH, require_tls: the part of the Dialogue that decides
               who the client is
  state        the dialogue's states and a listener's Settings
  auth         SASL PLAIN and LOGIN exchanges; whom a user may send as
  events       what the dialogue tells its driver (NEED_DATA, Commit, Etrn,
               StartTls, Authenticate, Close...)
  reader       LineReader: the input buffer, command lines, DATA to the collector
  syntax       one command line: verb, argument, or the 500 (bare LF, length)
  transaction  Transaction: MAIL and RCPT, and the envelope they become
  replies      enhanced status codes, greeting, EHLO's list, HELP
  params       ESMTP/DSN parameters of MAIL and RCPT (AUTH= too)
  data         the DATA phase: end marker, dot-stuffing, bare CR/LF/NUL, size;
               header facts and our Received: line

aiosmtpd is not used here (it stays a test peer: hardware-sim, tests/hwsim);
tests/io/test_smtpd_aiosmtpd.py pins what those peers rely on.

Replies (every one but the greeting and EHLO/HELO carries an enhanced code):
  220 2.0.0 Ready to start TLS                   STARTTLS (plaintext after it dropped)
  235 2.7.0 Authentication successful            AUTH; 334 prompts between
  250 2.0.0 QID Message accepted for delivery    after the spool's commit returned
  421 4.3.2 too many sessions (overall / per client), shutting down
  421 4.4.2 timeout (per read: a slow but moving DATA is not cut)
  421 4.7.0 too many errors (smtpd.max_bad_commands 5xx replies), too many
            failed authentications (smtpd.max_auth_failures per client), too
            many connections from ADDR (smtpd.client_connection_rate_limit)
  454 4.7.0 TLS not available (no tls_cert on this listener); Temporary
            authentication failure (smtpd.auth_max_pending[_per_client])
  451 4.3.0 internal error or spool write error (logged once with traceback)
  452 4.3.1 below MinFreeBlocks / SpoolFull (at MAIL and before the commit)
  452 4.5.3 more than smtpd.MaxRecipientsPerMessage recipients
  458/459   ETRN refused (hook failed / client not on the LAN)
  501 5.1.3 bad recipient address (incl. RCPT TO:<>); 501 5.1.7 bad sender
  500 5.5.2 bad syntax; on strict listeners a command line ending in a bare
            LF or holding a bare CR (never executed)
  501 5.5.4 bad parameter value (NOTIFY, RET, ENVID, ORCPT, SIZE, BODY, AUTH)
  501 5.0.0 / 501 5.5.2  AUTH aborted (*) / response not base64 or not its form
  503 5.5.1 AUTH before EHLO, twice, or in a transaction
  504 5.5.4 AUTH mechanism not offered (PLAIN and LOGIN are; CRAM-MD5 with cram_secrets)
  530 5.7.0 Must issue a STARTTLS command first (require_tls); Authentication
            required (a submission listener, MAIL before AUTH)
  535 5.7.8 Authentication credentials invalid (counted per client)
  538 5.7.11 AUTH before STARTTLS (unless auth_plaintext; CRAM-MD5: cram_plaintext)
  550 5.1.1 an unknown local user (routing: delivery/users.py; not with
            local.create_mailboxes)
  550 5.6.0 bare CR, bare LF or NUL in DATA on a strict listener
  552 5.3.4 SIZE= or the data itself beyond MaxMessageSize
  553 5.6.7 a non-ASCII address without SMTPUTF8 on MAIL (RFC 6531 3.4)
  553 5.7.1 a sender the authenticated user does not own ([smtpd.sender_login])
  554 5.4.6 more than 25 Received: headers (mail loop)
  554 5.5.0 SMTP synchronisation: talked before the greeting, or pipelined
            where RFC 2920 forbids it (core.py); the session ends
  554 5.5.1 STARTTLS with TLS already on
  554 5.6.0 a header line over 998 octets with no blank to fold at (other
            long lines are re-encoded: longlines.py)
  554 5.7.1 Relaying denied
  555 5.5.4 unknown MAIL/RCPT parameter

Received: we prepend ``Received: from HELO ([IP]) by HOSTNAME (edgemail) with
PROTO [for <rcpt>]; DATE``, PROTO being SMTP (HELO), ESMTP, or ESMTPS /
ESMTPA / ESMTPSA after STARTTLS and/or AUTH (RFC 3848, as sendmail and
Postfix write it), UTF8SMTP... instead of ESMTP... for a transaction with
SMTPUTF8 (RFC 6531 3.7.3, as Postfix writes it).  It carries no ``id``: the spool assigns the
queue id inside commit(), after the data is written; the log line
``QID: from=..., relay=[IP]:PORT`` ties the two.  ``for <rcpt>`` only
with a single recipient (sendmail does the same, so Bcc stays private).

Log lines (logger ``edgemail.smtpd``; formats in edgemail/maillog/):
``QID: from=<..>, size=.., class=.., nrcpts=.., msgid=<..>, proto=ESMTP,
relay=[ip]:port`` per message; ``NOQUEUE: ruleset=check_rcpt, arg1=<ADDR>,
relay=[ip]:port, reject=CODE X.Y.Z TEXT`` per refused command (sendmail's
form; maillog.reject picks the ruleset); lost connection, too many
errors, timeout, connection refused, internal error (with traceback);
pre-greeting traffic; STARTTLS=server (done, failed, plaintext discarded);
AUTH=server and AUTH failure (the user, never the password).

Security: AUTH secrets never reach a log line or a repr (the argument of
AUTH and the 334 responses are never kept as ``arg``); passwords are
checked against scrypt hashes on one worker thread, one check at a time,
as slowly for an unknown user; CRAM-MD5's plaintext secrets are a file of
their own (cram.py: mode 0600/0640 enforced), used for nothing else; AUTH
is offered only over TLS unless a listener says auth_plaintext (or
cram_plaintext, CRAM-MD5 alone).
"""

from __future__ import annotations

__all__ = ["SmtpListener"]


def __getattr__(name: str):
    """``SmtpListener`` on first use: a command line that needs one pure part
    (sendmail's longlines.make_sendable) must not load the whole server."""
    if name == "SmtpListener":
        from edgemail.smtpd.listener import SmtpListener
        return SmtpListener
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
