"""daemon/routewait.py - what the link-up run waits for: a route to each first hop, fresh peer DNS.

NAME
    routewait - wait_route(addresses, limit_s), wait_fresh_file(path, limit_s)

DESCRIPTION
    The call is up before the kernel has all of it: pppd adds ppp0's
    address before the default route and writes its usepeerdns file when
    IPCP comes up.  The MTA port's link-up run (daemon/mtaport.py) waits
    here, bounded, then runs anyway (logged).  Real time, not the injected
    clock: these wait for the kernel and pppd.

NEVER
    Sends a packet: a UDP connect() only asks the routing table.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from edgemail import maillog

log = logging.getLogger("edgemail.runner")

#: how often the waits look again
ROUTE_POLL_S = 0.05


def _routable(addr: str) -> bool:
    """Has the kernel a route to `addr`?  A UDP connect() sends no packet;
    it only asks the routing table."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((addr, 53))
            return True
        except OSError:
            return False


async def wait_route(addresses: list[str], limit_s: float) -> bool:
    """Wait (at most limit_s) until the kernel has a route to every one of
    `addresses` (the run's first hops: nameservers and the smart host).

    pppd (and fakepppd) add ppp0's address a few ms before the default route:
    netlink's link-up comes first, and a run started at once meets "Network is
    unreachable".  Every hop counts: a smart host on the LAN or on loopback
    is routable at once and says nothing about the nameservers behind ppp0.
    Real time, not the injected clock: this waits for the kernel and pppd."""
    waited = 0.0
    while True:
        missing = [a for a in addresses if not _routable(a)]
        if not missing:
            return True
        if waited >= limit_s:
            log.warning(maillog.runner_warning(f"no route to {','.join(missing)} after {waited:.1f}s; running anyway"))
            return False
        await asyncio.sleep(ROUTE_POLL_S)
        waited += ROUTE_POLL_S


async def wait_fresh_file(path: str, limit_s: float, fresh_s: float = 30.0) -> bool:
    """Wait (at most limit_s) until `path` was written within the last
    `fresh_s` seconds: pppd writes its usepeerdns file when IPCP comes up,
    which netlink may report a moment earlier; a file left from the last
    call must not be read for this one."""
    waited = 0.0
    while True:
        try:
            if time.time() - os.stat(path).st_mtime <= fresh_s:
                return True
        except OSError:
            pass
        if waited >= limit_s:
            log.warning(maillog.runner_warning(f"no fresh peer DNS file {path} after {waited:.1f}s; using what there is"))
            return False
        await asyncio.sleep(ROUTE_POLL_S)
        waited += ROUTE_POLL_S
