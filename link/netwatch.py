"""netwatch.py - is ppp0 up, and is anything moving on it (DRIVER, pyroute2).

NAME
    netwatch - NetWatch(ifname, netns=...): async iterator of interface events;
    counters() -> (rx_bytes, tx_bytes)

SYNOPSIS
    async with NetWatch("ppp0", netns="edge-1234") as watch:
        async for event in watch:          # IfaceUp, IfaceDown, AddrAdded, AddrRemoved
            ...
        rx, tx = await watch.counters()    # IFLA_STATS64, for idle detection

DESCRIPTION
    Owns one rtnetlink socket (pyroute2 AsyncIPRoute) subscribed to link and
    IPv4 address groups, in the given network namespace.  It keeps a view of
    the one interface it watches (exists, IFF_UP, IFF_LOWER_UP, IPv4
    addresses) and reports *changes of that view*, so a full re-read and a
    stream of events produce the same reports.

    Connected means: the interface exists, is UP and LOWER_UP, and has an
    IPv4 address whose local and peer are both outside `placeholders`.
    pppd in `demand` mode brings ppp0 up before dialing with placeholder
    addresses (local 10.64.64.64+unit, peer 10.112.112.112+unit when none
    are configured); those are reported as AddrAdded but never as IfaceUp.
    When demand mode is configured with fixed addresses, the addresses do not
    change on connect and this watcher cannot tell: the ip-up hook (which the
    link FSM also accepts as IfaceUp, idempotently) is then the authority.

    Netlink overflow: when the socket's receive buffer overflows the kernel
    drops messages and reports ENOBUFS.  The watcher then closes the socket,
    opens a new one, re-subscribes, dumps links and addresses (a full
    re-read) and reports whatever changed meanwhile; `resyncs` counts it.

NEVER
    Changes an interface, or decides anything: the FSM does.

FAILURES (Raises:)
    OSError other than ENOBUFS from the socket (e.g. the namespace vanished).
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass, field

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_LINK

from link import linklog

log = logging.getLogger("link")

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
#: pppd's demand-mode placeholder addresses for unit 0
DEMAND_PLACEHOLDERS = frozenset({"10.64.64.64", "10.112.112.112"})


@dataclass(frozen=True)
class IfaceUp:
    ifname: str
    addr: str
    peer: str


@dataclass(frozen=True)
class IfaceDown:
    ifname: str


@dataclass(frozen=True)
class AddrAdded:
    ifname: str
    addr: str
    peer: str
    prefixlen: int


@dataclass(frozen=True)
class AddrRemoved:
    ifname: str
    addr: str


NetEvent = IfaceUp | IfaceDown | AddrAdded | AddrRemoved


@dataclass(frozen=True)
class View:
    """What we know of the interface."""

    index: int | None = None
    flags: int = 0
    addrs: dict[str, tuple[str, int]] = field(default_factory=dict)   #: local -> (peer, prefixlen)

    def connected(self, placeholders: frozenset[str]) -> tuple[str, str] | None:
        if self.index is None or self.flags & (IFF_UP | IFF_LOWER_UP) != IFF_UP | IFF_LOWER_UP:
            return None
        for local, (peer, _) in sorted(self.addrs.items()):
            if local not in placeholders and peer not in placeholders:
                return local, peer
        return None


def changes(ifname: str, old: View, new: View, placeholders: frozenset[str]) -> list[NetEvent]:
    """The events that take `old` to `new` (pure: used for messages and re-reads alike)."""
    out: list[NetEvent] = []
    was, now = old.connected(placeholders), new.connected(placeholders)
    if was and was != now:
        out.append(IfaceDown(ifname))
    for local in sorted(old.addrs.keys() - new.addrs.keys()):
        out.append(AddrRemoved(ifname, local))
    for local in sorted(new.addrs.keys() - old.addrs.keys()):
        peer, plen = new.addrs[local]
        out.append(AddrAdded(ifname, local, peer, plen))
    if now and was != now:
        out.append(IfaceUp(ifname, *now))
    return out


def apply(view: View, msg, ifname: str) -> View:
    """The view after one rtnetlink message (RTM_NEW/DELLINK, RTM_NEW/DELADDR)."""
    event = msg["event"]
    if event in ("RTM_NEWLINK", "RTM_DELLINK"):
        if msg.get("IFLA_IFNAME") != ifname:
            return view
        if event == "RTM_DELLINK":
            return View()
        return View(msg["index"], msg["flags"], view.addrs if view.index == msg["index"] else {})
    if event in ("RTM_NEWADDR", "RTM_DELADDR") and view.index is not None and msg["index"] == view.index:
        local = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
        if local is None:
            return view
        peer = msg.get("IFA_ADDRESS")
        addrs = dict(view.addrs)
        if event == "RTM_NEWADDR":
            addrs[local] = ("" if peer in (None, local) else peer, msg["prefixlen"])
        else:
            addrs.pop(local, None)
        return View(view.index, view.flags, addrs)
    return view


class NetWatch:
    def __init__(self, ifname: str = "ppp0", *, netns: str | None = None,
                 placeholders: frozenset[str] = DEMAND_PLACEHOLDERS, rcvbuf: int = 1 << 20) -> None:
        self.ifname = ifname
        self.netns = netns or None
        self.placeholders = frozenset(placeholders)
        self.rcvbuf = rcvbuf
        self.view = View()
        self.resyncs = 0
        self._ipr: AsyncIPRoute | None = None
        self._pending: list[NetEvent] = []

    async def __aenter__(self) -> NetWatch:
        await self.open()
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    async def open(self) -> None:
        """Subscribe, then read the current state (reported as events)."""
        self._ipr = AsyncIPRoute(netns=self.netns, rcvbuf=self.rcvbuf)
        await self._ipr.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR)
        await self._reread()

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    @property
    def connected(self) -> bool:
        return self.view.connected(self.placeholders) is not None

    def _socket(self) -> AsyncIPRoute:
        if self._ipr is None:
            raise OSError(errno.EBADF, f"netlink watcher for {self.ifname} is not open")
        return self._ipr

    async def _reread(self) -> None:
        new = View()
        async for msg in await self._socket().link("dump"):
            new = apply(new, msg, self.ifname)
        if new.index is not None:
            async for msg in await self._socket().addr("dump", family=2):
                new = apply(new, msg, self.ifname)
        self._set(new)

    def _set(self, new: View) -> None:
        self._pending += changes(self.ifname, self.view, new, self.placeholders)
        self.view = new

    async def _resync(self) -> None:
        self.resyncs += 1
        log.warning(linklog.netlink_overflow(self.ifname, self.resyncs))
        self.close()
        await self.open()

    def __aiter__(self):
        return self._events()

    async def _events(self):
        while True:
            while self._pending:
                yield self._pending.pop(0)
            try:
                # PITFALL (feasibility.md): get() ends after each datagram.
                async for msg in self._socket().get():
                    self._set(apply(self.view, msg, self.ifname))
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                await self._resync()

    async def counters(self) -> tuple[int, int] | None:
        """(rx_bytes, tx_bytes) of the interface, or None when it does not exist."""
        if self.view.index is None:
            return None
        async with AsyncIPRoute(netns=self.netns) as ipr:
            try:
                (msg,) = await ipr.link("get", index=self.view.index)
            except Exception as e:          # NetlinkError ENODEV: gone meanwhile
                if getattr(e, "code", None) == errno.ENODEV:
                    return None
                raise
        stats = msg.get("IFLA_STATS64") or msg.get("IFLA_STATS")
        return stats["rx_bytes"], stats["tx_bytes"]
