"""Big mail waits for a cheap window (issue 14 §4) on a real Store, Runner and
MtaPort, with the dial policy's core deciding (link.bigmail): no call for it,
a queue run on a call leaves it, mailq and the demand say why; urgent big
mail and small mail go; in the window it goes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from edgemail.clock import FakeClock
from edgemail.daemon.listing import QueueListing
from edgemail.daemon.mtaport import MtaPort
from link import bigmail
from link.policy import parse
from runner_helpers import FakeLink, make_cfg, make_runner, make_store, submit
from upstream import upstream_factory  # noqa: F401  (fixture)

# 1_700_000_000 is Tue 2023-11-14 22:13:20 UTC: outside the window below
POLICY = parse("timezone UTC\nset big_mail = 5k\ncheap mon-fri 00:00-06:00\n0 * * * * queue-run etrn\n")
BIG = b"Subject: photos\r\n\r\n" + (b"y" * 76 + b"\r\n") * 100          # 7,819 bytes
SMALL = b"Subject: hello\r\n\r\nhi\r\n"


class PolicyLink(FakeLink):
    """A LinkPort whose big_mail_wait is the policy core's, on the test's clock."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__("up")
        self.clock = clock

    def big_mail_wait(self, size: int, urgent: bool) -> str:
        wait = bigmail.waits(POLICY, size, urgent, datetime.fromtimestamp(self.clock.wall(), timezone.utc))
        return wait.reason if wait is not None else ""


async def test_big_mail_waits_for_the_cheap_window_and_says_why(example_config, upstream_factory):
    up = await upstream_factory()
    clock = FakeClock()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{up.port}")
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock, link=PolicyLink(clock))
    port = MtaPort(cfg, store, runner, clock=clock)
    big = await submit(store, ["far@x.test"], data=BIG)
    await submit(store, ["near@x.test"], data=SMALL)
    await submit(store, ["boss@x.test"], data=BIG, precedence=100)     # urgent: never waits
    s = port.queue_summary()
    assert (s.queued, s.urgent, s.big_waiting) == (2, 1, 1), s
    assert s.big_reason.startswith(f"big mail ({len(BIG)} bytes >= big_mail 5000) waits for a cheap window "
                                   "(mon-fri 00:00-06:00): Wed 00:00"), s.big_reason
    text = QueueListing(store, waits=runner.big_wait).text(store.get(big))
    assert "(Waiting: big mail (" in text and "Wed 00:00" in text, text

    report = await port.run_queue()                                    # a call made for the others
    assert report.sent == 2 and sorted(m.rcpt_tos[0] for m in up.messages) == ["boss@x.test", "near@x.test"]
    assert [e.qid for e in store.entries()] == [big]

    clock.advance(datetime(2023, 11, 15, 0, 1, tzinfo=timezone.utc).timestamp() - clock.wall())
    s = port.queue_summary()
    assert (s.queued, s.big_waiting) == (1, 0)
    assert "Waiting" not in QueueListing(store, waits=runner.big_wait).text(store.get(big))
    report = await port.run_queue()
    assert report.sent == 1 and store.entries() == []


async def test_link_explain_says_how_many_big_messages_wait_and_why(example_config, tmp_path):
    """`edgemail link explain` (link.report.explain) on the real LinkManager
    wired to the real MtaPort: the big message is left out of the demand and
    explain's big-mail line names the count and the policy's reason."""
    from dataclasses import replace

    from link.manager import LinkManager
    clock = FakeClock()
    cfg = make_cfg(example_config, SmartHost="[127.0.0.1]:25")
    link_cfg = replace(cfg.link, mode="external", up_command=("/bin/true",), down_command=("/bin/true",),
                       state_file=str(tmp_path / "link.json"))
    mgr = LinkManager(link_cfg, POLICY, clock=clock, port=None)
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock, link=mgr)
    mgr.port = MtaPort(cfg, store, runner, clock=clock)
    await submit(store, ["far@x.test"], data=BIG)
    text = mgr.explain()
    assert "waiting for the link: nothing" in text, text                 # not in the demand: no call for it
    (line,) = [t for t in text.splitlines() if "big message(s)" in t]
    assert line.startswith(f"1 big message(s) left out, not dialed for: big mail ({len(BIG)} bytes "
                           ">= big_mail 5000) waits for a cheap window (mon-fri 00:00-06:00): Wed 00:00"), line
    await submit(store, ["near@x.test"], data=SMALL)
    text = mgr.explain()
    assert "waiting for the link: 1 message(s)" in text and "1 big message(s) left out" in text, text
    clock.advance(datetime(2023, 11, 15, 0, 1, tzinfo=timezone.utc).timestamp() - clock.wall())
    text = mgr.explain()                                                # in the window: both count, no line
    assert "waiting for the link: 2 message(s)" in text and "big message(s)" not in text, text
