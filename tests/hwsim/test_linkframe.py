"""SLIP framing and the line pacer: chunking invariance, NO CARRIER detection,
rate/delay/drop-tail on virtual time (the wall-clock figures: tests/bench/hwsim_timing.py)."""
import heapq
import itertools

import pytest

from hypothesis import given
from hypothesis import strategies as st

from linkframe import NO_CARRIER, CarrierText, Pipe, SlipDecoder, slip_encode

# IP packets never start with CR, and only a frame that starts with "\r\nNO CARRIER" is carrier loss
packets = st.lists(st.binary(min_size=1, max_size=300).filter(lambda p: p[:1] != b"\r"), max_size=8)


def feed_in_pieces(data: bytes, cuts: list[int]) -> list:
    dec, out, last = SlipDecoder(), [], 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        out += dec.feed(data[last:cut])
        last = cut
    return out


@given(packets, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_roundtrip_whatever_the_chunking(pkts, cuts):
    wire = b"".join(slip_encode(p) for p in pkts)
    assert feed_in_pieces(wire, cuts) == pkts


@given(st.binary(max_size=100), st.binary(max_size=100))
def test_no_carrier_inside_a_packet_is_data(before, after):
    packet = b"E" + before + NO_CARRIER + after  # an IPv4 packet starts with 0x45
    assert SlipDecoder().feed(slip_encode(packet)) == [packet]


def test_no_carrier_between_frames_is_carrier_loss():
    wire = slip_encode(b"E1") + b"\xc0" + NO_CARRIER
    assert SlipDecoder().feed(wire) == [b"E1", CarrierText(NO_CARRIER)]
    assert feed_in_pieces(wire, [1, 5, 9, 13]) == [b"E1", CarrierText(NO_CARRIER)]


class VirtualLoop:
    """The two things Pipe asks of its loop (time, call_at), on virtual time:
    run() fires what is scheduled in time order, moving the clock to each."""

    def __init__(self):
        self.now, self._timers, self._seq = 0.0, [], itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when, fn, *args):
        heapq.heappush(self._timers, (when, next(self._seq), fn, args))

    def run(self):
        while self._timers:
            self.now, _, fn, args = heapq.heappop(self._timers)
            fn(*args)


def run_pipe(rate_bps, delay_s, limit, sizes):
    loop = VirtualLoop()
    arrivals = []
    pipe = Pipe(lambda p, tag: arrivals.append((loop.time(), tag)), rate_bps, delay_s, limit, loop=loop)
    accepted = [pipe.push(b"x" * n, i) for i, n in enumerate(sizes)]
    loop.run()
    return arrivals, accepted, pipe.dropped


def test_pipe_serializes_and_delays():
    arrivals, accepted, dropped = run_pipe(80_000, 0.05, 100_000, [1000, 1000, 1000])
    want = [0.05 + 0.1, 0.05 + 0.2, 0.05 + 0.3]  # 1000 B at 80 kbit/s = 100 ms each
    assert [tag for _, tag in arrivals] == [0, 1, 2] and dropped == 0 and all(accepted)
    assert [got for got, _ in arrivals] == pytest.approx(want, abs=1e-9)


def test_pipe_drops_tail_beyond_its_buffer():
    arrivals, accepted, dropped = run_pipe(80_000, 0.0, 3000, [1000] * 5)  # room for 3 packets
    assert accepted == [True, True, True, False, False] and dropped == 2
    assert [tag for _, tag in arrivals] == [0, 1, 2]


def test_pipe_backlog_drains_with_time():
    loop = VirtualLoop()
    pipe = Pipe(lambda p, tag: None, 80_000, 0.0, 100_000, loop=loop)
    pipe.push(b"x" * 2000)
    assert pipe.backlog() == 2000
    loop.now = 0.1                                  # 1000 B went out
    assert pipe.backlog() == 1000
    loop.run()
    assert pipe.backlog() == 0 and pipe.sent == 1 and pipe.bytes == 2000
