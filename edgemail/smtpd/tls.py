"""smtpd/tls.py - the listener's side of STARTTLS (RFC 3207): its TLS
context, what it reloads on SIGHUP, and what a handshake is logged as.

Owns: ``make_context`` (an ``ssl.SSLContext`` for the server side, TLS 1.2
or later, no compression, no renegotiation, from the listener's tls_cert
and tls_key), ``ServerTls`` (the context a listener serves with, which
listener.py's ``reload_secrets`` replaces on SIGHUP only once the new
files load, so a bad new certificate leaves the old one serving),
and ``describe()``, the facts of a finished handshake (version, cipher,
bits) for the log line and the Received: header.

Sessions take ``ServerTls.context`` when their STARTTLS starts: a reload
changes the certificate for new handshakes, never one in progress.

Failures: ``make_context`` and ``ServerTls(...)`` raise ConfigError naming
the file (the daemon does not start; a reload changes nothing).
"""

from __future__ import annotations

import ssl

from edgemail.errors import ConfigError


def make_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for CERT (PEM chain) and KEY.  Raises ConfigError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:         # an OSError too: first
        raise ConfigError(f"cannot load the TLS certificate with its key {key}: {exc.reason or exc}",
                          file=cert) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS certificate or key: {exc.strerror}",
                          file=exc.filename or cert) from None
    return ctx


class ServerTls:
    """One listener's TLS context (replaced whole on reload)."""

    def __init__(self, cert: str, key: str) -> None:
        self.cert, self.key = cert, key
        self.context = make_context(cert, key)



def describe(ssl_object: ssl.SSLObject | None) -> tuple[str, str, int]:
    """(version, cipher, bits) of a finished handshake."""
    if ssl_object is None:
        return "unknown", "unknown", 0
    cipher = ssl_object.cipher() or ("unknown", "", 0)
    return ssl_object.version() or "unknown", cipher[0], cipher[2] or 0
