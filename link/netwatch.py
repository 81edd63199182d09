"""netwatch.py - is ppp0 up, and is anything moving on it (DRIVER, pyroute2).

NAME
    netwatch - NetWatch(ifname, netns=...): async iterator of interface events;
    counters() -> (rx_bytes, tx_bytes); probe(ifname, netns) -> View;
    refusal(view, ifname, local, placeholders) -> why a claim is false

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

    Claims (the ip-up hook's "ppp0 is up with LOCAL"): probe() reads the
    interface afresh (one dump, no subscription) and refusal() says what
    netlink contradicts ("" when nothing): the interface must exist, be UP
    and LOWER_UP and carry the claimed local address (none claimed: any
    address outside `placeholders`), and a placeholder is no claim at all.
    Nothing is to act on a hook's word alone.

    Namespaces: pyroute2 opens a socket in another namespace (`netns`)
    from a forked helper, which it ends with SIGTERM.  A fork inherits
    asyncio's signal wakeup fd, so that SIGTERM reached the daemon's loop
    as the daemon's own (it stopped, reason=SIGTERM, at the first sample of
    a call with [link] netns set); a forked child here forgets the wakeup
    fd (os.register_at_fork).

    Netlink overflow: when the socket's receive buffer overflows the kernel
    drops messages and reports ENOBUFS.  The watcher then closes the socket,
    opens a new one, re-subscribes, dumps links and addresses (a full
    re-read) and reports whatever changed meanwhile; `resyncs` counts it.

NEVER
    Changes an interface, or decides anything: the FSM does.

FAILURES (Raises:)
    OSError other than ENOBUFS from the socket (e.g. the namespace vanished);
    probe(): OSError, NetlinkError.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
from dataclasses import dataclass, field

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_LINK

from link import linklog

log = logging.getLogger("link")

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
#: pppd's demand-mode placeholder addresses for unit 0
DEMAND_PLACEHOLDERS = frozenset({"10.64.64.64", "10.112.112.112"})


def _forget_the_loops_signals() -> None:
    """In a forked child (pyroute2's namespace helper): its signals are not the parent loop's."""
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)


os.register_at_fork(after_in_child=_forget_the_loops_signals)


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


def refusal(view: View, ifname: str, local: str, placeholders: frozenset[str]) -> str:
    """What netlink's view contradicts in the claim "IFNAME is up with LOCAL" ("" when nothing)."""
    if view.index is None:
        return f"{ifname} does not exist"
    if view.flags & (IFF_UP | IFF_LOWER_UP) != IFF_UP | IFF_LOWER_UP:
        return f"{ifname} is not up"
    if local and local in placeholders:
        return f"{local} is pppd's demand-mode placeholder, not a connection"
    if local and local not in view.addrs:
        have = ", ".join(sorted(view.addrs)) or "none"
        return f"{ifname} has no address {local} (it has {have})"
    if not local and view.connected(placeholders) is None:
        return f"{ifname} has no address but placeholders"
    return ""


async def probe(ifname: str, netns: str | None = None) -> View:
    """The interface as netlink has it now (one dump).  Raises OSError, NetlinkError."""
    async with AsyncIPRoute(netns=netns or None) as ipr:
        return await _read(ipr, ifname)


async def _read(ipr: AsyncIPRoute, ifname: str) -> View:
    """A full re-read: the links, then the interface's IPv4 addresses."""
    view = View()
    async for msg in await ipr.link("dump"):
        view = apply(view, msg, ifname)
    if view.index is not None:
        async for msg in await ipr.addr("dump", family=2):
            view = apply(view, msg, ifname)
    return view


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
        self._set(await _read(self._socket(), self.ifname))

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
            except NetlinkError as e:       # ENODEV: gone meanwhile
                if e.code == errno.ENODEV:
                    return None
                raise
        stats = msg.get("IFLA_STATS64") or msg.get("IFLA_STATS")
        return stats["rx_bytes"], stats["tx_bytes"]
