"""story.py - ``make demo`` as root: the whole dial-on-demand story in hardware-sim.

NAME
    demo.story - story(out_dir, keep=False) -> exit status

DESCRIPTION
    Brings up a hardware-sim world (simworld.World: a modem on a pty, the
    line paced like a V.90 modem, the ISP with its counting DNS, relay and
    MX sinks), starts the daemon inside the world's edge namespace
    configured for it (the modem's tty, fakepppd as pppd, ppp0, ETRN to the
    ISP relay, DNS from pppd's usepeerdns file, edge.example delivered to
    Maildirs, the demo dial policy below), and then tells the story:

      1. the ISP holds a message for alice@edge.example (our line is down);
      2. a LAN host submits over SMTP, a cron job with ``sendmail -t``;
         the ISP's DNS has been asked nothing;
      3. the policy's tick (the oldest message has waited 5 s) dials:
         CONNECT, ppp0 up, a queue run sends the mail out (DNS now), ETRN
         asks the ISP for alice's message, the ISP pushes it, it lands in
         alice's Maildir;
      4. the line goes quiet: hang-up.

    The daemon's log lines are stamped as they appear (the daemon writes
    none) and merged with what the world reports into a timeline
    (demo.timeline): printed, and written to OUT/timeline.txt,
    OUT/timeline.svg and OUT/daemon.log.  Exit 0 when every step was seen;
    1 with the steps that did not happen named; with keep=True the world
    and the daemon stay up and the commands to explore them are printed.

    Outbound mail goes as the example configuration sends it: ``"*" =
    smarthost`` (expensive, dialdelay) to the ISP relay, STARTTLS verified
    against the certificate the world made at start (SmartHostCAFile), AUTH
    with the world's credentials from a 0600 SmartHostAuthFile; the relay
    passes it on to the remote MX sinks.  The story prints the relay's AUTH
    and relay events after the call.

NEVER
    Addresses anything outside the world's namespaces and loopback; leaves
    a world or a daemon behind unless asked to (the world's reaper tears it
    down even if this process is killed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from demo import timeline as T
from demo.run import (
    BIN,
    ROOT,
    Daemon,
    _sample_sendmail,
    _sample_smtp,
    _step,
    write_config,
)

sys.path.insert(0, str(ROOT / "hardware-sim"))
import simworld  # noqa: E402

#: make demo's dial policy: the shipped etc/dial.policy calls on the quarter hour
POLICY = """\
# make demo's dial policy.  The shipped etc/dial.policy calls every quarter
# hour in office hours; a demo cannot wait that long, so this one dials as
# soon as the oldest message waiting for the link is 5 s old, and hangs up
# after 4 s without traffic on ppp0.
set dial_when_oldest = 5s
set idle_hangup = 4s
set max_connect = 5m
"""
MODEM = {"connect_delay": 3.0}          # a modem's handshake takes seconds
LINE = {"down_bps": 56000, "up_bps": 33600, "delay_ms": 50}   # V.90: 56k down, 33.6k up
TARIFF = T.Tariff(setup=0.10, per_minute=0.04, currency="EUR")
STORY_TIMEOUT_S = 90.0
SAMPLE_S = 0.2


class LogTail(threading.Thread):
    """Reads the daemon's log file as it grows; stamps each line with the wall time it appeared."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.lines, self._quit = path, [], threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        with open(self.path, "rb") as f:
            buf = b""
            while not self._quit.is_set():
                chunk = f.read()
                if not chunk:
                    time.sleep(0.02)
                    continue
                buf += chunk
                *done, buf = buf.split(b"\n")
                now = time.time()
                with self._lock:
                    self.lines += [T.LogLine(now, x.decode(errors="replace")) for x in done]

    def snapshot(self) -> list[T.LogLine]:
        with self._lock:
            return list(self.lines)

    def stop(self) -> None:
        self._quit.set()
        self.join(2)


