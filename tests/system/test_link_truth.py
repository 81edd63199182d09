"""The link tells the truth (issues 16 §9, 17 §2, §5, §8): the real daemon and its commands.

The daemon runs as a subprocess with a link manager in external mode (no
root: the interface it watches, emtruth0, exists on no machine, so
netlink says the line is down, as it is), or in modem mode against
hardware-sim's modem on a pty with fakepppd as pppd (no root either: pppd
refuses its options before it touches a network).  Every answer is read
from what the programs print and what the daemon logs.

  * a stray ``edgemail link hook ip-up`` is checked against netlink and not
    acted on: no ``up``, no link-up run, no call booked (17 §2);
  * ``link explain`` names the threshold that holds waiting mail,
    ``sendmail -q`` with the line down says the link mail waits for the
    policy or ``edgemail link dial``, ETRN for a held domain with our line
    down answers 458 and says why (17 §5);
  * ``status --json`` has no phase on a line never dialled; ``newaliases``
    reads the aliases only, whatever state dial.policy is in (17 §8);
  * pppd's setup errors stop dialling, with the reason in status, explain
    and systemd's STATUS=, until a reload (16 §9).
"""
from __future__ import annotations

import json
import smtplib
import socket
import time
from pathlib import Path

import pytest

from daemon_harness import Daemon, cli, wait_for, write_config

HWSIM = Path(__file__).resolve().parents[2] / "hardware-sim"
IFACE = "emtruth0"
HOOK_ARGS = [IFACE, "/dev/ttyS0", "115200", "10.64.0.2", "10.64.0.1", "edgemail"]
MAIL = "From: cron@edge.example\nTo: bob@example.net\nSubject: nightly\n\nreport\n"


def until(pred, what: str, daemon: Daemon):
    return wait_for(pred, what, daemon.log)


def edgemail(daemon: Daemon, *args: str, code: int = 0, env: dict | None = None) -> str:
    r = cli(daemon, "edgemail", *args, env=env)
    assert r.returncode == code, (args, r.returncode, r.stdout, r.stderr)
    return r.stdout.decode()


def status(daemon: Daemon) -> dict:
    return json.loads(edgemail(daemon, "status", "--json"))


def sendmail(daemon: Daemon, text: str = MAIL) -> None:
    r = cli(daemon, "sendmail", "-t", "-i", input=text.encode())
    assert r.returncode == 0, r.stderr


@pytest.fixture
def external(tmp_path):
    """external(policy, overrides) -> a started daemon whose link is emtruth0 (down: it does not exist)."""
    made = []

    def start(policy: str = "set idle_hangup = 1h\n", overrides: dict | None = None) -> Daemon:
        (tmp_path / "dial.policy").write_text(policy)
        link = {"mode": "external", "interface": IFACE, "policy": str(tmp_path / "dial.policy"), "etrn_host": ""}
        cfg = write_config(tmp_path, {"link": link, **(overrides or {})})
        d = Daemon(cfg)
        made.append(d)
        d.start()
        return d

    yield start
    for d in made:
        d.stop()


# ---------------------------------------------------------------- 17 §2: a stray ip-up hook

def test_a_stray_ip_up_hook_is_checked_against_netlink_and_not_acted_on(external, tmp_path):
    d = external()
    sendmail(d)                                              # mail for the link: a link-up run would take it
    out = edgemail(d, "link", "hook", "ip-up", "--", *HOOK_ARGS)
    assert out.startswith("ip-up: ignored: ") and f"{IFACE} does not exist" in out, out
    st = status(d)
    assert st["link"]["state"] == "down" and st["last_call"] is None
    assert st["budget_left"] == status(d)["budget_left"]
    edgemail(d, "link", "hook", "ip-down", "--", *HOOK_ARGS,
             env={"CONNECT_TIME": "34", "BYTES_SENT": "0", "BYTES_RCVD": "0"})
    log = d.log.read_text()
    assert f"link: hook=ip-up, iface={IFACE}, local=10.64.0.2, result=refused ({IFACE} does not exist)" in log
    assert "link: state=UP" not in log and "runner: link up" not in log and "reason=link-up" not in log
    assert "link: call=ended" not in log and status(d)["last_call"] is None
    ledger = tmp_path / "link.json"
    assert not ledger.exists() or json.loads(ledger.read_text()).get("calls", []) == []


# ---------------------------------------------------------------- 17 §5: answers that mislead

