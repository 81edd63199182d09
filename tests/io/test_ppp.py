"""link.ppp against real processes: exit statuses, stop with grace, fakepppd on a dialed modem."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from link.errors import LinkError
from link.modem import Modem
from link.ppp import CARRIER_LOSS, EXIT_CAUSES, ExternalLink, Pppd, exit_cause, hold_open, release

HWSIM = Path(__file__).resolve().parents[2] / "hardware-sim"
PY = sys.executable


def script(code: str, grace_s: float = 0.5) -> Pppd:
    """A stand-in 'pppd' that runs python code; the device arrives as sys.argv[1].
    grace_s: how long stop() waits after SIGTERM before SIGKILL (a loaded machine
    may take more than half a second to run a Python exit)."""
    return Pppd(PY, ("-c", code), grace_s=grace_s)


def test_exit_causes_follow_pppd_man_page():
    assert exit_cause(5) == "signal"
    assert exit_cause(16) == "modem-hangup"
    assert exit_cause(8) == "connect-script-failed"
    assert exit_cause(19) == "auth-failed"
    assert exit_cause(42) == "exit(42)"
    assert exit_cause(-9) == "killed(SIGKILL)"
    assert 16 in CARRIER_LOSS and 5 not in CARRIER_LOSS
    assert sorted(EXIT_CAUSES) == list(range(20))


async def test_device_comes_last_and_status_is_reported(tmp_path):
    out = tmp_path / "argv"
    p = script(f"import sys; open({str(out)!r}, 'w').write(' '.join(sys.argv[1:])); sys.exit(16)")
    await p.start("/dev/ttyX")
    assert await p.wait() == 16
    assert out.read_text() == "/dev/ttyX"
    assert p.argv("/dev/ttyX")[-1] == "/dev/ttyX"
    assert not p.running


async def test_stop_sends_sigterm_and_pppd_exits_5(tmp_path):
    ready = tmp_path / "ready"
    p = script("import signal, sys, time, pathlib\n"
               "signal.signal(signal.SIGTERM, lambda *a: sys.exit(5))\n"
               f"pathlib.Path({str(ready)!r}).touch()\n"
               "time.sleep(60)", grace_s=30.0)
    await p.start("/dev/null")
    while not ready.exists():
        await asyncio.sleep(0.01)
    assert await p.stop() == 5


async def test_stop_kills_after_grace_when_sigterm_is_ignored(tmp_path):
    ready = tmp_path / "ready"
    p = script("import signal, time, pathlib\n"
               "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
               f"pathlib.Path({str(ready)!r}).touch()\n"
               "time.sleep(60)")
    await p.start("/dev/null")
    while not ready.exists():
        await asyncio.sleep(0.01)
    assert await p.stop() == -9
    assert exit_cause(p.returncode) == "killed(SIGKILL)"


async def test_missing_program_is_a_link_error():
    p = Pppd("/nonexistent/pppd", ())
    with pytest.raises(LinkError, match="cannot start /nonexistent/pppd"):
        await p.start("/dev/ttyS0")
    assert await p.stop() is None


async def test_external_commands_are_argv_without_shell(tmp_path):
    marker = tmp_path / "x; touch pwned"
    ext = ExternalLink(up=("touch", str(marker)), down=("false",))
    assert await ext.up() == 0
    assert marker.exists() and not (tmp_path / "pwned").exists()
    assert await ext.down() == 1
    assert await ExternalLink().up() is None


# --- fakepppd on the simulated modem (root) ------------------------------------

def peers_file(world, extra: str = "") -> None:
    Path(world.peers_dir, "edgemail").write_text(
        "115200\nnodetach\nnoauth\ndefaultroute\nusepeerdns\nipparam edgemail\nlinkname edgemail\n" + extra)


def fakepppd(world) -> Pppd:
    return Pppd(world.fakepppd_path, ("netns", world.edge_ns, "call", "edgemail"),
                env={**os.environ, **world.fakepppd_env()}, grace_s=3.0,
                log_path=os.path.join(world.run_dir, "fakepppd.log"))


async def dialed(world) -> tuple[str, int]:
    """Dial and hand over; the fd held open keeps the call across the hand-over."""
    m = Modem(world.tty, numbers=(world.dial_number,), dtr_drop_s=0.1, command_timeout=2.0)
    await m.open()
    await m.dial()
    fd = hold_open(world.tty)
    return await m.hand_over(), fd


@pytest.fixture
def world():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TUN); CI runs as root")
    sys.path.insert(0, str(HWSIM))
    import simworld
    w = simworld.World.up(with_isp=False, link={"down_bps": 2_000_000, "up_bps": 2_000_000, "delay_ms": 5})
    yield w
    w.down()


async def ppp_up(world) -> Pppd:
    """Dial, hand the tty to fakepppd, wait for ppp0: the modem is in data mode."""
    peers_file(world)
    device, fd = await dialed(world)
    p = fakepppd(world)
    await p.start(device)
    await asyncio.to_thread(world.wait_ppp_up, 10.0)
    release(fd)
    assert world.modem_control("status")["state"] == "data"
    return p


@pytest.mark.root
async def test_fakepppd_after_connect_then_sigterm_exits_5(world):
    p = await ppp_up(world)
    assert world.ppp_address() == world.edge_ip
    assert await p.stop() == 5
    assert world.ppp_address() is None


@pytest.mark.root
async def test_fakepppd_carrier_loss_exits_16(world):
    p = await ppp_up(world)
    world.modem_control("drop", mode="soft")
    try:
        code = await asyncio.wait_for(p.wait(), 10)
    except asyncio.TimeoutError:
        pytest.fail(world.log_tail("modemsim", 30) + world.log_tail("fakepppd", 30))
    assert code == 16 and code in CARRIER_LOSS


@pytest.mark.root
async def test_fakepppd_bad_option_and_missing_tty(world):
    peers_file(world, "frobnicate\n")
    p = fakepppd(world)
    await p.start(world.tty)
    assert await asyncio.wait_for(p.wait(), 10) == 2
    peers_file(world)
    await p.start(os.path.join(world.run_dir, "no-such-tty"))
    assert exit_cause(await asyncio.wait_for(p.wait(), 10)) == "tty-open-failed"
