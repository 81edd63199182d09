"""smtpd/timers.py without a real clock: which limit passes when (per read, per
command line, per session), and that our own waits count for none of them."""

from __future__ import annotations

from edgemail.smtpd.state import State
from edgemail.smtpd.timers import SessionTimers


class Loop:
    """The two things SessionTimers asks of a loop, on a clock we move by hand."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.calls: list[float] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay, callback):
        self.calls.append(delay)
        return self


def timers(busy=lambda: False, per_read=10.0, per_session=100.0):
    loop = Loop()
    expired: list[str] = []
    t = SessionTimers(loop, per_read=per_read, per_session=per_session, busy=busy,  # type: ignore[arg-type]
                      on_expiry=expired.append)
    return loop, t, expired


def test_the_first_check_comes_at_the_nearer_limit():
    loop, _, _ = timers(per_read=300.0, per_session=60.0)
    assert loop.calls == [60.0]


def test_a_line_dribbled_byte_by_byte_passes_the_line_deadline_not_the_read_timeout():
    loop, t, _ = timers()
    t.ready(State.COMMAND, 0)                  # the 220 is out: a command line is owed
    for _ in range(11):                        # a byte every 0.9 s ... 9.9 s, no line yet
        loop.now += 0.9
        t.read()
        t.ready(State.COMMAND, 1)
    assert t.expired(loop.now)[0] is None
    loop.now += 0.2
    assert t.expired(loop.now)[0] == "command line"


def test_each_answered_line_restarts_the_line_deadline():
    loop, t, _ = timers()
    for _ in range(5):
        loop.now += 6
        t.read()
        t.ready(State.COMMAND, 0)              # a whole line taken and answered: nothing held
    assert t.expired(loop.now + 9)[0] is None


def test_silence_is_the_read_timeout():
    loop, t, _ = timers()
    t.ready(State.DATA, 0)                     # DATA: no line deadline, reads only
    loop.now += 10
    assert t.expired(loop.now)[0] == "timeout"


def test_data_moving_slowly_is_cut_only_by_the_session_limit():
    loop, t, _ = timers()
    t.ready(State.DATA, 5)
    for _ in range(99):
        loop.now += 1
        t.read()
        t.ready(State.DATA, 5)
        assert t.expired(loop.now)[0] is None
    loop.now += 1
    t.read()
    assert t.expired(loop.now)[0] == "session"


def test_our_own_wait_counts_for_no_limit_and_restarts_the_clients_clocks():
    waiting = [True]
    loop, t, _ = timers(busy=lambda: waiting[0])
    t.ready(State.COMMAND, 3)
    loop.now += 50                             # a long commit or handshake
    assert t.expired(loop.now)[0] is None
    waiting[0] = False
    t.waited()
    t.ready(State.COMMAND, 3)
    loop.now += 5
    t.read()
    t.ready(State.COMMAND, 4)
    assert t.expired(loop.now + 4)[0] is None and t.expired(loop.now + 5)[0] == "command line"
