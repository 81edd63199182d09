"""Issue 16 §11: clock steps never bounce or stall the queue, against the
daemon (subprocess) under libfaketime (Debian ``faketime``; wall clock only:
FAKETIME_DONT_FAKE_MONOTONIC).  Mail for a LAN relay whose port refuses is
deferred; the wall clock is stepped a year forward or back; the relay comes
up; the message must go out at its retry time (monotonic), with no 4.4.7
return and no manual ``sendmail -q``.  Before the fix, +1 year returned
every message within seconds, never tried, and -1 year left the retry
asleep for a year."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest

from daemon_harness import cli, free_port, start
from test_delivery import UpstreamProcess, maildir_new, wait_until

pytestmark = pytest.mark.timeout(120)

LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))


def faketime_env(rc: Path) -> dict:
    """The daemon's wall clock is whatever offset RC holds ("+0", "+365d"), read on every call."""
    rc.write_text("+0\n")
    return {"LD_PRELOAD": LIBFAKETIME[0], "FAKETIME_TIMESTAMP_FILE": str(rc),
            "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def queued(daemon) -> list[dict]:
    return json.loads(cli(daemon, "edgemail", "queue", "list", "--json").stdout)


@pytest.mark.skipif(not LIBFAKETIME, reason="libfaketime not installed (Debian package faketime; make test installs it)")
@pytest.mark.parametrize("offset,word", [("+365d", "+31536000s"), ("-365d", "-31536000s")],
                         ids=["plus-a-year", "minus-a-year"])
def test_a_step_of_a_year_neither_returns_nor_stalls_deferred_mail(tmp_path, offset, word):
    port = free_port()
    rc = tmp_path / "faketimerc"
    daemon = start(tmp_path, {"routes": {"lan.test": f"relay:[127.0.0.1]:{port}"},
                              "retry": {"min_backoff": "2s", "max_backoff": "4s"}},
                   env=faketime_env(rc))
    up = None
    try:
        for n in range(3):
            mail = f"From: a@edge.example\nTo: x{n}@lan.test\nSubject: {n}\n\nbody\n".encode()
            sent = cli(daemon, "sendmail", "-t", "-f", "a@edge.example", "-N", "failure,delay", input=mail)
            assert sent.returncode == 0, sent.stderr
        wait_until(lambda: len(queued(daemon)) == 3 and all(
            r["status"] == "deferred" for e in queued(daemon) for r in e["recipients"]))
        rc.write_text(f"{offset}\n")                     # NTP steps the daemon's wall clock
        up = UpstreamProcess(port)                       # the LAN relay is back
        for n in range(3):
            up.wait_for(f"x{n}@lan.test", timeout=60)    # on time, without `sendmail -q`
        wait_until(lambda: queued(daemon) == [])
    finally:
        daemon.stop()
        if up is not None:
            up.close()
    log = daemon.log.read_text()
    assert f"runner: wall clock stepped, step={word}, rebased=" in log, log
    assert "4.4.7" not in log and "dsn=failure" not in log and "dsn=delay" not in log, log
    assert maildir_new(tmp_path, "a") == [], "no return, no warning to the sender"
