"""run — `make bench`: edgemail against sendmail 8.17 and Postfix 3.7, same run, same workload.

Usage (as root): tests/bench/run.py [--systems edgemail,sendmail,postfix]
    [--count 2000] [--size 10240] [--connections 4] [--rounds 1]
    [--mailq-count 100000 | --mailq-count 0] [--mta-tree /work/wt/mta]
    [--out bench-out] [--peer-logs]

What it does: installs the peers privately (peers.py: apt-get download +
dpkg -x into bench-out/peers/), creates a network namespace of its own
(`embench-<pid>`, removed at exit) with lo up and two "LAN" addresses on it,
/etc/netns/<ns>/resolv.conf pointing at a counting DNS server inside the
namespace and /etc/netns/<ns>/hosts naming the gateway (`ip netns exec`
bind-mounts both over /etc in a private mount namespace: the machine's own
/etc/resolv.conf is never touched), then re-runs itself inside the namespace
with a private UTS namespace whose hostname is gw.edge.example.

Inside, for each system in turn: fresh state, a fresh DNS log, start, wait
for the 220 greeting, the submission workload (submit.py) while sampling the
daemon's process tree memory, then optionally the mailq figure (mailq.py:
fill to --mailq-count over SMTP, time the listing warm and cold), stop.
Prints a table and writes bench-out/bench-<time>.json (+ latest.json).

Never does: touch the host's network, /etc/resolv.conf or installed packages;
address anything outside its namespace.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import clistart  # noqa: E402
import drain  # noqa: E402
import mailq as mailqmod  # noqa: E402
import peers  # noqa: E402
from submit import TreeSampler, submit, tree as submit_tree, wait_listening  # noqa: E402

REPO = HERE.parent.parent
DNS_IP = "127.0.0.1"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--systems", default="edgemail,sendmail,postfix")
    ap.add_argument("--count", type=int, default=2000,
                    help="messages in the submission workload (0: skip it, e.g. drain only)")
    ap.add_argument("--size", type=int, default=10240, help="bytes per message")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat the workload, systems interleaved, fresh state each time")
    ap.add_argument("--mailq-count", type=int, default=100000,
                    help="queue size for the mailq timing (0: skip)")
    ap.add_argument("--mta-tree", default=os.environ.get("EDGEMAIL_TREE", str(REPO)),
                    help="worktree whose .venv runs `python -m edgemail run`")
    ap.add_argument("--out", default=str(REPO / "bench-out"))
    ap.add_argument("--peer-logs", action="store_true",
                    help="Postfix logs to a file (default: both peers log to syslog, "
                         "which is absent here, as edgemail's log goes to a file)")
    ap.add_argument("--drain-count", type=int, default=0,
                    help="issue 3's drain benchmark: messages to drain over the paced line "
                         "(200 in the issue: about 12 min at 56k; 0: skip)")
    ap.add_argument("--drain-rate", type=float, default=56000.0, help="line rate, bit/s")
    ap.add_argument("--drain-rtt", type=float, default=0.1, help="line round trip, s")
    ap.add_argument("--drain-timeout", type=float, default=3600.0)
    ap.add_argument("--cli-runs", type=int, default=20,
                    help="issue 15: calls of each system's mailq and sendmail -t with 100 queued (0: skip)")
    ap.add_argument("--idle-sessions", type=int, default=500,
                    help="issue 15 §1: idle SMTP sessions held in the command-line phase (0: skip)")
    ap.add_argument("--idle-seconds", type=float, default=60.0,
                    help="how long they are held while the memory is sampled")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


# ---------------------------------------------------------------- outside the namespace

def outer(args: argparse.Namespace, argv: list[str]) -> int:
    if os.geteuid() != 0:
        print("bench: needs root (network namespace, peers run as root)", file=sys.stderr)
        return 77
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    systems = args.systems.split(",")
    for name in ("sendmail", "postfix"):
        # the drain's sink is Postfix's smtp-sink, whichever system drains
        if name in systems or (name == "postfix" and args.drain_count):
            print(f"bench: {name}: {peers.install_peer(name, out / 'peers')}", flush=True)
    ns = f"embench-{os.getpid()}"
    etc = Path("/etc/netns") / ns
    try:
        for cmd in (["ip", "netns", "add", ns],
                    ["ip", "-n", ns, "link", "set", "lo", "up"],
                    ["ip", "-n", ns, "addr", "add", f"{peers.SERVER_IP}/32", "dev", "lo"],
                    ["ip", "-n", ns, "addr", "add", f"{peers.CLIENT_IP}/32", "dev", "lo"]):
            peers.run(cmd, "netns")
        etc.mkdir(parents=True)
        (etc / "resolv.conf").write_text(f"nameserver {DNS_IP}\noptions attempts:1 timeout:1\n")
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n"
                                   f"{peers.SERVER_IP} {peers.HOSTNAME} gw\n")
        inner_cmd = ["ip", "netns", "exec", ns, "unshare", "--uts", "--",
                     sys.executable, str(Path(__file__).resolve()), *argv, "--inner",
                     "--out", str(out)]
        env = dict(os.environ, EMBENCH_OUTER_UTS=os.readlink("/proc/self/ns/uts"))
        return subprocess.run(inner_cmd, env=env).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(etc, ignore_errors=True)


# ---------------------------------------------------------------- inside the namespace

def make_systems(args, out: Path) -> list[peers.MailSystem]:
    systems = []
    for name in args.systems.split(","):
        state = out / "state" / name
        if name == "sendmail":
            systems.append(peers.Sendmail(state, out / "peers/sendmail/root"))
        elif name == "postfix":
            systems.append(peers.Postfix(state, out / "peers/postfix/root", args.peer_logs))
        elif name == "edgemail":
            systems.append(peers.Edgemail(state, Path(args.mta_tree)))
        else:
            raise SystemExit(f"bench: unknown system {name!r}")
    return systems


def tree_cpu(roots: list[int]) -> dict[str, float]:
    """CPU seconds of the daemon's process tree: each live process's own time plus
    the time of its waited-for children (sendmail's per-connection processes), and
    per thread of the first root (edgemail's event loop and fsync threads)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {"total": 0.0}
    for pid in submit_tree(roots):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out["total"] += sum(int(x) for x in fields[11:15]) / tick
    for root in roots[:1]:
        try:
            for tid in os.listdir(f"/proc/{root}/task"):
                with open(f"/proc/{root}/task/{tid}/stat") as f:
                    text = f.read()
                name = text[text.index("(") + 1:text.rindex(")")]
                fields = text.rsplit(")", 1)[1].split()
                key = f"thread {name} {tid}"
                out[key] = out.get(key, 0.0) + sum(int(x) for x in fields[11:13]) / tick
        except OSError:
            pass
    return out


class DnsCounter:
    """The counting DNS server of one system's measurement."""

    def __init__(self, log: Path):
        self.log = log
        log.unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, str(HERE / "dnscount.py"),
                                      "--listen", DNS_IP, "--log", str(log)])
        deadline = time.monotonic() + 10
        while not (log.exists() and log.read_text().startswith("# ready")):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("dnscount did not start")
            time.sleep(0.05)

    def queries(self, t0: float, t1: float) -> list[str]:
        out = []
        for line in self.log.read_text().splitlines():
            if not line.startswith("#"):
                ts, rest = line.split(" ", 1)
                if t0 <= float(ts) < t1:
                    out.append(rest)
        return out

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def dns_summary(queries: list[str]) -> dict:
    kinds: dict[str, int] = {}
    for q in queries:
        kinds[q.split()[1]] = kinds.get(q.split()[1], 0) + 1
    return {"count": len(queries), "by_type": kinds, "sample": queries[:5]}


