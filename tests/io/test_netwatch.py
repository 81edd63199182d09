"""netwatch against a real network namespace (root): a veth interface named ppp0
is created, brought up, addressed, used, brought down and deleted; the events,
counters, demand placeholders and a forced netlink overflow are asserted.
The pure view/diff functions are tested without root."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import pytest

from link.netwatch import (IFF_LOWER_UP, IFF_UP, AddrAdded, AddrRemoved, IfaceDown, IfaceUp, NetWatch,
                           View, changes)

pytestmark = pytest.mark.timeout(60)
PH = frozenset({"10.64.64.64", "10.112.112.112"})


# --- pure parts (no root) ------------------------------------------------------

def test_changes_connected_needs_up_lower_up_and_real_address():
    up = IFF_UP | IFF_LOWER_UP
    a = View(3, up, {})
    b = View(3, up, {"10.64.0.2": ("10.64.0.1", 32)})
    assert changes("ppp0", a, b, PH) == [AddrAdded("ppp0", "10.64.0.2", "10.64.0.1", 32),
                                          IfaceUp("ppp0", "10.64.0.2", "10.64.0.1")]
    assert changes("ppp0", b, View(3, IFF_UP, b.addrs), PH) == [IfaceDown("ppp0")]     # carrier off
    assert changes("ppp0", b, View(), PH) == [IfaceDown("ppp0"), AddrRemoved("ppp0", "10.64.0.2")]
    demand = View(3, up, {"10.64.64.64": ("10.112.112.112", 32)})
    assert changes("ppp0", a, demand, PH) == [AddrAdded("ppp0", "10.64.64.64", "10.112.112.112", 32)]


# --- real namespace -----------------------------------------------------------------

def ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True)


@pytest.fixture
def netns():
    name = f"edgemail-nw-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ip(name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


async def next_events(watch_iter, n: int, timeout: float = 5.0) -> list:
    out = []
    for _ in range(n):
        out.append(await asyncio.wait_for(watch_iter.__anext__(), timeout))
    return out


async def make_ppp0(ns: str) -> None:
    """ppp0 as one end of a veth pair (no dummy module here); NOARP so packets
    leave at once like on a point-to-point link."""
    await aip(ns, "link", "add", "ppp0", "type", "veth", "peer", "name", "ppp0peer")
    await aip(ns, "link", "set", "ppp0", "arp", "off")
    await aip(ns, "link", "set", "ppp0peer", "up")


async def aip(ns: str, *args: str) -> None:
    proc = await asyncio.create_subprocess_exec("ip", "-n", ns, *args)
    assert await proc.wait() == 0, args


@pytest.mark.root
async def test_event_sequence_and_counters(netns):
    async with NetWatch("ppp0", netns=netns) as watch:
        events = aiter(watch)
        await make_ppp0(netns)
        await aip(netns, "link", "set", "ppp0", "up")
        await aip(netns, "addr", "add", "10.64.0.2", "peer", "10.64.0.1/32", "dev", "ppp0")
        got = await next_events(events, 2)
        assert got == [AddrAdded("ppp0", "10.64.0.2", "10.64.0.1", 32), IfaceUp("ppp0", "10.64.0.2", "10.64.0.1")]
        assert watch.connected
        rx0, tx0 = await watch.counters()
        send = ("import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "[s.sendto(b'x'*100, ('10.64.0.1', 9)) for _ in range(5)]")
        proc = await asyncio.create_subprocess_exec("ip", "netns", "exec", netns, sys.executable, "-c", send)
        assert await proc.wait() == 0
        rx1, tx1 = await watch.counters()
        assert tx1 >= tx0 + 5 * 128, (tx0, tx1)          # 100 B payload + 28 B headers each
        # carrier flap: the far end goes away and comes back (LOWER_UP off/on)
        await aip(netns, "link", "set", "ppp0peer", "down")
        assert await next_events(events, 1) == [IfaceDown("ppp0")]
        await aip(netns, "link", "set", "ppp0peer", "up")
        assert await next_events(events, 1) == [IfaceUp("ppp0", "10.64.0.2", "10.64.0.1")]
        await aip(netns, "link", "set", "ppp0", "down")
        assert await next_events(events, 1) == [IfaceDown("ppp0")]
        await aip(netns, "link", "del", "ppp0")
        assert await next_events(events, 1) == [AddrRemoved("ppp0", "10.64.0.2")]
        assert await watch.counters() is None


@pytest.mark.root
async def test_demand_placeholder_is_not_connected(netns):
    await make_ppp0(netns)
    await aip(netns, "link", "set", "ppp0", "up")
    await aip(netns, "addr", "add", "10.64.64.64", "peer", "10.112.112.112/32", "dev", "ppp0")
    async with NetWatch("ppp0", netns=netns) as watch:
        events = aiter(watch)
        # the initial read reports what exists: an address, but not connected
        assert await next_events(events, 1) == [AddrAdded("ppp0", "10.64.64.64", "10.112.112.112", 32)]
        assert not watch.connected
        await aip(netns, "addr", "del", "10.64.64.64", "peer", "10.112.112.112/32", "dev", "ppp0")
        await aip(netns, "addr", "add", "10.64.0.2", "peer", "10.64.0.1/32", "dev", "ppp0")
        assert await next_events(events, 3) == [AddrRemoved("ppp0", "10.64.64.64"),
                                                 AddrAdded("ppp0", "10.64.0.2", "10.64.0.1", 32),
                                                 IfaceUp("ppp0", "10.64.0.2", "10.64.0.1")]


@pytest.mark.root
async def test_overflow_reopens_and_rereads(netns, tmp_path):
    await make_ppp0(netns)
    await aip(netns, "link", "add", "noise0", "type", "veth", "peer", "name", "noise1")
    async with NetWatch("ppp0", netns=netns, rcvbuf=1024) as watch:
        events = aiter(watch)
        batch = tmp_path / "burst"
        lines = [f"addr add 10.99.{i // 250}.{i % 250 + 1}/32 dev noise0" for i in range(400)]
        lines += ["link set ppp0 up", "addr add 10.64.0.2 peer 10.64.0.1/32 dev ppp0"]
        batch.write_text("\n".join(lines) + "\n")
        # Block the event loop while the burst happens, so nothing is read and
        # the tiny receive buffer overflows (ENOBUFS).
        subprocess.run(["ip", "-n", netns, "-batch", str(batch)], check=True)
        got = await next_events(events, 2)
        assert got == [AddrAdded("ppp0", "10.64.0.2", "10.64.0.1", 32), IfaceUp("ppp0", "10.64.0.2", "10.64.0.1")]
        assert watch.resyncs >= 1
        await aip(netns, "link", "set", "ppp0", "down")
        assert await next_events(events, 1) == [IfaceDown("ppp0")]
