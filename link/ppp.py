"""ppp.py - pppd on the modem's tty, or someone else's link (DRIVER).

NAME
    ppp - Pppd(program, args).start(device) / wait() / stop(); ExternalLink;
    exit_cause(code)

SYNOPSIS
    pppd = Pppd("/usr/sbin/pppd", ("call", "edgemail"))
    await pppd.start("/dev/ttyS0")      # argv: pppd call edgemail /dev/ttyS0
    code = await pppd.wait()            # pppd's exit status; exit_cause(code) says why
    await pppd.stop()                   # SIGTERM, SIGKILL after grace_s

    ext = ExternalLink(up=("ifup", "ppp0"), down=("ifdown", "ppp0"))
    await ext.up(); await ext.down()    # argv lists, never a shell

DESCRIPTION
    Owns the pppd child process.  On a router the command is the real,
    setuid-root `/usr/sbin/pppd call edgemail <tty>` with the root-owned
    /etc/ppp/peers/edgemail (no connect script: the modem driver dialed
    already and handed the tty over with DTR up); in hardware-sim it is
    fakepppd with the same words plus its `netns NAME` option.  The device
    comes last on the command line, so options files cannot override it.
    hold_open() keeps an fd on the tty across the hand-over: the modem
    driver closes its fd before pppd opens the tty, and a tty whose last fd
    closes drops DTR (a pty does; the simulated modem hangs up).
    pppd runs in its own session (signals to the daemon's group do not
    reach it) with stdin from /dev/null; its output goes to `log_path`
    (or is discarded).

    EXIT_CAUSES maps pppd(8)'s EXIT STATUS to causes; CARRIER_LOSS lists
    the statuses that mean the call itself ended (modem hung up, peer not
    answering echo requests), as opposed to a refused or broken start;
    CONFIG_ERRORS those that say our setup is wrong (bad options, not
    setuid root, no kernel PPP, the tty's lock or open, the pty command),
    each with what to fix in SETUP_FIXES: dialling again will not help.

    External-link mode: pppd (or another program) is run by someone else.
    ExternalLink runs the configured up/down commands, when given, and
    reports their exit status; the manager then learns about the interface
    from netlink and the ip-up/ip-down hooks only.

NEVER
    Dials, reads the interface, or decides to hang up; runs a shell.

FAILURES (Raises:)
    SetupError  pppd (or an up/down command) cannot be run: no such file,
                permission denied, not an executable (our setup)
    LinkError   pppd (or an up/down command) could not be started otherwise
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
from collections.abc import Mapping, Sequence

from link import linklog
from link.errors import LinkError, SetupError

log = logging.getLogger("link")

#: pppd(8) EXIT STATUS -> cause word used in log lines and status
EXIT_CAUSES: dict[int, str] = {
    0: "ok",                         # disconnected normally (e.g. we asked)
    1: "fatal-error",
    2: "bad-options",
    3: "not-setuid-root",
    4: "no-kernel-ppp",
    5: "signal",                     # SIGINT, SIGTERM or SIGHUP
    6: "tty-lock-failed",
    7: "tty-open-failed",
    8: "connect-script-failed",
    9: "pty-command-failed",
    10: "negotiation-failed",
    11: "peer-auth-failed",          # the peer failed to authenticate itself
    12: "idle",
    13: "max-connect",
    14: "callback",
    15: "peer-not-responding",       # LCP echo requests unanswered
    16: "modem-hangup",
    17: "loopback",
    18: "init-script-failed",
    19: "auth-failed",               # we failed to authenticate to the peer
}
#: exit statuses that mean the connected call ended (carrier lost)
CARRIER_LOSS = frozenset({15, 16})
#: exit statuses that say our setup is wrong: retrying will not help
CONFIG_ERRORS = frozenset({2, 3, 4, 6, 7, 9})
#: for each of CONFIG_ERRORS: what the admin has to fix
SETUP_FIXES: dict[int, str] = {
    2: "pppd's options: [link] pppd_args, /etc/ppp/peers/NAME, /etc/ppp/options",
    3: "pppd must be setuid root (Debian's is; see dpkg-statoverride --list /usr/sbin/pppd)",
    4: "the kernel's PPP support: modprobe ppp_generic ppp_async",
    6: "the tty's lock: another program holds /var/lock/LCK..TTY",
    7: "the tty: [link] device, and the right to open it (group dialout)",
    9: "pppd's pty command",
}
#: errno values of a program that cannot be run at all (SetupError, not a retry)
CANNOT_RUN = frozenset({errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.EPERM, errno.ENOTDIR})


def exit_cause(code: int | None) -> str:
    """The cause word for pppd's exit status (negative: killed by that signal)."""
    if code is None:
        return "running"
    if code < 0:
        return f"killed({signal.Signals(-code).name})"
    return EXIT_CAUSES.get(code, f"exit({code})")