async def measure(system: peers.MailSystem, args, out: Path, with_mailq: bool) -> dict:
    rec: dict = {"system": system.name, "loadavg_before": os.getloadavg()}
    dns = DnsCounter(out / f"dns-{system.name}.log")
    try:
        t_prep = time.time()
        system.prepare()
        t_start = time.time()
        system.start()
        check = getattr(system, "check_alive", None)
        rec["startup_s"] = round(await wait_listening(peers.SERVER_IP, system.port, 90, check), 3)
        t_ready = time.time()
        # What earlier steps left to write (the last run's state removed, a
        # peer's start-up) must not land on this system's timed run; the
        # time the sync took is recorded (sync_before_s).
        t_sync = time.monotonic()
        os.sync()
        rec["sync_before_s"] = round(time.monotonic() - t_sync, 3)
        sampler = TreeSampler(system.root_pids)
        sampler.start()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = tree_cpu(system.root_pids())
        res = await submit(peers.SERVER_IP, system.port, count=args.count, size=args.size,
                           connections=args.connections, source=peers.CLIENT_IP)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu1 = tree_cpu(system.root_pids())
        rec["server_cpu_s"] = {k: round(cpu1.get(k, 0) - cpu0.get(k, 0), 3) for k in cpu1}
        # issue 15 §3: the server tree's CPU per accepted message (user + system, children included)
        rec["server_cpu_us_per_msg"] = round(rec["server_cpu_s"]["total"] / max(1, res.messages) * 1e6)
        print(f"bench: {system.name}: server CPU {rec['server_cpu_s']} (sync before: {rec['sync_before_s']} s)", flush=True)
        rec["client_cpu_s"] = round((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 3)
        print(f"bench: {system.name}: client CPU {rec['client_cpu_s']} s in {res.seconds:.2f} s", flush=True)
        rec["memory"] = await sampler.stop()
        t_done = time.time()
        rec["submit"] = res.summary()
        rec["dns"] = {"setup": dns_summary(dns.queries(t_prep, t_start)),
                      "startup": dns_summary(dns.queries(t_start, t_ready)),
                      "workload": dns_summary(dns.queries(t_ready, t_done))}
        rec["dns_queries"] = (rec["dns"]["startup"]["count"] + rec["dns"]["workload"]["count"])
        if with_mailq:
            rec["mailq"] = await measure_mailq(system, args, res.messages)
            rec["dns"]["mailq_phase"] = dns_summary(dns.queries(t_done, time.time()))
        rec["loadavg_after"] = os.getloadavg()
    finally:
        system.stop()
        dns.stop()
    return rec


async def measure_mailq(system: peers.MailSystem, args, have: int) -> dict:
    print(f"bench: {system.name}: filling the queue to {args.mailq_count}", flush=True)
    filled = await mailqmod.fill(peers.SERVER_IP, system.port, have, args.mailq_count,
                                 source=peers.CLIENT_IP, connections=args.connections)
    settled = mailqmod.wait_settled(system.root_pids())
    held = TreeSampler(system.root_pids)      # issue 15 §1: the tree's memory with the queue full
    held.sample()
    memory = {"queued": args.mailq_count, "rss_sum_kb": held.peak_rss_kb, "pss_sum_kb": held.peak_pss_kb,
              "max_vmhwm_kb": held.max_hwm_kb, "processes": held.max_procs}
    print(f"bench: {system.name}: memory at {args.mailq_count} queued: {memory}", flush=True)
    timing = await asyncio.to_thread(mailqmod.time_mailq, system.mailq_argv(), system.env())
    return {"fill": filled, "settle_s": round(settled, 1), "memory_queued": memory, **timing}


def fmt(v, spec=""):
    return "-" if v is None else format(v, spec)


def table(results: list[dict]) -> str:
    rows = [("system", "msg/s", "p50 ms", "p99 ms", "errors", "CPU us/msg", "peak RSS MB", "peak PSS MB",
             "DNS start", "DNS load", "mailq warm s", "mailq cold s", "listed", "PSS MB queued", "load1")]
    for r in results:
        s, m, q = r.get("submit", {}), r.get("memory", {}), r.get("mailq", {})
        rows.append((r["system"] + (f" #{r['round']}" if r.get("rounds", 1) > 1 else ""),
                     fmt(s.get("msg_per_s"), ".1f"), fmt(s.get("p50_ms"), ".1f"),
                     fmt(s.get("p99_ms"), ".1f"), fmt(s.get("errors")), fmt(r.get("server_cpu_us_per_msg")),
                     fmt(m.get("peak_rss_sum_kb", 0) / 1024, ".1f") if m else "-",
                     fmt(m.get("peak_pss_sum_kb", 0) / 1024, ".1f") if m else "-",
                     fmt(r.get("dns", {}).get("startup", {}).get("count")),
                     fmt(r.get("dns", {}).get("workload", {}).get("count")),
                     fmt(q.get("warm_best_s"), ".3f") if q else "-",
                     fmt(q.get("cold_s"), ".3f") if q else "-",
                     (fmt(q.get("listed")) if not q.get("rc") else f"rc={q['rc']}")
                     if q else "-",
                     fmt(q.get("memory_queued", {}).get("pss_sum_kb", 0) / 1024, ".1f")
                     if q.get("memory_queued") else "-",
                     fmt(r.get("loadavg_before", [None])[0], ".1f")))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(row, widths)) for row in rows)


