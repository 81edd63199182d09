"""netns.py - network namespace and TUN helpers for the hardware-sim programs.

SYNOPSIS
    import netns
    netns.create("emedge-123-ab12")          # ip netns add + lo up
    with netns.entered("emedge-123-ab12"):   # this thread only
        sock = socket.create_connection(("192.0.2.25", 25))
    netns.enter_process("emisp-123-ab12")    # whole (single-threaded) process
    fd = netns.open_tun("ppp0")              # in the caller's current namespace
    netns.delete("emedge-123-ab12")

DESCRIPTION
    Python 3.11 has no os.setns, so setns(2) is called through ctypes.
    setns(CLONE_NEWNET) changes the namespace of the calling *thread*;
    sockets and TUN devices keep the namespace they were created in, so
    `entered()` is the way for a test in the root namespace to open a
    socket in the edge or ISP namespace.  A process that calls
    `enter_process()` before it starts any thread has all its threads
    and children in that namespace.

    TUN devices are non-persistent: the interface vanishes when the last
    fd closes, exactly as ppp0 vanishes when pppd exits.

    Namespace names are never reused or guessed: `unique_name()` builds
    `<prefix>-<pid>-<random>`, and `delete()` is only ever called by the
    code that created the namespace.

DIAGNOSTICS
    OSError from setns/open/ioctl; subprocess.CalledProcessError from ip(8).
"""
from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import secrets
import struct
import subprocess
import sys

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
TUNSETCARRIER = 0x400454E2
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
NETNS_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


def unique_name(prefix: str) -> str:
    """A namespace name nobody else uses: prefix-pid-random."""
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ip(8), optionally with -n NS; output captured."""
    argv = ["ip"] + (["-n", ns] if ns else []) + list(args)
    return subprocess.run(argv, check=check, capture_output=True, text=True)


def create(name: str) -> None:
    """Create namespace `name` and bring its loopback up."""
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", ns=name)


def delete(name: str) -> None:
    """Delete a namespace this program created; absent is not an error."""
    if exists(name):
        ip("netns", "del", name, check=False)


def pids_in(name: str) -> list[int]:
    """Pids of processes whose network namespace is `name`."""
    out = ip("netns", "pids", name, check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _open_ns(name: str) -> int:
    path = name if name.startswith("/") else os.path.join(NETNS_DIR, name)
    return os.open(path, os.O_RDONLY)


@contextlib.contextmanager
def entered(name: str | None):
    """Run the body with the calling thread in namespace `name` (None: no change)."""
    if name is None:
        yield
        return
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = _open_ns(name)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(orig)
    finally:
        os.close(orig)
        os.close(target)


def enter_process(name: str) -> None:
    """Move this (still single-threaded) process into namespace `name` for good."""
    target = _open_ns(name)
    try:
        _setns(target)
    finally:
        os.close(target)


def enter_or_complain(name: str, prog: str) -> bool:
    """enter_process() for a program's main(): False (and a message on stderr) if it fails."""
    try:
        enter_process(name)
    except OSError as e:
        print(f"{prog}: cannot enter network namespace {name}: {e}", file=sys.stderr)
        return False
    return True


def open_tun(ifname: str) -> int:
    """Create a non-persistent TUN (no packet info) in the current namespace; return its fd."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def set_carrier(fd: int, on: bool) -> None:
    """TUNSETCARRIER: LOWER_UP on or off without removing the device."""
    fcntl.ioctl(fd, TUNSETCARRIER, struct.pack("i", 1 if on else 0))
