"""pacer — a TCP proxy that behaves like a 56 kbit/s dial-up line with 100 ms RTT.

Usage: pacer.py --listen HOST:PORT --upstream HOST:PORT [--rate 56000] [--rtt 0.1]

Owns: one listening socket; per accepted connection, one upstream
connection and two directions.  Each direction is a `Line`: a byte is
released `rtt / 2` after the line finished serialising it at `rate` bits/s,
and bytes queue behind each other as on a real serial line (the sans-IO
core `Line.schedule` computes release times from `now`; the asyncio driver
only sleeps and writes).  All connections share the one line.  Counts
bytes each way, connections, and "turns" (changes of direction of one
connection's data flow, summed: two turns are one round trip the protocol
did not hide), for the drain benchmark's physical limit.

Never does: look inside the data, resolve names, or buffer without bound
(the reader waits while more than `window` bytes are in flight, as TCP's
window would make it).

Failures: a connection whose upstream refuses is closed at once; errors of
one connection never stop the proxy.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass


@dataclass
class Line:
    """One direction of the line: serialisation at `rate` bit/s + fixed delay."""
    rate_bps: float
    delay_s: float
    busy_until: float = 0.0
    bytes: int = 0

    def schedule(self, now: float, nbytes: int) -> float:
        """When the last of `nbytes` handed over at `now` reaches the far end."""
        start = max(now, self.busy_until)
        self.busy_until = start + nbytes * 8 / self.rate_bps
        self.bytes += nbytes
        return self.busy_until + self.delay_s


@dataclass
class Stats:
    connections: int = 0
    up_bytes: int = 0            # client -> upstream
    down_bytes: int = 0          # upstream -> client
    turns: int = 0               # changes of direction, summed over connections

    def note(self, conn: dict, direction: str, n: int) -> None:
        if direction == "up":
            self.up_bytes += n
        else:
            self.down_bytes += n
        if direction != conn.get("last"):
            self.turns += 1
            conn["last"] = direction

    def as_dict(self) -> dict:
        return {"connections": self.connections, "up_bytes": self.up_bytes,
                "down_bytes": self.down_bytes, "turns": self.turns}


async def pump(reader, writer, line: Line, stats: Stats, conn: dict, direction: str,
               window: int = 8192, chunk: int = 256) -> None:
    pending: asyncio.Queue = asyncio.Queue()
    in_flight = asyncio.Semaphore(max(1, window // chunk))

    async def deliver() -> None:
        while True:
            item = await pending.get()
            if item is None:
                break
            due, data = item
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
            in_flight.release()
        if writer.can_write_eof():
            writer.write_eof()

    sender = asyncio.ensure_future(deliver())
    try:
        while data := await reader.read(chunk):
            await in_flight.acquire()
            stats.note(conn, direction, len(data))
            await pending.put((line.schedule(time.monotonic(), len(data)), data))
    except (ConnectionError, OSError):
        pass
    finally:
        await pending.put(None)
        try:
            await sender
        except (ConnectionError, OSError):
            pass


async def serve(listen: tuple[str, int], upstream: tuple[str, int], rate: float, rtt: float,
                stats: Stats) -> asyncio.AbstractServer:
    up, down = Line(rate, rtt / 2), Line(rate, rtt / 2)     # one line, shared by all connections

    async def handle(creader, cwriter) -> None:
        stats.connections += 1
        try:
            ureader, uwriter = await asyncio.open_connection(*upstream)
        except OSError:
            cwriter.close()
            return
        conn: dict = {}
        await asyncio.gather(pump(creader, uwriter, up, stats, conn, "up"),
                             pump(ureader, cwriter, down, stats, conn, "down"),
                             return_exceptions=True)
        for w in (uwriter, cwriter):
            w.close()

    return await asyncio.start_server(handle, *listen)


def hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host, int(port)


async def main_async(args) -> None:
    stats = Stats()
    server = await serve(hostport(args.listen), hostport(args.upstream), args.rate, args.rtt, stats)
    if args.stats:
        async def dump() -> None:
            while True:
                await asyncio.sleep(0.5)
                with open(args.stats, "w") as f:
                    json.dump(stats.as_dict(), f)
        asyncio.ensure_future(dump())
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--rate", type=float, default=56000.0, help="bit/s each way")
    ap.add_argument("--rtt", type=float, default=0.1, help="round trip, seconds")
    ap.add_argument("--stats", help="file to write byte counts to every 0.5 s")
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
