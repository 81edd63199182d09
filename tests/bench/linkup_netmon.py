"""linkup_netmon — when did ppp0 come up: rtnetlink events stamped with CLOCK_MONOTONIC.

SYNOPSIS
    with world.in_edge():
        mon = NetMon.open("ppp0", "10.64.0.2")      # the socket stays in the edge namespace
    mon.start()
    t = mon.wait("route", after=t0, timeout=30)      # default route via ppp0 appeared
    mon.close()

Owns: one NETLINK_ROUTE socket subscribed to the link, IPv4 address and
IPv4 route groups, and a thread that stamps every message with
time.monotonic() right after recv() returns and parses it with pyroute2's
rtnetlink marshal.  (pyroute2's IPRoute opens its socket from a helper
thread, outside the namespace the caller's thread is in; a plain socket
opened inside `in_edge()` stays there.)

Events kept (kind, t):
    link_up   RTM_NEWLINK for IFNAME with IFF_UP and IFF_LOWER_UP
    addr      RTM_NEWADDR for IFNAME's LOCAL address
    route     RTM_NEWROUTE: the default route (dst_len 0, main table) via IFNAME
    gone      RTM_DELLINK for IFNAME

pppd (and fakepppd) bring the interface up, add the address, then the
default route, then write the DNS file and the pid file and start ip-up:
`route` is the instant ppp0 can carry the first packet out.

Never does: change an interface or route.

Failures: OSError from the socket (namespace gone) ends the thread; wait()
raises TimeoutError naming the event it waited for.
"""
from __future__ import annotations

import socket
import threading
import time

from pyroute2.netlink.rtnl.marshal import MarshalRtnl

RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
MAIN_TABLE = 254


class NetMon:
    def __init__(self, sock: socket.socket, ifname: str, local: str) -> None:
        self.sock, self.ifname, self.local = sock, ifname, local
        self.index: int | None = None
        self.events: list[tuple[str, float]] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="netmon")
        self._marshal = MarshalRtnl()

    @classmethod
    def open(cls, ifname: str, local: str) -> "NetMon":
        """Open the socket in the calling thread's network namespace."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE))
        return cls(sock, ifname, local)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.sock.close()

    def _loop(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError:
                return
            now = time.monotonic()
            kinds = [k for msg in self._marshal.parse(data) if (k := self.classify(msg))]
            if kinds:
                with self.cond:
                    self.events += [(k, now) for k in kinds]
                    self.cond.notify_all()

    def classify(self, msg) -> str | None:
        """The event kind of one parsed rtnetlink message, or None."""
        event = msg.get("event")
        if event in ("RTM_NEWLINK", "RTM_DELLINK") and msg.get_attr("IFLA_IFNAME") == self.ifname:
            self.index = msg.get("index")
            if event == "RTM_DELLINK":
                return "gone"
            flags = msg.get("flags")
            return "link_up" if flags & IFF_UP and flags & IFF_LOWER_UP else None
        if event == "RTM_NEWADDR" and msg.get_attr("IFA_LOCAL") == self.local:
            return "addr"
        if (event == "RTM_NEWROUTE" and msg.get("dst_len") == 0 and self.index is not None
                and msg.get_attr("RTA_OIF") == self.index
                and (msg.get_attr("RTA_TABLE") or msg.get("table")) == MAIN_TABLE):
            return "route"
        return None

    def first(self, kind: str, after: float) -> float | None:
        with self.cond:
            return next((t for k, t in self.events if k == kind and t >= after), None)

    def wait(self, kind: str, after: float, timeout: float) -> float:
        """The first `kind` event at or after `after`; waits up to `timeout` seconds."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                t = next((t for k, t in self.events if k == kind and t >= after), None)
                if t is not None:
                    return t
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {kind} event for {self.ifname} within {timeout:.0f}s")
                self.cond.wait(left)
