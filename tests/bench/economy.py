"""economy.py - the link-economy benchmark of issue 14 (run by `make bench`).

NAME
    economy - simulated weeks on virtual time through edgemail's real policy
    core and two baselines, priced on two tariffs; prints the table, writes
    bench-out/economy.json, economy.txt and economy.svg.

SYNOPSIS
    .venv/bin/python tests/bench/economy.py [--workload office|small|busy|holiday|all]
        [--out-per-day N] [--in-per-day N] [--seed N] [--policy FILE] [--out DIR] [--no-sweep]

DESCRIPTION
    The world and the three strategies are described in economy_model.py
    (every physical assumption is a field of Params, printed in the JSON).
    Workloads (issue 14): the office week (120 out / 200 in a weekday, 60 in
    a weekend day); a small office (30 / 40, 12); a busy one (3x the office);
    a week with a holiday (Wednesday: weekend traffic) and a burst (200 mails
    sent Thursday 14:00-15:00).  --out-per-day / --in-per-day make a custom
    week of that size instead (weekend inbound 30 % of a weekday's).
    Tariffs, written as dial.policy `tariff` lines and read by link.policy:
    A 0.10 per call + 0.04 per connected minute; B 0.06 per started unit of
    90 s (weekdays 08-18) or 240 s (otherwise), the first at connect.
    edgemail runs --policy (etc/dial.policy) with its own tariff lines
    replaced by the tariff priced, so chargehup sees the units it pays for.
    The sweep (office week) runs policy variants on both tariffs: cost/day
    against p95, the picture.

GOAL (issue 14), per workload and tariff, for edgemail against the recipe
    calls <= recipe; connected minutes <= 35 % of recipe; out p95 and in p95
    <= recipe; urgent p95 <= dial time + 60 s; cost <= 50 % of recipe.
    Computed, not asserted: the exit status is 0 either way.

NEVER
    Sleeps or touches the network; the whole run takes well under a minute.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from pathlib import Path

import economy_model as m
import economy_svg

from link import policy as policy_core

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
POLICY = ROOT / "etc" / "dial.policy"

TARIFFS = {
    "A": "tariff call 0.10\ntariff minute 0.04\n",
    "B": "tariff unit 0.06 240s\ntariff unit 0.06 90s mon-fri 08:00-18:00\n",
}
WORKLOADS = {
    "office": {},
    "small": {"out_per_day": 30, "in_per_day": 40, "in_weekend_per_day": 12},
    "busy": {"out_per_day": 360, "in_per_day": 600, "in_weekend_per_day": 180},
    "holiday": {"holidays": (2,), "burst": (3, 14.0, 200)},
}
COLUMNS = (("calls_per_day", "calls/d", 8, 1), ("connected_min_per_day", "min/d", 7, 1),
           ("cost", "cost/d", 7, 2), ("cost_pct", "%recipe", 8, 0),
           ("out_p50_min", "out50", 6, 1), ("out_p95_min", "out95", 6, 1), ("in_p50_min", "in50", 6, 1),
           ("in_p95_min", "in95", 6, 1), ("urgent_p50_min", "urg50", 6, 2), ("urgent_p95_min", "urg95", 6, 2))


def with_tariff(policy_text: str, tariff: str) -> str:
    """The policy with its own `tariff` lines replaced by `tariff`."""
    kept = [ln for ln in policy_text.splitlines() if not re.match(r"\s*tariff\s", ln)]
    return "\n".join(kept) + "\n" + tariff


def variant(label: str, *, office: str = "*/30", nights: str = "0 0-7,18-23", weekend: str = "0 *",
            oldest: str = "14m", chargehup: str = "on", relative: str = "relative") -> tuple[str, str]:
    """A policy text for the sweep: inbound poll spacing by day part, the out threshold."""
    text = "\n".join([
        "timezone Europe/Berlin", f"set schedule = {relative}",
        f"{office} 8-17 * * mon-fri queue-run etrn",
        f"{nights} * * mon-fri queue-run etrn",
        f"{weekend} * * sat,sun queue-run etrn",
        "set idle_hangup = 15s", f"set dial_when_oldest = {oldest}", "set dial_when_queued = 0",
        f"set chargehup = {chargehup}", "set unit_poll = 60s", ""])
    return label, text


SWEEP = (
    variant("recipe's times, fixed, no chargehup", office="*/15", oldest="0", chargehup="off", relative="fixed"),
    variant("recipe's times, relative", office="*/15", oldest="0"),
    variant("office */30, oldest 14m (dial.policy's rules)"),
    variant("office */30, oldest 12m", oldest="12m"),
    variant("office */30, oldest 16m", oldest="16m"),
    variant("office hourly, oldest 14m", office="0"),
    variant("office */30, oldest 14m, no chargehup", chargehup="off"),
    variant("office */20, oldest 14m", office="*/20"),
    variant("nights+weekend every 2h", nights="0 0-7/2,18-23/2", weekend="0 */2"),
)


def params_for(args) -> tuple[str, m.Params]:
    if args.out_per_day is not None or args.in_per_day is not None:
        out = 120 if args.out_per_day is None else args.out_per_day
        inc = 200 if args.in_per_day is None else args.in_per_day
        return "custom", m.Params(out_per_day=out, in_per_day=inc, in_weekend_per_day=round(0.3 * inc))
    return args.workload, m.Params(**WORKLOADS[args.workload])


def run_workload(name: str, params: m.Params, seed: int, policy_text: str, file: str) -> list[dict]:
    """Every system x tariff on one workload: rows of figures."""
    load = m.workload(params, seed=seed)
    tariffs = {k: policy_core.parse(t).tariff for k, t in TARIFFS.items()}
    base = {"recipe": m.run_recipe(params, load), "background": m.run_background(params, load)}
    rows = []
    for tname in TARIFFS:
        edge = m.run_edgemail(params, load, with_tariff(policy_text, TARIFFS[tname]), file=file)
        for system, r in (("edgemail", edge), *base.items()):
            f = m.figures(r, tariffs)
            f["cost"] = f[f"cost_{tname}_per_day"]
            rows.append({"workload": name, "system": system, "tariff": tname, **f,
                         "notes": r.notes})
    for row in rows:
        recipe = next(x for x in rows if x["system"] == "recipe" and x["tariff"] == row["tariff"])
        row["cost_pct"] = 100.0 * row["cost"] / recipe["cost"]
    return rows


def goal(edge: dict, recipe: dict, dial_s: float) -> dict:
    """Issue 14's goal, clause by clause, with the numbers compared."""
    e, r = edge, recipe
    checks = {
        "calls <= recipe": (e["calls_per_day"] <= r["calls_per_day"], f"{e['calls_per_day']:.1f} vs {r['calls_per_day']:.1f}"),
        "minutes <= 35% of recipe": (e["connected_min_per_day"] <= 0.35 * r["connected_min_per_day"],
                                     f"{100 * e['connected_min_per_day'] / r['connected_min_per_day']:.0f}%"),
        "out p95 <= recipe": (e["out_p95_min"] <= r["out_p95_min"], f"{e['out_p95_min']:.1f} vs {r['out_p95_min']:.1f}"),
        "in p95 <= recipe": (e["in_p95_min"] <= r["in_p95_min"], f"{e['in_p95_min']:.1f} vs {r['in_p95_min']:.1f}"),
        "urgent p95 <= dial + 60s": (e["urgent_p95_min"] * 60 <= dial_s + 60, f"{e['urgent_p95_min'] * 60:.0f}s"),
        "cost <= 50% of recipe": (e["cost_pct"] <= 50.0, f"{e['cost_pct']:.0f}%"),
    }
    return {k: {"holds": ok, "figures": why} for k, (ok, why) in checks.items()}


