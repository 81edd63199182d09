"""Helpers for the runner tests: a config with routes to loopback peers, a
store, a runner, message submission, Maildir reading, a fake link, an SMTP
peer that holds its reply to the final dot until the test releases it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from edgemail.clock import FakeClock
from edgemail.envelope import Envelope, Recipient
from edgemail.delivery.runner import Runner
from edgemail.smtpc.session import SmtpClient
from edgemail.spool.store import Store

MSG = b"From: a@edge.example\r\nSubject: t\r\nMessage-ID: <m@edge.example>\r\n\r\nhello\r\n"


def make_cfg(example_config, **over):
    base = {"routes": {"*": {"route": "smarthost", "expensive": True, "dialdelay": False}},
            "SmartHostAuthFile": "", "DialDelay": "5s", "queue_run_budget": 0}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return example_config(**base)


def make_store(cfg, clock) -> Store:
    store = Store(cfg.spool_dir, clock=clock, class_factor=cfg.ClassFactor,
                  recipient_factor=cfg.RecipientFactor, retry_factor=cfg.RetryFactor)
    store.recover()
    return store


def make_runner(cfg, store, clock, **kw) -> Runner:
    smtp = SmtpClient.from_config(cfg)
    kw.setdefault("hosts_file", os.devnull)
    return Runner(cfg, store, clock=clock, smtp=smtp, **kw)


async def submit(store, rcpts, *, sender="alice@edge.example", data=MSG, notify=(), precedence=0,
                 clock: FakeClock | None = None) -> str:
    env = Envelope(sender, tuple(Recipient(r, notify=frozenset(notify)) for r in rcpts),
                   size=len(data), precedence=precedence, arrived=store.clock.wall())
    return await store.commit(env, data)


def maildir(cfg, user: str) -> list[bytes]:
    new = Path(cfg.local.maildir.replace("%u", user)) / "new"
    if not new.is_dir():
        return []
    return [p.read_bytes() for p in sorted(new.iterdir())]


class FakeLink:
    """A LinkPort: state, hold() (counted), wait_up() running a callback."""

    def __init__(self, state: str = "up", on_wait=None) -> None:
        self.state = state
        self.on_wait = on_wait
        self.holds: list[str] = []
        self.waits: list[float] = []

    @contextlib.asynccontextmanager
    async def hold(self, reason: str):
        self.holds.append(reason)
        yield

    async def wait_up(self, timeout: float) -> bool:
        self.waits.append(timeout)
        if self.on_wait is not None:
            await self.on_wait()
        self.state = "up"
        return True


async def until(pred, timeout: float = 10.0) -> None:
    """Poll `pred` (no assertion on time: the pytest timeout is the bound)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.01)


class HoldingPeer:
    """An SMTP server on loopback that holds its reply to every final dot
    until the test releases it: positive events instead of slow peers and
    sleeps.  ``await holding(n)``: N transfers wait for that reply (they are
    in flight); ``release()`` answers those (250), ``release(everything=True)``
    those and every later one at once.  ``connections`` counts sessions,
    ``messages`` the recipients of each message answered; ``close()`` ends
    every session."""

    def __init__(self) -> None:
        self.connections = 0
        self.messages: list[list[str]] = []
        self.port = 0
        self._hold = True
        self._held: list[asyncio.Future] = []
        self._changed = asyncio.Condition()
        self._server: asyncio.AbstractServer | None = None
        self._sessions: set[asyncio.Task] = set()

    async def start(self) -> "HoldingPeer":
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)

    async def holding(self, n: int, timeout: float = 10.0) -> None:
        """Wait until N transfers wait for their reply (the bound is not a test of speed)."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: sum(not f.done() for f in self._held) >= n)

    def release(self, *, everything: bool = False) -> None:
        self._hold = self._hold and not everything
        for fut in self._held:
            if not fut.done():
                fut.set_result(None)
        self._held = []

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._sessions.add(asyncio.current_task())
        self.connections += 1
        rcpts: list[str] = []
        writer.write(b"220 hold.test ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"RCPT":
                    rcpts.append(line.decode().partition("<")[2].partition(">")[0])
                if verb == b"DATA":
                    await self._data(reader, writer, rcpts)
                    rcpts = []
                    continue
                writer.write(b"221 bye\r\n" if verb == b"QUIT" else b"250 hold.test ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._sessions.discard(asyncio.current_task())

    async def _data(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    rcpts: list[str]) -> None:
        writer.write(b"354 go ahead\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n.\r\n")
        if self._hold:
            fut = asyncio.get_running_loop().create_future()
            self._held.append(fut)
            async with self._changed:
                self._changed.notify_all()
            await fut
        self.messages.append(list(rcpts))
        writer.write(b"250 2.0.0 queued\r\n")
        await writer.drain()
