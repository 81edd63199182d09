"""linkup — `make bench`, issue 6: ppp0 up -> first byte of the first queued message on the wire.

Usage (as root): tests/bench/linkup.py [--runs 20] [--line 56k|fast] [--no-hooks] [--out bench-out]

What it measures, in one hardware-sim world (simworld.World: the modem on
a pty, the paced line, the ISP namespace), for two systems holding one
message each for the same SMTP sink behind the line:

* edgemail: its daemon in the edge namespace, [link] mode = "external"
  (the bench runs fakepppd, as an administrator's own pppd would be),
  hearing of ppp0 from netlink and from its installed ip-up hook;
* the classic recipe: sendmail 8.17 (DeliveryMode=deferred, SMART_HOST the
  sink) whose queue is flushed by an ip-up script running `sendmail -q`
  (the seed recipe, /work/shared/seeds/000_...).

Each run: queue one message (line down) -> start fakepppd (chat dials the
modem, CONNECT) -> ppp0 comes up -> the system sends -> the session ends
(sendmail: QUIT; edgemail caches the connection, so the sink closes it
with 421 after 0.5 s idle) and the queue is empty -> 0.5 s more on the
line (the close reaches the client) -> fakepppd is stopped (ppp0 gone).
Without that, edgemail's cache carries a connection from call to call
(the simulated line never changes addresses nor resets anything) and the
next run pays a round trip for the RSET probe that finds it dead.
Systems alternate run by run (which one goes first alternates too), after
one unrecorded warm-up run each.

The instants, all CLOCK_MONOTONIC (one clock for every namespace):
    ppp0 up   RTM_NEWROUTE of the default route via ppp0, seen by a netlink
              socket in the edge namespace (linkup_netmon.py): the first
              instant a packet can leave.  (fakepppd, as pppd: link UP,
              address, route, DNS file, pid file, then ip-up is started.)
    first byte  the sink's recv() that brought the first byte of MAIL FROM
              (the first byte of the message's SMTP transaction; reported:
              route -> MAIL) and, also reported, the first byte after 354
              (the message itself) and the TCP accept.
Nothing is subtracted from these.  The line's share is measured apart:
after the runs, a minimal client in the edge namespace (the line already
up) stamps t0, connects and talks the same dialogue without delay, 10
times; medians of (accept - t0), (MAIL - t0), (1st DATA byte - t0) are
the physical part, and "processing" = interval - that share.

Output: a table on stdout and bench-out/linkup.json (--line fast:
linkup-fast.json) (every run's stamps
and intervals, the probes, the line, load averages, the definitions).
State (configs, queues, edgemail's daemon.log, fakepppd.log, sink.log)
stays in bench-out/state/linkup/ until the next run.

Never does: touch the machine's network, /etc/resolv.conf or /etc/hosts;
it writes /etc/netns/<world's edge namespace>/{hosts,resolv.conf} (the
world's DNS; the gateway's name) and removes them with the world.

Needs root (namespaces, TUN): without it prints why and exits 77.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "hardware-sim"))

import linkup_report as R  # noqa: E402
import peers  # noqa: E402

SINK_IP = "198.51.100.20"          # on lo in the ISP namespace: beside the world's own sinks
LINES = {"56k": {"down_bps": 56000, "up_bps": 33600, "delay_ms": 50},      # V.90, as make demo
         "fast": {"down_bps": 2_000_000, "up_bps": 2_000_000, "delay_ms": 5}}
PROBES = 10
RUN_TIMEOUT_S = 90.0
IDLE_CLOSE_S = 0.5                 # the sink closes a session idle this long after a message
LINGER_S = 0.5                     # line kept up after the session ended (> 2 round trips)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="recorded runs per system (after 1 warm-up)")
    ap.add_argument("--line", choices=sorted(LINES), default="56k",
                    help="56k: 56000/33600 bit/s, 50 ms each way (default); fast: 2 Mbit/s, 5 ms")
    ap.add_argument("--no-hooks", action="store_true",
                    help="edgemail hears of ppp0 from netlink only (no ip-up hook)")
    ap.add_argument("--systems", default="edgemail,sendmail")
    ap.add_argument("--out", default=str(REPO / "bench-out"))
    return ap.parse_args(argv)


class SinkLog:
    """linkup_sink.py in the ISP namespace; its JSON events, kept and waited on."""

    def __init__(self, world, log: Path) -> None:
        self.events: list[dict] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", world.isp_ns, sys.executable, str(HERE / "linkup_sink.py"),
             "--listen", f"{SINK_IP}:25", "--idle-close", str(IDLE_CLOSE_S)], stdout=subprocess.PIPE, stderr=open(log, "wb"),
            text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.wait(lambda e: e["ev"] == "ready", 15, "the sink's ready line")

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.cond:
                self.events.append(json.loads(line))
                self.cond.notify_all()

    def wait(self, pred, timeout: float, what: str) -> dict:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                hit = next((e for e in self.events if pred(e)), None)
                if hit is not None:
                    return hit
                if time.monotonic() > end or self.proc.poll() is not None:
                    raise RuntimeError(f"linkup: no {what} at the sink within {timeout:.0f}s")
                self.cond.wait(0.2)

    def stamps(self, conn: int) -> dict:
        """t_accept, t_ehlo, t_mail, t_rcpt, t_data, t_data1, t_data_end, t_close of one session."""
        out = {}
        with self.cond:
            for e in self.events:
                if e.get("conn") != conn:
                    continue
                key = "t_" + (e["verb"].lower() if e["ev"] == "cmd" else e["ev"])
                out.setdefault(key, e["t"])
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)


class Line:
    """fakepppd in the edge namespace (gateway hostname, /etc/netns files), one call at a time."""

    def __init__(self, world, edge, mon, log: Path) -> None:
        import simworld
        self.world, self.edge, self.mon, self.log = world, edge, mon, log
        self.chat = simworld.chat_script(world.dial_number)
        self.proc: subprocess.Popen | None = None

    def up(self, scripts: dict[str, str], timeout: float = 60.0) -> dict:
        w = self.world
        argv = self.edge([w.fakepppd_path, w.tty, "115200", "connect", self.chat, "nodetach",
                          "defaultroute", "usepeerdns", "ipparam", "isp", "linkname", "linkup"])
        t0 = time.monotonic()
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(argv, env={**os.environ, **w.fakepppd_env(), **scripts},
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         start_new_session=True)
        t_route = self.mon.wait("route", t0, timeout)
        return {"t_start": t0, "t_link_up": self.mon.first("link_up", t0),
                "t_addr": self.mon.first("addr", t0), "t_route": t_route}

    def down(self, after: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()                         # fakepppd's exit 5: ppp0 torn down, DTR dropped
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.mon.wait("gone", after, 10)


def wait_until(pred, timeout: float, what: str, tail=lambda: "") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise RuntimeError(f"linkup: timed out waiting for {what}\n{tail()}")
        time.sleep(0.05)


def one_run(side, tag: str, line: Line, sink: SinkLog, world, edgemail) -> dict:
    """Queue one message with the line down, bring the line up, stamp the delivery, hang up."""
    side.queue_one(tag)
    wait_until(lambda: side.queued() == 1, 30, f"{side.name}: {tag} queued")
    dns0 = world.dns_query_count()
    load = os.getloadavg()
    rec = {"system": side.name, "tag": tag, "loadavg": [round(x, 2) for x in load]}
    try:
        rec.update(line.up(side.scripts()))
        acc = sink.wait(lambda e: e["ev"] == "accept" and e["t"] >= rec["t_start"], RUN_TIMEOUT_S,
                        f"{side.name}: connection for {tag}")
        sink.wait(lambda e: e.get("conn") == acc["conn"] and e["ev"] == "close", RUN_TIMEOUT_S,
                  f"{side.name}: end of the session for {tag}")   # QUIT, or the sink's idle close
        rec.update(sink.stamps(acc["conn"]))
        wait_until(lambda: side.queued() == 0, RUN_TIMEOUT_S, f"{side.name}: queue empty after {tag}",
                   getattr(side, "log_tail", lambda: ""))
        rec["dns_queries"] = world.dns_query_count() - dns0
        rec["dns"] = dns_seen(world, rec["t_route"], dns0)
        time.sleep(LINGER_S)       # the sink's 421 and FIN reach the client before the line drops
    finally:
        line.down(rec.get("t_start", 0.0))
    if edgemail is not None:       # the daemon has seen the line go (netlink) before the next run
        wait_until(lambda: edgemail.link_state() == "down", 30, "edgemail: link down", edgemail.log_tail)
    time.sleep(0.3)
    return rec


def dns_seen(world, t_route: float, count_before: int) -> list[list]:
    """The run's DNS queries at the ISP: [ms after ppp0 up, qname, qtype] (the DNS log is in wall time)."""
    wall_minus_mono = time.time() - time.monotonic()
    queries = world.dns_queries()[count_before:]
    return [[round((q["t"] - wall_minus_mono - t_route) * 1000, 1), q["qname"], q["qtype"]] for q in queries]