def table(rows: list[dict]) -> list[str]:
    head = f"{'workload':<9}{'system':<11}{'tariff':<7}" + "".join(f"{h:>{w}}" for _, h, w, _ in COLUMNS)
    out = [head]
    for r in rows:
        out.append(f"{r['workload']:<9}{r['system']:<11}{r['tariff']:<7}"
                   + "".join(f"{r[k]:>{w}.{d}f}" for k, _, w, d in COLUMNS))
    return out


def sweep(params: m.Params, seed: int, policy: tuple[str, str] | None = None) -> list[dict]:
    load = m.workload(params, seed=seed)
    tariffs = {k: policy_core.parse(t).tariff for k, t in TARIFFS.items()}
    recipe = m.figures(m.run_recipe(params, load), tariffs)
    points = []
    for label, text in ((policy,) if policy else ()) + SWEEP:
        for tname, tline in TARIFFS.items():
            f = m.figures(m.run_edgemail(params, load, with_tariff(text, tline), file=label), tariffs)
            points.append({"label": label, "tariff": tname, "policy": text, "cost": f[f"cost_{tname}_per_day"], **f})
    return points + [{"label": "recipe", "tariff": t, "cost": recipe[f"cost_{t}_per_day"], **recipe}
                     for t in TARIFFS]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="issue 14's link-economy benchmark")
    ap.add_argument("--workload", choices=(*WORKLOADS, "all"), default="all")
    ap.add_argument("--out-per-day", type=int)
    ap.add_argument("--in-per-day", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--policy", type=Path, default=POLICY)
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--no-sweep", action="store_true")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    policy_text = args.policy.read_text()
    names = list(WORKLOADS) if args.workload == "all" and args.out_per_day is None and args.in_per_day is None \
        else [None]
    rows, goals, params_used = [], {}, {}
    for name in names:
        if name is not None:
            args.workload = name
        wname, params = params_for(args)
        params_used[wname] = dataclasses.asdict(params)
        got = run_workload(wname, params, args.seed, policy_text, str(args.policy))
        rows += got
        for t in TARIFFS:
            pick = {r["system"]: r for r in got if r["tariff"] == t}
            goals[f"{wname}/{t}"] = goal(pick["edgemail"], pick["recipe"], params.dial_s)
    lines = table(rows) + ["", f"goal (issue 14) for {args.policy.name}, seed {args.seed}:"]
    for key, checks in goals.items():
        lines.append(f"  {key:<11}" + "; ".join(f"{'ok' if c['holds'] else 'NO'} {k} ({c['figures']})"
                                                for k, c in checks.items()))
    args.out.mkdir(parents=True, exist_ok=True)
    points = [] if args.no_sweep else sweep(m.Params(), args.seed, (args.policy.name, policy_text))
    if points:
        lines += ["", "sweep (office week; the picture): variant, tariff, calls/d, min/d, cost/d, out95, in95, urg95"]
        lines += [f"  {p['label']:<44}{p['tariff']:>3}{p['calls_per_day']:7.1f}{p['connected_min_per_day']:7.1f}"
                  f"{p['cost']:7.2f}{p['out_p95_min']:7.1f}{p['in_p95_min']:7.1f}{p['urgent_p95_min']:7.2f}"
                  for p in points]
    print("\n".join(lines))
    doc = {"seed": args.seed, "params": params_used, "tariffs": TARIFFS, "policy_file": str(args.policy),
           "policy_text": policy_text, "rows": rows, "goal": goals, "sweep": points}
    (args.out / "economy.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (args.out / "economy.txt").write_text("\n".join(lines) + "\n")
    if points:
        (args.out / "economy.svg").write_text(economy_svg.render(points, TARIFFS))
    print(f"\nwrote {args.out}/economy.json, economy.txt{'' if args.no_sweep else ', economy.svg'} "
          f"in {time.perf_counter() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