def rates(results: list[dict]) -> dict[str, list[float]]:
    """msg/s of every error-free round, per system."""
    out: dict[str, list[float]] = {}
    for r in results:
        if "submit" in r and not r["submit"]["errors"]:
            out.setdefault(r["system"], []).append(r["submit"]["msg_per_s"])
    return out


def ratios(per_system: dict[str, list[float]]) -> dict:
    """edgemail / fastest peer, by best round and by median round."""
    out: dict = {}
    for label, pick in (("best", max), ("median", statistics.median)):
        figures = {k: pick(v) for k, v in per_system.items()}
        out[f"{label}_msg_per_s"] = figures
        peer_figs = {k: v for k, v in figures.items() if k != "edgemail"}
        if peer_figs and "edgemail" in figures:
            fastest = max(peer_figs, key=peer_figs.get)
            out[f"{label}_fastest_peer"] = fastest
            out[f"{label}_ratio"] = round(figures["edgemail"] / peer_figs[fastest], 2)
    return out


async def inner(args: argparse.Namespace) -> int:
    if os.readlink("/proc/self/ns/uts") == os.environ.get("EMBENCH_OUTER_UTS"):
        raise SystemExit("bench: --inner must run in its own UTS namespace")
    subprocess.run(["hostname", peers.HOSTNAME], check=True)
    out = Path(args.out)
    systems = make_systems(args, out)
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "args": vars(args),
              "machine": {"nproc": os.cpu_count(), "loadavg_start": os.getloadavg(),
                          "kernel": os.uname().release}, "results": [], "skipped": {}}
    for rnd in range(1, args.rounds + 1 if args.count else 1):
        for system in systems:
            why_not = system.available() if hasattr(system, "available") else None
            if why_not:
                report["skipped"][system.name] = why_not
                print(f"bench: skip {system.name}: {why_not}", flush=True)
                continue
            last = rnd == args.rounds and args.mailq_count > 0
            print(f"bench: round {rnd}: {system.name}", flush=True)
            try:
                rec = await measure(system, args, out, with_mailq=last)
            except Exception as exc:   # one broken system must not hide the others' figures
                rec = {"system": system.name, "error": f"{type(exc).__name__}: {exc}"}
                print(f"bench: {system.name}: {rec['error']}", file=sys.stderr, flush=True)
            rec["round"], rec["rounds"] = rnd, args.rounds
            report["results"].append(rec)
            print(table([rec]).splitlines()[-1], flush=True)
    if args.cli_runs:
        report["cli"] = await run_cli(systems, args, out)
    if args.drain_count:
        report["drain"] = await run_drains(args, out)
    report["ratio_edgemail_to_fastest_peer"] = ratios(rates(report["results"]))
    report["machine"]["loadavg_end"] = os.getloadavg()
    print()
    print(table(report["results"]))
    print(f"\nload average at start {report['machine']['loadavg_start']}, "
          f"end {report['machine']['loadavg_end']} ({os.cpu_count()} cores, shared)")
    ratio = report["ratio_edgemail_to_fastest_peer"]
    for label in ("best", "median"):
        if f"{label}_ratio" in ratio:
            print(f"edgemail / fastest peer ({ratio[f'{label}_fastest_peer']}), {label} round: "
                  f"{ratio[f'{label}_ratio']}x  (goal >= 1.5x, issue 15)  "
                  f"msg/s {ratio[f'{label}_msg_per_s']}")
    for r in report["results"]:
        if r.get("error"):
            print(f"{r['system']}: ERROR {r['error']}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out / f"bench-{stamp}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    shutil.copy(path, out / "latest.json")
    print(f"results: {path}")
    return 1 if any(r.get("error") for r in report["results"]) else 0


async def run_cli(systems: list[peers.MailSystem], args, out: Path) -> list[dict]:
    records = []
    for system in systems:
        if hasattr(system, "available") and system.available():
            continue
        print(f"bench: command line: {system.name}", flush=True)
        try:
            records.append(await clistart.measure_cli(system, out, args.cli_runs, idle_sessions=args.idle_sessions,
                                                      idle_seconds=args.idle_seconds))
        except Exception as exc:   # one broken system must not hide the others' figures
            records.append({"system": system.name, "error": f"{type(exc).__name__}: {exc}"})
    print(clistart.cli_table(records), flush=True)
    return records


async def run_drains(args, out: Path) -> list[dict]:
    results = []
    if "postfix" in args.systems.split(","):
        print(f"bench: drain: postfix, {args.drain_count} messages", flush=True)
        pf = peers.Postfix(out / "state/postfix-drain", out / "peers/postfix/root", args.peer_logs)
        try:
            results.append(await drain.drain_postfix(pf, args, out))
        except Exception as exc:
            results.append({"system": "postfix", "error": f"{type(exc).__name__}: {exc}"})
    if "edgemail" in args.systems.split(","):
        print(f"bench: drain: edgemail, {args.drain_count} messages", flush=True)
        em = peers.Edgemail(out / "state/edgemail-drain", Path(args.mta_tree))
        try:
            why_not = em.available()
            if why_not:
                raise RuntimeError(why_not)
            results.append(await drain.drain_edgemail(em, out / "peers/postfix/root", args, out))
        except Exception as exc:
            results.append({"system": "edgemail", "error": f"{type(exc).__name__}: {exc}"})
    done = {r["system"]: r for r in results if "seconds" in r}
    if "edgemail" in done and "postfix" in done:
        ratio = round(done["postfix"]["seconds"] / done["edgemail"]["seconds"], 3)
        results.append({"system": "edgemail/postfix", "speed_ratio": ratio,
                        "note": "postfix seconds / edgemail seconds (> 1: edgemail faster)"})
    for r in results:
        print(f"drain {r['system']}: " + ", ".join(f"{k}={v}" for k, v in r.items()
                                                     if k not in ("system", "line")), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.inner:
        return asyncio.run(inner(args))
    return outer(args, [a for a in argv if a != "--inner"])


if __name__ == "__main__":
    sys.exit(main())
