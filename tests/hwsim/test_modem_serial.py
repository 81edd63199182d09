"""pyserial against modemsim.py: commands, data mode, escape, DTR drop, carrier loss.

What happens, not how fast: the timings (pacing, guard time, connect delay,
carrier loss after N s) are asserted on virtual time in test_modemcore.py and
test_linkframe.py, and measured over the pty in tests/bench/hwsim_timing.py."""
import os
import time

import pytest
import serial

from tests.hwsim.hwsim_helpers import command, connect, open_port


@pytest.mark.parametrize("cmd, want", [
    (b"AT", b"AT\r\r\nOK\r\n"),
    (b"ATI", b"ATI\r\r\nedgemail hardware-sim modem 56k\r\n\r\nOK\r\n"),
    (b"ATS7=40S7?", b"ATS7=40S7?\r\r\n040\r\n\r\nOK\r\n"),
    (b"AT&C1&D2", b"AT&C1&D2\r\r\nOK\r\n"),
    (b"ATBOGUS", b"ATBOGUS\r\r\nERROR\r\n"),
])
def test_commands(modem, cmd, want):
    m = modem()
    with open_port(m) as port:
        assert command(port, cmd) == want


def test_data_mode_loops_back_through_the_paced_line(modem):
    m = modem("--connect-delay", "0.1", "--down-bps", "56000", "--up-bps", "33600", "--delay-ms", "50")
    with open_port(m, timeout=3) as port:
        connect(port)
        payload = bytes(range(256)) * 4  # 1024 bytes
        port.write(payload)
        got = port.read(len(payload))
    assert got == payload
    counters = m.control("status")["counters"]                # both pipes carried it, nothing dropped
    assert (counters["up_bytes"], counters["down_bytes"]) == (len(payload), len(payload))
    assert m.control("status")["drops"] == {"up": 0, "down": 0}


def test_escape_guard_ato_ath(modem):
    m = modem("--connect-delay", "0.1")
    with open_port(m, timeout=2) as port:
        assert command(port, b"ATS12=15").endswith(b"OK\r\n")  # guard 0.3 s
        connect(port)
        port.write(b"a+++b")  # no guard before the +++: stays data
        time.sleep(0.6)
        assert port.read(port.in_waiting) == b"a+++b"
        time.sleep(0.4)
        port.write(b"+++")
        reply = port.read_until(b"OK\r\n")
        assert reply.endswith(b"\r\nOK\r\n")
        assert m.control("status")["state"] == "online-command"
        assert command(port, b"ATO") == b"\r\nCONNECT 56000\r\n"
        time.sleep(0.4)
        port.write(b"+++")
        port.read_until(b"OK\r\n")
        assert command(port, b"ATH0") == b"\r\nOK\r\n"
        assert m.control("status")["state"] == "command"
    assert [e["cause"] for e in m.control("events")["events"] if e["event"] == "hangup"] == ["ath"]


def test_dtr_drop_by_b0_hangs_up(modem):
    m = modem("--connect-delay", "0.1")
    with open_port(m) as port:
        connect(port)
        port.baudrate = 0
        m.wait_state("command")
        port.baudrate = 115200
        assert command(port, b"AT") == b"\r\nOK\r\n"
    assert any(e.get("cause") == "dtr-drop" for e in m.control("events")["events"])


def test_dte_close_hangs_up_and_reopen_works(modem):
    m = modem("--connect-delay", "0.1")
    port = open_port(m)
    connect(port)
    port.close()
    m.wait_state("command")
    assert any(e.get("cause") == "dte-closed" for e in m.control("events")["events"])
    with open_port(m) as port:
        assert command(port, b"AT").endswith(b"OK\r\n")


def test_soft_carrier_loss(modem):
    m = modem("--connect-delay", "0.1")
    with open_port(m) as port:
        connect(port)
        m.control("drop", mode="soft")
        assert port.read_until(b"NO CARRIER\r\n").endswith(b"\r\nNO CARRIER\r\n")
        assert m.control("status")["state"] == "command"
        assert command(port, b"AT") == b"\r\nOK\r\n"


def test_hard_carrier_loss_closes_the_pty(modem):
    m = modem("--connect-delay", "0.1")
    with open_port(m) as port:
        connect(port)
        m.control("drop", mode="hard")
        assert port.read_until(b"NO CARRIER\r\n").endswith(b"NO CARRIER\r\n")
        with pytest.raises((serial.SerialException, OSError)):
            time.sleep(0.4)
            port.read(1)
            port.write(b"AT\r")
    assert [e["event"] for e in m.control("events")["events"]][-2:] == ["hard-hangup", "pty-new"]
    assert m.control("status")["slave"] == os.path.realpath(m.tty)
    with open_port(m) as port:  # the symlink now names a fresh pty
        assert command(port, b"AT").endswith(b"OK\r\n")


