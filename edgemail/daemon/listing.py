"""daemon/listing.py - the queue listing: sendmail's mailq text and the rows
of ``queue list --json``, one entry at a time.

Owns: ``mailq_entry(e)`` (one QueueEntry as sendmail's mailq prints it),
``row(e)`` (one entry as a row of the ``queue_list`` stream) and
``row_object(row)`` (a row as ``queue list --json`` prints it), ``batches``
(LIST_BATCH rows a streamed line), ``corrupt_line`` (the count of corrupt/)
and ``QueueListing`` (the daemon's ``queue_list`` op: the store's in-memory
index as far as its files are there, the text of each entry cached; the
first line says the total and how many files corrupt/ holds).  The same functions list the spool read from disk when the daemon
is down (cli/spoolview.py), so both listings read alike.

Rows (one JSON array per entry, cheap on both sides for 100,000 entries)::

    [qid, size, created, from, held, [[rcpt, status, last reply, dsn, relay, at]...],
     priority, attempts, next_attempt, {rcpt: customer}]

The last field (ISP mode) names the customer each held recipient's mail is
held for ("" for a [routes] hold domain the LAN flushes).
``created``, ``at`` and ``next_attempt`` are POSIX seconds (``at`` 0: never
tried).  A daemon of an older version sends the first six fields and
recipient triples; ``row_object`` reads both.

Never: reads the disk or decides anything: it formats what it is given
(the store says which entries are there, and what corrupt/ holds).
"""

from __future__ import annotations

import time
from collections.abc import Callable

TYPE_CHECKING = False     # mailq imports this module for corrupt_line: no asyncio, no server
if TYPE_CHECKING:
    from edgemail.daemon.control import Stream

#: rows per streamed queue_list line (one JSON array each: cheap on both sides)
LIST_BATCH = 2000
#: sendmail's mailq prints at most this much of a status message
REASON_WIDTH = 60


def corrupt_line(directory: str, count: int) -> str:
    """mailq's line for the damaged files kept in corrupt/ ("" for none)."""
    if not count:
        return ""
    return (f"\t\t{count} damaged queue file{'s' if count != 1 else ''} in {directory}/corrupt/ "
            "(kept for inspection, not listed)\n")


def status_word(s) -> str:
    return getattr(s, "value", str(s or "queued"))


def mailq_entry(e, held: dict[str, str] | None = None, wait: str = "") -> str:
    """One entry as sendmail's mailq prints it ("!" after the qid: on hold):
    the first line, then for each recipient still waiting the reason of its
    last failure (once per distinct reason, as "(Deferred: ...)") and the
    recipient.  HELD (ISP mode) names the customer a recipient's mail is
    held for: that is its reason.  WAIT (the dial policy's big_mail) says
    why the whole message waits for a cheap window, first."""
    rcpts = ((r.address, e.rcpt_status.get(r.address), e.last_reply.get(r.address, ""))
             for r in e.envelope.recipients)
    return mailq_text(e.qid, e.held, e.size, e.created, e.envelope.mail_from, rcpts, held, wait)


def mailq_text(qid: str, on_hold: bool, size: int, created: float, sender: str, rcpts,
               held: dict[str, str] | None = None, wait: str = "") -> str:
    """mailq_entry's text from the fields it reads (RCPTS: (address,
    status, last reply) in envelope order), so the daemon's listing formats
    packed entries without unpacking them (spool/packed.py brief)."""
    lines = [_first_line(qid, on_hold, size, created, sender)]
    said = set()
    if wait:
        lines.append(f"                 (Waiting: {wait})\n")
    for address, status, reply in rcpts:           # like sendmail: only what still waits
        if status is not None and getattr(status, "final", False):
            continue
        reply = " ".join(reply.split())
        word = f"{status_word(status).capitalize()}: "
        if held and address in held:
            word, reply = "", (f"Held for customer {held[address]}: waiting for its ETRN or ATRN"
                               if held[address] else "Held for the LAN's ETRN")
        if reply and reply not in said:
            said.add(reply)
            lines.append(f"                 ({word}{reply[:REASON_WIDTH]})\n")
        lines.append(f"\t\t\t\t\t <{address}>\n")
    return "".join(lines)


def _first_line(qid: str, on_hold: bool, size: int, created: float, sender: str) -> str:
    return f"{qid}{'!' if on_hold else ' '}{size:>8} {_stamp(created)} <{sender}>\n"


