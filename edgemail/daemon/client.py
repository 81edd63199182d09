"""daemon/client.py - the control socket's client: what ``sendmail``, ``mailq``,
``edgemail`` and the ppp hooks use to ask the daemon (the server and the
protocol are daemon/control.py's).

Owns: ``ControlClient`` (one synchronous request, or a streamed reply item
by item), the framing of a request line, and the two failures of a request:
``DaemonUnreachable`` (the socket is missing, refuses, or the connection
breaks before a reply) and ``RequestFailed`` (the daemon answered ``ok:
false``), both ``ControlError``.

Imports only what a command line needs (socket, json, edgemail.errors):
every ``sendmail`` and ``mailq`` call loads this module, none of them the
server's logging, asyncio or the maillog catalogue (issue 15: a call's
start-up is its cost).
"""

from __future__ import annotations

import json
import socket

from edgemail.errors import ControlError

TYPE_CHECKING = False     # typing's would cost every call its import
if TYPE_CHECKING:
    from collections.abc import Iterator


class DaemonUnreachable(ControlError):
    """The daemon is not running or the connection broke before a reply."""


class RequestFailed(ControlError):
    """The daemon answered ``ok: false``; str() is its error text."""


def line(obj: dict) -> bytes:
    """One request or reply line: compact UTF-8 JSON and a newline."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class ControlClient:
    """Synchronous client (the command-line programs are synchronous)."""

    def __init__(self, path: str, *, timeout: float = 120.0) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, op: str, **fields) -> dict:
        """Send one request; returns the reply dict (a streamed reply's items
        are collected under ``"items"``).  Raises DaemonUnreachable or RequestFailed."""
        it = self.stream(op, **fields)
        header = next(it)
        if header.get("stream"):
            header = dict(header)
            header["items"] = list(it)
        return header

    def stream(self, op: str, **fields) -> Iterator[dict]:
        """Yields the reply header, then each streamed item (if any)."""
        with self._connect() as sock:
            try:
                sock.sendall(line({"op": op, **fields}))
                f = sock.makefile("rb", buffering=256 * 1024)
                header = self._read(f)
                if not header.get("ok"):
                    raise RequestFailed(str(header.get("error", "request failed")))
                yield header
                if header.get("stream"):
                    while True:
                        item = self._read(f)
                        if item.get("end"):
                            return
                        yield item
            except OSError as exc:
                raise DaemonUnreachable(f"connection to the daemon at {self.path} broke: {exc}") from None

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except PermissionError:
            sock.close()
            raise DaemonUnreachable(f"no permission to use the control socket {self.path} "
                                    "(its group may use it)") from None
        except OSError as exc:
            sock.close()
            raise DaemonUnreachable(f"daemon not running (control socket {self.path}: "
                                    f"{exc.strerror or exc})") from None
        return sock

    def _read(self, f) -> dict:
        raw = f.readline()
        if not raw.endswith(b"\n"):
            raise DaemonUnreachable(f"the daemon at {self.path} closed the connection before replying")
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ControlError(f"bad reply from the daemon: {exc}") from None
