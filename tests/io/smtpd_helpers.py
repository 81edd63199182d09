"""Helpers for the SMTP listener tests: a running listener on 127.0.0.1:0
over the real spool in tmp_path, and raw-socket dialogue."""

from __future__ import annotations

import asyncio
import contextlib

from edgemail.smtpd.listener import SmtpListener

from edgemail.spool.store import Store


def make_store(directory: str) -> Store:
    """The real spool in a temporary directory."""
    store = Store(directory)
    store.recover()
    return store


@contextlib.asynccontextmanager
async def running(cfg, store, *, listener=None, **kw):
    smtpd = SmtpListener(cfg, listener or cfg.listeners[0], store, **kw)
    await smtpd.start()
    try:
        yield smtpd
    finally:
        await smtpd.close()


class Raw:
    """A raw SMTP client over asyncio streams (for what smtplib will not send)."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> "Raw":
        r, w = await asyncio.open_connection(host, port)
        self = cls(r, w)
        self.banner = await self.reply()
        return self

    async def reply(self) -> str:
        lines = []
        while True:
            line = await asyncio.wait_for(self.r.readline(), 10)
            if not line:
                lines.append("<EOF>")
                break
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                break
        return "\n".join(lines)

    async def send(self, data: bytes | str) -> None:
        self.w.write(data.encode() if isinstance(data, str) else data)
        await self.w.drain()

    async def cmd(self, line: str) -> str:
        await self.send(line + "\r\n")
        return await self.reply()

    async def close(self) -> None:
        self.w.close()
        with contextlib.suppress(Exception):
            await self.w.wait_closed()