def packed_text(qid: str, brief: tuple) -> str:
    """The mailq text of a packed entry from its BRIEF (spool/packed.py:
    brief, briefs), without unpacking it; as mailq_entry would print it
    with no held_for and no wait."""
    held, size, created, flags, sender, rcpts, addresses = brief
    if rcpts is not None:
        return mailq_text(qid, held, size, created, sender, rcpts)
    stamp = _STAMPS.get(int(created // 60)) or _stamp(created)    # as committed: all queued
    first = f"{qid}{'!' if held else ' '}{size:>8} {stamp} <{sender}>\n"
    if len(addresses) == 1:
        return f"{first}\t\t\t\t\t <{addresses[0]}>\n"
    return first + "".join([f"\t\t\t\t\t <{a}>\n" for a in addresses])


_STAMPS: dict[int, str] = {}


def _stamp(created: float) -> str:
    """mailq's local time of CREATED, to the minute (one strftime per minute listed)."""
    minute = int(created // 60)
    text = _STAMPS.get(minute)
    if text is None:
        if len(_STAMPS) > 10_000:
            _STAMPS.clear()
        text = _STAMPS[minute] = time.strftime("%a %b %d %H:%M", time.localtime(minute * 60))
    return text


def row(e, held: dict[str, str] | None = None) -> list:
    """One entry as a row of the queue_list stream (see the module docstring)."""
    rcpts = []
    for r in e.envelope.recipients:
        last = e.last_attempt.get(r.address)
        rcpts.append([r.address, status_word(e.rcpt_status.get(r.address)), e.last_reply.get(r.address, ""),
                      getattr(last, "dsn", ""), getattr(last, "relay", ""), float(getattr(last, "at", 0.0))])
    return [e.qid, e.size, e.created, e.envelope.mail_from, e.held, rcpts, e.priority, e.attempts,
            e.next_attempt, held or {}]


def row_object(row) -> dict:
    """A row as the object ``queue list --json`` prints; the six-field rows
    of an older daemon read too (without the newer fields).  Raises
    ValueError or TypeError for anything else."""
    qid, size, created, sender, held, rcpts = row[:6]
    more = dict(zip(("priority", "attempts", "next_attempt"), row[6:9]))
    customers = row[9] if len(row) > 9 else {}
    return {"qid": qid, "size": size, "created": created, "from": sender, "held": bool(held), **more,
            "recipients": [_recipient(customers, *r) for r in rcpts]}


def _recipient(customers: dict, address, status, reply, *last) -> dict:
    out = {"address": address, "status": status, "last_reply": reply}
    if len(last) == 3:
        out.update(dsn=last[0], relay=last[1], last_attempt=last[2] or None)
    if address in customers:
        out["customer"] = customers[address]
    return out


def batches(entries, fmt: str, text=mailq_entry, held_for=lambda e: {}, get=None):
    """LIST_BATCH entries a streamed line: {"rows": [...]} or {"text": "..."}
    (fmt "mailq").  With GET, ENTRIES are qids, each got as its batch is made
    (one gone meanwhile is left out)."""
    for i in range(0, len(entries), LIST_BATCH):
        chunk = entries[i:i + LIST_BATCH]
        if get is not None:
            chunk = [e for e in map(_getter(get), chunk) if e is not None]
        yield ({"text": "".join(text(e) for e in chunk)} if fmt == "mailq"
               else {"rows": [row(e, held_for(e)) for e in chunk]})


def _getter(get):
    def one(qid):
        try:
            return get(qid)
        except KeyError:
            return None
    return one


class QueueListing:
    """``queue_list`` answers from the store's in-memory index: rows (for
    ``--json``) or sendmail-style mailq text, LIST_BATCH entries per streamed
    line.  The mailq text of an entry is made from its packed fields
    (index.brief, mailq_text) without unpacking it, unless the entry may be
    held for a customer (MAY_HOLD: the config has hold routes or customers)
    or may be big mail waiting for a cheap window (BIG_GATE(size, urgent));
    no text is cached (issue 15: no memory per queued message here)."""

    def __init__(self, store, held_for: Callable[[object], dict[str, str]] | None = None,
                 waits: Callable[[object], str] | None = None, *,
                 may_hold: Callable[[], bool] = lambda: True,
                 big_gate: Callable[[int, bool], object] | None = None) -> None:
        self.store = store
        #: big mail: entry -> why it waits for a cheap window ("" : it does not)
        self.waits: Callable[[object], str] = waits or (lambda e: "")
        #: ISP mode: entry -> {recipient: the customer its mail is held for}
        self.held_for: Callable[[object], dict[str, str]] = held_for or (lambda e: {})
        self.may_hold = may_hold if held_for is not None else (lambda: False)
        self.big_gate = big_gate if waits is not None else (lambda size, urgent: False)

    def stream(self, fmt: str) -> Stream:
        from edgemail.daemon.control import Stream
        qids = self.store.present_qids()              # what is on disk: no ghost of a removed file
        lines = (self._texts(qids) if fmt == "mailq"
                 else batches(qids, fmt, held_for=self.held_for, get=self.store.get))
        return Stream(lines, {"total": len(qids), "corrupt": len(self.store.corrupt_files())})

    def _texts(self, qids: list[str]):
        from edgemail.spool.packed import URGENT
        index, hold, gate = self.store.index, self.may_hold(), self.big_gate
        for i in range(0, len(qids), LIST_BATCH):
            out = []
            for qid, brief in index.briefs(qids[i:i + LIST_BATCH]):     # one gone meanwhile: left out
                if hold or (gate is not None and gate(brief[1], bool(brief[3] & URGENT))):
                    try:
                        out.append(self.text(self.store.get(qid)))
                    except KeyError:
                        pass
                else:
                    out.append(packed_text(qid, brief))
            yield {"text": "".join(out)}

    def text(self, e) -> str:
        return mailq_entry(e, self.held_for(e), self.waits(e))
