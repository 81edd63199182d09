"""netwatch against a real network namespace (root): a veth interface named ppp0
is created, brought up, addressed, used, brought down and deleted; the events,
counters, demand placeholders and a forced netlink overflow are asserted,
and probe() checks a hook's claim without its namespace helper's SIGTERM
reaching our loop.  The pure view/diff/refusal functions are tested
without root."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid

import pytest

from link.netwatch import (IFF_LOWER_UP, IFF_UP, AddrAdded, AddrRemoved, IfaceDown, IfaceUp, NetWatch,
                           View, changes, probe, refusal)

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


UP = View(3, IFF_UP | IFF_LOWER_UP, {"10.64.0.2": ("10.64.0.1", 32)})


@pytest.mark.parametrize("view, local, why", [
    (UP, "10.64.0.2", ""),
    (UP, "", ""),
    (View(), "10.64.0.2", "ppp0 does not exist"),
    (View(3, IFF_UP, UP.addrs), "10.64.0.2", "ppp0 is not up"),
    (UP, "10.64.0.9", "ppp0 has no address 10.64.0.9 (it has 10.64.0.2)"),
    (View(3, IFF_UP | IFF_LOWER_UP, {}), "10.64.0.2", "ppp0 has no address 10.64.0.2 (it has none)"),
    (View(3, IFF_UP | IFF_LOWER_UP, {"10.64.64.64": ("10.112.112.112", 32)}), "", "ppp0 has no address but placeholders"),
    (View(3, IFF_UP | IFF_LOWER_UP, {"10.64.64.64": ("10.112.112.112", 32)}), "10.64.64.64",
     "10.64.64.64 is pppd's demand-mode placeholder, not a connection"),
], ids=["confirmed", "confirmed-no-address-claimed", "absent", "no-carrier", "other-address", "no-address",
        "placeholders-only", "placeholder-claimed"])
def test_refusal_says_what_netlink_contradicts(view, local, why):
    assert refusal(view, "ppp0", local, PH) == why


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


@pytest.mark.root
async def test_probe_reads_the_claim_and_its_helper_never_signals_our_loop(netns):
    """pyroute2 opens the namespace's socket in a forked helper and ends it
    with SIGTERM; the helper inherited asyncio's signal wakeup fd, so that
    SIGTERM reached our loop as our own (the daemon stopped).  A SIGUSR1 we
    send ourselves afterwards is the positive event: the wakeup fd is read
    in order, so any SIGTERM byte from a helper would have come first."""
    loop = asyncio.get_running_loop()
    terms: list[str] = []
    ours = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, terms.append, "SIGTERM")
    loop.add_signal_handler(signal.SIGUSR1, ours.set)
    try:
        assert refusal(await probe("ppp0", netns), "ppp0", "10.64.0.2", PH) == "ppp0 does not exist"
        await make_ppp0(netns)
        await aip(netns, "addr", "add", "10.64.0.2", "peer", "10.64.0.1/32", "dev", "ppp0")
        await aip(netns, "link", "set", "ppp0", "up")
        for _ in range(5):                      # a helper outlives its work only at times
            assert refusal(await probe("ppp0", netns), "ppp0", "10.64.0.2", PH) == ""
        os.kill(os.getpid(), signal.SIGUSR1)
        await asyncio.wait_for(ours.wait(), 10)
        assert terms == []
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        loop.remove_signal_handler(signal.SIGUSR1)
