"""smtpc - edgemail's SMTP/LMTP client.

    reply.py        reply parser (pure): bytes -> Reply(code, lines, enhanced)
    events.py       the dialogue's words (pure): command dataclasses, Response,
                    NEED_DATA, Capabilities
    wire.py         wire encoding (pure): command lines, message data (normalise,
                    dot-stuff, <= 998 octets), refusal of CR/LF/controls
    core.py         the dialogue (pure, h11 style): commands -> bytes, bytes -> Response
                    events; MAIL/RCPT parameters from what the server offers; reply
                    -> TempFail/PermFail with a scope; re-exports events and wire
    session.py      the asyncio driver: Session.exchange (per-phase Timeout.*),
                    connection cache; ``SmtpClient.deliver``
    opening.py      Session, part 1: connect, greeting, EHLO/LHLO, STARTTLS, AUTH
    transaction.py  Session, part 2: MAIL/RCPT/DATA, pipelined or in lockstep, results
    tls.py          TlsPolicy (MX_TLS, SMARTHOST_TLS) and the credentials file
    results.py      DeliveryResult/RcptResult, SmtpTimeout, failure scoping (pure)

The runner uses ``SmtpClient`` (session.py); transports reuse it in LMTP mode.
Nothing here resolves names (delivery/mx.py does).
"""

from edgemail.smtpc.core import MessageParams
from edgemail.smtpc.reply import Reply
from edgemail.smtpc.results import DeliveryResult, RcptResult, SmtpTimeout
from edgemail.smtpc.session import SmtpClient
from edgemail.smtpc.tls import (
           MX_TLS,
           SMARTHOST_TLS,
           Credentials,
           TlsPolicy,
           load_credentials,
)

__all__ = ["MessageParams", "Reply", "MX_TLS", "SMARTHOST_TLS", "Credentials", "DeliveryResult",
           "RcptResult", "SmtpClient", "SmtpTimeout", "TlsPolicy", "load_credentials"]
