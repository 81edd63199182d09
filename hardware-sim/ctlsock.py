"""ctlsock.py - the JSON-lines control sockets of modemsim.py and isp.py.

SYNOPSIS
    server = await serve(path, handle)          # handle(request: dict) -> dict
    reply = request(path, "status", key=value)  # blocking client; ValueError on {"ok": false}

DESCRIPTION
    One request per line, one reply per line.  The handler gets the
    request with "cmd" and returns the reply's fields; "ok": true is
    added.  ValueError, TypeError and KeyError from the handler become
    {"ok": false, "error": "..."}; the connection stays open.  Unix
    sockets live in the file system, so they reach across network
    namespaces: tests in the root namespace talk to programs in the
    ISP namespace this way.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Callable


async def serve(path: str, handle: Callable[[dict], dict]) -> asyncio.AbstractServer:
    if os.path.exists(path):
        os.unlink(path)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = {"ok": True, **handle(json.loads(line))}
                except (ValueError, TypeError, KeyError) as e:
                    reply = {"ok": False, "error": str(e)}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    return await asyncio.start_unix_server(client, path=path)


def request(path: str, cmd: str, timeout_s: float = 5.0, **fields) -> dict:
    """One request; raises OSError if nobody listens, ValueError on {"ok": false}."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(path)
        s.sendall(json.dumps({"cmd": cmd, **fields}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf)
    if not reply.get("ok"):
        raise ValueError(reply.get("error", "control request failed"))
    return reply
