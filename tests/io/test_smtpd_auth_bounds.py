"""QA-5, what failed AUTH may cost the daemon, on real sockets: password
checks run one at a time (each scrypt check holds 16 MiB), and a client over
its failure limit is refused before any hash is computed, however many
sessions it opens at once.  Structural assertions only (no RSS, no timing):
the RSS figures are in the closing note (tools: /proc/PID/status)."""

from __future__ import annotations

import asyncio
import base64
import threading
import time

import pytest

from edgemail.errors import ConfigError
from edgemail.smtpd.credentials import MAXMEM, Credentials, check_hash, hash_password
from tests.io.smtpd_helpers import Raw, make_store, running

pytestmark = pytest.mark.timeout(60)
WRONG = base64.b64encode(b"\0alice\0guess").decode()


class Counting:
    """The real credentials, with a count of checks running at once (a check made slow)."""

    def __init__(self, real: Credentials) -> None:
        self.real, self.lock = real, threading.Lock()
        self.running = self.most = self.calls = 0

    def verify(self, user: str, password: str) -> bool:
        with self.lock:
            self.running += 1
            self.calls += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.05)                      # long enough for the others to pile up
            return self.real.verify(user, password)
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def auth_config(example_config, tmp_path):
    passwd = tmp_path / "smtpd.passwd"
    passwd.write_text(f"alice:{hash_password('s3cret', log2n=4)}\n")

    def make(**smtpd):
        return example_config(
            listen=[{"name": "t", "address": "127.0.0.1", "port": 0, "greet_pause": 0, "auth_plaintext": True}],
            smtpd={"auth_file": str(passwd), **smtpd})
    return make


async def failed_auth(port: int) -> str:
    c = await Raw.connect(port)
    await c.cmd("EHLO c")
    reply = await c.cmd(f"AUTH PLAIN {WRONG}")
    if reply.startswith("535"):
        reply += "\n" + await c.cmd("NOOP")   # a 421 said after the 535 comes first
    await c.close()
    return reply


async def test_password_checks_run_one_at_a_time(auth_config):
    # eight at once from one address: over the default per-client pending cap (4), raised here
    cfg = auth_config(max_auth_failures=100, auth_max_pending_per_client=8)
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        counting = Counting(smtpd.auth.credentials)
        smtpd.auth.credentials = counting
        replies = await asyncio.gather(*(failed_auth(smtpd.port) for _ in range(8)))
    assert all(r.startswith("535 5.7.8") for r in replies), replies
    assert counting.calls == 8 and counting.most == 1


async def test_a_client_over_its_failure_limit_costs_no_hash(auth_config):
    """Eight sessions at once from one address, max_auth_failures = 3: three checks are made, the
    other five are refused (535, then 421) without computing anything."""
    cfg = auth_config(max_auth_failures=3, auth_max_pending_per_client=8)     # 8 at once: see above
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        counting = Counting(smtpd.auth.credentials)
        smtpd.auth.credentials = counting
        replies = await asyncio.gather(*(failed_auth(smtpd.port) for _ in range(8)))
        later = await failed_auth(smtpd.port)
    assert counting.calls == 3, counting.calls
    assert all(r.startswith("535 5.7.8") for r in replies), replies
    assert sum("421 4.7.0" in r for r in replies) >= 6, replies   # the third failure's session too
    assert later.startswith("421 4.7.0"), "the next AUTH is refused at once"


def test_a_hash_that_would_need_more_than_maxmem_is_refused():
    costly = hash_password("x", log2n=4).replace("ln=4,r=8", "ln=17,r=8")     # 128 MiB per check
    with pytest.raises(ValueError, match=f"over the {MAXMEM >> 20} MiB limit"):
        check_hash(costly)
    assert check_hash(hash_password("x", log2n=4))[0] == 4


def test_a_credentials_file_with_a_costly_hash_names_its_line(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("alice:" + hash_password("x", log2n=4).replace("ln=4,r=8", "ln=20,r=16") + "\n")
    with pytest.raises(ConfigError, match=r"passwd:1: user 'alice': scrypt parameters need 2048 MiB"):
        Credentials.load(str(path))


class Gated:
    """The real credentials; each check waits for the test's gate (the first one then holds
    the lock and the others queue behind it)."""

    def __init__(self, real: Credentials) -> None:
        self.real, self.gate, self.calls = real, threading.Event(), 0

    def verify(self, user: str, password: str) -> bool:
        self.calls += 1
        self.gate.wait(30)
        return self.real.verify(user, password)


async def until(predicate, what: str) -> None:
    """Wait (bounded, on events of the loop) until PREDICATE holds."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def auth_pending(port: int, source: str):
    """A session from SOURCE that has sent a wrong AUTH PLAIN (its reply not read yet)."""
    from tests.io.test_smtpd_slowloris import connect_from
    c = await connect_from(port, source)
    await c.cmd("EHLO c")
    await c.send(f"AUTH PLAIN {WRONG}\r\n")
    return c


async def test_pending_checks_are_capped_per_client_and_overall(auth_config, caplog):
    """Caps 4 per client and 6 overall: the check over either is answered 454 4.7.0 at once (no
    failure counted, the loop answering other sessions meanwhile); the queued ones are all checked."""
    cfg = auth_config(max_auth_failures=100, auth_max_pending=6, auth_max_pending_per_client=4)
    async with running(cfg, make_store(cfg.spool_dir)) as smtpd:
        gated = Gated(smtpd.auth.credentials)
        smtpd.auth.credentials, pending = gated, smtpd.auth.pending
        queued = []
        for n, source in enumerate(["127.0.0.2"] * 4 + ["127.0.0.3"] * 2, 1):
            queued.append(await auth_pending(smtpd.port, source))
            await until(lambda: pending.total == n, f"{n} checks pending")
        over_client = await auth_pending(smtpd.port, "127.0.0.2")
        busy_client = await over_client.reply()
        over_all = await auth_pending(smtpd.port, "127.0.0.4")
        busy_all = await over_all.reply()
        idle = await auth_pending(smtpd.port, "127.0.0.5")      # over the cap too ...
        busy_idle = await idle.reply()
        noop = await idle.cmd("NOOP")                           # ... and the loop answers at once
        gated.gate.set()
        checked = [await c.reply() for c in queued]
        retry = await over_client.cmd(f"AUTH PLAIN {WRONG}")     # room again: checked, 535
        for c in (*queued, over_client, over_all, idle):
            await c.close()
        failures = smtpd.auth.failures.count("127.0.0.2", smtpd.services.clock.monotonic())
    assert busy_client == busy_all == busy_idle == "454 4.7.0 Temporary authentication failure"
    assert noop.startswith("250 "), noop
    assert all(r.startswith("535 5.7.8") for r in checked), checked
    assert retry.startswith("535 5.7.8") and gated.calls == 7, "the 454s computed no hash"
    assert failures == 5, "4 queued checks and the retry failed; a 454 is no failure"
    assert pending.total == 0 and len(pending) == 0
    busy_lines = [r.getMessage() for r in caplog.records if "AUTH busy" in r.getMessage()]
    assert len(busy_lines) == 3 and all("pending=6" in m and "guess" not in m for m in busy_lines), busy_lines