def story_config(tmp: Path, world) -> Path:
    """The daemon's config for the world: edge namespace, modem, fakepppd, ETRN, Maildirs."""
    policy = tmp / "dial.policy"
    policy.write_text(POLICY)
    # pppd's options file, root-owned on a router; no connect script: edgemail dials itself
    (Path(world.peers_dir) / "edgemail").write_text(
        "115200\nnodetach\nnoauth\ndefaultroute\nusepeerdns\nipparam edgemail\nlinkname edgemail\n")
    return write_config(tmp, {
        "hostname": "gw.edge.example",
        "local_domains": ["edge.example"],
        "listen": [{"name": "lan", "address": "127.0.0.1", "port": 25, "strict": False},
                   {"name": "wan", "address": world.edge_ip, "port": 25, "strict": True}],
        "SmartHost": f"[{world.relay_ip}]:25",
        "SmartHostAuthFile": world.write_auth_file(str(tmp / "smarthost.auth")),
        "SmartHostCAFile": world.relay_cert,
        "routes": {"*": {"route": "smarthost", "expensive": True, "dialdelay": True}},
        # The ISP's DNS by address: pppd's usepeerdns file would do, but fakepppd
        # writes it after ppp0's address, and the runner may read it first.
        "dns": {"nameservers": [world.dns_ip], "peer_dns_file": world.resolv_conf},
        "link": {"mode": "modem", "interface": "ppp0", "policy": str(policy),
                 "etrn_host": f"{world.relay_ip}:25", "device": world.tty, "numbers": [world.dial_number],
                 "pppd": world.fakepppd_path, "pppd_args": ["call", "edgemail"],
                 "state_file": str(tmp / "link.json"), "dial_timeout": 20, "dial_retries": 2,
                 "command_timeout": 2, "dial_backoff": 1, "dtr_drop": 0.2, "escape_guard": 0.2},
    })


class Recorder:
    """What the world says while the story runs: byte counters, DNS counts, notes."""

    def __init__(self, world) -> None:
        self.world = world
        self.samples: list[T.Sample] = []
        self.notes: list[T.WorldEvent] = []

    def sample(self) -> T.Sample:
        c = self.world.modem_control("status")["counters"]
        s = T.Sample(time.time(), c["up_bytes"] + c["down_bytes"], self.world.dns_query_count())
        self.samples.append(s)
        return s

    def dns_note(self, line: str) -> int:
        n = self.world.dns_query_count()
        self.notes.append(T.WorldEvent(time.time(), "dns", "count", {"count": n, "line": line}))
        return n

    def isp_events(self) -> list[T.WorldEvent]:
        log = self.world.isp_control("relay_log")["log"]
        return [T.WorldEvent(e["t"], "isp", e["event"], e) for e in log if e["event"] == "held"]

    def timeline(self, tail: LogTail) -> T.Timeline:
        return T.build(tail.snapshot(), self.notes + self.isp_events(), self.samples, TARIFF,
                       isp_peers=(self.world.isp_ip,))


