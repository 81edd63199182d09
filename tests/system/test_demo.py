"""`make demo`: the loopback demo of the MTA core, and (root) the whole story in hardware-sim.

The story runs once (about 20 s): the demo's own exit status and verdict,
then an independent look at what it wrote: the daemon's stamped log parsed
again into the story's steps, the SVG parsed as XML, and nothing of the
world left behind.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from demo import timeline as T

ROOT = Path(__file__).resolve().parents[2]


def run_demo(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "demo", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.timeout(60)
def test_loopback_demo_queues_both_messages_and_exits_0():
    r = run_demo("--loopback", timeout=50)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Total requests: 2" in r.stdout
    assert "demo OK: both messages are queued, waiting for the link" in r.stdout


@pytest.mark.root
@pytest.mark.timeout(120)
def test_story_demo_tells_every_step(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TUN); CI runs as root")
    out = tmp_path / "out"
    r = run_demo("--out", str(out), timeout=110)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "story: complete, all 15 steps seen" in r.stdout
    assert "demo OK: the whole story happened, one call" in r.stdout
    assert "DNS queries at the ISP so far: 0" in r.stdout
    counts = re.search(r"alice's Maildir \(.*\): (\d+) message\(s\); remote MX sinks received (\d+) message", r.stdout)
    assert counts and counts.groups() == ("1", "2"), counts and counts.group(0)
    # outbound went through the ISP relay as the smart host: AUTH over TLS, then on to the sinks
    assert re.findall(r"ISP relay: AUTH \w+ as edge: (\w+ over TLS|.*)", r.stdout) == ["accepted over TLS"]
    relayed = re.findall(r"ISP relay: (\S+) -> \S+: (\w+) \(auth=(\w+), tls=(\w+)\)", r.stdout)
    assert sorted(relayed) == [("bob@remote1.example", "sent", "edge", "true"),
                               ("ops@remote2.example", "sent", "edge", "true")], relayed

    # the daemon's own lines alone prove every step but the two the world reports
    logged = [T.LogLine(float(t), line) for t, _, line in
              (x.partition(" ") for x in (out / "daemon.log").read_text().splitlines())]
    assert T.build(logged, isp_peers=("10.64.0.1",)).missing() == ["held-at-isp", "no-dns"]
    assert (out / "timeline.txt").read_text().rstrip().endswith("story: complete, all 15 steps seen")

    svg = ET.parse(out / "timeline.svg").getroot()
    titles = {t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")}
    assert {"dialing", "connected"} <= titles

    wid = re.search(r"world (\S+): edge namespace (\S+),", r.stdout)
    assert wid, r.stdout
    assert not Path("/run/hwsim", wid.group(1)).exists()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert wid.group(2) not in netns
