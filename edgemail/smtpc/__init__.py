"""smtpc - edgemail's SMTP/LMTP client.

    reply.py    reply parser (pure): bytes -> Reply(code, lines, enhanced)
    core.py     the dialogue (pure, h11 style): commands -> bytes, bytes -> Response
                events; MAIL/RCPT parameters from what the server offers; wire
                encoding of message data (normalise, dot-stuff, <= 998 octets)
    session.py  the asyncio driver: connect, per-phase Timeout.*, STARTTLS, AUTH,
                pipelined transactions, connection cache; ``SmtpClient.deliver``

The runner uses ``SmtpClient`` (session.py); transports reuse it in LMTP mode.
Nothing here resolves names (mx.py does).
"""

from edgemail.smtpc.core import MessageParams
from edgemail.smtpc.reply import Reply
from edgemail.smtpc.session import (MX_TLS, SMARTHOST_TLS, Credentials, DeliveryResult,
                                    RcptResult, SmtpClient, SmtpTimeout, TlsPolicy,
                                    load_credentials)

__all__ = ["MessageParams", "Reply", "MX_TLS", "SMARTHOST_TLS", "Credentials", "DeliveryResult",
           "RcptResult", "SmtpClient", "SmtpTimeout", "TlsPolicy", "load_credentials"]
