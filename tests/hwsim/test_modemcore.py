"""ModemCore as tables: bytes + time in, bytes and events out; no event loop, no pty."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modemcore import (Connected, DataFromDte, DialFailed, DialStarted, Escaped, Faults,
                       HardHangup, HungUp, ModemCore, Output, State)


def out(events):
    return b"".join(e.data for e in events if isinstance(e, Output))


def kinds(events):
    return [type(e).__name__ for e in events if not isinstance(e, Output)]


def dial(core, now=0.0, cmd=b"ATDT5551234\r"):
    events = core.receive(cmd, now)
    return events + core.timer(core.deadline())  # the dial outcome, when it is due


@pytest.mark.parametrize("line, want", [
    (b"AT\r", b"AT\r\r\nOK\r\n"),
    (b"at\r", b"at\r\r\nOK\r\n"),
    (b"ATZ\r", b"ATZ\r\r\nOK\r\n"),
    (b"AT&F\r", b"AT&F\r\r\nOK\r\n"),
    (b"ATE0\r", b"ATE0\r\r\nOK\r\n"),          # echo is switched off after this line
    (b"ATV0\r", b"ATV0\r0\r"),
    (b"ATQ1\r", b"ATQ1\r"),
    (b"ATX3\r", b"ATX3\r\r\nOK\r\n"),
    (b"ATQ0V1E1&C1&D2X4 S7=60\r", b"ATQ0V1E1&C1&D2X4 S7=60\r\r\nOK\r\n"),
    (b"ATS7=45S7?\r", b"ATS7=45S7?\r\r\n045\r\n\r\nOK\r\n"),
    (b"ATS12?\r", b"ATS12?\r\r\n050\r\n\r\nOK\r\n"),
    (b"ATS7=300\r", b"ATS7=300\r\r\nERROR\r\n"),
    (b"ATJ\r", b"ATJ\r\r\nERROR\r\n"),
    (b"ATE7\r", b"ATE7\r\r\nERROR\r\n"),
    (b"ATH0\r", b"ATH0\r\r\nOK\r\n"),
    (b"ATO\r", b"ATO\r\r\nNO CARRIER\r\n"),
    (b"ATA\r", b"ATA\r\r\nNO CARRIER\r\n"),
    (b"ATDT\r", b"ATDT\r\r\nERROR\r\n"),
    (b"ATDTabc?\r", b"ATDTabc?\r\r\nERROR\r\n"),
    (b"hello\r", b"hello\r"),                   # not a command: echoed, no reply
    (b"ATX\x7f\r", b"ATX\x7f\r\r\nOK\r\n"),     # backspace removed the X... then AT alone
], ids=lambda v: repr(v)[:30])
def test_command_replies(line, want):
    core = ModemCore()
    got = out(core.receive(line, 0.0))
    assert got == want, f"got {got!r}, want {want!r}"


@pytest.mark.parametrize("setup, faults, want_text, want_event", [
    (b"", Faults(), b"\r\nCONNECT 56000\r\n", Connected("5551234", 56000)),
    (b"", Faults(speed=33600), b"\r\nCONNECT 33600\r\n", Connected("5551234", 33600)),
    (b"ATX0\r", Faults(), b"\r\nCONNECT\r\n", Connected("5551234", 56000)),
    (b"ATV0\r", Faults(), b"1\r", Connected("5551234", 56000)),
    (b"", Faults(result="BUSY"), b"\r\nBUSY\r\n", DialFailed("BUSY")),
    (b"", Faults(result="NO DIALTONE"), b"\r\nNO DIALTONE\r\n", DialFailed("NO DIALTONE")),
    (b"", Faults(result="NO ANSWER"), b"\r\nNO ANSWER\r\n", DialFailed("NO ANSWER")),
    (b"", Faults(result="NO CARRIER"), b"\r\nNO CARRIER\r\n", DialFailed("NO CARRIER")),
    (b"ATV0\r", Faults(result="BUSY"), b"7\r", DialFailed("BUSY")),
    (b"ATV0\r", Faults(result="NO DIALTONE"), b"6\r", DialFailed("NO DIALTONE")),
    (b"ATV0\r", Faults(result="NO ANSWER"), b"8\r", DialFailed("NO ANSWER")),
    (b"ATV0\r", Faults(result="NO CARRIER"), b"3\r", DialFailed("NO CARRIER")),
    (b"ATX1\r", Faults(result="BUSY"), b"\r\nNO CARRIER\r\n", DialFailed("NO CARRIER")),
    (b"ATX2\r", Faults(result="BUSY"), b"\r\nNO CARRIER\r\n", DialFailed("NO CARRIER")),
    (b"ATX2\r", Faults(result="NO DIALTONE"), b"\r\nNO DIALTONE\r\n", DialFailed("NO DIALTONE")),
    (b"ATX3\r", Faults(result="NO DIALTONE"), b"\r\nNO CARRIER\r\n", DialFailed("NO CARRIER")),
    (b"ATX3\r", Faults(result="BUSY"), b"\r\nBUSY\r\n", DialFailed("BUSY")),
    (b"ATS7=1\r", Faults(connect_delay=5), b"\r\nNO CARRIER\r\n", DialFailed("NO CARRIER")),
    (b"ATQ1\r", Faults(), b"", Connected("5551234", 56000)),
], ids=lambda v: repr(v)[:40])
def test_dial_outcomes(setup, faults, want_text, want_event):
    core = ModemCore(faults)
    core.receive(setup + b"ATE0\r", 0.0)
    events = dial(core)
    assert out(events) == want_text
    assert want_event in events
    assert events[0] == DialStarted("5551234")


def test_dial_waits_for_connect_delay():
    core = ModemCore(Faults(connect_delay=2.0))
    core.receive(b"ATE0\rATDT123\r", 0.0)
    assert core.deadline() == 2.0
    assert core.timer(1.99) == []
    assert Connected("123", 56000) in core.timer(2.0)


def test_busy_n_times_then_answer():
    core = ModemCore(Faults(busy=2))
    core.receive(b"ATE0\r", 0.0)
    results = [out(dial(core, now=t)) for t in (0, 20, 40)]
    assert results == [b"\r\nBUSY\r\n", b"\r\nBUSY\r\n", b"\r\nCONNECT 56000\r\n"]


def test_silent_modem_says_nothing():
    core = ModemCore(Faults(silent=True))
    events = core.receive(b"AT\rATZ\r", 0.0) + dial(core)
    assert out(events) == b""
    assert core.state is State.COMMAND


def test_garbage_before_each_result():
    core = ModemCore(Faults(garbage=8))
    got = out(core.receive(b"ATE0\r", 0.0))[len(b"ATE0\r"):]  # after the echo
    assert len(got) == 8 + len(b"\r\nOK\r\n") and got.endswith(b"\r\nOK\r\n")
    assert all(b >= 0x80 for b in got[:8])


def test_key_press_aborts_dial():
    core = ModemCore(Faults(connect_delay=5))
    core.receive(b"ATE0\rATD5\r", 0.0)
    events = core.receive(b"x", 1.0)
    assert out(events) == b"\r\nNO CARRIER\r\n" and core.state is State.COMMAND


def online(faults=None, guard_s=1.0):
    core = ModemCore(faults or Faults(connect_delay=0))
    core.receive(b"ATE0S12=%d\r" % int(guard_s * 50), 0.0)
    dial(core, now=0.0)
    assert core.state is State.DATA
    return core


def data(events):
    return b"".join(e.data for e in events if isinstance(e, DataFromDte))


@pytest.mark.parametrize("chunks, want_data, want_state", [
    ([(b"hello", 20.0)], b"hello", State.DATA),
    ([(b"+++", 20.0), (b"", 21.0)], b"", State.ONLINE_COMMAND),              # guard before and after
    ([(b"a+++", 20.0), (b"", 22.0)], b"a+++", State.DATA),                   # no guard before
    ([(b"+++", 20.0), (b"b", 20.5), (b"", 22.0)], b"+++b", State.DATA),     # data inside guard after
    ([(b"++", 20.0), (b"", 21.5)], b"++", State.DATA),                       # two are not an escape
    ([(b"+", 20.0), (b"+", 20.1), (b"+", 20.2), (b"", 21.2)], b"", State.ONLINE_COMMAND),
], ids=["data", "escape", "no-guard-before", "no-guard-after", "two-plus", "split-plus"])
def test_escape_with_guard_time(chunks, want_data, want_state):
    core = online()
    got = []
    for chunk, now in chunks:
        got += core.receive(chunk, now) + core.timer(now)
    assert data(got) == want_data
    assert core.state is want_state


def test_escape_then_ato_and_ath():
    core = online()
    core.receive(b"+++", 5.0)
    assert Escaped() in core.timer(6.0)
    assert out(core.receive(b"ATO\r", 6.5)) == b"\r\nCONNECT 56000\r\n"
    assert core.state is State.DATA
    core.receive(b"+++", 8.0)
    core.timer(9.0)
    events = core.receive(b"ATH0\r", 9.5)
    assert HungUp("ath") in events and out(events) == b"\r\nOK\r\n"
    assert core.state is State.COMMAND


def test_guard_time_from_s12():
    core = online(guard_s=0.2)
    core.receive(b"+++", 0.3)
    assert core.deadline() == pytest.approx(0.5)
    assert Escaped() in core.timer(0.5)


@pytest.mark.parametrize("dtr_cmd, want_state, want_event", [
    (b"AT&D2\r", State.COMMAND, HungUp("dtr-drop")),
    (b"AT&D3\r", State.COMMAND, HungUp("dtr-drop")),
    (b"AT&D1\r", State.ONLINE_COMMAND, Escaped()),
    (b"AT&D0\r", State.DATA, None),
])
def test_dtr_drop(dtr_cmd, want_state, want_event):
    core = ModemCore(Faults(connect_delay=0))
    core.receive(b"ATE0\r" + dtr_cmd, 0.0)
    dial(core)
    events = core.dtr_dropped(30.0)
    assert core.state is want_state
    assert (want_event in events) if want_event else events == []


@pytest.mark.parametrize("dtr_cmd, want", [
    (b"AT&D2\r", [HungUp("dte-closed")]),
    (b"AT&D1\r", [HungUp("dte-closed")]),
    (b"AT&D0\r", []),  # the call survives the dialer closing the tty
])
def test_dte_close(dtr_cmd, want):
    core = ModemCore(Faults(connect_delay=0))
    core.receive(b"ATE0\r" + dtr_cmd, 0.0)
    dial(core)
    assert core.dte_closed(3.0) == want


@pytest.mark.parametrize("mode, hard", [("soft", False), ("hard", True)])
def test_carrier_loss_after_seconds(mode, hard):
    core = online(Faults(connect_delay=0, drop_after_s=2.0, drop_mode=mode))
    assert core.deadline() == 2.0
    events = core.timer(2.0)
    assert HungUp("drop-after-s") in events
    assert out(events).endswith(b"\r\nNO CARRIER\r\n")
    assert (HardHangup("drop-after-s") in events) is hard
    assert core.state is State.COMMAND


def test_carrier_loss_after_bytes():
    core = online(Faults(connect_delay=0, drop_after_bytes=100))
    assert core.line_bytes(60, 1.0) == []
    events = core.line_bytes(40, 1.1)
    assert HungUp("drop-after-bytes") in events and core.state is State.COMMAND


def test_repeat_last_command():
    core = ModemCore()
    core.receive(b"ATE0\r", 0.0)
    assert out(core.receive(b"A/", 1.0)) == b"\r\nOK\r\n"


@pytest.mark.parametrize("split", [1, 2, 3, 5, 7])
def test_chunking_does_not_matter(split):
    script = b"ATE0\rATS7=30\rATI\rATDT555\r"
    whole = ModemCore()
    want = out(whole.receive(script, 0.0))
    parts = ModemCore()
    got = b"".join(out(parts.receive(script[i:i + split], 0.0)) for i in range(0, len(script), split))
    assert got == want


def test_bad_fault_values_rejected():
    with pytest.raises(ValueError):
        Faults(result="OK")
    with pytest.raises(ValueError):
        Faults(drop_mode="gentle")


@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=20))
def test_any_chunking_gives_the_same_output(sizes):
    script = b"ATE1V1Q0\rATS12=10S7?\rATX3\rAT&D2&C1\rATDT5551234\r"
    want = out(ModemCore().receive(script, 0.0))
    core, got, i = ModemCore(), b"", 0
    for n in sizes * (len(script) // len(sizes) + 1):
        if i >= len(script):
            break
        got += out(core.receive(script[i:i + n], 0.0))
        i += n
    assert got == want
