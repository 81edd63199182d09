"""delivery/lmtp.py - deliver to a LAN mail store over LMTP (route lmtp:HOST:PORT).

NAME
    lmtp - thin transport on the SMTP client core in LMTP mode (edgemail.smtpc)

DESCRIPTION
    ``deliver(client, decision_host, port, env, rcpts, data, now=...)`` sends one
    message to one LMTP server with ``SmtpClient.deliver(..., lmtp=True)``
    (LHLO, one reply per recipient after the final dot, RFC 2033) and
    turns the client's per-recipient results into ``envelope.Attempt``:
    SENT (2.x), DEFERRED (4.x) or BOUNCED (5.x), each with the reply text and
    the relay "host:port".  The LMTP server is on the LAN: no STARTTLS
    (``TlsPolicy("none")``), no DialDelay, no credentials.

NEVER
    Resolves names (the route names an address or a LAN host), retries, or
    touches the queue: the runner stores the Attempts.

FAILURES
    A failure before any recipient was answered (connect refused, greeting,
    MAIL refused) is raised as the client raises it: ``TempFail`` or
    ``PermFail`` with scope and dsn.
"""

from __future__ import annotations

from edgemail.envelope import Attempt, Envelope, RcptStatus, Recipient
from edgemail.smtpc.core import MessageParams
from edgemail.smtpc.session import SmtpClient
from edgemail.smtpc.tls import TlsPolicy

LAN_TLS = TlsPolicy("none")


def _attempt(rcpt_result, relay: str, now: float) -> Attempt:
    failure = rcpt_result.failure
    if failure is None:
        reply = rcpt_result.reply
        if reply is None:
            return Attempt(RcptStatus.SENT, "2.0.0", "250 2.0.0 delivered", relay=relay, at=now)
        return Attempt(RcptStatus.SENT, reply.dsn(), str(reply), relay=relay, at=now)
    status = RcptStatus.BOUNCED if failure.permanent else RcptStatus.DEFERRED
    return Attempt(status, failure.dsn, failure.reply or failure.reason, relay=relay, at=now,
                   extra={"scope": failure.scope.value})


async def deliver(client: SmtpClient, host: str, port: int, env: Envelope,
                  rcpts: list[Recipient], data: bytes, *, now: float) -> dict[str, Attempt]:
    """One LMTP transaction for `rcpts`; one Attempt per recipient address."""
    result = await client.deliver(host, port, env.mail_from, list(rcpts), data,
                                  params=MessageParams.from_envelope(env), tls=LAN_TLS, lmtp=True)
    return {r.address: _attempt(result.recipients[r.address], result.relay, now) for r in rcpts}
