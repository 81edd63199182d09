"""Child for test_store_crash.py: commit messages to a spool forever and
report every acknowledged step on stdout, one line each, flushed:

    C <qid> <seed>     commit() returned qid for the data made from seed
    U <qid> <attempts> update() returned
    H <qid>            hold() returned

The parent kills this process with SIGKILL at a random instant.
usage: [CRASH_HELPERS=N] spool_crash_child.py SPOOL_DIR   (N commit helper processes; 0: threads)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys

from edgemail.envelope import Attempt, Envelope, RcptStatus, Recipient
from edgemail.spool.store import Store

ENV = Envelope("crash@example.org", (Recipient("a@example.net"), Recipient("b@example.com")))


def message(seed: str) -> bytes:
    """Deterministic message data of 1-20 KB for SEED."""
    digest = hashlib.sha256(seed.encode()).digest()
    size = 1000 + int.from_bytes(digest[:2], "big") % 19000
    body = (digest.hex().encode() + b"\r\n") * (size // 66 + 1)
    return f"Subject: {seed}\r\n\r\n".encode() + body[:size]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def producer(store: Store, worker: int) -> None:
    n = 0
    while True:
        n += 1
        seed = f"{os.getpid()}-{worker}-{n}"
        qid = await store.commit(ENV, message(seed))
        say(f"C {qid} {seed}")
        if n % 3 == 0:
            e = await store.update(qid, {"a@example.net": Attempt(
                RcptStatus.DEFERRED, "4.4.2", "link lost", "none", 1.0)}, next_attempt=2.0)
            say(f"U {qid} {e.attempts}")
        if n % 5 == 0:
            await store.hold(qid)
            say(f"H {qid}")


async def main(directory: str) -> None:
    store = Store(directory, commit_helpers=int(os.environ.get("CRASH_HELPERS", "0")))
    store.recover()
    say("ready")
    await asyncio.gather(*(producer(store, w) for w in range(4)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