def test_link_explain_names_what_waits_and_the_threshold_that_holds_it(external):
    d = external("set dial_when_queued = 3\nset idle_hangup = 1h\n")
    sendmail(d)
    text = until(lambda: next((t for t in [edgemail(d, "link", "explain")] if "1 message(s)" in t), None),
                 "explain counting the queued message", d)
    assert "nothing due" not in text, text
    assert "waiting for the link: 1 message(s)" in text
    assert "held by dial_when_queued = 3 (1 of 3 queued)" in text, text
    assert "edgemail link dial" in text


def test_sendmail_q_with_the_line_down_says_the_link_mail_waits(external):
    d = external("set dial_when_queued = 3\nset idle_hangup = 1h\n")
    sendmail(d)
    r = cli(d, "sendmail", "-q")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert "1 message(s) for the link wait for the dial policy or `edgemail link dial`" in out, out
    assert "the line is down" in out
    r = cli(d, "edgemail", "queue", "run", "--json")
    assert json.loads(r.stdout)["link_waiting"] == 1, r.stdout


def test_a_filtered_queue_run_counts_only_the_mail_its_filter_selects(external):
    d = external("set dial_when_queued = 3\nset idle_hangup = 1h\n", {"routes": {"held.example": "hold"}})
    sendmail(d)                                                                 # bob@example.net: the link's
    sendmail(d, "From: cron@edge.example\nTo: u@held.example\nSubject: held\n\nfor later\n")
    said = {}
    for flag in ("-qR@held.example", "-qRexample.net", "-qRnowhere.example", "-q"):
        r = cli(d, "sendmail", flag)
        assert r.returncode == 0, (flag, r.stderr)
        said[flag] = r.stdout.decode()
    assert "for the link wait" not in said["-qR@held.example"], "bob@example.net is not selected by R@held.example"
    assert "1 message(s) on a hold route wait for the line to be up: run this again then" in said["-qR@held.example"]
    assert "the line is down: 1 message(s) for the link wait for the dial policy" in said["-qRexample.net"]
    assert "on a hold route" not in said["-qRexample.net"], said
    assert "wait" not in said["-qRnowhere.example"], said
    assert "the line is down: 1 message(s) for the link wait" in said["-q"] and "hold route" not in said["-q"], said


def test_etrn_for_a_held_domain_with_our_line_down_is_458_and_says_why(external):
    d = external(overrides={"routes": {"held.example": "hold"}})
    sendmail(d, "From: cron@edge.example\nTo: u@held.example\nSubject: held\n\nfor later\n")
    with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
        s.ehlo("lan-host.edge.example")
        code, text = s.docmd("ETRN", "held.example")
    text = text.decode()
    assert code == 458, (code, text)
    assert text.startswith("4.4.2 Unable to queue messages for node held.example now: 1 message(s) held"), text
    assert "our line is down" in text
    assert "runner: queue run start" not in d.log.read_text().split("ETRN")[-1]


# ---------------------------------------------------------------- 17 §8: contradictions

def test_a_line_never_dialled_has_no_phase(external):
    d = external()
    link = status(d)["link"]
    assert link["state"] == "down" and link["phase"] is None, link


def test_the_link_up_run_clears_the_host_status_once_and_says_so_once(tmp_path, netns_iface):
    """Root: the line is a veth in a namespace of the test's own, brought up as pppd does."""
    line = netns_iface(IFACE)
    (tmp_path / "spool").mkdir()
    failed = [{"host": h, "last": time.time() - 60, "ok": False, "dsn": "4.4.1", "text": "connect timeout",
               "run": "1.1"} for h in ("mx1.example.net", "mx2.example.net")]
    (tmp_path / "spool" / "hoststat.json").write_text(json.dumps({"version": 1, "hosts": failed}))
    (tmp_path / "dial.policy").write_text("set idle_hangup = 1h\n")
    d = Daemon(write_config(tmp_path, {"link": {"mode": "external", "interface": IFACE, "netns": line.ns,
                                                "policy": str(tmp_path / "dial.policy"), "etrn_host": ""}}))
    d.start()
    try:
        assert "mx1.example.net" in edgemail(d, "hoststat")
        line.up()
        until(lambda: "runner: queue run end" in d.log.read_text(), "the link-up run", d)
        log = d.log.read_text()
        assert "runner: link up, hoststatus_cleared=2, " in log, log
        assert "hoststatus cleared, hosts=" not in log and "hoststatus_cleared=0" not in log
        assert "mx1.example.net" not in edgemail(d, "hoststat")
        assert status(d)["link"]["phase"] in ("run", "etrn", "linger")         # a phase only while up
    finally:
        d.stop()


