"""A pyroute2 AsyncIPRoute recorder for tests: link/address events of one
interface in one namespace, collected on a background thread's event loop."""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_LINK

IFF_UP, IFF_LOWER_UP = 0x1, 0x10000


@dataclass(frozen=True)
class NlEvent:
    t: float
    kind: str            # NEWLINK DELLINK NEWADDR DELADDR
    up: bool | None = None
    lower_up: bool | None = None
    local: str | None = None
    peer: str | None = None
    prefixlen: int | None = None

    def short(self) -> tuple:
        if "LINK" in self.kind:
            return (self.kind, "UP" if self.up else "DOWN")
        return (self.kind, self.local, self.peer, self.prefixlen)


class NetlinkRecorder:
    def __init__(self, netns: str, ifname: str = "ppp0"):
        self.netns, self.ifname = netns, ifname
        self.events: list[NlEvent] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("netlink recorder did not start")
        return self

    def __exit__(self, *exc):
        if self._loop:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(5)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(self._watch())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.close()

    async def _watch(self) -> None:
        async with AsyncIPRoute(netns=self.netns) as ipr:
            await ipr.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR)
            self._ready.set()
            while True:
                async for msg in ipr.get():  # get() ends after each datagram
                    self._record(msg)

    def _record(self, msg) -> None:
        kind = msg["event"].removeprefix("RTM_")
        if "LINK" in kind:
            if msg.get("IFLA_IFNAME") != self.ifname:
                return
            flags = msg["flags"]
            ev = NlEvent(time.monotonic(), kind, bool(flags & IFF_UP), bool(flags & IFF_LOWER_UP))
        else:
            if msg.get("IFA_LABEL") != self.ifname:
                return
            ev = NlEvent(time.monotonic(), kind, local=msg.get("IFA_LOCAL"),
                         peer=msg.get("IFA_ADDRESS"), prefixlen=msg["prefixlen"])
        self.events.append(ev)

    def wait_for(self, kind: str, timeout_s: float = 5.0) -> NlEvent:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            for ev in self.events:
                if ev.kind == kind:
                    return ev
            time.sleep(0.002)
        raise AssertionError(f"no {kind} for {self.ifname} in {timeout_s} s: {self.events}")
