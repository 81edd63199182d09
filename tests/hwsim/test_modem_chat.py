"""The real chat(8) from Debian's ppp package against modemsim.py on a pty.

chat exit codes: 0 success, 3 timeout, 4 + n for the n-th ABORT string.
"""
import pytest

from tests.hwsim.hwsim_helpers import needs_chat, run_chat

DIAL = ("ABORT", "BUSY", "ABORT", "NO CARRIER", "ABORT", "NO DIALTONE", "ABORT", "NO ANSWER",
        "", "ATZ", "OK", "ATE0", "OK", "ATDT5551234", "CONNECT")
OK, TIMEOUT, BUSY, NO_CARRIER, NO_DIALTONE, NO_ANSWER = 0, 3, 4, 5, 6, 7

pytestmark = needs_chat


@pytest.mark.parametrize("flags, want", [
    ((), OK),
    (("--result", "BUSY"), BUSY),
    (("--result", "NO CARRIER"), NO_CARRIER),
    (("--result", "NO DIALTONE"), NO_DIALTONE),
    (("--result", "NO ANSWER"), NO_ANSWER),
    (("--silent",), TIMEOUT),
    (("--garbage", "40"), OK),
], ids=["connect", "busy", "no-carrier", "no-dialtone", "no-answer", "silent", "garbage"])
def test_dial_result_codes(modem, flags, want):
    m = modem("--connect-delay", "0.2", *flags)
    rc, _ = run_chat(m.tty, *DIAL, timeout=2)
    assert rc == want, f"chat exit {rc}, want {want}\n{m.log()}"
    events = [(e["event"], e.get("cause")) for e in m.control("events")["events"]]
    if want == OK:  # connected, then chat's exit closed the tty: DTR drop hangs up
        assert ("connect", None) in events and ("hangup", "dte-closed") in events
        assert m.control("status")["state"] == "command"
    else:
        assert ("connect", None) not in events


def test_busy_twice_then_answer(modem):
    m = modem("--connect-delay", "0.1", "--busy", "2")
    results = [run_chat(m.tty, *DIAL, timeout=2)[0] for _ in range(3)]
    assert results == [BUSY, BUSY, OK]


@pytest.mark.parametrize("fault, want", [
    ({"result": "NO DIALTONE"}, NO_DIALTONE),
    ({"busy": 1}, BUSY),
    ({"silent": True}, TIMEOUT),
    ({"result": None, "busy": 0, "silent": False}, OK),
])
def test_faults_set_at_run_time(modem, fault, want):
    m = modem("--connect-delay", "0.1")
    assert run_chat(m.tty, *DIAL, timeout=2)[0] == OK
    m.control("faults", **fault)
    assert run_chat(m.tty, *DIAL, timeout=2)[0] == want


def test_slow_connect(modem):
    m = modem("--connect-delay", "1.5")
    assert run_chat(m.tty, *DIAL, timeout=1)[0] == TIMEOUT     # chat gives up before the 1.5 s connect
    assert run_chat(m.tty, *DIAL, timeout=4)[0] == OK          # and waits it out with time to spare


def test_s7_shorter_than_connect_gives_no_carrier(modem):
    m = modem("--connect-delay", "3")
    rc, _ = run_chat(m.tty, "ABORT", "NO CARRIER", "", "ATS7=1", "OK", "ATDT5551234", "CONNECT", timeout=5)
    assert rc == 4                                             # NO CARRIER (S7 = 1 s), not chat's timeout (3)


def test_connect_speed_in_result(modem):
    m = modem("--connect-delay", "0.1", "--speed", "33600")
    assert run_chat(m.tty, "", "AT", "OK", "ATDT1", "CONNECT 33600", timeout=2)[0] == OK


def test_numeric_result_codes(modem):
    m = modem("--connect-delay", "0.1", "--result", "BUSY")
    rc, _ = run_chat(m.tty, "ABORT", "7\r", "", "ATE0", "OK", "ATV0", "0\r", "ATDT1", "1\r", timeout=2)
    assert rc == 4  # numeric BUSY (7) matched as the first ABORT string