def test_newaliases_reads_the_aliases_only_whatever_dial_policy_says(external, tmp_path):
    aliases = tmp_path / "aliases"
    aliases.write_text("postmaster: root\nwebmaster: root\n")
    d = external(overrides={"local": {"aliases": str(aliases)}})
    (tmp_path / "dial.policy").write_text("set dial_when_queued = many\n")      # broken
    aliases.write_text("postmaster: root\nwebmaster: root\nsales: root\n")
    r = cli(d, "newaliases")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.decode().endswith("3 aliases, read again by the daemon\n"), r.stdout
    assert "daemon: reloaded, reason=newaliases, aliases=3, only=aliases" in d.log.read_text()
    r = cli(d, "edgemail", "reload")                       # a whole reload still checks the policy
    assert r.returncode != 0 and f"{tmp_path / 'dial.policy'}:1" in r.stderr.decode(), r.stderr


# ---------------------------------------------------------------- 16 §9: pppd's setup errors stop dialling

class Notify:
    """NOTIFY_SOCKET: a datagram socket in tmp that collects what the daemon tells systemd."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.said: list[str] = []

    def statuses(self) -> list[str]:
        while True:
            try:
                self.said.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                break
        return [line[len("STATUS="):] for msg in self.said for line in msg.splitlines() if line.startswith("STATUS=")]


@pytest.fixture
def modem(tmp_path):
    """hardware-sim's modem on a pty (no root: without a namespace its line is a loopback)."""
    from tests.hwsim.hwsim_helpers import ModemProc
    m = ModemProc(tmp_path, ["--connect-delay", "0.05"])
    yield m
    m.stop()


def dials(modem) -> int:
    return sum(1 for e in modem.control("events")["events"] if e["event"] == "dial")


def test_pppd_setup_errors_stop_dialling_until_a_reload(tmp_path, modem):
    (tmp_path / "dial.policy").write_text("set dial_when_queued = 1\nset redial_gap = 1s\nset idle_hangup = 1h\n")
    cfg = write_config(tmp_path, {"link": {
        "mode": "modem", "interface": IFACE, "policy": str(tmp_path / "dial.policy"), "etrn_host": "",
        "device": modem.tty, "numbers": ["5551234"], "pppd": str(HWSIM / "fakepppd"),
        "pppd_args": ["demand", "nodetach"], "dial_timeout": "10s", "dial_retries": 1,
        "command_timeout": "1s", "dial_backoff": "1s", "dtr_drop": 0.1, "escape_guard": 0.2}})
    notify = Notify(tmp_path / "notify.sock")
    d = Daemon(cfg, env={"NOTIFY_SOCKET": notify.path})
    d.start()
    try:
        sendmail(d)
        until(lambda: "link: dialing=stopped" in d.log.read_text(), "dialling stopped", d)
        log = d.log.read_text()
        assert "link: pppd=exited, status=2, cause=bad-options" in log
        assert ("link: dialing=stopped, cause=pppd-exit(2,bad-options), until=reload "
                "(fix: pppd's options: [link] pppd_args, /etc/ppp/peers/NAME, /etc/ppp/options)") in log
        assert "link: state=BACKOFF" not in log and dials(modem) == 1
        st = status(d)
        assert st["link"]["state"] == "down" and st["link"]["stopped"]["cause"] == "pppd-exit(2,bad-options)"
        assert st["next"]["dial"] is False and st["next"]["reason"].startswith("dialing stopped: pppd exited 2")
        assert "dialing stopped: pppd exited 2 (bad-options)" in edgemail(d, "status")
        explain = edgemail(d, "link", "explain")
        assert "dialing stopped: pppd exited 2 (bad-options)" in explain and "systemctl reload edgemail" in explain
        until(lambda: any("dialing stopped" in s for s in notify.statuses()), "STATUS= saying so", d)

        sendmail(d)                                         # the policy wants a call: none is made
        until(lambda: d.log.read_text().count("link: dial=held") >= 1, "the policy's dial held back", d)
        assert dials(modem) == 1

        r = cli(d, "edgemail", "reload")
        assert r.returncode == 0, r.stderr
        until(lambda: d.log.read_text().count("link: dialing=stopped") == 2, "a dial after the reload, stopped again", d)
        assert "link: dialing=resumed, reason=reload" in d.log.read_text() and dials(modem) == 2
    finally:
        d.stop()
        notify.sock.close()
