"""Worlds leave nothing behind: after down, after a failing test, after SIGKILL of their owner (root)."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.hwsim.hwsim_helpers import HWSIM

pytestmark = pytest.mark.root


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def namespaces() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def assert_gone(info: dict, timeout_s: float = 8.0) -> None:
    pids = [p for p in list(info["pids"].values()) + [info.get("reaper")] if p]
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        left_ns = {info["edge_netns"], info["isp_netns"]} & namespaces()
        left_pids = [p for p in pids if alive(p)]
        if not left_ns and not left_pids and not os.path.exists(info["run_dir"]):
            return
        time.sleep(0.05)
    raise AssertionError(f"left behind: namespaces {left_ns}, pids {left_pids}, "
                         f"run dir {os.path.exists(info['run_dir'])}")


def test_down_removes_everything(world):
    w = world()
    proc = w.start_fakepppd()
    w.wait_ppp_up(proc=proc)
    info = w.info()
    assert {w.edge_ns, w.isp_ns} <= namespaces()
    assert all(alive(p) for p in info["pids"].values())
    w.down()
    assert_gone(info, timeout_s=1.0)
    assert proc.wait(1) is not None


OWNER_SCRIPT = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {hwsim!r})
    from simworld import World
    w = World.up()
    proc = w.start_fakepppd()
    w.wait_ppp_up(proc=proc)
    info = w.info()
    info["pids"] = dict(w.state["pids"])
    print(json.dumps(info), flush=True)
    time.sleep(120)
""")


def test_sigkill_of_the_owner_is_cleaned_up_by_the_reaper(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", OWNER_SCRIPT.format(hwsim=str(HWSIM))],
                             stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(owner.stdout.readline())
        assert len(info["pids"]) == 3 and info["reaper"]  # modemsim, isp, fakepppd
        assert all(alive(p) for p in info["pids"].values())
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert_gone(info)


FAILING_TEST = textwrap.dedent("""
    import json, os
    def test_fails(online_world):
        w = online_world()
        info = w.info()
        info["pids"] = dict(w.state["pids"])
        with open(os.environ["WORLD_INFO"], "w") as f:
            json.dump(info, f)
        assert False, "this test fails on purpose"
""")


def test_a_failing_test_leaves_nothing_behind(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))          # the fixtures import tests.hwsim...
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import importlib.util, sys
        sys.path.insert(0, {root!r})
        spec = importlib.util.spec_from_file_location("hwsim_fixtures", {here!r} + "/conftest.py")
        fixtures = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(fixtures)
        world, online_world = fixtures.world, fixtures.online_world
    """))
    (tmp_path / "test_fail.py").write_text(FAILING_TEST)
    info_path = tmp_path / "world.json"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         env={**os.environ, "WORLD_INFO": str(info_path)}, capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 1 and "this test fails on purpose" in out.stdout, out.stdout[-3000:]
    info = json.loads(info_path.read_text())
    assert_gone(info, timeout_s=2.0)


def test_world_command_up_status_down(tmp_path):
    world = str(HWSIM / "world")
    out = subprocess.run([world, "--base", str(tmp_path), "up", "--busy", "1"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    try:
        assert os.path.islink(info["tty"]) and info["edge_netns"].startswith("emedge-")
        assert info["relay"] == "192.0.2.25:25" and info["dns"] == "192.0.2.53:53"
        status = json.loads(subprocess.run([world, "--base", str(tmp_path), "status"], capture_output=True,
                                           text=True, timeout=30).stdout)
        assert status == [dict(id=info["id"], run_dir=info["run_dir"], owner=None,
                               namespaces={info["edge_netns"]: True, info["isp_netns"]: True},
                               processes={"modemsim": True, "isp": True}, reaper=None)]
        assert subprocess.run(["ip", "netns", "exec", info["edge_netns"], "true"]).returncode == 0
    finally:
        refused = subprocess.run([world, "--base", str(tmp_path), "down"], capture_output=True, text=True,
                                 timeout=60)
        assert refused.returncode == 2 and "or --all" in refused.stderr, refused.stderr
        assert json.loads(subprocess.run([world, "--base", str(tmp_path), "status"], capture_output=True,
                                         text=True, timeout=30).stdout)[0]["processes"]["isp"] is True
        down = subprocess.run([world, "--base", str(tmp_path), "down", info["id"]], capture_output=True,
                              text=True, timeout=60)
    assert down.returncode == 0 and info["id"] in down.stdout
    assert_gone(info, timeout_s=1.0)


def test_world_down_leaves_worlds_owned_by_others(world, tmp_path):
    w = world(base=str(tmp_path), with_isp=False)
    out = subprocess.run([str(HWSIM / "world"), "--base", str(tmp_path), "down", "--all"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == ""
    assert w.status()["namespaces"] == {w.edge_ns: True, w.isp_ns: True}


def test_world_command_refuses_without_root(tmp_path):
    world = str(HWSIM / "world")
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    out = subprocess.run([*drop, sys.executable, world, "--base", str(tmp_path), "up"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 77
    assert "needs root" in out.stderr
    assert os.listdir(tmp_path) == []


def test_world_command_up_takes_the_relays_certificate(tmp_path):
    world = str(HWSIM / "world")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=given.isp.example", "-keyout", str(key), "-out", str(cert)], check=True,
                   capture_output=True, timeout=60)
    half = subprocess.run([world, "--base", str(tmp_path), "up", "--tls-cert", str(cert)], capture_output=True,
                          text=True, timeout=60)
    assert half.returncode == 2 and "go together" in half.stderr
    out = subprocess.run([world, "--base", str(tmp_path), "up", "--tls-cert", str(cert), "--tls-key", str(key)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    try:
        assert info["relay_cert"] == str(cert)
        # the relay presents it at STARTTLS
        shown = subprocess.run(["ip", "netns", "exec", info["isp_netns"], "openssl", "s_client", "-connect",
                                info["relay"], "-starttls", "smtp", "-showcerts"], input="", capture_output=True,
                               text=True, timeout=30).stdout
        assert "CN = given.isp.example" in shown, shown[-2000:]
    finally:
        subprocess.run([world, "--base", str(tmp_path), "down", info["id"]], capture_output=True, timeout=60)
    assert_gone(info, timeout_s=1.0)
