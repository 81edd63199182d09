"""cli/bsrelay.py - ``sendmail -bs``: SMTP on stdin/stdout, relayed to the
daemon's SMTP listener, with the local trace line sendmail's MSP adds.

Owns: ``smtp_on_stdio(cfg, user)`` (the driver: stdin to the listener,
the listener to stdout) and ``TraceInserter`` (its sans-IO core: which
bytes go on, and where the ``Received: (from USER@localhost) by HOST
(edgemail); DATE`` line goes).  The listener adds its own ``Received:
from HELO ([127.0.0.1])`` above it, so the message carries both hops, as
sendmail's MSP and MTA write them for ``sendmail -bs``.

How the core finds the message: in command mode every client line is a
command and gets exactly one reply (RFC 5321; PIPELINING keeps their
order, RFC 2920), after the server's greeting.  After a ``DATA`` line the
client's further bytes are held until the reply to that DATA is seen: a
354 puts the trace line, then the held bytes, on the wire (data mode,
until the line "."); any other reply releases them as they were (the
server reads them as commands, as it would without us).  ``BDAT`` or
``STARTTLS`` (neither is offered by our listener) turn the core into a
plain pipe for the rest of the session.  The server's bytes always reach
stdout unchanged.

Header addresses: a message's header is held until its end and its
unqualified addresses completed with the first local domain, as for
``sendmail`` and ``-t`` (cli/headers.py ``qualify_header``: local submission
is trusted); a header with nothing to complete goes on byte for byte.

Never: changes another byte the client sent, or reorders them; besides
the header's addresses it only inserts one header line at the start of a
message's data.

Which listener: ``choose_listener``: one on loopback, else one bound to
every address (reached on 127.0.0.1), else the first, leaving out ODMR
and submission listeners while another takes mail.

Fails: no daemon (75, as ``base.ask``), a listener it cannot reach (75);
the server hanging up ends the relay (exit 0: the dialogue said what
happened).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from edgemail.cli.base import EX_OK, EX_TEMPFAIL, ask, err
from edgemail.cli.message import HEADER_NAME, split_header

if TYPE_CHECKING:
    from edgemail.config.model import Listener

#: how long to wait for the server's last replies after stdin ends
BS_DRAIN_S = 5.0


class TraceInserter:
    """Client and server bytes in, the bytes to send to the server out (see the module docstring)."""

    def __init__(self, trace: Callable[[], bytes], domain: str | None = None) -> None:
        self.trace = trace
        #: completes unqualified header addresses (headers.qualify_header); None: kept
        self.domain = domain
        #: the message's header lines so far (None: not in a header)
        self.header: bytes | None = None
        self.mode = "command"           # command | wait | data | raw
        self.commands = 0               # client command lines sent
        self.replies = 0                # complete server replies seen (the greeting is the first)
        self.data_reply = 0             # the reply that answers the DATA in flight
        self.held = b""                 # client bytes waiting for the DATA reply
        self.line = b""                 # the client's line so far
        self.server_line = b""

    def from_client(self, chunk: bytes) -> bytes:
        """CHUNK of stdin -> the bytes to send to the server now."""
        out = []
        for piece in chunk.splitlines(keepends=True):
            if self.mode == "wait":
                self.held += piece
            elif self.mode == "raw":
                out.append(piece)
            elif self.header is not None:
                out.append(self._header_piece(piece))
            else:
                out.append(piece)
                self._client_line(piece)
        return b"".join(out)

    def _header_piece(self, piece: bytes) -> bytes:
        """A piece of the message's header: held until the header ends, then
        the header (its addresses qualified) and the line that ended it."""
        assert self.header is not None
        self.header += piece
        if not piece.endswith(b"\n"):
            return b""
        lines = self.header.splitlines(keepends=True)
        last = lines[-1].rstrip(b"\r\n")
        if last[:1] in (b" ", b"\t") or HEADER_NAME.match(last):
            return b""
        self.header = None
        self._client_line(lines[-1])
        return self._qualified(lines[:-1]) + lines[-1]

    def _qualified(self, lines: list[bytes]) -> bytes:
        from edgemail.cli.headers import qualify_header
        fields, _ = split_header([line.rstrip(b"\r\n") for line in lines])
        done = [qualify_header(f, self.domain or "") for f in fields]
        if done == fields:
            return b"".join(lines)          # nothing to complete: the client's bytes
        return b"".join(f + b"\r\n" for f in done)

    def _client_line(self, piece: bytes) -> None:
        self.line += piece
        if not self.line.endswith(b"\n"):
            return
        line, self.line = self.line.rstrip(b"\r\n"), b""
        if self.mode == "data":
            if line == b".":
                self.mode, self.commands = "command", self.commands + 1
            return
        self.commands += 1
        verb = line.strip().upper()
        if verb == b"DATA":
            self.mode, self.data_reply = "wait", self.commands + 1
        elif verb.startswith((b"BDAT ", b"STARTTLS")):
            self.mode = "raw"

    def from_server(self, chunk: bytes) -> bytes:
        """CHUNK from the server (it goes to stdout as it is) -> client bytes released by it."""
        release = b""
        for piece in chunk.splitlines(keepends=True):
            self.server_line += piece
            if not self.server_line.endswith(b"\n"):
                continue
            line, self.server_line = self.server_line.rstrip(b"\r\n"), b""
            if len(line) > 3 and line[3:4] == b"-":
                continue                 # a multi-line reply goes on
            self.replies += 1
            if self.mode == "wait" and self.replies == self.data_reply:
                release += self._answered(line.startswith(b"354"))
        return release

    def _answered(self, go_ahead: bool) -> bytes:
        held, self.held = self.held, b""
        if go_ahead:
            self.mode, self.header = "data", (b"" if self.domain else None)
            return self.trace() + self.from_client(held)
        self.mode = "command"
        return self.from_client(held)


# ---------------------------------------------------------------- the driver

def smtp_on_stdio(cfg, user: str) -> int:
    """``sendmail -bs``: relay stdin/stdout to the daemon's SMTP listener."""
    reply, code = ask(cfg, "sendmail", "status")
    if reply is None:
        return code
    try:
        conn = _connect_listener(cfg, reply)
    except (IndexError, KeyError, ValueError, OSError) as exc:
        err("sendmail", f"-bs: cannot reach the daemon's SMTP listener: {exc}")
        return EX_TEMPFAIL
    from edgemail.daemon.ops import received_local
    core = TraceInserter(lambda: received_local(user, cfg.hostname, time.time()), cfg.local_domains[0])
    _relay(conn, core)
    return EX_OK