def story(out: Path, *, keep: bool = False) -> int:
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="edgemail-story-"))
    _step("bringing up the hardware-sim world: modem on a pty, 56k/33.6k line, the ISP (DNS, relay, MX sinks)")
    world = simworld.World.up(modem=MODEM, link=LINE, owner=None if keep else -1)
    print(f"    world {world.id}: edge namespace {world.edge_ns}, modem {world.tty}, ISP relay {world.relay_ip}")
    config = story_config(tmp, world)
    env = {**world.fakepppd_env(), "EDGEMAIL_CONFIG": str(config)}
    daemon = Daemon(config, env=env, prefix=["ip", "netns", "exec", world.edge_ns])
    tail, status = None, 1
    try:
        daemon.log.touch()
        tail = LogTail(daemon.log)
        tail.start()
        status = _tell(world, daemon, tail, Recorder(world), out, {**os.environ, **env})
        if keep:
            _explore_note(world, daemon, config)
        return status
    except (simworld.WorldError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        print(f"\ndemo FAILED: {e}", file=sys.stderr)
        return 1
    finally:
        if tail is not None:
            tail.stop()
        if not keep:
            daemon.stop()
            world.down()
            shutil.rmtree(tmp, ignore_errors=True)


def _tell(world, daemon: Daemon, tail: LogTail, rec: Recorder, out: Path, env: dict) -> int:
    _step(f"starting the daemon in the edge namespace: ip netns exec {world.edge_ns} "
          f"{sys.executable} -m edgemail run -c {daemon.config}")
    rec.sample()
    daemon.start()
    _step("the ISP holds a message for alice@edge.example: our line is down")
    world.inject_held_mail("alice@edge.example", mail_from="carol@remote1.example")
    _step("a LAN host submits over SMTP (to bob@remote1.example and bob@edge.example)")
    with world.in_edge():
        _sample_smtp(25, to="bob@remote1.example, bob@edge.example")
    _step("a cron job submits with `sendmail -t` (to ops@remote2.example)")
    _sample_sendmail(env, to="ops@remote2.example")
    n = rec.dns_note("down")
    print(f"    DNS queries at the ISP so far: {n} (accepting mail never looks anything up)")
    print(subprocess.run([str(BIN / "mailq")], env=env, capture_output=True, text=True, timeout=30).stdout, end="")
    _step("waiting for the dial policy (dial when the oldest message has waited 5 s) ...")
    tl = _follow(tail, rec)
    text = T.render_text(tl)
    _step("the timeline")
    print(text, end="")
    (out / "timeline.txt").write_text(text)
    (out / "timeline.svg").write_text(T.render_svg(tl))
    (out / "daemon.log").write_text("".join(f"{ln.t:.3f} {ln.text}\n" for ln in tail.snapshot()))
    maildir = daemon.config.parent / "mail" / "alice" / "Maildir" / "new"
    got = sorted(os.listdir(maildir)) if maildir.is_dir() else []
    _relay_note(world)
    print(f"\nalice's Maildir ({maildir}): {len(got)} message(s); remote MX sinks received "
          f"{len(world.sink_messages())} message(s)")
    print(f"written: {out}/timeline.txt, {out}/timeline.svg, {out}/daemon.log")
    failed = tl.verdict()
    if failed:
        print(f"\ndemo FAILED: {failed}\nlast daemon log lines:\n"
              + "".join(f"    {ln.text}\n" for ln in tail.snapshot()[-15:]), file=sys.stderr)
        return 1
    print("\ndemo OK: the whole story happened, one call")
    return 0


def _relay_note(world) -> None:
    """What the ISP relay saw of our smart-host session: AUTH (over TLS?) and the onward relays."""
    for a in world.relay_log("auth"):
        print(f"    ISP relay: AUTH {a['mechanism']} as {a['user']}: {'accepted' if a['ok'] else 'refused'}"
              f"{' over TLS' if a['tls'] else ' IN CLEAR'}")
    for r in world.relay_log("relay"):
        print(f"    ISP relay: {','.join(r['rcpts'])} -> {r.get('relay', '?')}: {r['status']}"
              f" (auth={r['auth']}, tls={str(r['tls']).lower()})")


def _follow(tail: LogTail, rec: Recorder) -> T.Timeline:
    """Sample the world until the call has ended (or STORY_TIMEOUT_S); print the link's steps live."""
    end = time.monotonic() + STORY_TIMEOUT_S
    shown = 0
    while True:
        rec.sample()
        tl = rec.timeline(tail)
        live = [e for e in tl.events if e.lane == "line" and e.step]
        for e in live[shown:]:
            print(f"    {e.t - tl.t0:6.2f}s  {e.text}", flush=True)
        shown = len(live)
        if "down" in tl.seen() or time.monotonic() > end:
            time.sleep(0.5)                   # the last lines (call ended) and a final sample
            rec.sample()
            return rec.timeline(tail)
        time.sleep(SAMPLE_S)


def _explore_note(world, daemon: Daemon, config: Path) -> None:
    ns = world.edge_ns
    print(f"""
The world and the daemon keep running (daemon pid {daemon.proc.pid}, log {daemon.log}).
    export EDGEMAIL_CONFIG={config}
    {BIN}/mailq
    {BIN}/edgemail status --json
    {BIN}/edgemail link explain
    {BIN}/edgemail link dial                       # call now, whatever the policy says
    ip netns exec {ns} swaks --server 127.0.0.1:25 --from till-3@edge.example --to you@remote2.example
    {ROOT}/hardware-sim/world status
    {ROOT}/hardware-sim/world down {world.id}     # stops the daemon too (it runs in {ns}); then rm -r {config.parent}""")
