"""The server dialogue's boundary without I/O (issue 16 §1, §2, §10): SMTP
synchronisation on strict and LAN listeners, bare LF command lines, and
the log naming the line that was refused."""

from __future__ import annotations

import logging

import pytest

from edgemail.smtpd.core import Dialogue, Settings, State
from edgemail.smtpd.events import CLOSE, NEED_DATA, Commit
from tests.core.test_smtpd_core import SETTINGS, _decide, codes, run

STRICT = Settings(**{**SETTINGS.__dict__, "strict": True})
TXN = b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@edge.test>\r\nDATA\r\n"


def dialogue(settings: Settings, *, greet: bool = True) -> Dialogue:
    core = Dialogue(settings, ip="192.0.2.7", relay="[192.0.2.7]:4000", trusted=False,
                    decide_rcpt=_decide, has_room=lambda size: True)
    if greet:
        core.greet()
    return core


def steps(core: Dialogue, *chunks: bytes) -> tuple[list[str], list]:
    """Feed each chunk after the replies to the one before (a client that waits)."""
    lines, events = [], []
    for chunk in chunks:
        got, evs = run(core, chunk, answers=["250 2.0.0 Q1 Message accepted for delivery"] * 4)
        lines += got
        events += evs
    return lines, events


SYNC = [
    # (name, settings, chunks, the last reply's code, messages committed)
    ("strict: DATA stuffed with its body", STRICT,
     [b"EHLO c\r\n", TXN + b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"], "554", 0),
    ("strict: EHLO pipelined with MAIL", STRICT, [b"EHLO c\r\nMAIL FROM:<a@x.test>\r\n"], "554", 0),
    ("strict: HELO pipelined with MAIL", STRICT, [b"HELO c\r\nMAIL FROM:<a@x.test>\r\n"], "554", 0),
    ("strict: EHLO after the dot pipelined", STRICT,
     [b"EHLO c\r\n", TXN, b"x\r\n.\r\nEHLO d\r\nMAIL FROM:<a@x.test>\r\n"], "554", 1),
    ("strict: RFC 2920 groups work", STRICT,
     [b"EHLO c\r\n", TXN, b"x\r\n.\r\n" + TXN, b"y\r\n.\r\nQUIT\r\n"], "221", 2),
    ("strict: refused DATA stuffed", STRICT,
     [b"EHLO c\r\n", b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@far.test>\r\nDATA\r\nRCPT TO:<v@far.test>\r\n"],
     "554", 0),
    ("lan: EHLO pipelined is tolerated", SETTINGS, [b"EHLO c\r\nMAIL FROM:<a@x.test>\r\n"], "250", 0),
    ("lan: accepted DATA pipelined is the message", SETTINGS,
     [b"EHLO c\r\n" + TXN + b"Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n"], "221", 1),
    ("lan: refused DATA stuffed", SETTINGS,
     [b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@far.test>\r\nDATA\r\n"
      b"MAIL FROM:<evil@x.test>\r\nRCPT TO:<v@edge.test>\r\nDATA\r\nsmuggled\r\n.\r\n"], "554", 0),
    ("lan: DATA before HELO stuffed", SETTINGS, [b"DATA\r\nQUIT\r\n"], "554", 0),
    ("lan: refused DATA alone is a 503", SETTINGS,
     [b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@far.test>\r\nDATA\r\n", b"QUIT\r\n"], "221", 0),
]


@pytest.mark.parametrize("name,settings,chunks,last,commits", SYNC, ids=[s[0] for s in SYNC])
def test_synchronisation(name, settings, chunks, last, commits):
    core = dialogue(settings)
    lines, events = steps(core, *chunks)
    got = codes(lines)
    assert got[-1] == last, f"{name}: got {lines}"
    assert sum(isinstance(e, Commit) for e in events) == commits, f"{name}: {events}"
    if last == "554":
        assert lines[-1].startswith("554 5.5.0 Error: SMTP protocol synchronization"), lines
        assert events[-1] is CLOSE and core.state is State.CLOSED and core.ended
        assert core.held == 0, "nothing after the violation is kept"
        assert "354" not in got[got.index("554") - 1:], "no 354 for a stuffed DATA"


def test_nothing_after_a_violation_is_ever_read():
    core = dialogue(STRICT)
    steps(core, b"EHLO c\r\n", TXN + b"body\r\n.\r\n")
    core.receive_data(TXN + b"more\r\n.\r\n")
    assert core.next_event() is CLOSE and core.data_to_send() == b""


def test_early_talker_before_the_greeting():
    core = dialogue(STRICT, greet=False)
    core.receive_data(b"EHLO c\r\n")
    assert core.next_event() is CLOSE
    assert core.data_to_send() == b"554 5.5.0 Error: SMTP protocol synchronization: talked before the greeting\r\n"
    core.greet()                        # the pause ends after the session did: nothing more
    assert core.state is State.CLOSED


def test_a_client_that_waits_for_the_greeting_is_served():
    core = dialogue(STRICT, greet=False)
    assert core.next_event() is NEED_DATA and core.data_to_send() == b""
    core.greet()
    lines, _ = steps(core, b"EHLO c\r\n")
    assert codes(lines) == ["220", "250"]


BARE = [
    ("bare LF ends MAIL", b"MAIL FROM:<a@x.test>\n"),
    ("bare LF ends RCPT", b"RCPT TO:<b@edge.test>\n"),
    ("bare CR inside", b"MAIL FROM:<a@x.test>\rRCPT TO:<b@edge.test>\r\n"),
    ("bare LF ends QUIT", b"QUIT\n"),
]


@pytest.mark.parametrize("name,line", BARE, ids=[b[0] for b in BARE])
def test_bare_lf_command_lines_are_refused_and_never_run_on_strict(name, line):
    core = dialogue(STRICT)
    lines, _ = steps(core, b"EHLO c\r\n", line, b"RCPT TO:<b@edge.test>\r\n")
    if line.endswith(b"\r\n"):        # a bare CR inside a whole line: refused, the session goes on
        assert lines[-2].startswith("500 5.5.2 Error: bare LF or CR in command line"), lines
        assert lines[-1].startswith("503 5.5.1 Error: need MAIL command"), "the MAIL never ran"
        assert core.state is State.COMMAND
    else:                               # a bare LF: refused, and nothing after it is a command
        assert lines[-1].startswith("500 5.5.2 Error: bare LF or CR in command line"), lines
        assert core.state is State.CLOSED


def test_what_follows_a_bare_lf_in_the_same_read_is_never_a_command_on_strict():
    core = dialogue(STRICT)
    lines, _ = steps(core, b"EHLO c\r\n", b"MAIL FROM:<a@x.test>\r\n", b"NOOP\nRCPT TO:<b@edge.test>\r\n")
    assert lines[-1].startswith("500 5.5.2 Error: bare LF or CR in command line"), lines
    assert not any(x.startswith("250 2.1.5") for x in lines) and core.state is State.CLOSED


def test_bare_lf_command_lines_are_taken_on_lan():
    lines, _ = steps(dialogue(SETTINGS), b"EHLO c\r\n", b"MAIL FROM:<a@x.test>\n")
    assert lines[-1].startswith("250 2.1.0"), lines


@pytest.mark.parametrize("bad, arg1", [
    (b"\xff\xfe junk\r\n", "arg1=\\\\xff\\\\xfe junk"),
    (b"\r\n", "arg1=(empty line)"),
    (b"MAIL FROM:<c@x.test>\n", "ruleset=check_mail, arg1=<c@x.test>"),
], ids=["non-ascii", "empty", "bare-lf"])
def test_the_bad_syntax_line_names_the_bad_line(caplog, bad, arg1):
    core = dialogue(STRICT)
    steps(core, b"EHLO c\r\n", b"MAIL FROM:<previous@x.test>\r\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgemail.smtpd"):
        steps(core, bad)
    (line,) = [r.getMessage() for r in caplog.records]
    assert arg1 in line, line
    assert "previous@x.test" not in line


def test_an_auth_line_refused_for_its_syntax_never_logs_its_argument(caplog):
    core = dialogue(STRICT)
    with caplog.at_level(logging.WARNING, logger="edgemail.smtpd"):
        steps(core, b"EHLO c\r\n", b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\n")
    assert "AGFsaWNl" not in caplog.text and "arg1=AUTH" in caplog.text
