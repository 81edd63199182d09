"""AT dialogue core: result codes, echo, speeds, garbage, chunking invariance."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from link.at import (MAX_LINE, AtCore, Code, Data, Echo, Garbage, Info, Mode, Result,
                     Send, Sleep)
from link.errors import RemoteProtocolError

VERBAL_CASES = [
    (b"\r\nOK\r\n", Code.OK, None),
    (b"\r\nCONNECT\r\n", Code.CONNECT, None),
    (b"\r\nRING\r\n", Code.RING, None),
    (b"\r\nNO CARRIER\r\n", Code.NO_CARRIER, None),
    (b"\r\nERROR\r\n", Code.ERROR, None),
    (b"\r\nCONNECT 56000\r\n", Code.CONNECT, 56000),
    (b"\r\nCONNECT 33600/ARQ/V34/LAPM\r\n", Code.CONNECT, 33600),
    (b"\r\nNO DIALTONE\r\n", Code.NO_DIALTONE, None),
    (b"\r\nNO DIAL TONE\r\n", Code.NO_DIALTONE, None),
    (b"\r\nBUSY\r\n", Code.BUSY, None),
    (b"\r\nNO ANSWER\r\n", Code.NO_ANSWER, None),
    (b"\nok\n", Code.OK, None),
]


@pytest.mark.parametrize("wire,code,speed", VERBAL_CASES, ids=[c[0].strip().decode() for c in VERBAL_CASES])
def test_verbal_result_codes(wire, code, speed):
    core = AtCore()
    core.command("ATDT5551234")
    events = core.feed(wire)
    assert len(events) == 1, f"got {events}"
    (ev,) = events
    assert isinstance(ev, Result) and ev.code is code and ev.speed == speed, f"got {ev}, want {code} {speed}"
    assert ev.command == ("ATDT5551234" if code is not Code.RING else None)


NUMERIC_CASES = [
    (b"0\r", Code.OK, None), (b"1\r", Code.CONNECT, None), (b"2\r", Code.RING, None),
    (b"3\r", Code.NO_CARRIER, None), (b"4\r", Code.ERROR, None), (b"5\r", Code.CONNECT, 1200),
    (b"6\r", Code.NO_DIALTONE, None), (b"7\r", Code.BUSY, None), (b"8\r", Code.NO_ANSWER, None),
    (b"10\r", Code.CONNECT, 2400), (b"12\r", Code.CONNECT, 9600), (b"18\r", Code.CONNECT, 57600),
]


@pytest.mark.parametrize("wire,code,speed", NUMERIC_CASES, ids=[c[0].strip().decode() for c in NUMERIC_CASES])
def test_numeric_result_codes_after_v0(wire, code, speed):
    core = AtCore()
    core.command("ATE0V0")
    assert core.numeric
    (ev,) = core.feed(wire)
    assert isinstance(ev, Result) and ev.code is code and ev.speed == speed, f"got {ev}"


def test_digits_are_info_in_verbal_mode():
    core = AtCore()
    core.command("ATI0")
    assert core.feed(b"\r\n56000\r\n\r\nOK\r\n") == [Info("56000"), Result(Code.OK, "OK", None, "ATI0")]


def test_v1_turns_numeric_off_again():
    core = AtCore()
    core.command("ATV0")
    core.command("ATQ0V1")
    assert not core.numeric
    assert core.feed(b"0\r") == [Info("0")]


def test_echo_lines_are_echo_not_results():
    core = AtCore()
    core.command("ATZ")
    assert core.feed(b"ATZ\r\r\nOK\r\n") == [Echo("ATZ"), Result(Code.OK, "OK", None, "ATZ")]


def test_connect_switches_to_online_and_rest_is_data():
    core = AtCore()
    core.dial("5551234")
    events = core.feed(b"ATDT5551234\r\r\nCONNECT 56000\r\n\x7e\xff\x7d")
    assert events == [Echo("ATDT5551234"), Result(Code.CONNECT, "CONNECT 56000", 56000, "ATDT5551234"),
                      Data(b"\x7e\xff\x7d")]
    assert core.mode is Mode.ONLINE
    assert core.feed(b"NO CARRIER\r\n") == [Data(b"NO CARRIER\r\n")]


def test_escape_is_guard_plus_guard_and_back_to_command_mode():
    core = AtCore()
    core.dial("1")
    core.feed(b"CONNECT\r\n")
    assert core.escape(1.5) == [Sleep(1.5), Send(b"+++"), Sleep(1.5)]
    assert core.mode is Mode.COMMAND
    assert core.feed(b"\r\nOK\r\n") == [Result(Code.OK, "OK", None, "+++")]


def test_garbage_is_reported_not_raised():
    core = AtCore()
    core.command("AT")
    events = core.feed(b"\xff\xfe\x00\r\nOK\r\n")
    assert events == [Garbage(b"\xff\xfe\x00"), Result(Code.OK, "OK", None, "AT")]


def test_overlong_line_is_cut_into_garbage():
    core = AtCore()
    events = core.feed(b"x" * (MAX_LINE + 10) + b"\r\n")
    assert events[0] == Garbage(b"x" * MAX_LINE)
    assert events[1] == Info("x" * 10)


@pytest.mark.parametrize("bad", ["", "ZZ", "ATD\r5", "AT\x00", "ATÄ"])
def test_command_refuses_non_at_and_control_chars(bad):
    with pytest.raises(ValueError):
        AtCore().command(bad)


@pytest.mark.parametrize("bad", ["", "123;ATH", "55\r5", "1-800"])
def test_dial_refuses_non_dial_characters(bad):
    with pytest.raises(ValueError):
        AtCore().dial(bad)


def test_strict_core_rejects_unsolicited_connect():
    core = AtCore(strict=True)
    with pytest.raises(RemoteProtocolError):
        core.feed(b"CONNECT 9600\r\n")


def test_ring_is_unsolicited_and_keeps_pending():
    core = AtCore()
    core.command("AT")
    assert core.feed(b"RING\r\n") == [Result(Code.RING, "RING")]
    assert core.pending == "AT"


SESSION = (b"ATZ\r\r\nOK\r\n\xff\x00junk\r\nATE0V1Q0\r\r\nOK\r\nManufacturer X\r\n"
           b"\r\nRING\r\n\r\nBUSY\r\n" + b"y" * 300 + b"\r\nCONNECT 56000/ARQ\r\nDATA\xc0\xc0")


def _feed_split(data: bytes, cuts: list[int]) -> list:
    core = AtCore()
    core.command("ATZ")
    events: list = []
    last = 0
    for c in sorted(set(cuts)) + [len(data)]:
        events += core.feed(data[last:c])
        last = c
    return events


def _merge_data(events: list) -> list:
    out: list = []
    for e in events:
        if out and isinstance(e, Data) and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + e.data)
        else:
            out.append(e)
    return out


def test_byte_by_byte_equals_whole():
    whole = _feed_split(SESSION, [])
    assert _merge_data(_feed_split(SESSION, list(range(len(SESSION))))) == whole
    assert any(isinstance(e, Garbage) for e in whole) and isinstance(whole[-1], Data)


@given(st.lists(st.integers(min_value=0, max_value=len(SESSION)), max_size=20))
def test_chunking_invariance(cuts):
    assert _merge_data(_feed_split(SESSION, cuts)) == _feed_split(SESSION, [])


@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=8))
def test_arbitrary_bytes_never_raise_and_are_chunk_invariant(data, cuts):
    cuts = [c for c in cuts if c <= len(data)]
    assert _merge_data(_feed_split(data, cuts)) == _merge_data(_feed_split(data, []))


def test_lf_after_connect_is_data_when_line_ended_in_lf():
    core = AtCore()
    core.dial("1")
    assert core.feed(b"CONNECT\n\n~") == [Result(Code.CONNECT, "CONNECT", None, "ATDT1"), Data(b"\n~")]


def test_cores_import_no_io_modules():
    import subprocess
    import sys
    code = ("import sys, link.at, link.policy, link.fsm, link.transitions; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('serial', 'pyroute2', 'asyncio', 'socket', 'edgemail', 'logging', 'schedule')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
