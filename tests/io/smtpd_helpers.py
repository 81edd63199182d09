"""Helpers for the SMTP listener tests: a running listener on 127.0.0.1:0
over the real spool in tmp_path, and raw-socket dialogue."""

from __future__ import annotations

import asyncio
import contextlib
import os

from edgemail.envelope import Envelope, QueueIdGenerator
from edgemail.smtpd import SmtpListener

try:
    from edgemail.spool.store import Store
except ImportError:        # XXX: until the spool lands; same interface (docs/interfaces.md)
    Store = None


class InterimStore:
    """Writes each message to its own fsynced file: docs/interfaces.md's
    commit/has_room/read_data/get, used only while edgemail/spool/store.py
    is not in the tree."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self._qids = QueueIdGenerator(os.getpid())
        self._env: dict[str, Envelope] = {}

    def has_room(self, size: int = 0) -> bool:
        return True

    async def commit(self, env: Envelope, data: bytes) -> str:
        qid = self._qids()
        await asyncio.to_thread(self._write, qid, data)
        self._env[qid] = env
        return qid

    def _write(self, qid: str, data: bytes) -> None:
        with open(os.path.join(self.dir, qid), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def read_data(self, qid: str) -> bytes:
        with open(os.path.join(self.dir, qid), "rb") as f:
            return f.read()

    def get(self, qid: str):
        return type("Entry", (), {"qid": qid, "envelope": self._env[qid]})()


def make_store(directory: str):
    if Store is None:
        return InterimStore(directory)
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
