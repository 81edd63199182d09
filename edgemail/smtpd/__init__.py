"""smtpd - the SMTP listener: a sans-IO dialogue driven on the running event loop.

Accepts mail from LAN clients, local programs over loopback, and the ISP
(which pushes held mail to us after ETRN), and makes it durable in the
spool.  Accepting never makes a DNS query and never touches the link
(invariant 1); a 250 after DATA means the message is fsynced (invariant 2);
only trusted clients relay (invariant 4); bad input gets a clear reply
(invariant 5).

Modules (drivers first, then the sans-IO parts; none imports a driver):
  listener     SmtpListener: binding, serving, closing; the Services its sessions share
  session      SmtpSession: one connection's driver (reads, writes, timeout,
               flow control, the commit and ETRN as tasks, session log lines)
  policy       RelayPolicy (trust, relay decision), Admission (session counts)
  core         Dialogue: the server dialogue, bytes in, replies and events out
  events       what the dialogue tells its driver (NEED_DATA, Commit, Etrn, Close...)
  reader       LineReader: the input buffer, command lines, DATA to the collector
  transaction  Transaction: MAIL and RCPT, and the envelope they become
  replies      enhanced status codes, greeting, EHLO's list, HELP
  params       ESMTP/DSN parameters of MAIL and RCPT
  data         the DATA phase: end marker, dot-stuffing, bare CR/LF/NUL, size;
               header facts and our Received: line

aiosmtpd is not used here (it stays a test peer: hardware-sim, tests/hwsim);
tests/io/test_smtpd_aiosmtpd.py pins what those peers rely on.

Replies (every one but the greeting and EHLO/HELO carries an enhanced code):
  250 2.0.0 QID Message accepted for delivery    after the spool's commit returned
  421 4.3.2 too many sessions (overall / per client), shutting down
  421 4.4.2 timeout (per read: a slow but moving DATA is not cut)
  421 4.7.0 too many errors (smtpd.max_bad_commands 5xx replies)
  451 4.3.0 internal error or spool write error (logged once with traceback)
  452 4.3.1 below MinFreeBlocks / SpoolFull (at MAIL and before the commit)
  452 4.5.3 more than smtpd.MaxRecipientsPerMessage recipients
  458/459   ETRN refused (hook failed / client not on the LAN)
  501 5.1.3 bad recipient address (incl. RCPT TO:<>); 501 5.1.7 bad sender
  501 5.5.4 bad parameter value (NOTIFY, RET, ENVID, ORCPT, SIZE, BODY)
  550 5.6.0 bare CR, bare LF or NUL in DATA on a strict listener
  552 5.3.4 SIZE= or the data itself beyond MaxMessageSize
  553 5.6.7 a non-ASCII address without SMTPUTF8 on MAIL (RFC 6531 3.4)
  554 5.4.6 more than 25 Received: headers (mail loop)
  554 5.7.1 Relaying denied
  555 5.5.4 unknown MAIL/RCPT parameter

Received: we prepend ``Received: from HELO ([IP]) by HOSTNAME (edgemail) with
ESMTP [for <rcpt>]; DATE``.  It carries no ``id``: the spool assigns the
queue id inside commit(), after the data is written; the log line
``QID: from=..., relay=[IP]:PORT`` ties the two.  ``for <rcpt>`` only
with a single recipient (sendmail does the same, so Bcc stays private).

Log lines (logger ``edgemail.smtpd``; formats in edgemail/maillog/):
``QID: from=<..>, size=.., class=.., nrcpts=.., msgid=<..>, proto=ESMTP,
relay=[ip]:port`` per message; ``NOQUEUE: ruleset=check_rcpt, arg1=<ADDR>,
relay=[ip]:port, reject=CODE X.Y.Z TEXT`` per refused command (sendmail's
form; maillog.reject picks the ruleset); lost connection, too many
errors, timeout, connection refused, internal error (with traceback).
"""

from edgemail.smtpd.listener import SmtpListener

__all__ = ["SmtpListener"]
