"""smtpc - edgemail's SMTP/LMTP client.

    reply.py        reply parser (pure): bytes -> Reply(code, lines, enhanced)
    events.py       the dialogue's words (pure): command dataclasses, Response,
                    NEED_DATA, Capabilities
    wire.py         wire encoding (pure): command lines, message data (normalise,
                    dot-stuff, <= 998 octets), refusal of CR/LF/controls
    params.py       MAIL/RCPT with the parameters the server offers (pure)
    core.py         the dialogue (pure, h11 style): commands -> bytes, bytes -> Response
                    events; reply -> TempFail/PermFail with a scope; ETRN's replies;
                    nothing read from before a TLS handshake; the hand-over after
                    ATRN; re-exports events, wire and params
    channel.py      Channel: the socket (an asyncio Protocol): bytes, flow control, TLS
    dialogue.py     Dialogue: one connection's Channel and core; exchange() with the
                    per-phase Timeout.*, start_tls, quit
    opening.py      Opening: connect, greeting, EHLO/LHLO, STARTTLS, AUTH -> Dialogue
    transaction.py  Transaction: one message, MAIL/RCPT/DATA pipelined or in lockstep
    session.py      SmtpClient: ``deliver`` and the connection cache
    tls.py          TlsPolicy (MX_TLS, SMARTHOST_TLS) and the credentials file
    results.py      DeliveryResult/RcptResult, SmtpTimeout, failure scoping (pure)

Imports point one way: events, reply, wire, params <- core <- dialogue (with channel)
<- opening, transaction <- session.  The runner uses ``SmtpClient``
(session.py); the LMTP transport reuses it in LMTP mode; the ETRN client
(delivery/etrn.py) opens with ``Opening`` and says ETRN over the ``Dialogue``.
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