@pytest.mark.parametrize("flags, cause", [
    (("--drop-after-s", "0.5"), "drop-after-s"),
    (("--drop-after-bytes", "300"), "drop-after-bytes"),
])
def test_carrier_loss_after_time_or_bytes(modem, flags, cause):
    m = modem("--connect-delay", "0.1", *flags)
    with open_port(m, timeout=2) as port:
        connect(port)
        port.write(b"x" * 400)
        got = port.read_until(b"NO CARRIER\r\n")
        assert got.endswith(b"\r\nNO CARRIER\r\n")
    assert any(e.get("cause") == cause for e in m.control("events")["events"])


def test_garbage_on_demand(modem):
    m = modem()
    with open_port(m, timeout=0.5) as port:
        time.sleep(0.1)  # the modem notices the DTE within 10 ms; it sends nothing to a closed tty
        port.reset_input_buffer()
        m.control("garbage", n=25)
        noise = port.read(25)
    assert len(noise) == 25 and all(b >= 0x80 for b in noise)


def test_control_rejects_bad_requests(modem):
    m = modem()
    with pytest.raises(ValueError, match="unknown fault"):
        m.control("faults", colour="red")
    with pytest.raises(ValueError, match="unknown command"):
        m.control("explode")
    with pytest.raises(ValueError, match="result must be"):
        m.control("faults", result="OK")


@pytest.mark.parametrize("flags, want", [
    ((), b"\r\nCONNECT 56000\r\n"),
    (("--speed", "28800"), b"\r\nCONNECT 28800\r\n"),
    (("--result", "BUSY"), b"\r\nBUSY\r\n"),
    (("--result", "NO CARRIER"), b"\r\nNO CARRIER\r\n"),
    (("--result", "NO DIALTONE"), b"\r\nNO DIALTONE\r\n"),
    (("--result", "NO ANSWER"), b"\r\nNO ANSWER\r\n"),
    (("--silent",), b""),
], ids=["connect", "speed", "busy", "no-carrier", "no-dialtone", "no-answer", "silent"])
def test_dial_results_with_pyserial(modem, flags, want):
    m = modem("--connect-delay", "0.1", *flags)
    with open_port(m, timeout=0.6) as port:
        time.sleep(0.05)
        port.write(b"ATE0\r")
        time.sleep(0.1)
        port.reset_input_buffer()
        port.write(b"ATDT5551234\r")
        got = port.read(64)  # returns after the timeout: nothing more may follow
    assert got == want


def test_garbage_then_result_with_pyserial(modem):
    m = modem("--connect-delay", "0.1", "--garbage", "16")
    with open_port(m, timeout=0.6) as port:
        time.sleep(0.05)
        port.write(b"ATE0\r")
        time.sleep(0.1)
        port.reset_input_buffer()
        port.write(b"ATDT1\r")
        got = port.read(64)
    assert len(got) == 16 + len(b"\r\nCONNECT 56000\r\n") and got.endswith(b"\r\nCONNECT 56000\r\n")


def test_busy_then_answer_and_slow_connect_with_pyserial(modem):
    m = modem("--connect-delay", "0.1", "--busy", "1")
    with open_port(m, timeout=3) as port:
        assert command(port, b"ATE0").endswith(b"OK\r\n")
        assert command(port, b"ATDT1", wait_s=2) == b"\r\nBUSY\r\n"
        assert m.control("faults", connect_delay=1.0)["faults"]["connect_delay"] == 1.0
        assert command(port, b"ATDT1", wait_s=3) == b"\r\nCONNECT 56000\r\n"
    assert [e["event"] for e in m.control("events")["events"] if e["event"] in ("dial-failed", "connect")] == [
        "dial-failed", "connect"]


def test_link_is_repaced_at_run_time(modem):
    m = modem("--connect-delay", "0.1")
    reply = m.control("link", down_bps=400000, up_bps=400000, delay_ms=5)
    assert reply["link"] == dict(down_bps=400000.0, up_bps=400000.0, delay_ms=5.0, buffer=8192)
    assert m.control("status")["link"] == reply["link"]
    with open_port(m, timeout=3) as port:
        connect(port)
        payload = b"z" * 2000
        port.write(payload)
        assert port.read(len(payload)) == payload
    assert m.control("status")["counters"]["down_bytes"] == len(payload)
