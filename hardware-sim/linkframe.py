"""linkframe.py - SLIP framing (RFC 1055) and the modem-line pacer.

SYNOPSIS
    wire = slip_encode(packet)
    dec = SlipDecoder(); for item in dec.feed(chunk): ...   # bytes packets, or CarrierText
    pipe = Pipe(deliver, rate_bps=56000, delay_s=0.050, limit=8192, loop=loop)
    pipe.push(packet, tag)                 # later: deliver(packet, tag)

DESCRIPTION
    Both ends of the simulated PPP link (fakepppd and the modem emulator)
    carry IP packets over the modem's pty as SLIP frames: END (0xC0)
    before and after each packet, END and ESC inside escaped as
    ESC ESC_END / ESC ESC_ESC.

    The modem says "NO CARRIER" in plain text when it loses carrier.  The
    decoder reports that text as `CarrierText` only when it starts right
    after a frame boundary (an IP packet never starts with CR), so mail
    text that happens to contain "NO CARRIER" is never mistaken for it.

    Pipe is one direction of the line: per-packet serialization at
    rate_bps, a fixed one-way delay, and a drop-tail buffer of `limit`
    bytes (a modem's buffer without flow control).  It needs a running
    asyncio loop and calls deliver(packet, tag) at the packet's arrival
    time; the tag is the caller's (modemsim uses a call number, so that
    packets of a call that hung up are never delivered into the next).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
NO_CARRIER = b"\r\nNO CARRIER\r\n"


@dataclass(frozen=True)
class CarrierText:
    """The modem's in-band NO CARRIER seen between frames."""
    text: bytes


def slip_encode(packet: bytes) -> bytes:
    body = packet.replace(bytes([ESC]), bytes([ESC, ESC_ESC])).replace(bytes([END]), bytes([ESC, ESC_END]))
    return bytes([END]) + body + bytes([END])


class SlipDecoder:
    """Incremental SLIP decoder; chunking does not change what it yields."""

    def __init__(self, max_frame: int = 65536):
        self._buf = bytearray()
        self._esc = False
        self._max = max_frame
        self.errors = 0

    def feed(self, data: bytes) -> list:
        out: list = []
        for b in data:
            if b == END:
                if self._buf:
                    out.append(bytes(self._buf))
                self._buf.clear()
                self._esc = False
                continue
            if self._esc:
                b = {ESC_END: END, ESC_ESC: ESC}.get(b, b)
                self._esc = False
            elif b == ESC:
                self._esc = True
                continue
            self._buf.append(b)
            if len(self._buf) > self._max:
                self._buf.clear()
                self.errors += 1
            if self._buf[:1] == b"\r" and bytes(self._buf) == NO_CARRIER[: len(self._buf)]:
                if len(self._buf) == len(NO_CARRIER):
                    out.append(CarrierText(bytes(self._buf)))
                    self._buf.clear()
        return out


class Pipe:
    """One direction of the paced line: rate, delay, drop-tail buffer."""

    def __init__(self, deliver: Callable[[bytes, object], None], rate_bps: float, delay_s: float,
                 limit: int = 8192, loop: asyncio.AbstractEventLoop | None = None):
        self.deliver = deliver
        self.rate_bps = float(rate_bps)
        self.delay_s = float(delay_s)
        self.limit = int(limit)
        self.loop = loop or asyncio.get_running_loop()
        self._busy_until = 0.0
        self.sent = self.dropped = self.bytes = 0

    def backlog(self) -> int:
        """Bytes queued ahead of a packet pushed now."""
        now = self.loop.time()
        return int(max(0.0, self._busy_until - now) * self.rate_bps / 8)

    def push(self, packet: bytes, tag: object = None) -> bool:
        """Queue `packet`; False if the buffer is full (dropped)."""
        now = self.loop.time()
        start = max(now, self._busy_until)
        if (start - now) * self.rate_bps / 8 + len(packet) > self.limit and start > now:
            self.dropped += 1
            return False
        self._busy_until = start + len(packet) * 8 / self.rate_bps
        self.sent += 1
        self.bytes += len(packet)
        self.loop.call_at(self._busy_until + self.delay_s, self._deliver, packet, tag)
        return True

    def _deliver(self, packet: bytes, tag: object) -> None:
        try:
            self.deliver(packet, tag)
        except OSError:
            pass
