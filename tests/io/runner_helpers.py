"""Helpers for the runner tests: a config with routes to loopback peers, a
store, a runner, message submission, Maildir reading, a fake link, an SMTP
peer that stalls after the final dot."""

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


class StallingPeer:
    """An SMTP server on loopback that takes a message and never answers its
    final dot.  ``stalled`` is set once a transfer waits for that reply: a
    positive event for "a delivery is in flight", instead of a sleep.
    ``connections`` counts the sessions; ``close()`` ends them."""

    def __init__(self) -> None:
        self.connections = 0
        self.stalled = asyncio.Event()
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> "StallingPeer":
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        writer.write(b"220 stall.test ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await reader.readuntil(b"\r\n.\r\n")
                    self.stalled.set()
                    await reader.read()          # no reply: wait for the client to give up
                    return
                writer.write(b"221 bye\r\n" if verb == b"QUIT" else b"250 stall.test ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def stalled(peer: StallingPeer, timeout: float = 10.0) -> None:
    """Wait until PEER holds a transfer (the pytest timeout is the real bound)."""
    await asyncio.wait_for(peer.stalled.wait(), timeout)
