"""linkup_sink — the far end of the link-up benchmark: an SMTP sink that says when each byte came.

Usage: ip netns exec ISP_NS python linkup_sink.py --listen 198.51.100.20:25

Owns: one listening socket on --listen and the sessions on it.  Every
session's moments go to stdout as JSON lines, stamped with
time.monotonic() (CLOCK_MONOTONIC, the same clock in every network
namespace), so the benchmark can subtract them from its netlink stamps:

    {"ev": "ready", "t": T}                                 listening
    {"ev": "accept", "conn": N, "port": P, "t": T}          accept() returned
    {"ev": "cmd", "conn": N, "verb": "MAIL", "t": T}        the recv() that brought the
                                                            command's first byte returned
    {"ev": "data1", "conn": N, "t": T}                      first byte after 354
    {"ev": "data_end", "conn": N, "t": T, "bytes": B}       the "." line (250 sent after)
    {"ev": "idle_close", "conn": N, "t": T}                 --idle-close S after a message: 421 sent
    {"ev": "close", "conn": N, "t": T}

The protocol is SinkSession, a sans-IO core: receive(bytes, now) ->
(reply bytes, events).  It offers neither PIPELINING nor STARTTLS, so
every client talks in lock-step and in clear: the same round trips for
every system measured.  It accepts any sender and recipient.  With
--idle-close S a session idle for S seconds after a message gets 421 and
is closed (a client that caches connections, as edgemail does, would
otherwise carry one from call to call over the simulated line, where the
addresses never change and nothing resets it).

Never does: store a message, relay, or look anything up.

Failures: a malformed line gets 500 and the session goes on; a client
that goes away ends its session (close event).  Socket errors at start
exit 1 with the address named.
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field

BANNER = b"220 sink.isp.example ESMTP linkup-sink\r\n"
EHLO_REPLY = b"250-sink.isp.example\r\n250-8BITMIME\r\n250 SIZE 52428800\r\n"
REPLIES = {"HELO": b"250 sink.isp.example\r\n", "MAIL": b"250 2.1.0 Ok\r\n",
           "RCPT": b"250 2.1.5 Ok\r\n", "DATA": b"354 End data with <CR><LF>.<CR><LF>\r\n",
           "RSET": b"250 2.0.0 Ok\r\n", "NOOP": b"250 2.0.0 Ok\r\n", "QUIT": b"221 2.0.0 Bye\r\n",
           "EHLO": EHLO_REPLY}


@dataclass
class SinkSession:
    """One SMTP session's protocol state (no I/O): feed bytes, get replies and events."""
    buf: bytes = b""
    in_data: bool = False
    data_bytes: int = 0
    messages: int = 0
    done: bool = False
    _line_t: float | None = field(default=None, repr=False)

    def receive(self, data: bytes, now: float) -> tuple[bytes, list[dict]]:
        """Bytes from the client at `now`; returns what to send and what happened."""
        out, events = [], []
        if data and not self.buf:
            self._line_t = now               # this recv brought the next line's first byte
        self.buf += data
        while b"\n" in self.buf and not self.done:
            line, self.buf = self.buf.split(b"\n", 1)
            t, self._line_t = self._line_t, (now if self.buf else None)
            reply, evs = self._line(line.rstrip(b"\r"), t)
            out.append(reply)
            events += evs
        return b"".join(out), events

    def _line(self, line: bytes, t: float) -> tuple[bytes, list[dict]]:
        if self.in_data:
            if line == b".":
                self.in_data = False
                self.messages += 1
                return b"250 2.0.0 Ok: queued\r\n", [{"ev": "data_end", "t": t, "bytes": self.data_bytes}]
            first = self.data_bytes == 0
            self.data_bytes += len(line) + 2
            return b"", [{"ev": "data1", "t": t}] if first else []
        verb = line.split(b" ", 1)[0].upper().decode("ascii", "replace")
        reply = REPLIES.get(verb)
        if reply is None:
            return b"500 5.5.2 unknown command\r\n", [{"ev": "cmd", "verb": "?", "t": t}]
        if verb == "DATA":
            self.in_data, self.data_bytes = True, 0
        self.done = verb == "QUIT"
        return reply, [{"ev": "cmd", "verb": verb, "t": t}]


class Emitter:
    """JSON lines to stdout, one writer at a time."""

    def __init__(self, stream) -> None:
        self.stream, self.lock = stream, threading.Lock()

    def __call__(self, **event) -> None:
        with self.lock:
            self.stream.write(json.dumps(event) + "\n")
            self.stream.flush()


def serve_one(conn: socket.socket, n: int, emit: Emitter, idle_close: float) -> None:
    session = SinkSession()
    try:
        conn.sendall(BANNER)
        while not session.done:
            if idle_close and session.messages:
                conn.settimeout(idle_close)      # a client caching the connection gets 421
            try:
                data = conn.recv(65536)
            except TimeoutError:
                conn.sendall(b"421 4.4.2 sink.isp.example idle timeout, closing\r\n")
                emit(ev="idle_close", conn=n, t=time.monotonic())
                break
            now = time.monotonic()
            if not data:
                break
            reply, events = session.receive(data, now)
            if reply:
                conn.sendall(reply)
            for e in events:
                emit(conn=n, **e)
    except OSError:
        pass
    finally:
        emit(ev="close", conn=n, t=time.monotonic())
        conn.close()


def serve(listen: str, emit: Emitter, idle_close: float = 0.0) -> None:
    host, port = listen.rsplit(":", 1)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        srv.bind((host, int(port)))
    except OSError as e:
        raise SystemExit(f"linkup_sink: cannot listen on {listen}: {e}")
    srv.listen(16)
    emit(ev="ready", t=time.monotonic())
    n = 0
    while True:
        conn, peer = srv.accept()
        now = time.monotonic()
        n += 1
        emit(ev="accept", conn=n, port=peer[1], t=now)
        threading.Thread(target=serve_one, args=(conn, n, emit, idle_close), daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True, help="address:port")
    ap.add_argument("--idle-close", type=float, default=0.0,
                    help="after a message, close a session idle this long with 421 (0: never)")
    args = ap.parse_args(argv)
    serve(args.listen, Emitter(sys.stdout), args.idle_close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
