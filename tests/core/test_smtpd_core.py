"""smtpd/core.py and reader.py without I/O: dialogues as tables, the events
the driver sees, chunking invariance, and arbitrary input never raising."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from edgemail.address import Address
from edgemail.smtpd.core import OUTPUT_REPLIES, Dialogue, Settings, State
from edgemail.smtpd.data import DataCollector
from edgemail.smtpd.events import CLOSE, FLUSH, NEED_DATA, Atrn, Commit, Etrn
from edgemail.smtpd.reader import TOO_LONG, LineReader

SETTINGS = Settings(hostname="gw.test", max_size=1000, max_rcpts=2, max_bad_commands=5,
                    strict=False, etrn=True)


def _decide(address: Address) -> tuple[str, str | None]:
    text = str(address)
    return text, (None if text.endswith("@edge.test") else f"554 5.7.1 <{text}>... Relaying denied")


def dialogue(settings: Settings = SETTINGS, *, trusted: bool = True, room: bool = True) -> Dialogue:
    core = Dialogue(settings, ip="192.0.2.7", relay="[192.0.2.7]:4000", trusted=trusted,
                    decide_rcpt=_decide, has_room=lambda size: room)
    core.greet()
    return core


def run(core: Dialogue, data: bytes, answers=()) -> tuple[list[str], list]:
    """Feed DATA; answer each Commit/Etrn from ANSWERS; (reply lines, events)."""
    answers, events, out = list(answers), list[object](), b""
    core.receive_data(data)
    while True:
        event = core.next_event()
        out += core.data_to_send()
        if event is NEED_DATA or event is CLOSE:
            events.append(event)
            break
        if event is FLUSH:
            continue
        events.append(event)
        core.answer(answers.pop(0))
    return out.decode("utf-8", "surrogateescape").split("\r\n")[:-1], events


def codes(lines: list[str]) -> list[str]:
    return [line[:3] for line in lines if line[3:4] != "-"]


TABLE = [
    ("greeting", b"", ["220"]),
    ("MAIL before HELO", b"MAIL FROM:<a@edge.test>\r\n", ["220", "503"]),
    ("transaction", b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@edge.test>\r\nRCPT TO:<c@far.test>\r\n",
     ["220", "250", "250", "250", "554"]),
    ("order", b"HELO c\r\nRCPT TO:<b@edge.test>\r\nMAIL FROM:<>\r\nMAIL FROM:<>\r\nDATA\r\n",
     ["220", "250", "503", "250", "503", "503"]),
    ("recipient limit", b"EHLO c\r\nMAIL FROM:<>\r\n" + b"RCPT TO:<b@edge.test>\r\n" * 3,
     ["220", "250", "250", "250", "250", "452"]),
    ("size at MAIL", b"EHLO c\r\nMAIL FROM:<a@x.test> SIZE=1001\r\nMAIL FROM:<a@x.test> SIZE=1000\r\n",
     ["220", "250", "552", "250"]),
    ("parameters need EHLO", b"HELO c\r\nMAIL FROM:<a@x.test> SIZE=10\r\n", ["220", "250", "501"]),
    ("RSET resets", b"EHLO c\r\nMAIL FROM:<>\r\nRSET\r\nRCPT TO:<b@edge.test>\r\n", ["220", "250", "250", "250", "503"]),
    ("EHLO resets", b"EHLO c\r\nMAIL FROM:<>\r\nEHLO d\r\nRCPT TO:<b@edge.test>\r\n", ["220", "250", "250", "250", "503"]),
    ("misc", b"NOOP x\r\nVRFY a\r\nEXPN a\r\nAUTH PLAIN x\r\nSTARTTLS\r\nHELP\r\nBOGUS\r\n",
     ["220", "250", "252", "502", "502", "454", "250", "500"]),
    ("five bad lines end it", b"\r\n\xff\r\nEHLO\r\nHELO\r\nBOGUS\r\nNOOP\r\n",
     ["220", "500", "500", "501", "501", "500", "421"]),
    ("QUIT ends it", b"QUIT\r\nNOOP\r\n", ["220", "221"]),
    ("QUIT now ends it too (its argument ignored, as sendmail 8.17)", b"QUIT now\r\nNOOP\r\n", ["220", "221"]),
    ("bare VRFY is 252, as sendmail with PrivacyOptions novrfy", b"VRFY\r\n", ["220", "252"]),
]


@pytest.mark.parametrize("name,data,want", TABLE, ids=[t[0] for t in TABLE])
def test_dialogue_table(name, data, want):
    lines, _ = run(dialogue(), data)
    assert codes(lines) == want, f"{name}: got {lines}, want codes {want}"


def test_every_reply_but_greeting_and_ehlo_has_an_enhanced_code():
    lines, _ = run(dialogue(), b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@edge.test>\r\nFOO\r\nRSET x\r\n"
                               b"HELP BAR\r\nETRN\r\nQUIT\r\n")
    for line in lines[2:]:
        assert line[4:5].isdigit() and line[5:6] == ".", f"no enhanced code in {line!r}"


def test_the_end_of_data_is_a_commit_and_input_waits_for_its_answer():
    core = dialogue()
    lines, events = run(core, b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@edge.test>\r\nDATA\r\n"
                              b"Subject: s\r\n\r\n..x\r\n.\r\nNOOP\r\n",
                        answers=["250 2.0.0 Q1 Message accepted for delivery"])
    commit = events[0]
    assert isinstance(commit, Commit) and commit.proto == "ESMTP" and commit.helo == "c"
    assert commit.message == b"Subject: s\r\n\r\n.x\r\n" and commit.txn.mail_from == "a@x.test"
    assert [r.address for r in commit.txn.rcpts] == ["b@edge.test"]
    assert codes(lines)[-3:] == ["354", "250", "250"] and "Q1" in lines[-2]
    assert "Subject" not in repr(commit), "message bytes must not reach a log line through a repr"


def test_while_a_commit_is_out_nothing_is_taken():
    core = dialogue()
    core.receive_data(b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@edge.test>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n")
    while not isinstance(event := core.next_event(), Commit):
        assert event is not CLOSE
    before = core.data_to_send()
    assert core.state is State.WAITING and core.held == len(b"NOOP\r\n")
    assert core.next_event() is NEED_DATA and core.data_to_send() == b""
    core.answer("250 2.0.0 Q1 Message accepted for delivery")
    assert core.next_event() is NEED_DATA
    assert before.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n")
    assert core.data_to_send() == b"250 2.0.0 Q1 Message accepted for delivery\r\n250 2.0.0 OK\r\n"


@pytest.mark.parametrize("trusted,etrn,arg,want", [
    (True, True, "edge.test", None), (True, True, "@edge.test", None), (True, True, "#q", None),
    (True, True, "", "501 5.5.4"), (True, True, "bad;x", "501 5.5.4"),
    (False, True, "edge.test", None), (True, False, "edge.test", "502 5.5.1"),
])
def test_etrn(trusted, etrn, arg, want):
    """Who may flush is the hook's to decide (a customer may be outside the LAN): the
    event says who asks; the dialogue refuses only what is not offered or not well formed."""
    core = dialogue(Settings(**{**SETTINGS.__dict__, "etrn": etrn}), trusted=trusted)
    lines, events = run(core, f"EHLO c\r\nETRN {arg}\r\n".encode(), answers=["250 2.0.0 Queuing started"])
    if want is None:
        assert events[0] == Etrn(arg, ip="192.0.2.7", trusted=trusted) and lines[-1] == "250 2.0.0 Queuing started"
    else:
        assert lines[-1].startswith(want) and not any(isinstance(e, Etrn) for e in events), lines


ODMR = Settings(**{**SETTINGS.__dict__, "etrn": False, "odmr": True})


@pytest.mark.parametrize("settings,user,commands,want", [
    (ODMR, "edge", "ATRN", Atrn((), user="edge", relay="[192.0.2.7]:4000")),
    (ODMR, "edge", "ATRN Edge.Test,pc1.edge.test", Atrn(("edge.test", "pc1.edge.test"), "edge", "[192.0.2.7]:4000")),
    (ODMR, None, "ATRN edge.test", "530 5.7.0 Authentication required"),
    (ODMR, "edge", "ATRN edge.test,", "501 5.5.4"),
    (ODMR, "edge", "ATRN a b", "501 5.5.4"),
    (SETTINGS, "edge", "ATRN edge.test", "502 5.5.1 ATRN not available here"),
], ids=["all", "list", "no-auth", "trailing-comma", "space", "not-odmr"])
def test_atrn(settings, user, commands, want):
    core = dialogue(settings)
    core.auth_user = user                     # what AUTH leaves on the dialogue (issue 11 §2)
    lines, events = run(core, f"EHLO c\r\n{commands}\r\n".encode(), answers=["450 4.7.1 refused"])
    if isinstance(want, Atrn):
        assert events[0] == want and lines[-1] == "450 4.7.1 refused"
        assert "250-ATRN" in lines
    else:
        assert lines[-1].startswith(want) and not any(isinstance(e, Atrn) for e in events), lines


def test_odmr_listener_takes_no_mail_and_atrn_250_ends_the_dialogue():
    core = dialogue(ODMR)
    core.auth_user = "edge"
    lines, _ = run(core, b"EHLO c\r\nMAIL FROM:<>\r\nETRN edge.test\r\nVRFY x\r\n")
    assert codes(lines)[-3:] == ["502", "502", "502"] and "ETRN" not in "".join(lines[:-3])
    core.receive_data(b"ATRN\r\n220 customer ready\r\n")
    assert isinstance(core.next_event(), Atrn) and core.state is State.WAITING
    core.close_with("250 2.0.0 OK, now reversing the connection")
    assert core.data_to_send().endswith(b"250 2.0.0 OK, now reversing the connection\r\n")
    assert core.state is State.CLOSED and core.reader.take() == b"220 customer ready\r\n"


def test_strict_refusal_and_hop_limit_need_no_commit():
    strict = Settings(**{**SETTINGS.__dict__, "strict": True})
    head = b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@edge.test>\r\nDATA\r\n"
    core = dialogue(strict)
    for step in (b"HELO c\r\n", b"MAIL FROM:<>\r\nRCPT TO:<b@edge.test>\r\nDATA\r\n"):
        run(core, step)             # a strict listener: each group waits for its replies
    lines, events = run(core, b"bare\nLF\r\n.\r\n")
    assert lines[-1].startswith("550 5.6.0") and events == [NEED_DATA]
    lines, events = run(dialogue(), head + b"Received: x\r\n" * 26 + b"\r\nb\r\n.\r\n")
    assert lines[-1] == "554 5.4.6 Too many hops (26): mail loop?" and events == [NEED_DATA]


def test_the_end_of_input_closes_once_everything_is_answered():
    core = dialogue()
    core.receive_data(b"NOOP\r\nNOO")
    core.receive_data(b"")
    assert core.next_event() is CLOSE and core.data_to_send().endswith(b"250 2.0.0 OK\r\n")
    assert not core.ended, "an input that ends is a lost connection, not a QUIT"


def test_a_client_that_pipelines_without_reading_gets_flush_not_unbounded_output():
    core = dialogue()
    core.data_to_send()
    core.receive_data(b"HELP\r\n" * (OUTPUT_REPLIES * 3))
    assert core.next_event() is FLUSH
    assert core.data_to_send().count(b"\r\n") == OUTPUT_REPLIES
    assert core.held == len(b"HELP\r\n") * OUTPUT_REPLIES * 2


def test_close_with_says_the_reply_and_takes_nothing_more():
    core = dialogue()
    core.receive_data(b"NOOP\r\n")
    core.close_with("421 4.3.2 gw.test Service shutting down")
    assert core.next_event() is CLOSE
    assert core.data_to_send().endswith(b"421 4.3.2 gw.test Service shutting down\r\n")


# ---------------------------------------------------------------- reader

def test_reader_lines_over_long_lines_and_discard():
    reader = LineReader()
    reader.receive_data(b"NOOP\r\nMA")
    assert reader.next_line() == b"NOOP\r\n" and reader.next_line() is None and reader.held == 2
    reader.receive_data(b"x" * (LineReader.line_length_limit + 1))
    assert reader.next_line() is None and reader.held == 0, "an over-long line is not held"
    reader.receive_data(b"yyy\r\nRSET\r\n")
    assert reader.next_line() is TOO_LONG and reader.next_line() == b"RSET\r\n"
    reader.receive_data(b"plaintext\r\n")
    reader.discard()
    assert reader.held == 0 and reader.next_line() is None


def test_reader_feeds_data_and_keeps_what_follows():
    reader, collector = LineReader(), DataCollector(strict=False, limit=100)
    reader.receive_data(b"a\r\n.")
    assert not reader.feed(collector) and reader.held == 0
    reader.receive_data(b"\r\nNOOP\r\n")
    assert reader.feed(collector) and reader.next_line() == b"NOOP\r\n"
    assert collector.message() == b"a\r\n"


# ---------------------------------------------------------------- properties

STREAM = (b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@edge.test>\r\nDATA\r\nSubject: 1\r\n\r\n"
          b"..dot\r\n.\r\nRSET\r\nMAIL FROM:<bad\r\nHELO d\r\nMAIL FROM:<>\r\nRCPT TO:<c@edge.test>\r\n"
          b"DATA\r\n.\r\nETRN edge.test\r\nHELP MAIL\r\nQUIT\r\n")


def _cut_run(chunks: list[bytes]) -> tuple[list[str], list]:
    core, lines, events = dialogue(), [], []
    n = 0
    for chunk in chunks:
        more, evs = run(core, chunk, answers=[f"250 2.0.0 Q{n + i} done" for i in range(3)])
        n += sum(1 for e in evs if not (e is NEED_DATA or e is CLOSE))
        lines += more
        events += [e for e in evs if e is not NEED_DATA]
    return lines, [type(e).__name__ if not isinstance(e, Etrn) else e for e in events]


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=10, unique=True))
@settings(max_examples=80, deadline=None)
def test_the_core_does_not_depend_on_how_input_is_cut(cuts):
    whole = _cut_run([STREAM])
    bounds = [0, *sorted(cuts), len(STREAM)]
    assert _cut_run([STREAM[a:b] for a, b in zip(bounds, bounds[1:])]) == whole
    assert codes(whole[0]) == ["220", "250", "250", "250", "354", "250", "250", "501", "250", "250",
                               "250", "354", "250", "250", "250", "221"]


@given(st.binary(max_size=400))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_only_get_replies(data):
    core = dialogue()
    lines, _ = run(core, data, answers=["250 2.0.0 Q done"] * 10)
    assert all(line[:3].isdigit() for line in lines), lines
