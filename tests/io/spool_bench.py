"""Spool figures (not a test; speed belongs to benchmarks):

    spool_bench.py commit [N] [PRODUCERS] [SIZE]   durable commits per second
    spool_bench.py recover [N]                     recover() and entries() time

commit: PRODUCERS coroutines share one Store and commit N messages of SIZE
bytes; each commit is durable when it returns.  recover: N small queue files
are written directly (record.encode, no fsync: this measures loading), then a
fresh Store recovers them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time

from edgemail.envelope import Envelope, QueueIdGenerator, Recipient
from edgemail.spool.store import Store
from edgemail.spool import record

ENV = Envelope("bench@example.org", (Recipient("a@example.net"), Recipient("b@example.com")),
               msgid="bench@example.org", client="[192.0.2.1]:1025", helo="lan", arrived=1.0)


async def commit(n: int, producers: int, size: int, where: str) -> None:
    store = Store(where)
    store.recover()
    data = (b"x" * 78 + b"\r\n") * (size // 80)
    lat: list[float] = []

    async def produce() -> None:
        for _ in range(n // producers):
            t = time.perf_counter()
            await store.commit(ENV, data)
            lat.append(time.perf_counter() - t)
    t0 = time.perf_counter()
    await asyncio.gather(*(produce() for _ in range(producers)))
    dt = time.perf_counter() - t0
    store.close()
    lat.sort()
    print(f"commit: {len(lat)} x {len(data)} B, {producers} producers: {len(lat) / dt:.0f} msg/s,"
          f" p50={lat[len(lat) // 2] * 1e3:.2f} ms, p99={lat[int(len(lat) * .99)] * 1e3:.2f} ms")


def recover(n: int, where: str) -> None:
    os.makedirs(os.path.join(where, "queue"))
    qids = QueueIdGenerator(os.getpid())
    data = b"Subject: small\r\n\r\nhello\r\n"
    for _ in range(n):
        qid = qids()
        with open(os.path.join(where, "queue", qid), "wb") as f:
            f.write(record.encode(ENV, data, qid=qid, created=time.time(), priority=1))
    store = Store(where)
    report = store.recover()
    t = time.perf_counter()
    entries = store.entries()
    listed = time.perf_counter() - t
    print(f"recover: {report.loaded} entries in {report.seconds:.2f} s; entries() {len(entries)}"
          f" in {listed * 1e3:.1f} ms")


def main(argv: list[str]) -> None:
    what, args = argv[0], [int(a) for a in argv[1:]]
    where = tempfile.mkdtemp(prefix="spool-bench-", dir="/var/tmp")
    try:
        if what == "commit":
            asyncio.run(commit(*(args + [2000, 4, 10240][len(args):]), where))
        else:
            recover(*(args or [100_000]), where)
    finally:
        shutil.rmtree(where)


if __name__ == "__main__":
    main(sys.argv[1:] or ["commit"])
