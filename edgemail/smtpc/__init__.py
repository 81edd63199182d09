"""smtpc - edgemail's SMTP/LMTP client.

    reply.py    reply parser (pure): bytes -> Reply(code, lines, enhanced)
    core.py     the dialogue (pure, h11 style): commands -> bytes, bytes -> Response
                events; MAIL/RCPT parameters from what the server offers; wire
                encoding of message data (normalise, dot-stuff, <= 998 octets)
    session.py  the asyncio driver: connect, per-phase Timeout.*, STARTTLS, AUTH,
                pipelined transactions, connection cache; ``SmtpClient.deliver``
    tls.py      TlsPolicy (MX_TLS, SMARTHOST_TLS) and the credentials file
    results.py  DeliveryResult/RcptResult, SmtpTimeout, failure scoping (pure)

The runner uses ``SmtpClient`` (session.py); transports reuse it in LMTP mode.
Nothing here resolves names (mx.py does).
"""

from edgemail.smtpc.core import MessageParams
from edgemail.smtpc.reply import Reply
from edgemail.smtpc.results import DeliveryResult, RcptResult, SmtpTimeout
from edgemail.smtpc.session import SmtpClient
from edgemail.smtpc.tls import MX_TLS, SMARTHOST_TLS, Credentials, TlsPolicy, load_credentials

__all__ = ["MessageParams", "Reply", "MX_TLS", "SMARTHOST_TLS", "Credentials", "DeliveryResult",
           "RcptResult", "SmtpClient", "SmtpTimeout", "TlsPolicy", "load_credentials"]