def probe_once(world, sink: SinkLog) -> dict:
    """A client that thinks no time: connect, EHLO, MAIL, RCPT, DATA, one line, ., QUIT."""
    with world.in_edge():
        s = socket.socket()
    try:
        t0 = time.monotonic()
        s.connect((SINK_IP, 25))
        port = s.getsockname()[1]
        f = s.makefile("rb")

        def reply() -> None:
            while (ln := f.readline()) and ln[3:4] == b"-":
                pass
        reply()
        for cmd in (b"EHLO probe.edge.example", b"MAIL FROM:<probe@edge.example>",
                    b"RCPT TO:<probe@remote1.example>", b"DATA"):
            s.sendall(cmd + b"\r\n")
            reply()
        s.sendall(b"Subject: probe\r\n\r\nprobe\r\n.\r\n")
        reply()
        s.sendall(b"QUIT\r\n")
        reply()
    finally:
        s.close()
    acc = sink.wait(lambda e: e["ev"] == "accept" and e["port"] == port and e["t"] >= t0, 30, "probe accept")
    sink.wait(lambda e: e.get("conn") == acc["conn"] and e["ev"] == "close", 30, "probe close")
    return {"t0": t0, **sink.stamps(acc["conn"])}


def run_all(args, out: Path, state: Path) -> dict:
    import netns
    import simworld
    from linkup_netmon import NetMon
    from linkup_systems import ClassicSide, EdgeExec, EdgemailSide

    names = args.systems.split(",")
    root = peers.install_peer("sendmail", out / "peers") if "sendmail" in names else None
    world = simworld.World.up(modem={"connect_delay": 0.3}, link=LINES[args.line])
    etc = Path("/etc/netns") / world.edge_ns
    sides, sink, mon, em = [], None, None, None
    try:
        netns.ip("addr", "add", f"{SINK_IP}/32", "dev", "lo", ns=world.isp_ns)
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(f"nameserver {world.dns_ip}\noptions attempts:1 timeout:2\n")
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n{world.edge_ip} gw.edge.example gw\n")
        sink = SinkLog(world, state / "sink.log")
        with world.in_edge():
            mon = NetMon.open("ppp0", world.edge_ip)
        mon.start()
        edge = EdgeExec(world.edge_ns)
        for name in names:
            if name == "edgemail":
                em = EdgemailSide(state / "edgemail", world, SINK_IP, hooks=not args.no_hooks)
                sides.append(em)
            elif name == "sendmail":
                sides.append(ClassicSide(state / "sendmail", root, edge, SINK_IP))
            else:
                raise SystemExit(f"linkup: unknown system {name!r} (edgemail, sendmail)")
        for side in sides:
            print(f"linkup: preparing {side.name}", flush=True)
            side.prepare()
            side.start()
        line = Line(world, edge, mon, state / "fakepppd.log")
        loads = [round(x, 2) for x in os.getloadavg()]
        runs: list[dict] = []
        for i in range(args.runs + 1):
            order = sides if i % 2 == 0 else sides[::-1]
            for side in order:
                rec = one_run(side, f"linkup-{i}-{side.name}", line, sink, world, em)
                rec["warmup"] = i == 0
                runs.append(rec)
                d = R.derive(rec, {})
                print(f"linkup: run {i:2d}{' (warm-up)' if i == 0 else ''} {side.name:9} "
                      f"ppp0 up -> MAIL {d['route_mail']:7.1f} ms, -> accept {d['route_accept']:7.1f} ms, "
                      f"DNS {rec['dns_queries']}, load {rec['loadavg'][0]}", flush=True)
        probes = measure_probes(world, line, sink)
        return {"runs": runs, "probes": probes, "loadavg_before": loads,
                "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    finally:
        for side in sides:
            side.stop()
        if sink is not None:
            sink.stop()
        if mon is not None:
            mon.close()
        world.down()
        shutil.rmtree(etc, ignore_errors=True)


def measure_probes(world, line: Line, sink: SinkLog) -> list[dict]:
    """The line's share: PROBES minimal sessions over a line already up (no ip-up script)."""
    up = line.up({"FAKEPPPD_IP_UP": "/nonexistent", "FAKEPPPD_IP_DOWN": "/nonexistent"})
    try:
        time.sleep(0.5)
        return [probe_once(world, sink) for _ in range(PROBES)]
    finally:
        line.down(up["t_start"])


def report(result: dict, args) -> dict:
    phys = R.physical(result["probes"])
    recorded = [r for r in result["runs"] if not r["warmup"]]
    by_system = {}
    for name in args.systems.split(","):
        mine = [r for r in recorded if r["system"] == name]
        by_system[name] = R.summarise(mine, phys)
        by_system[name]["dns_queries"] = R.summary([r["dns_queries"] for r in mine])
    for r in result["runs"]:
        r["derived_ms"] = R.derive(r, phys)
    meta = {"line": {"name": args.line, **LINES[args.line]}, "runs": args.runs,
            "loadavg_before": result["loadavg_before"], "loadavg_after": result["loadavg_after"]}
    text = R.table(by_system, phys, {**meta, "line": _line_text(args.line)})
    return {"table": text, "summary_ms": by_system, "physical_ms": phys, **meta,
            "edgemail_hooks": not args.no_hooks, "nproc": os.cpu_count(),
            "definitions": DEFINITIONS, "runs_raw": result["runs"], "probes_raw": result["probes"]}


def _line_text(name: str) -> str:
    ln = LINES[name]
    return (f"{ln['down_bps']}/{ln['up_bps']} bit/s down/up, {ln['delay_ms']} ms each way, "
            f"modem buffer 8 KB")


DEFINITIONS = {
    "ppp0_up": "RTM_NEWROUTE default via ppp0 (main table), netlink socket in the edge namespace, "
               "time.monotonic() right after recv()",
    "first_byte": "sink in the ISP namespace: time.monotonic() right after the recv() that returned "
                  "the first byte of MAIL FROM (route_mail); of the first byte after 354 (route_data1)",
    "accept": "sink: time.monotonic() right after accept() returned (handshake's ACK arrived)",
    "physical": "medians over probes: a client in the edge namespace that stamps t0 before connect() "
                "and talks EHLO/MAIL/RCPT/DATA without delay over the line already up",
    "processing": "interval minus the physical median of the same end point",
    "p90": "nearest rank",
}


def main(argv=None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("linkup: skipped: needs root (hardware-sim world: network namespaces, TUN; "
              "sendmail runs as root)", file=sys.stderr)
        return 77
    out = Path(args.out).resolve()
    state = out / "state" / "linkup"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    print(f"linkup: {args.runs} runs per system + 1 warm-up, line {_line_text(args.line)}", flush=True)
    result = run_all(args, out, state)
    rep = report(result, args)
    print("\n" + rep["table"])
    path = out / ("linkup.json" if args.line == "56k" else f"linkup-{args.line}.json")
    path.write_text(json.dumps(rep, indent=1) + "\n")
    print(f"\nlinkup: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
