"""sendmail -bs's relay core (cli/bsrelay.py TraceInserter): the trace line goes in
right after the server's 354, once per message, whatever the chunking and however much
the client pipelines; nothing the client sent is changed or reordered."""

from __future__ import annotations

import pytest

from edgemail.cli.bsrelay import TraceInserter, choose_listener
from edgemail.config.model import Listener

TRACE = b"Received: (from kim@localhost)\r\n\tby gw.example (edgemail);\r\n\tDATE\r\n"
GREETING = b"220 gw.example ESMTP\r\n"
EHLO_REPLY = b"250-gw.example\r\n250-PIPELINING\r\n250 SIZE 10240000\r\n"


def server_replies(client_lines: list[bytes], refuse_data: bool = False) -> list[bytes]:
    """What a server answers to each command line (None inside DATA until the dot)."""
    out, in_data = [], False
    for line in client_lines:
        if in_data:
            if line.rstrip(b"\r\n") == b".":
                in_data = False
                out.append(b"250 2.0.0 Q1 queued\r\n")
            continue
        verb = line.strip().upper()
        if verb.startswith(b"EHLO"):
            out.append(EHLO_REPLY)
        elif verb == b"DATA":
            out.append(b"554 5.5.1 no valid recipients\r\n" if refuse_data else b"354 go ahead\r\n")
            in_data = not refuse_data
        elif verb == b"QUIT":
            out.append(b"221 bye\r\n")
        else:
            out.append(b"250 ok\r\n")
    return out


def run(client: bytes, *, chunk: int, refuse_data: bool = False, wait_each: bool = False) -> bytes:
    """Feed CLIENT in CHUNK-byte pieces; the server answers every line the core let
    through, also in pieces; with WAIT_EACH the client waits for each reply (no pipelining)."""
    core, sent, answered = TraceInserter(lambda: TRACE), b"", 0

    def serve() -> None:
        nonlocal sent, answered
        lines = [x for x in sent.replace(TRACE, b"").splitlines(keepends=True) if x.endswith(b"\n")]
        replies = server_replies(lines, refuse_data)
        for reply in replies[answered:]:
            for i in range(0, len(reply), chunk):
                sent += core.from_server(reply[i:i + chunk])
        answered = len(replies)

    for i in range(0, len(GREETING), chunk):
        sent += core.from_server(GREETING[i:i + chunk])
    for i in range(0, len(client), chunk):
        sent += core.from_client(client[i:i + chunk])
        if wait_each:
            serve()
    for _ in range(4):
        serve()
    return sent


DIALOGUE = (b"EHLO php.lan\r\nMAIL FROM:<web@x.example>\r\nRCPT TO:<a@x.example>\r\nDATA\r\n"
            b"Subject: one\r\n\r\n..dot\r\n.\r\n"
            b"MAIL FROM:<web@x.example>\r\nRCPT TO:<b@x.example>\r\nDATA\r\nSubject: two\r\n\r\nhi\r\n.\r\nQUIT\r\n")


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 100_000], ids=lambda c: f"chunk{c}")
@pytest.mark.parametrize("wait_each", [False, True], ids=["pipelined", "lockstep"])
def test_the_trace_line_opens_each_message_and_nothing_else_changes(chunk, wait_each):
    sent = run(DIALOGUE, chunk=chunk, wait_each=wait_each)
    assert sent.replace(TRACE, b"") == DIALOGUE, sent
    assert sent.count(TRACE) == 2
    assert b"DATA\r\n" + TRACE + b"Subject: one\r\n" in sent and b"DATA\r\n" + TRACE + b"Subject: two\r\n" in sent


@pytest.mark.parametrize("chunk", [1, 5, 100_000], ids=lambda c: f"chunk{c}")
def test_a_refused_data_releases_the_bytes_unchanged_and_adds_nothing(chunk):
    client = b"EHLO x\r\nMAIL FROM:<a@x.example>\r\nRCPT TO:<nobody@x.example>\r\nDATA\r\nSubject: s\r\nQUIT\r\n"
    sent = run(client, chunk=chunk, refuse_data=True)
    assert sent == client


def test_held_bytes_wait_for_the_reply_to_data():
    core = TraceInserter(lambda: TRACE)
    assert core.from_server(GREETING) == b""
    assert core.from_client(b"HELO x\r\nDATA\r\nSubject: s\r\n") == b"HELO x\r\nDATA\r\n"
    assert core.from_server(b"250 ok\r\n") == b""                  # HELO's reply: DATA's is the next one
    assert core.from_server(b"354 go") == b""                      # not a whole line yet
    assert core.from_server(b" ahead\r\n") == TRACE + b"Subject: s\r\n"
    assert core.from_client(b".\r\nQUIT\r\n") == b".\r\nQUIT\r\n"


def test_bdat_or_starttls_turn_it_into_a_plain_pipe():
    core = TraceInserter(lambda: TRACE)
    core.from_server(GREETING)
    blob = b"BDAT 5 LAST\r\nDATA\r\nxx\r\n"
    assert core.from_client(blob) == blob
    assert core.from_server(b"354 what\r\n") == b""


def test_bs_talks_to_the_loopback_listener_not_the_first():
    lan, wan = Listener("lan", "192.168.1.1", 25, False), Listener("wan", "10.64.0.2", 25, True)
    lo, every = Listener("lo", "127.0.0.1", 0, False), Listener("any", "0.0.0.0", 25, False)
    odmr = Listener("odmr", "127.0.0.1", 366, True, odmr=True)
    assert choose_listener([lan, wan, lo], [25, 25, 2525]) == (lo, 2525)
    assert choose_listener([lan, every], [25, 26]) == (every, 26)          # reached on 127.0.0.1
    assert choose_listener([lan, wan], [25, 25]) == (lan, 25)              # none local: the first
    assert choose_listener([odmr, lan], [366, 25]) == (lan, 25)            # ODMR takes no mail
    assert choose_listener([Listener("lo6", "::1", 25, False), lan], [25, 25])[0].name == "lo6"
