"""daemon/listing.py QueueListing over a real store: mailq's text from the
packed entries equals the entry-by-entry text; the entries that may be held
for a customer or wait as big mail go through held_for / waits; a file
removed by hand is not listed."""

from __future__ import annotations

import os

from edgemail.clock import FakeClock
from edgemail.daemon.listing import QueueListing, mailq_entry
from runner_helpers import make_cfg, make_store, submit


def text(listing: QueueListing, fmt: str = "mailq"):
    stream = listing.stream(fmt)
    return stream.header, list(stream.items)


async def test_mailq_text_and_rows_list_every_entry_on_disk(example_config):
    store = make_store(make_cfg(example_config), FakeClock())
    qids = [await submit(store, [f"r{n}@far.test", "b@far.test"]) for n in range(5)]
    await store.hold(qids[1])
    listing = QueueListing(store)
    header, items = text(listing)
    assert header == {"total": 5, "corrupt": 0}
    assert "".join(i["text"] for i in items) == "".join(mailq_entry(store.get(q)) for q in qids)
    assert f"{qids[1]}!" in items[0]["text"]
    os.unlink(os.path.join(store.directory, "queue", qids[0]))
    header, items = text(listing, "rows")
    assert header["total"] == 4 and [r[0] for r in items[0]["rows"]] == qids[1:]


async def test_held_for_and_big_mail_are_asked_only_when_they_may_apply(example_config):
    store = make_store(make_cfg(example_config), FakeClock())
    small = await submit(store, ["a@far.test"])
    big = await submit(store, ["b@far.test"], data=b"Subject: x\r\n\r\n" + b"y" * 9000 + b"\r\n")
    asked: list[str] = []

    def held_for(e):
        asked.append(e.qid)
        return {r.address: "cust" for r in e.envelope.recipients}
    listing = QueueListing(store, held_for=held_for, waits=lambda e: "big mail waits",
                           may_hold=lambda: False, big_gate=lambda size, urgent: size > 5000)
    out = "".join(i["text"] for i in text(listing)[1])
    assert asked == [big] and out.count("(Waiting: big mail waits)") == 1
    assert out.index(big) < out.index("(Waiting: big mail waits)"), out
    listing.may_hold = lambda: True
    out = "".join(i["text"] for i in text(listing)[1])
    assert out.count("Held for customer cust") == 2 and asked == [big, small, big]
