"""economy.py - the link-economy benchmark of issue 6 (run by `make bench`).

NAME
    economy - a simulated office week on virtual time through edgemail's real
    policy core and two baselines; prints a table, writes
    bench-out/economy.json and bench-out/economy.svg.

SYNOPSIS
    .venv/bin/python tests/bench/economy.py [--seed N] [--in-office-share F]
                                            [--policy FILE] [--out DIR]

DESCRIPTION
    The world and the three strategies are described in economy_model.py
    (every physical assumption is a field of Params and printed in the JSON).
    edgemail runs etc/dial.policy (tuned with this benchmark) unless
    --policy names another file.
    A sweep of policy variants (each parsed by link.policy) traces calls/day
    against p95 latency.  The goal from issue 6: edgemail at most half the
    recipe's calls/day and connected minutes/day, with p95 latency (out and
    in) no worse.  The verdict is computed, not asserted: the exit status is 0
    either way, the figures say whether the goal holds.

NEVER
    Sleeps or touches the network; runs in a few seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import economy_model as m
import economy_svg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
POLICY = ROOT / "etc" / "dial.policy"

COLUMNS = (("calls_per_day", "calls/d", "{:8.1f}"), ("connected_min_per_day", "min/d", "{:8.1f}"),
           ("out_p50_min", "out p50", "{:8.1f}"), ("out_p95_min", "out p95", "{:8.1f}"),
           ("in_p50_min", "in p50", "{:8.1f}"), ("in_p95_min", "in p95", "{:8.1f}"))


def variant(label: str, *, office: str = "*/15", nights: str = "0 0-7,18-23",
            weekend: str = "0,30 *", idle: str = "15s", urgent: str = "immediate") -> tuple[str, str]:
    """A policy text for the sweep: office, weekday-night and weekend fetch times."""
    text = "\n".join([
        "timezone Europe/Berlin",
        f"{office} 8-17 * * mon-fri queue-run etrn",
        f"{nights} * * mon-fri queue-run etrn",
        f"{weekend} * * sat,sun queue-run etrn",
        f"set idle_hangup = {idle}", f"set urgent = {urgent}", "set dial_when_queued = 20", ""])
    return label, text


SWEEP = (
    variant("recipe's times, idle 15s", weekend="0 *"),
    variant("recipe's times, idle 15s, urgent=schedule", weekend="0 *", urgent="schedule"),
    variant("dial.policy (weekend 0,30)"),
    variant("dial.policy, idle 5s", idle="5s"),
    variant("dial.policy, idle 60s", idle="60s"),
    variant("dial.policy, idle 120s", idle="120s"),
    variant("office */20", office="*/20"),
    variant("office */30", office="*/30"),
    variant("office */30, nights+weekend 2h", office="*/30", nights="0 0-7/2,18-23/2", weekend="0 */2"),
    variant("office hourly, nights+weekend 2h", office="0", nights="0 0-7/2,18-23/2", weekend="0 */2"),
    variant("office */30, nights+weekend 3h", office="*/30", nights="0 0-7/3,18-23/3", weekend="0 */3"),
)


def row(name: str, f: dict) -> str:
    return f"{name:<44}" + "".join(fmt.format(f[k]) for k, _, fmt in COLUMNS)


def header() -> str:
    return f"{'strategy (minutes; per day over 7 days)':<44}" + "".join(f"{h:>8}" for _, h, _ in COLUMNS)


def goal(edge: dict, recipe: dict) -> dict:
    """Issue 6's goal, term by term."""
    checks = {
        "calls <= recipe/2": edge["calls_per_day"] <= recipe["calls_per_day"] / 2,
        "minutes <= recipe/2": edge["connected_min_per_day"] <= recipe["connected_min_per_day"] / 2,
        "out p95 <= recipe": edge["out_p95_min"] <= recipe["out_p95_min"],
        "in p95 <= recipe": edge["in_p95_min"] <= recipe["in_p95_min"],
    }
    return {"checks": checks, "holds": all(checks.values())}


def day_sessions(r: m.Result, day: int) -> list[tuple[float, float]]:
    """(start, end) in hours of local day `day` for the calls that touch it."""
    base = m.local_offset(day)(0.0)
    out = []
    for s in r.sessions:
        a, b = (s.dial - base) / 3600.0, (s.end - base) / 3600.0
        if b > 0 and a < 24:
            out.append((max(a, 0.0), min(b, 24.0)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[3])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--in-office-share", type=float, default=m.Params.in_office_share)
    ap.add_argument("--policy", type=Path, default=POLICY)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    params = m.Params(in_office_share=args.in_office_share)
    load = m.workload(params, seed=args.seed)
    policy_text = args.policy.read_text()

    runs = {
        "edgemail": m.run_edgemail(params, load, policy_text, file=str(args.policy)),
        "recipe": m.run_recipe(params, load),
        "background": m.run_background(params, load),
    }
    figs = {name: m.figures(r) for name, r in runs.items()}
    sweep = []
    for label, text in SWEEP:
        f = m.figures(m.run_edgemail(params, load, text, file=label))
        sweep.append({"label": label, "policy": text, **f})
    verdict = goal(figs["edgemail"], figs["recipe"])

    print(header())
    labels = {"edgemail": f"edgemail ({args.policy.name})", "recipe": "seed recipe (cron -q + ETRN, pppd idle 120s)",
              "background": "background + pppd demand dial"}
    for name, f in figs.items():
        print(row(labels[name], f))
    print("\npolicy variants (edgemail core, same week):")
    for s in sweep:
        lost = f"  ({s['undelivered_in']} inbound never fetched)" if s["undelivered_in"] else ""
        print(row("  " + s["label"], s) + lost)
    print("\ngoal (issue 6) for", args.policy.name + ":")
    for k, ok in verdict["checks"].items():
        print(f"  {'yes' if ok else 'NO '}  {k}")
    print(f"  goal {'holds' if verdict['holds'] else 'does NOT hold'}")
    print("  edgemail dial reasons:", runs["edgemail"].notes["dial_reasons"])

    args.out.mkdir(parents=True, exist_ok=True)
    tuesday = 1
    doc = {
        "params": dataclasses.asdict(params), "seed": args.seed, "policy_file": str(args.policy),
        "policy_text": policy_text, "strategies": figs,
        "sweep": sweep, "goal": verdict,
        "timeline_day": "Tue 2024-03-05 Europe/Berlin",
        "timeline": {n: day_sessions(r, tuesday) for n, r in runs.items()},
        "notes": {n: r.notes for n, r in runs.items()},
    }
    (args.out / "economy.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    svg = economy_svg.render(figs, doc["timeline"], sweep, doc["timeline_day"])
    (args.out / "economy.svg").write_text(svg)
    print(f"\nwrote {args.out / 'economy.json'} and {args.out / 'economy.svg'} "
          f"in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
