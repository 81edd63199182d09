"""The ODMR turn-around (RFC 2645) on the smtpc client, on loopback: after a 250 to ATRN the
connection goes to our server side with every byte that came after the 250, in order."""

from __future__ import annotations

import asyncio

import pytest

from edgemail.config.model import Timeouts
from edgemail.errors import LocalProtocolError
from edgemail.smtpc.events import Atrn, Quit
from edgemail.smtpc.opening import Opening
from edgemail.smtpc.results import Stats
from edgemail.smtpc.tls import TlsPolicy
from line_server import line_server


class Collector(asyncio.Protocol):
    """Our server side, as far as this test needs one: what it is sent."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.more = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.more.set()

    async def until(self, want: bytes) -> None:
        while want not in self.data:
            self.more.clear()
            await self.more.wait()


def isp(atrn_reply: bytes):
    """The ISP's ODMR side: answers ATRN with ``atrn_reply``, then, as the
    client of the turned connection, waits for our greeting and says MAIL."""
    def script(line: bytes) -> tuple[bytes, bool]:
        if line.startswith(b"EHLO"):
            return b"250-isp.example\r\n250 ATRN\r\n", True
        if line.startswith(b"ATRN"):
            return atrn_reply, True
        if line.startswith(b"220 "):
            return b"MAIL FROM:<a@isp.example>\r\n", True
        return b"221 bye\r\n", False
    return line_server(script, greeting=b"220 isp.example ODMR\r\n")


def opening() -> Opening:
    return Opening("edge.example", Timeouts(connect=5, iconnect=5, misc=5), Stats(), tls=TlsPolicy("none"))


async def test_250_to_atrn_hands_the_connection_and_the_early_bytes_over():
    async with isp(b"250 OK now reversing the connection\r\nEHLO isp.example\r\n") as (port, seen):
        d = await opening().open("127.0.0.1", port)
        (resp,) = await d.exchange([Atrn(("edge.example",))])
        transport, early = d.turn_around()
        assert resp.reply.code == 250 and early == b"EHLO isp.example\r\n"
        assert not d.usable
        server = Collector()
        transport.set_protocol(server)
        transport.resume_reading()
        transport.write(b"220 edge.example ESMTP\r\n")
        await server.until(b"MAIL FROM:<a@isp.example>\r\n")
        transport.close()
    assert seen == [b"EHLO edge.example\r\n", b"ATRN edge.example\r\n", b"220 edge.example ESMTP\r\n"]


async def test_refused_atrn_keeps_the_dialogue_and_hands_nothing_over():
    async with isp(b"453 You have no mail\r\n") as (port, seen):
        d = await opening().open("127.0.0.1", port)
        (resp,) = await d.exchange([Atrn()])
        assert resp.reply.code == 453
        with pytest.raises(LocalProtocolError, match="handover before"):
            d.turn_around()
        (bye,) = await d.exchange([Quit()])
        d.abort()
    assert bye.reply.code == 221 and seen[-2:] == [b"ATRN\r\n", b"QUIT\r\n"]
