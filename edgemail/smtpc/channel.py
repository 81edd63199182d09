"""smtpc/channel.py - the socket under one client connection: bytes in, bytes out, TLS.

Owns: one TCP connection, as an asyncio Protocol: ``Channel.connect``
(or ``adopt``: a connection opened by someone else, ODMR's turn-around),
``read`` (all that arrived since the last read), ``take`` (the same
without waiting), ``write`` (with the transport's flow control),
``start_tls`` (the upgrade after a 220 to STARTTLS), ``detach`` (the
connection handed to a new owner: ODMR), ``close`` and ``abort``.  The bytes the transport hands over wait here and nowhere
else: no stream reader keeps a buffer of its own that the dialogue cannot
see, so what came before a TLS handshake, or before the connection is
turned around (ODMR), is known to the byte.

Never does: SMTP (the dialogue is core.py's, driven by dialogue.py),
timeouts (the caller bounds every wait), logging.

Invariants:
  * ``read`` returns every byte received since the previous ``read`` or
    ``take``, in order, and b"" only at the end of the stream;
  * ``start_tls`` leaves in the buffer only what had arrived before it was
    called; every byte that arrives later has come through TLS.  The
    caller takes the buffer first and decides what plaintext sent before
    the handshake means (dialogue.py: the session is dropped);
  * after the connection is lost, ``read`` raises the error that ended it
    and ``write`` raises ConnectionResetError.

Failures: OSError from ``connect``, ``read`` and ``write``; ssl.SSLError
(or OSError) from ``start_tls``.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

__all__ = ["Channel", "take_over"]


def take_over(transport: asyncio.Transport, protocol: Any, early: bytes = b"") -> None:
    """PROTOCOL serves TRANSPORT from now on (ODMR's turned connection, either
    side): EARLY, what was read before, reaches it first; reading resumes."""
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if early:
        protocol.data_received(early)
    if not transport.is_reading():
        transport.resume_reading()


class Channel(asyncio.Protocol):
    """One TCP (later TLS) connection's bytes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._inbox = bytearray()
        self._ended = False                   # EOF, or the connection is gone
        self._lost = False
        self._error: Exception | None = None  # what ended it, if not a clean close
        self._arrived = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    @classmethod
    async def connect(cls, host: str, port: int) -> "Channel":
        _, channel = await asyncio.get_running_loop().create_connection(cls, host, port)
        return channel

    @classmethod
    def adopt(cls, transport: asyncio.Transport, early: bytes = b"") -> "Channel":
        """A channel on a connection someone else opened (ODMR, the ISP's
        side: after our 250 to ATRN we are the client on the customer's
        connection): this protocol reads it from now on, EARLY (what was
        read before) first."""
        channel = cls()
        take_over(transport, channel, early)
        return channel

    # -------------------------------------------------- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._inbox += data
        self._arrived.set()

    def eof_received(self) -> bool:
        self._ended = True
        self._arrived.set()
        return False                          # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = self._lost = True
        self._error = exc
        self._arrived.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # ------------------------------------------------------------ bytes
    async def read(self) -> bytes:
        """What arrived since the last read (at least one byte); b"" at EOF."""
        while not self._inbox and not self._ended:
            self._arrived.clear()
            await self._arrived.wait()
        if self._inbox:
            return self.take()
        if self._error is not None:
            raise self._error
        return b""

    def take(self) -> bytes:
        """What arrived since the last read, without waiting (maybe b"")."""
        out, self._inbox = bytes(self._inbox), bytearray()
        return out

    async def write(self, data: bytes) -> None:
        """Send bytes; return once the transport's buffer is below its high-water mark."""
        transport = self._open_transport()
        transport.write(data)
        await self._writable.wait()
        if self._lost:
            raise ConnectionResetError("connection lost") from self._error

    async def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """The TLS handshake, as client; this protocol then reads and writes through TLS."""
        loop = asyncio.get_running_loop()
        tls = await loop.start_tls(self._open_transport(), self, context,
                                   server_hostname=server_hostname)
        if tls is None:
            raise ConnectionResetError("connection lost during the TLS handshake")
        assert isinstance(tls, asyncio.Transport)
        self.transport = tls

    def detach(self) -> tuple[asyncio.Transport, bytes]:
        """Give the connection up (the ODMR turn-around): the transport, its
        reading paused, and the bytes not yet read.  The new owner sets its
        own protocol on the transport and resumes reading; this channel is
        done with it (``close`` and ``abort`` no longer touch it)."""
        transport = self._open_transport()
        transport.pause_reading()
        self.transport = None
        return transport, self.take()

    def close(self) -> None:
        """Close after what was written has gone out."""
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping what was not sent."""
        if self.transport is not None:
            self.transport.abort()

    def _open_transport(self) -> asyncio.Transport:
        if self.transport is None or self._lost or self.transport.is_closing():
            raise ConnectionResetError("connection lost")
        return self.transport