class Pppd:
    def __init__(self, program: str = "/usr/sbin/pppd", args: Sequence[str] = ("call", "edgemail"), *,
                 env: Mapping[str, str] | None = None, grace_s: float = 5.0,
                 log_path: str | None = None) -> None:
        self.program = program
        self.args = tuple(args)
        self.env = dict(env) if env is not None else None
        self.grace_s = grace_s
        self.log_path = log_path
        self.device: str | None = None
        self._proc: asyncio.subprocess.Process | None = None

    def argv(self, device: str) -> list[str]:
        return [self.program, *self.args, device]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    async def start(self, device: str) -> int:
        """Start pppd on `device`; returns its pid.  Raises LinkError."""
        if self.running:
            raise LinkError(f"pppd already running (pid {self.pid})")
        argv = self.argv(device)
        log_file = open(self.log_path, "ab") if self.log_path else None
        out = log_file if log_file is not None else asyncio.subprocess.DEVNULL
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                env=self.env, start_new_session=True)
        except OSError as e:
            raise _start_error(f"cannot start {self.program}: {e.strerror or e}", e) from e
        finally:
            if log_file is not None:
                log_file.close()
        self.device = device
        log.info(linklog.pppd_started(self._proc.pid, device))
        return self._proc.pid

    async def wait(self) -> int:
        """Wait for pppd to exit; its exit status (negative: the signal that killed it)."""
        if self._proc is None:
            raise LinkError("pppd not started")
        code = await self._proc.wait()
        return code

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after grace_s; returns the exit status (None: never started)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            _signal(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.grace_s)
            except asyncio.TimeoutError:
                log.warning(linklog.pppd_sigkill(proc.pid, self.grace_s))
                _signal(proc, signal.SIGKILL)
                await proc.wait()
        return proc.returncode


def _start_error(text: str, e: OSError) -> LinkError:
    """SetupError when the program cannot be run at all, else LinkError."""
    return SetupError(text) if e.errno in CANNOT_RUN else LinkError(text)


def hold_open(device: str) -> int:
    """An fd on the tty that is never read, so the line stays up between the
    modem driver's close and pppd's open (closing the last fd of a tty drops
    DTR on a pty, and HUPCL may be set again by the open); close it once pppd
    has the line (link up) or is gone."""
    try:
        return os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as e:
        raise LinkError(f"cannot hold {device} open: {e.strerror}") from e


def release(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)            # pppd's own session: its scripts too
    except ProcessLookupError:
        pass


class ExternalLink:
    """Someone else runs pppd; we may ask for the link with commands (argv, no shell)."""

    def __init__(self, up: Sequence[str] = (), down: Sequence[str] = (), *, timeout_s: float = 30.0) -> None:
        self.up_command = tuple(up)
        self.down_command = tuple(down)
        self.timeout_s = timeout_s

    async def up(self) -> int | None:
        """Run the up command; its exit status (None: no command configured)."""
        return await self._run("up", self.up_command)

    async def down(self) -> int | None:
        return await self._run("down", self.down_command)

    async def _run(self, which: str, argv: tuple[str, ...]) -> int | None:
        if not argv:
            return None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            raise _start_error(f"cannot run {which}_command {argv[0]}: {e.strerror or e}", e) from e
        try:
            code = await asyncio.wait_for(proc.wait(), self.timeout_s)
        except asyncio.TimeoutError:
            _signal(proc, signal.SIGKILL)
            code = await proc.wait()
        log.info(linklog.command_ran(which, argv[0], code))
        return code
