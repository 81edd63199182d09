"""linkup_report — figures of the link-up benchmark from its raw stamps (pure: no I/O, no clock).

SYNOPSIS
    line = derive(trial, phys)          # one trial's intervals in ms
    s = summary([1.0, 2.0, ...])        # n, median, p90, min, max
    print(table(by_system, phys, meta))

A trial is a dict of CLOCK_MONOTONIC stamps (seconds): t_link_up, t_addr,
t_route from netlink in the edge namespace, and t_accept, t_ehlo, t_mail,
t_data1 (first byte after 354), t_data_end from the sink in the ISP
namespace, and the DNS queries the ISP's server saw (ms after t_route).
The physical part comes from probes: a minimal client that
starts connect() at t0 with the line already up and talks the same
dialogue (EHLO, MAIL, RCPT, DATA) without thinking; its medians
(accept - t0, mail - t0, data1 - t0) are the line's share, the rest of a
trial's interval is processing.

p90 is the nearest-rank percentile (with 20 samples: the 18th smallest).

Never does: decide what is measured (linkup.py does), print.
"""
from __future__ import annotations

import math
import statistics

#: derived intervals, in table order: (key, label)
ROWS = (
    ("route_mail", "ppp0 up -> MAIL at far end"),
    ("route_data1", "ppp0 up -> 1st DATA byte"),
    ("route_accept", "ppp0 up -> TCP accept"),
    ("proc_mail", "  processing (MAIL - line)"),
    ("proc_connect", "    before connect()"),
    ("proc_session", "    in the session"),
    ("dns_first", "ppp0 up -> 1st DNS qry at ISP"),
    ("dns_before_mail", "DNS queries before MAIL (n)"),
    ("addr_route", "netlink addr -> route"),
)


def ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round((b - a) * 1000.0, 2)


def summary(values: list[float | None]) -> dict:
    xs = sorted(v for v in values if v is not None)
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "median": round(statistics.median(xs), 1),
            "p90": round(xs[max(math.ceil(0.9 * len(xs)) - 1, 0)], 1),
            "min": round(xs[0], 1), "max": round(xs[-1], 1)}


def physical(probes: list[dict]) -> dict:
    """The line's share (ms, medians over the probes) of accept, MAIL and first DATA byte."""
    out = {}
    for key, stamp in (("accept", "t_accept"), ("mail", "t_mail"), ("data1", "t_data1")):
        out[key] = summary([ms(p["t0"], p.get(stamp)) for p in probes]).get("median")
    out["n"] = len(probes)
    return out


def derive(trial: dict, phys: dict) -> dict:
    """One trial's intervals (ms) from its stamps; processing = interval - the line's share."""
    t = trial
    d = {"route_mail": ms(t["t_route"], t.get("t_mail")),
         "route_data1": ms(t["t_route"], t.get("t_data1")),
         "route_accept": ms(t["t_route"], t.get("t_accept")),
         "addr_route": ms(t.get("t_addr"), t["t_route"]),
         "addr_mail": ms(t.get("t_addr"), t.get("t_mail"))}
    dns = t.get("dns") or []                     # [ms after t_route, qname, qtype] at the ISP
    d["dns_first"] = dns[0][0] if dns else None
    d["dns_before_mail"] = sum(1 for q in dns if d["route_mail"] is not None and q[0] < d["route_mail"])
    d["proc_mail"] = _minus(d["route_mail"], phys.get("mail"))
    d["proc_connect"] = _minus(d["route_accept"], phys.get("accept"))
    d["proc_session"] = _minus(d["proc_mail"], d["proc_connect"])
    return d


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 2)


def summarise(trials: list[dict], phys: dict) -> dict:
    """{key: summary} over the trials' derived intervals."""
    derived = [derive(t, phys) for t in trials]
    keys = [k for k, _ in ROWS] + ["addr_mail"]
    return {k: summary([d[k] for d in derived]) for k in keys}


def table(summaries: dict[str, dict], phys: dict, meta: dict) -> str:
    """The printed table: one block of columns per system."""
    names = list(summaries)
    head = f"{'ms':30}" + "".join(f"| {n:^34}" for n in names)
    sub = f"{'':30}" + "".join(f"| {'median':>8}{'p90':>8}{'min':>8}{'max':>8}  " for _ in names)
    lines = [head, sub, "-" * len(sub)]
    for key, label in ROWS:
        cells = []
        for n in names:
            s = summaries[n].get(key, {"n": 0})
            cells.append("| " + ("".join(f"{s[c]:>8.1f}" for c in ("median", "p90", "min", "max")) + "  "
                                 if s["n"] else f"{'-':>32}  "))
        lines.append(f"{label:30}" + "".join(cells))
    lines.append(f"line's share (probe medians, n={phys.get('n')}): accept {phys.get('accept')} ms, "
                 f"MAIL {phys.get('mail')} ms, 1st DATA byte {phys.get('data1')} ms")
    lines.append(f"line {meta.get('line')}; runs per system {meta.get('runs')}; "
                 f"load average before {meta.get('loadavg_before')} after {meta.get('loadavg_after')}")
    return "\n".join(lines)