def _connect_listener(cfg, status: dict) -> socket.socket:
    """A connected socket to the listener ``choose_listener`` picks (its bound port from STATUS)."""
    ports = [int(text.rpartition(":")[2]) for text in status["listeners"]]
    lst, port = choose_listener(cfg.listeners, ports)
    address = _WILDCARD.get(lst.address, lst.address)
    return socket.create_connection((address, port), timeout=cfg.Timeout.command)


_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def choose_listener(listeners: Sequence[Listener], ports: Sequence[int]) -> tuple[Listener, int]:
    """Where ``-bs`` talks SMTP: a listener on loopback, else one on every
    address (reached on loopback), else the first; of those that take mail
    as a local client sends it (not ODMR, not submission's AUTH first)."""
    pairs = list(zip(listeners, ports))
    takes = [(lst, port) for lst, port in pairs if not lst.odmr and not lst.submission] or pairs

    def rank(pair: tuple[Listener, int]) -> int:
        address = pair[0].address
        if address in _WILDCARD:
            return 1
        try:
            return 0 if ipaddress.ip_address(address).is_loopback else 2
        except ValueError:
            return 2
    return min(takes, key=rank)


def _relay(conn: socket.socket, core: TraceInserter) -> None:
    """stdin to CONN through CORE, CONN to stdout, until the server hangs up."""
    conn.settimeout(None)
    closed, lock = threading.Event(), threading.Lock()

    def send(produce: Callable[[], bytes]) -> None:
        with lock:                      # the core's order is the wire's order
            data = produce()
            if data:
                conn.sendall(data)

    def upstream() -> None:
        fd = sys.stdin.fileno()
        try:
            while chunk := os.read(fd, 65536):
                send(lambda: core.from_client(chunk))
        except OSError:
            return                      # the server hung up: the downstream loop ends too
        # stdin ended: give the server time to answer what was pipelined (a
        # half-close can make a server drop the session), then hang up.
        if not closed.wait(BS_DRAIN_S):
            with lock:
                conn.shutdown(socket.SHUT_RDWR)

    threading.Thread(target=upstream, daemon=True).start()
    out = sys.stdout.buffer
    try:
        while chunk := conn.recv(65536):
            out.write(chunk)
            out.flush()
            send(lambda: core.from_server(chunk))
    finally:
        closed.set()
        conn.close()
