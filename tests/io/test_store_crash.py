"""Crash safety of the spool: a child commits, updates and holds messages
and reports each acknowledged step; we SIGKILL it at random instants, run
recovery, and check that every acknowledged step survived, nothing is
half-written and tmp/ is clean.

Run with the commits on threads and on commit helper processes (a helper
outlives its SIGKILLed parent by the batch it is in, and must rename
nothing after it: recovery must then find tmp/ clean and nothing torn).

The kill instants come from a seed, printed at the start (pytest shows it
with a failure): CRASH_SEED=N re-runs the same instants.

SIGKILL kills the process, not the machine: the page cache survives, so this
covers the process-crash states (S2, S3, S5 of store.py); the fsync ordering
that protects against power loss is checked by reading the code's order.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgemail.spool.store import Store

sys.path.insert(0, str(Path(__file__).parent))
from spool_crash_child import message  # noqa: E402
from tests.io.procs import children, wait_gone  # noqa: E402

CHILD = Path(__file__).parent / "spool_crash_child.py"
ROOT = Path(__file__).resolve().parents[2]
KILLS = 20


def run_and_kill(spool: Path, delay: float, helpers: int) -> list[list[str]]:
    proc = subprocess.Popen([sys.executable, str(CHILD), str(spool)], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "CRASH_HELPERS": str(helpers)},
                            text=True)
    helpers: list[int] = []
    try:
        assert proc.stdout.readline() == "ready\n", "child did not start"
        time.sleep(delay)
        helpers = children(proc.pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        out = proc.stdout.read()
        proc.wait()
    wait_gone(helpers, 5.0, "commit helper")   # it finishes the batch it is in, renames nothing, exits
    return [line.split() for line in out.splitlines(keepends=True) if line.endswith("\n")]


@pytest.mark.parametrize("helpers", [0, 2], ids=["threads", "helpers"])
def test_sigkill_at_random_instants_loses_nothing_acknowledged(tmp_path, helpers):
    seed = int(os.environ.get("CRASH_SEED") or time.time_ns())
    print(f"CRASH_SEED={seed}")
    rng = random.Random(seed)
    spool = tmp_path / "spool"
    acked: dict[str, str] = {}        # qid -> the seed its data was made from
    attempts: dict[str, int] = {}
    held: set[str] = set()
    for kill in range(KILLS):
        for step in run_and_kill(spool, rng.uniform(0.0, 0.25), helpers):
            if step[0] == "C":
                acked[step[1]] = step[2]
            elif step[0] == "U":
                attempts[step[1]] = int(step[2])
            elif step[0] == "H":
                held.add(step[1])
        store = Store(str(spool))
        report = store.recover()
        where = f"CRASH_SEED={seed}, kill {kill}"
        assert report.corrupt == (), f"{where}: half-written files: {report.corrupt}"
        assert os.listdir(spool / "tmp") == [] and os.listdir(spool / "corrupt") == [], where
        index = {e.qid: e for e in store.entries()}
        lost = sorted(set(acked) - set(index))
        assert not lost, f"{where}: acknowledged but lost: {lost}"
        for qid, made_from in acked.items():
            assert store.read_data(qid) == message(made_from), f"{where}: {qid} damaged"
            assert index[qid].attempts >= attempts.get(qid, 0), f"{where}: {qid}: update lost"
            assert index[qid].held or qid not in held, f"{where}: {qid}: hold lost"
        store.close()
    assert acked, f"CRASH_SEED={seed}: the child acknowledged nothing in any run"   # a kill may come before the first ack
