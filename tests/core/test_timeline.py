"""timeline: the demo story parsed from recorded log lines, priced, rendered (CORE, no I/O)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from demo import timeline as T

# A real `make demo` run (paths shortened): the daemon's lines as they appeared, stamped.
RECORDED = """\
1795336599.668 daemon: ready, listeners=lan=[127.0.0.1]:25 wan=[10.64.0.2]:25, control=/tmp/s/control.sock, queued=0
1795336599.700 NOQUEUE: connect from [127.0.0.1]:50312, listener=lan
1795336599.809 kAM8ad00011738: from=<till-3@edge.example>, size=1338, class=0, nrcpts=2, msgid=<179533659980.11722.16892325034464745385@till-3.lan>, proto=ESMTP, relay=[127.0.0.1]:50312
1795336599.829 kAM8ad00011738: to=<bob@edge.example>, delay=00:00:00, xdelay=00:00:00, mailer=local, pri=61338, relay=maildir, dsn=2.0.0, stat=Sent (delivered to maildir (/tmp/s/mail/bob/Maildir/new/1795336599.M811157P11738Q1.gw.edge.example))
1795336599.910 kAM8ad01011738: from=<root@edge.example>, size=228, class=0, nrcpts=2, msgid=<20261122083639.11741.3870c858@gw.edge.example>, proto=local, relay=localhost (uid 0)
1795336599.930 kAM8ad01011738: to=<audit@edge.example>, delay=00:00:00, xdelay=00:00:00, mailer=local, pri=60228, relay=maildir, dsn=2.0.0, stat=Sent (delivered to maildir (/tmp/s/mail/audit/Maildir/new/1795336599.M908648P11738Q2.gw.edge.example))
1795336604.817 link: state=DIALING, reason=oldest(5.00232s>=5s)
1795336607.821 link: state=CONNECTED, number=5551234, speed=56000, attempt=1
1795336607.821 link: state=CONNECTING, reason=CONNECT
1795336607.821 link: pppd=started, pid=11889, device=/run/hwsim/w/ttyS0
1795336607.986 link: state=UP, reason=ppp0-up(10.64.0.2)
1795336607.986 runner: hoststatus cleared, hosts=0
1795336608.006 runner: link up, hoststatus_cleared=0, nameservers=192.0.2.53, iface=ppp0
1795336608.006 runner: queue run start, run=11738.1, reason=link-up, filters=none, selected=2
1795336609.307 kAM8ad01011738: to=<ops@remote2.example>, delay=00:00:09, xdelay=00:00:01, mailer=mx, pri=150228, relay=mx.remote2.example[198.51.100.11]:25, dsn=2.0.0, stat=Sent (250 2.0.0 OK: stored)
1795336610.863 kAM8ad00011738: to=<bob@remote1.example>, delay=00:00:11, xdelay=00:00:02, mailer=mx, pri=151338, relay=mx.remote1.example[198.51.100.10]:25, dsn=2.0.0, stat=Sent (250 2.0.0 OK: stored)
1795336610.883 runner: queue run end, selected=2, attempted=2, sent=2, deferred=0, bounced=0
1795336611.775 etrn: relay=192.0.2.25:25, arg=edge.example, reply=253 OK, 1 pending messages for node edge.example started, result=ok
1795336611.896 link: etrn=edge.example, reply=253 OK, 1 pending messages for node edge.example started
1795336612.865 kAM8aq00011738: from=<carol@remote1.example>, size=389, class=0, nrcpts=1, msgid=<179533659979.11736.16652295255966374085@remote1.example>, proto=ESMTP, relay=[10.64.0.1]:45404
1795336612.865 kAM8aq00011738: to=<alice@edge.example>, delay=00:00:00, xdelay=00:00:00, mailer=local, pri=30389, relay=maildir, dsn=2.0.0, stat=Sent (delivered to maildir (/tmp/s/mail/alice/Maildir/new/1795336612.M858535P11738Q3.gw.edge.example))
1795336618.022 link: state=HANGING_UP, reason=idle
1795336618.022 link: state=IDLE, reason=ppp0-down
1795336618.022 link: call=ended, connect=10.0s, sent=6403, rcvd=3953, cause=hangup
1795336618.123 link: pppd=exited, status=5, cause=signal
1795336618.325 link: hangup=dtr, cause=idle
"""
T0 = 1795336599.668
WORLD = [T.WorldEvent(1795336599.750, "isp", "held", {"rcpts": ["alice@edge.example"], "id": "h1"}),
         T.WorldEvent(1795336599.950, "dns", "count", {"count": 0, "line": "down"})]
SAMPLES = [T.Sample(T0, 0, 0), T.Sample(1795336607.9, 40, 0), T.Sample(1795336609.4, 1900, 2),
           T.Sample(1795336612.9, 9600, 4), T.Sample(1795336618.1, 10357, 4)]
CONNECT, HANGUP = 1795336607.821, 1795336618.022


def lines(text: str = RECORDED) -> list[T.LogLine]:
    out = []
    for raw in filter(None, text.splitlines()):
        stamp, _, line = raw.partition(" ")
        out.append(T.LogLine(float(stamp), line))
    return out


def story(text: str = RECORDED, world=WORLD, samples=SAMPLES, **kw) -> T.Timeline:
    return T.build(lines(text), world, samples, T.Tariff(setup=0.10, per_minute=0.04), **kw)


def test_the_recorded_run_tells_every_step_in_order():
    tl = story()
    assert tl.missing() == [] and tl.verdict() is None
    firsts = {}
    for e in tl.events:
        firsts.setdefault(e.step, e.t)
    order = [step for step, _ in T.STEPS]
    # submissions, the ISP's held mail and the DNS check come in any order before the dial
    assert max(firsts[s] for s in order[:5]) < firsts["dial"] < firsts["connect"] < firsts["ppp-up"]
    assert firsts["ppp-up"] <= firsts["queue-run"] < firsts["sent-out"] < firsts["etrn"]
    assert firsts["etrn"] < firsts["inbound"] <= firsts["maildir"] < firsts["idle-hangup"] <= firsts["down"]


# the line(s) that alone prove each step: remove them and exactly that step goes missing
PROOF = {
    "ready": ["daemon: ready"],
    "submit-smtp": ["kAM8ad00011738: from="],
    "submit-sendmail": ["kAM8ad01011738: from="],
    "dial": ["state=DIALING"],
    "connect": ["state=CONNECTED"],
    "ppp-up": ["state=UP"],
    "queue-run": ["queue run start"],
    "sent-out": ["mailer=mx"],
    "etrn": ["etrn"],
    "maildir": ["to=<alice@edge.example>"],
    "idle-hangup": ["state=HANGING_UP"],
    "down": ["state=IDLE"],
}


@pytest.mark.parametrize("step", sorted(PROOF), ids=str)
def test_a_step_whose_line_is_missing_is_named(step):
    kept = "\n".join(x for x in RECORDED.splitlines() if not any(n in x for n in PROOF[step]))
    tl = story(kept)
    got = tl.missing()
    if step == "submit-smtp":             # its delivery to bob@remote1 still proves sent-out
        assert got == ["submit-smtp"], f"got {got}"
    else:
        assert got == [step], f"got {got}, want [{step!r}]"
    assert tl.verdict().startswith(f"the step '{step}' ({T.STEP_NAMES[step]}) did not happen")


def test_inbound_needs_the_isp_as_peer():
    tl = story(isp_peers=("192.0.2.99",))    # the pushed message then looks like a LAN submission
    assert "inbound" in tl.missing() and "maildir" in tl.missing()


def test_world_steps_come_from_world_events():
    assert story(world=[]).missing() == ["held-at-isp", "no-dns"]
    some_dns = [WORLD[0], T.WorldEvent(WORLD[1].t, "dns", "count", {"count": 2, "line": "down"})]
    assert story(world=some_dns).missing() == ["no-dns"]


def test_a_deferred_delivery_is_not_sent_out():
    text = RECORDED.replace("dsn=2.0.0, stat=Sent (250 2.0.0 OK: stored)",
                            "dsn=4.4.3, stat=Deferred: DNS lookup of x/MX failed: Network is unreachable")
    tl = story(text)
    assert tl.missing() == ["sent-out"]
    failed = [e for e in tl.events if e.mark == "failed"]
    assert len(failed) == 2 and all(e.lane == "out" and "deferred" in e.text for e in failed)


def test_etrn_logged_by_the_mta_and_the_link_is_one_event():
    assert [e.text for e in story().events if e.mark == "etrn"] == [
        "ETRN edge.example: 253 OK, 1 pending messages for node edge.example started"]


def test_a_refused_etrn_is_not_the_etrn_step():
    text = RECORDED.replace("reply=253 OK, 1 pending messages for node edge.example started",
                            "reply=458 4.4.2 Unable to queue messages for node edge.example")
    assert "etrn" in story(text).missing()


def test_cost_is_setup_at_connect_plus_connected_seconds():
    tl = story()
    (call,) = tl.calls()
    assert (call.connect, call.end) == (CONNECT, HANGUP)
    assert tl.cost_at(CONNECT - 0.001) == 0.0
    assert tl.cost_at(CONNECT) == pytest.approx(0.10)
    assert tl.cost_at(CONNECT + 30) == pytest.approx(0.10 + 0.04 * (HANGUP - CONNECT) / 60)
    assert tl.cost_at(HANGUP + 1000) == tl.cost_at(HANGUP)


def test_two_calls_cost_two_setups():
    second = "\n".join(f"{float(s) + 100:.3f} {rest}" for s, _, rest in
                       (x.partition(" ") for x in RECORDED.splitlines()) if "link: " in rest)
    tl = story(RECORDED + "\n" + second)
    assert len(tl.calls()) == 2
    assert tl.cost_at(HANGUP + 200) == pytest.approx(2 * 0.10 + 2 * 0.04 * (HANGUP - CONNECT) / 60)


def test_bytes_are_the_latest_sample_at_or_before_the_event():
    tl = story()
    assert tl.bytes_at(T0) == 0 and tl.bytes_at(1795336609.4) == 1900 and tl.bytes_at(1795336612.0) == 1900
    assert tl.bytes_at(T0 + 10_000) == 10357


def test_pairs_keep_commas_inside_values():
    p = T.pairs("to=<a@b>, relay=mx[1.2.3.4]:25, dsn=2.0.0, stat=Sent (250 OK, queued as X, thanks)")
    assert p == {"to": "<a@b>", "relay": "mx[1.2.3.4]:25", "dsn": "2.0.0",
                 "stat": "Sent (250 OK, queued as X, thanks)"}


@pytest.mark.parametrize("line", ["", "garbage", "link: nothing=here", "QQQ: imported from maildrop/x",
                                  "runner: hoststatus cleared, hosts=0", "link: state=IDLE, reason=timer"])
def test_other_lines_are_skipped(line):
    assert T.build([T.LogLine(1.0, line)]).events == ()


def test_text_has_a_row_per_event_with_bytes_and_cost():
    tl = story()
    text = T.render_text(tl)
    rows = [r for r in text.splitlines() if r[:7].strip().replace(".", "").isdigit()]
    assert len(rows) == len(tl.events)
    last = rows[-1].split()
    assert last[-2:] == ["10357", f"{tl.cost_at(tl.end()):.2f}"]
    assert "story: complete, all 15 steps seen" in text and "0.10 EUR per call" in text


def test_text_names_what_is_missing():
    text = T.render_text(story(world=[]))
    assert "story: INCOMPLETE, not seen: held-at-isp (mail held for us at the ISP); no-dns" in text


def test_svg_parses_and_draws_the_call_and_every_message():
    svg = T.render_svg(story())
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    titles = [t.text for t in root.iter(ns + "title")]
    assert "dialing" in titles and "connected" in titles
    # the addresses in the tooltips carry < and >, escaped in the file
    assert any(t and t.startswith("kAM8ad00011738 sent: <bob@remote1.example>") for t in titles)
    assert "&lt;bob@remote1.example&gt;" in svg
    assert len(list(root.iter(ns + "polyline"))) == 2          # bytes and cost
    labels = " ".join(t.text or "" for t in root.iter(ns + "text"))
    for word in ("dial", "CONNECT", "ppp0 up", "ETRN", "idle: hang up", "alice@edge.example", "10357 bytes"):
        assert word in labels, word


def test_svg_of_an_empty_timeline_still_parses():
    ET.fromstring(T.render_svg(T.build([])))


def test_a_policy_tariff_prices_the_call_by_charging_units():
    # dial.policy's tariff lines (link.tariff), from the call's real connect time
    units = "timezone UTC\ntariff unit 0.06 90s\n"
    tl = T.build(lines(RECORDED), (), (), T.PolicyTariff(units))
    (call,) = tl.calls()
    started = 1 + int((HANGUP - CONNECT) // 90) - (1 if (HANGUP - CONNECT) % 90 == 0 else 0)
    assert tl.cost_at(CONNECT) == pytest.approx(0.06)
    assert tl.cost_at(HANGUP) == pytest.approx(0.06 * started)
    assert T.PolicyTariff(units).describe() == "tariff unit 0.06 90s"
