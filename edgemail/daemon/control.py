"""daemon/control.py - the daemon's control socket: JSON lines over a unix socket.

Owns: the socket file (removed on close), who may call which op, the
framing.  The client local programs use (``sendmail``, ``mailq``,
``edgemail``, the ppp hooks) is daemon/client.py, re-exported here.  It
never interprets an op: modules register handlers, and name the
``public`` ones any local user may call (the socket is then mode 0666,
else 0660); every other op needs root, the daemon's
user or its group (SO_PEERCRED, checked per request).

Protocol: one request per line, one reply per line (UTF-8 JSON objects)::

    {"op": "queue_show", "qid": "..."}   ->  {"ok": true, ...}
                                          or {"ok": false, "error": "what went wrong"}

A handler may return a ``Stream`` instead of a dict (``queue_list`` does, so
``mailq`` of 100,000 entries starts printing at once and neither side holds
one giant line): the reply is then a header line ``{"ok": true, "stream":
true, ...}``, one line per item, and ``{"end": true, "count": N}``.

Limits: a request line longer than ``max_request`` bytes is refused and the
connection closed; a connection idle longer than ``timeout``
(Timeout.control) is closed.  Bad JSON, a missing or unknown op, and a
handler's ``ValueError``/``KeyError``/``EdgemailError`` get ``ok: false``
replies naming the problem; any other handler exception is logged once and
answered ``internal error``; the server keeps running.

Failures on the client side: ``DaemonUnreachable`` (a ``ControlError``) when
the socket is missing, refuses, or the connection breaks before a reply;
``RequestFailed`` (also a ``ControlError``) when the daemon answered
``ok: false``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgemail import maillog
from edgemail.daemon.client import ControlClient, DaemonUnreachable, RequestFailed, line as _line
from edgemail.errors import ControlError, EdgemailError

if TYPE_CHECKING:
    import asyncio

__all__ = ["ControlServer", "Stream", "ControlClient", "DaemonUnreachable", "RequestFailed", "is_admin"]

log = logging.getLogger("edgemail.control")

#: default request limit: a submitted message travels base64-encoded in one line
MAX_REQUEST = 64 * 1024 * 1024

Handler = Callable[[dict], Awaitable["dict | Stream"]]


@dataclass
class Stream:
    """A reply made of a header and many items (one JSON line each)."""

    items: Iterable[dict]
    header: dict = field(default_factory=dict)


class ControlServer:
    """Serves `handlers` (op name -> async callable(request) -> dict | Stream) on `path`."""

    def __init__(self, path: str, handlers: dict[str, Handler], *,
                 max_request: int = MAX_REQUEST, timeout: float = 120.0,
                 public: Iterable[str] = ()) -> None:
        self.path = path
        self.handlers = dict(handlers)
        self.max_request = max_request
        self.timeout = timeout
        #: ops any local user may call; the others need an administrator (is_admin)
        self.public = frozenset(public)
        self.mode = 0o666 if self.public else 0o660
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind the socket.  Raises ControlError if another daemon answers on it."""
        import asyncio  # here, not at the top: the clients (mailq) need no event loop
        _clear_stale(self.path)
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        old = os.umask(0o777 & ~self.mode)   # never visible with wider permissions
        try:
            self._server = await asyncio.start_unix_server(self._serve, self.path, limit=self.max_request)
        finally:
            os.umask(old)
        os.chmod(self.path, self.mode)

    async def close(self) -> None:
        import asyncio
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(reader.readline(), self.timeout)
                except (asyncio.LimitOverrunError, ValueError):
                    log.warning(maillog.bad_request(f"request longer than {self.max_request} bytes"))
                    writer.write(_line({"ok": False, "error": f"request too long (limit {self.max_request} bytes)"}))
                    await writer.drain()
                    return
                if not raw:
                    return
                await self._answer(raw, writer, _peer(writer))
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, raw: bytes, writer: asyncio.StreamWriter, peer: dict) -> None:
        """Write the reply; a client that went away ends it (ConnectionError):
        nothing more is written to a closed transport."""
        reply = await self.dispatch(raw, peer)
        if isinstance(reply, Stream):
            _write(writer, {"ok": True, "stream": True, **reply.header})
            items = iter(reply.items)
            try:
                count = await _write_items(writer, items)
            finally:                  # a generator left early is closed now, not when collected
                getattr(items, "close", lambda: None)()
            _write(writer, {"end": True, "count": count})
        else:
            _write(writer, reply)
        await writer.drain()

    async def dispatch(self, raw: bytes, peer: dict | None = None) -> dict | Stream:
        """One request line -> its reply (never raises).  The handler sees the
        request with ``_peer`` = the client's kernel credentials ({pid, uid,
        gid}, SO_PEERCRED), replacing anything the client put there."""
        try:
            request = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._refuse(f"bad JSON: {exc}")
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return self._refuse("a request is a JSON object with a string \"op\"")
        request["_peer"] = peer or {}
        op = request["op"]
        handler = self.handlers.get(op)
        if handler is None:
            return self._refuse(f"unknown op {op!r}, expected one of {', '.join(sorted(self.handlers))}")
        if peer is not None and op not in self.public and not is_admin(peer):
            return self._refuse(f"{op}: permission denied (uid {peer.get('uid', '?')}): only root, "
                                "the daemon's user and its group may do this")
        try:
            reply = await handler(request)
        except (ValueError, KeyError, TypeError, EdgemailError) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            return {"ok": False, "error": f"{op}: {text}"}
        except Exception:
            log.exception(maillog.control_internal_error(op))
            return {"ok": False, "error": f"{op}: internal error (see the daemon's log)"}
        if isinstance(reply, Stream):
            return reply
        return {"ok": True, **reply}

    def _refuse(self, reason: str) -> dict:
        log.warning(maillog.bad_request(reason))
        return {"ok": False, "error": reason}


async def _write_items(writer: asyncio.StreamWriter, items: Iterator[dict]) -> int:
    """A stream's items, one line each, draining every 1024; how many."""
    count = 0
    for item in items:
        _write(writer, item)
        count += 1
        if count % 1024 == 0:
            await writer.drain()
    return count


def _write(writer: asyncio.StreamWriter, obj: dict) -> None:
    """One reply line, unless the client is gone (the transport is closing
    after a failed send: asyncio would warn about every further write)."""
    if writer.is_closing():
        raise ConnectionResetError("the control client went away")
    writer.write(_line(obj))


def is_admin(peer: dict) -> bool:
    """May this client (SO_PEERCRED) use every op?  root, the daemon's own
    user, or a member of the daemon's group (primary, or supplementary as
    /proc says for the client's pid).  No credentials: no."""
    uid, gid, pid = peer.get("uid"), peer.get("gid"), peer.get("pid")
    if uid is None:
        return False
    if uid in (0, os.geteuid()) or gid == os.getegid():
        return True
    if not isinstance(pid, int):
        return False
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return str(os.getegid()) in line.split()[1:]
    except OSError:
        pass
    return False


def _peer(writer) -> dict:
    """SO_PEERCRED of a unix-socket client: who is asking (not who it claims to be)."""
    sock = writer.get_extra_info("socket")
    try:
        pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                            struct.calcsize("3i")))
    except (OSError, AttributeError):
        return {}
    return {"pid": pid, "uid": uid, "gid": gid}


def _clear_stale(path: str) -> None:
    """Remove a socket file left by a dead daemon; refuse to steal a live one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlError(f"control socket {path} exists and is not a socket; not touching it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise ControlError(f"another daemon is answering on {path}")
