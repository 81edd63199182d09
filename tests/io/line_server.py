"""A scripted line server on loopback, for the SMTP client's tests.

``async with line_server(script) as (port, seen):`` greets, hands every line a
client sends to ``script(line) -> (reply bytes, go on?)``, records the lines in
``seen``, and on leaving has waited for every session to end (no task is left
for the event loop to cancel).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

Script = Callable[[bytes], "tuple[bytes, bool]"]


@contextlib.asynccontextmanager
async def line_server(script: Script, *, greeting: bytes = b"220 test ESMTP\r\n"
                      ) -> AsyncIterator[tuple[int, list[bytes]]]:
    seen: list[bytes] = []
    sessions: list[asyncio.Task] = []

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sessions.append(asyncio.current_task())  # type: ignore[arg-type]
        writer.write(greeting)
        go_on = True
        try:
            while go_on and (line := await reader.readline()):
                seen.append(line)
                reply, go_on = script(line)
                writer.write(reply)
                await writer.drain()
        finally:
            writer.close()

    listener = await asyncio.start_server(session, "127.0.0.1", 0)
    async with listener:
        yield listener.sockets[0].getsockname()[1], seen
        await asyncio.gather(*sessions)
