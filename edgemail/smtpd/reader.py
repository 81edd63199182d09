"""smtpd/reader.py - a session's input: bytes in, command lines and DATA out,
replies in the commands' order.

Owns: the input buffer, cutting it into command lines (as aiosmtpd's reader
did: a line ends at LF; CR LF stripped; the verb must be ASCII; over
``command_size_limits`` -> ``500 Command line too long``), feeding DATA to
the session's collector, and running each command: inline when it answers
at once (MAIL, RCPT, DATA, RSET, NOOP: the session's ``inline`` table), as
a task when it has to wait (the commit after DATA, ETRN, EHLO, QUIT, HELP
and whatever aiosmtpd's command table holds).

Why not aiosmtpd's stream loop: it cost a future, a task step and a reader
wake-up per line, and asyncio's ``recv(256 KiB)`` per read an mmap, page
faults and an munmap; measured, about a third of the event loop's time per
message (tests/bench/README.md).  Reads land in the listener's buffer
(BufferedProtocol) and most commands are answered before ``data_received``
returns.

Invariants:
  * One command at a time: while a task runs, input waits in the buffer, so
    replies keep the commands' order (RFC 2920 PIPELINING).
  * Held input is bounded: past ``held_input_limit`` reading pauses until the
    waiting command has answered; a line longer than ``line_length_limit``
    is dropped as it arrives and answered ``500`` at its end.
  * While the client does not read our replies (writing paused), no command
    is taken.
  * End of input: what the client sent is answered, then the connection is
    closed (aiosmtpd cancelled the session at once).

The session supplies: ``_reply(str)``, ``_internal_error(exc) -> str``,
``_data_end()``, ``_collector`` (a DataCollector while in DATA),
``unknown_command``, aiosmtpd's ``_smtp_methods``, ``session``,
``command_size_limit(s)``, ``listener.read_buffer`` and ``_greeted``.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Callable

from edgemail.smtpd.data import DataCollector


class CommandReader:
    """Mixin for the SMTP session (before aiosmtpd's SMTP in the bases)."""

    #: the longest command line read before "500 Command line too long"
    #: (commands stay limited by command_size_limits)
    line_length_limit = 64 * 1024
    #: input held while a command waits (a commit, ETRN) before reading pauses
    held_input_limit = 256 * 1024

    def _init_reader(self, inline: dict[str, Callable[[str | None], str | None]]) -> None:
        #: commands answered at once: verb -> handler(arg) -> reply or None
        self._inline = inline
        #: what the client sent that no command has taken yet
        self._input = bytearray()
        self._greeted = False
        self._eof = False
        self._skipping = False           # inside a command line over line_length_limit
        self._reading_paused = False
        self._collector: DataCollector | None = None
        #: the command still at work (a coroutine); input waits until it has answered
        self._task: asyncio.Task | None = None

    def data_received(self, data: bytes) -> None:
        """Our reader (not aiosmtpd's stream): commands are taken from the
        buffer here, and most are answered before this returns."""
        self._last_read = self.loop.time()
        self._input += data
        if self._task is None and self._greeted:
            self._take_input()
        if len(self._input) > self.held_input_limit and not self._reading_paused \
                and self.transport is not None and not self.transport.is_closing():
            self._reading_paused = True
            self.transport.pause_reading()

    def get_buffer(self, sizehint: int) -> memoryview:
        """Reads land in the listener's buffer (BufferedProtocol): a plain
        ``recv(256 KiB)`` per read cost an mmap, page faults and an munmap."""
        return self.listener.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.listener.read_buffer[:nbytes])

    def eof_received(self) -> bool:
        """The client has sent all it will: answer what it sent, then close."""
        self._eof = True
        if self._task is None and self._greeted:
            self._take_input()
        return True

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._task is None and self._greeted and self.transport is not None:
            self._take_input()

    def _take_input(self) -> None:
        """Run the commands waiting in the buffer, in order, until one has to
        wait (then its task calls here again) or the buffer holds no whole
        line.  Stops while the client does not read our replies."""
        buf = self._input
        while self._task is None and not self._paused:
            transport = self.transport
            if transport is None or transport.is_closing():
                return
            if self._collector is not None:
                if not buf or not self._collector.feed(bytes(buf)):
                    buf.clear()
                    break
                buf[:] = self._collector.leftover
                self._data_end()
                continue
            end = buf.find(b"\n")
            if self._skipping:
                if end < 0:
                    buf.clear()
                    break
                del buf[:end + 1]
                self._skipping = False
                self._reply("500 Command line too long")
                continue
            if end < 0:
                if len(buf) > self.line_length_limit:
                    buf.clear()
                    self._skipping = True
                break
            line = bytes(buf[:end + 1])
            del buf[:end + 1]
            self._command(line)
        if self._reading_paused and len(buf) <= self.held_input_limit and not self._paused:
            self._reading_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        if self._eof and self._task is None and self.transport is not None:
            self.transport.close()

    def _command(self, line: bytes) -> None:
        """One command line, as aiosmtpd's reader treats it; MAIL, RCPT, DATA,
        RSET and NOOP answer here, the rest run as a task."""
        line = line.rstrip(b"\r\n")
        if not line:
            self._reply("500 Error: bad syntax")
            return
        command_bytes, _, arg_bytes = line.partition(b" ")
        try:
            command = command_bytes.upper().decode("ascii")
        except UnicodeDecodeError:
            self._reply("500 Error: bad syntax")
            return
        arg = str(arg_bytes.strip(), "utf-8", "surrogateescape") if arg_bytes else None
        limit = (self.command_size_limits.get(command, self.command_size_limit)
                 if self.session.extended_smtp else self.command_size_limit)
        if len(line) > limit:
            self._reply("500 Command line too long")
            return
        self.verb, self.arg = command, (None if command == "AUTH" else arg)  # never log AUTH data
        inline = self._inline.get(command)
        if inline is not None:
            try:
                reply = inline(arg)
            except Exception as exc:
                reply = self._internal_error(exc)
            if reply:
                self._reply(reply)
            return
        method = self._smtp_methods.get(command) or functools.partial(self.unknown_command, command)
        self._start(method(arg))

    def _start(self, coro) -> None:
        """Run a command that has to wait; input waits for its reply."""
        self._task = self.loop.create_task(self._run(coro))

    async def _run(self, coro) -> None:
        try:
            await coro
        except (ConnectionResetError, BrokenPipeError):
            if self.transport is not None:
                self.transport.close()
            return
        except Exception as exc:
            self._reply(self._internal_error(exc))
        self._task = None
        self._take_input()
