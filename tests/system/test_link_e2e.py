"""The whole story, end to end, in hardware-sim (root): the real daemon in the
edge namespace with its own link manager, the simulated modem, fakepppd, the
ISP's DNS, relay (ETRN) and remote MX sinks.

mail queued with the line down (0 DNS queries) -> urgent mail -> dial ->
CONNECT -> ppp0 up -> queue run -> ETRN (the ISP pushes the mail it held for us to our WAN listener -> Maildir)
-> idle hang-up (ppp0 gone, manager idle) -> one call in the ledger, shown by
`edgemail status`.  The ppp hooks (etc/ppp/ip-up.d/edgemail) run as
fakepppd's ip-up/ip-down scripts, so both netlink and the hook report the
link (idempotent).  Nothing is left behind: the daemon stops pppd, the world
removes its namespaces.

Outbound mail takes both expensive paths of the example configuration:
`"*" = smarthost` (the ISP relay, STARTTLS verified against the world's
certificate as SmartHostCAFile, AUTH with a 0600 SmartHostAuthFile; the
relay's log shows the AUTH over TLS and its onward relay to the remote
sink) and one domain routed by MX (straight to that domain's sink).
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest


pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]
POLICY = "set idle_hangup = 2s\nset max_connect = 60s\nset urgent = immediate\n"


def test_queue_down_dial_run_etrn_push_idle_hangup(world, edge_daemon, tmp_path):
    w = world(with_isp=True)
    w.inject_held_mail("alice@edge.example", data="Subject: held at the ISP\r\n\r\nwaiting for you\r\n")
    assert len(w.held_messages()) == 1
    daemon = edge_daemon(w, policy=POLICY)
    daemon.start()
    try:
        dns0 = w.dns_query_count()
        daemon.sendmail("From: bob@edge.example\nTo: carol@remote1.example\nSubject: normal\n\nhello\n")
        st = daemon.status()
        assert st["queue"]["due"] == 1 and st["link"]["state"] == "down"
        decided = daemon.until(lambda: (p := daemon.status()["policy"])["queued"] == 1 and p, 10,
                               "the policy asked about the normal mail")
        assert decided["dial"] is False, decided          # normal mail waits: no dial (urgent = immediate only)
        assert daemon.status()["link"]["state"] == "down"
        assert w.dns_query_count() == dns0 == 0           # invariant 1: queued with no DNS query

        t0 = time.monotonic()
        daemon.sendmail("From: bob@edge.example\nTo: dave@remote2.example\nPrecedence: urgent\n"
                         "Subject: urgent\n\nnow please\n")
        daemon.until(lambda: daemon.status()["link"]["state"] == "up", 30, "ppp0 up")
        dial_s = time.monotonic() - t0
        assert w.ppp_address() == w.edge_ip
        sunk = daemon.until(lambda: len(w.sink_messages()) == 2 and w.sink_messages(), 30, "queue run")
        run_s = time.monotonic() - t0
        by_rcpt = {m["rcpts"][0]: m for m in sunk}
        assert sorted(by_rcpt) == ["carol@remote1.example", "dave@remote2.example"]
        assert by_rcpt["carol@remote1.example"]["sink"] == "198.51.100.10"     # via the smart host
        assert by_rcpt["dave@remote2.example"]["peer"] == w.edge_ip              # by MX, straight from us
        auths = w.relay_log("auth")
        assert [(a["user"], a["ok"], a["tls"]) for a in auths] == [("edge", True, True)]
        # the sink's file is written before its 250 reaches the relay, which then logs "sent"
        relayed = daemon.until(lambda: w.relay_log("relay"), 10, "the relay's log of its onward send")
        assert [(r["rcpts"], r["auth"], r["tls"], r["status"]) for r in relayed] == [
            (["carol@remote1.example"], "edge", True, "sent")]
        pushed = daemon.until(lambda: daemon.maildir(), 30, "the ISP's push after ETRN")
        assert b"waiting for you" in pushed[0].read_bytes()
        daemon.until(lambda: w.held_messages() == [], 10, "the ISP's queue emptied")
        daemon.until(lambda: daemon.status()["link"]["state"] == "down", 30, "idle hang-up")
        # pppd's teardown sets ppp0 down (the daemon's IDLE) before it deletes the address
        daemon.until(lambda: w.ppp_address() is None, 10, "ppp0's address gone")
        st = daemon.status()
        assert st["queue"]["count"] == 0 and st["link"]["failed_dials"] == 0
        assert st["last_etrn"]["ok"] is True and st["last_etrn"]["replies"][0]["domain"] == "edge.example"
        call = st["last_call"]
        assert call is not None and call["connect_s"] > 0 and call["bytes_sent"] > 0 and call["bytes_rcvd"] > 0
        assert json.loads(Path(tmp_path / "link.json").read_text())          # the ledger is on disk
        assert st["budget_left"] is not None
        log = daemon.log.read_text()
        assert "link: state=DIALING, reason=urgent" in log or "link: state=DIALING" in log
        assert "link: call=ended" in log and "etrn=edge.example, reply=25" in log
        sent = [ln for ln in log.splitlines() if "to=<carol@remote1.example>" in ln and "stat=Sent" in ln]
        assert sent and "mailer=smarthost" in sent[0] and f"[{w.relay_ip}]:25" in sent[0], sent
        assert "secret" not in log
        print(f"\nE2E: dial->up {dial_s:.1f}s, urgent->both sent {run_s:.1f}s, call {call['connect_s']:.1f}s, "
              f"sent {call['bytes_sent']} B, rcvd {call['bytes_rcvd']} B, dns queries {w.dns_query_count()}")
    finally:
        daemon.stop()
    assert w.ppp_address() is None
    left = subprocess.run(["ip", "netns", "pids", w.edge_ns], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes left in the edge namespace: {left}"


ODMR_POLICY = POLICY + "0 3 * * * queue-run odmr\n"


def test_a_call_with_odmr_instead_of_etrn(world, edge_daemon, tmp_path):
    """[link] odmr: the call asks with ATRN (STARTTLS verified, AUTH) and the ISP
    pushes the held mail over our own connection into the Maildir; the line is
    held while the push runs and hangs up after it."""
    w = world(with_isp=True)
    w.inject_held_mail("alice@edge.example", data="Subject: held for ODMR\r\n\r\nover our own connection\r\n")
    secret = tmp_path / "odmr.secret"
    secret.write_text(w.relay_credentials[1] + "\n")
    secret.chmod(0o600)
    daemon = edge_daemon(w, policy=ODMR_POLICY, overrides={"link": {"etrn_host": "", "odmr": {
        "host": w.relay_ip, "port": 366, "user": w.relay_credentials[0], "secret_file": str(secret),
        "domains": ["edge.example"], "cafile": w.relay_cert}}})
    daemon.start()
    try:
        daemon.cli("edgemail", "link", "dial")
        pushed = daemon.until(lambda: daemon.maildir(), 40, "the ISP's push over our ODMR connection")
        assert b"over our own connection" in pushed[0].read_bytes()
        # our 250 for the pushed message reaches the ISP just after the Maildir file is written
        daemon.until(lambda: w.held_messages() == [], 10, "the ISP's queue emptied")
        daemon.until(lambda: daemon.status()["link"]["state"] == "down", 30, "the hang-up after the push")
        daemon.until(lambda: w.ppp_address() is None, 10, "ppp0's address gone")   # deleted after ppp0 down
        st = daemon.status()
        assert st["last_etrn"]["method"] == "odmr" and st["last_etrn"]["replies"][0]["code"] == 250
        assert [(e["user"], e["ok"], e["tls"]) for e in w.relay_log("odmr-auth")] == [("edge", True, True)]
        assert [(e["domains"], e["reply"]) for e in w.relay_log("odmr")] == [(["edge.example"], 250)]
        pushed_log = daemon.until(lambda: w.relay_log("odmr-delivery"), 10, "the ISP's log of its push")
        assert [e["delivered"] for e in pushed_log] == [1]
        assert w.relay_log("etrn") == []                     # ODMR in place of ETRN
        log = daemon.log.read_text()
        assert "link: odmr=edge.example, reply=250" in log
        ended = log.index(f"odmr: relay={w.relay_ip}:366, push=ended, messages=1, reason=closed")
        assert ended < log.index("link: call=ended")       # the line was held while the push ran
        assert w.relay_credentials[1] not in log
    finally:
        daemon.stop()
