"""fakepppd over modemsim: ppp0 in the edge namespace, as pppd makes it (root).

What happens, not how fast: the line's round trip, goodput and how soon
ppp0 goes after a carrier loss are figures in tests/bench/hwsim_timing.py
(--world); its pacing is asserted on virtual time in test_linkframe.py."""
import json
import os
import socket
import subprocess
import time

import pytest

from netlinkrec import NetlinkRecorder
from tests.hwsim.hwsim_helpers import bulk_transfer, echo_client, link_up

pytestmark = pytest.mark.root

UP_SEQUENCE = [("NEWLINK", "DOWN"), ("NEWLINK", "UP"), ("NEWADDR", "10.64.0.2", "10.64.0.1", 32)]
DOWN_SEQUENCE = [("NEWLINK", "DOWN"), ("DELADDR", "10.64.0.2", "10.64.0.1", 32), ("DELLINK", "DOWN")]


def ip_json(w, *args):
    out = subprocess.run(["ip", "-n", w.edge_ns, "-j", *args], capture_output=True, text=True).stdout
    return json.loads(out or "[]")


def test_ppp0_up_and_down_like_pppd(world):
    w = world(with_isp=False)
    with NetlinkRecorder(w.edge_ns) as rec:
        proc = w.start_fakepppd("ipparam", "edgemail", "linkname", "edgemail")
        w.wait_ppp_up(proc=proc)
        rec.wait_for("NEWADDR")
        up_events = [e.short() for e in rec.events]
        link = ip_json(w, "link", "show", "ppp0")[0]
        routes = ip_json(w, "route", "show", "default")
        pidfiles = sorted(os.listdir(w.ppp_run_dir))
        with open(os.path.join(w.ppp_run_dir, "ppp-edgemail.pid")) as f:
            linkpid = f.read().split()
        with open(w.resolv_conf) as f:
            resolv = f.read()
        proc.terminate()
        assert proc.wait(5) == 5  # pppd: terminated by a signal
        rec.wait_for("DELLINK")
        down_events = [e.short() for e in rec.events][len(up_events):]
    assert up_events == UP_SEQUENCE
    assert down_events == DOWN_SEQUENCE
    assert {"POINTOPOINT", "UP", "LOWER_UP", "NOARP"} <= set(link["flags"])
    assert routes and routes[0]["dev"] == "ppp0"
    assert pidfiles == ["ppp-edgemail.pid", "ppp0.pid"]
    assert linkpid == [str(proc.pid), "ppp0"]
    assert resolv == "nameserver 192.0.2.53\n"
    assert os.listdir(w.ppp_run_dir) == []
    assert ip_json(w, "route", "show", "default") == []


def _recording_script(path, out):
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\n{{ printf "%s\\n" "$@"; echo --; env; }} > {out}\n')
    os.chmod(path, 0o755)


def _read_script_output(path):
    for _ in range(100):
        if os.path.exists(path) and open(path).read().count("--"):
            break
        time.sleep(0.02)
    args, _, env = open(path).read().partition("--\n")
    return args.split("\n")[:-1], dict(line.split("=", 1) for line in env.splitlines() if "=" in line)


def test_ip_up_and_ip_down_arguments_and_environment(world):
    w = world(with_isp=False)
    up_out, down_out = os.path.join(w.run_dir, "up.out"), os.path.join(w.run_dir, "down.out")
    _recording_script(w.ip_up, up_out)
    _recording_script(w.ip_down, down_out)
    proc = w.start_fakepppd("ipparam", "edgemail", "linkname", "edge1")
    w.wait_ppp_up(proc=proc)
    args, env = _read_script_output(up_out)
    assert args == ["ppp0", w.tty, "115200", "10.64.0.2", "10.64.0.1", "edgemail"]
    want = dict(IFNAME="ppp0", DEVICE=w.tty, SPEED="115200", IPLOCAL="10.64.0.2", IPREMOTE="10.64.0.1",
                IPPARAM="edgemail", LINKNAME="edge1", DNS1="192.0.2.53", USEPEERDNS="1",
                PPPD_PID=str(proc.pid), PPPLOGNAME="root", ORIG_UID="0")
    assert {k: env.get(k) for k in want} == want
    assert "CONNECT_TIME" not in env and "DNS2" not in env
    with w.in_isp():
        srv = socket.create_server(("10.64.0.1", 7001))
    with w.in_edge():
        c = socket.create_connection(("10.64.0.1", 7001), timeout=5)
    c.sendall(b"x" * 500)
    srv.accept()[0].recv(1000)
    time.sleep(1.1)
    w.modem_control("drop", mode="soft")
    assert proc.wait(5) == 16
    args, env = _read_script_output(down_out)
    assert args == ["ppp0", w.tty, "115200", "10.64.0.2", "10.64.0.1", "edgemail"]
    assert int(env["CONNECT_TIME"]) >= 1
    assert int(env["BYTES_SENT"]) > 500 and int(env["BYTES_RCVD"]) > 0
    c.close()
    srv.close()


@pytest.mark.parametrize("modem, extra, action, want", [
    ({"result": "BUSY"}, (), None, 8),                    # connect script failed
    ({}, ("idle", "1"), None, 12),                        # idle
    ({}, ("maxconnect", "1"), None, 13),                  # connect time limit
    ({}, (), ("drop", "soft"), 16),                       # modem hung up: NO CARRIER
    ({}, (), ("drop", "hard"), 16),                       # NO CARRIER + pty closed
    ({}, (), ("drop", "cut"), 16),                        # pty closed without a word
    ({}, (), ("signal", "SIGHUP"), 5),
    ({}, (), ("signal", "SIGINT"), 5),
    ({"drop_after_s": 1.0}, (), None, 16),
], ids=["connect-failed", "idle", "maxconnect", "soft", "hard", "cut", "sighup", "sigint", "drop-after-s"])
def test_exit_codes(world, modem, extra, action, want):
    w = world(with_isp=False, modem={"connect_delay": 0.1, **modem})
    proc = w.start_fakepppd(*extra)
    if want != 8:
        w.wait_ppp_up(proc=proc)
    if action and action[0] == "drop":
        w.modem_control("drop", mode=action[1])
    elif action:
        import signal
        proc.send_signal(getattr(signal, action[1]))
    assert proc.wait(10) == want, w.log_tail("fakepppd")
    assert w.ppp_address() is None


@pytest.mark.parametrize("mode", ["hard", "cut"])
def test_hard_carrier_loss_removes_ppp0(world, mode):
    w = world(with_isp=False)
    with NetlinkRecorder(w.edge_ns) as rec:
        proc = w.start_fakepppd()
        w.wait_ppp_up(proc=proc)
        w.modem_control("drop", mode=mode)
        rec.wait_for("DELLINK")
        down_events = [e.short() for e in rec.events][len(UP_SEQUENCE):]
    assert proc.wait(5) == 16                      # pppd: modem hangup
    assert down_events == DOWN_SEQUENCE and w.ppp_address() is None


def test_persist_redials_until_maxfail(world):
    w = world(with_isp=False, modem={"connect_delay": 0.1, "result": "NO CARRIER"})
    proc = w.start_fakepppd("persist", "maxfail", "3", "holdoff", "0")
    assert proc.wait(20) == 8
    assert w.modem_control("status")["dials"] == 3


def test_an_echo_crosses_the_line_both_ways(world):
    w = world(with_isp=False)
    link_up(w)
    c = echo_client(w, 7002)
    for i in range(7):
        c.sendall(b"p%d" % i * 16)
        assert c.recv(100) == b"p%d" % i * 16
    c.close()
    counters = w.modem_control("status")["counters"]
    assert counters["up_bytes"] > 7 * 32 and counters["down_bytes"] > 7 * 32   # over the paced line


@pytest.mark.parametrize("direction, nbytes", [("down", 24000), ("up", 16000)])
def test_a_bulk_transfer_arrives_whole(world, direction, nbytes):
    w = world(with_isp=False, link={"buffer": 65536})
    link_up(w)
    got = b"".join(bulk_transfer(w, direction, nbytes, 7003))
    assert got == b"d" * nbytes
    assert w.modem_control("status")["counters"][f"{direction}_bytes"] > nbytes


@pytest.mark.parametrize("how", ["ip-netns-exec", "HWSIM_NETNS"])
def test_fakepppd_from_inside_the_edge_namespace_with_a_peers_file(world, how):
    w = world(with_isp=False, modem={"connect_delay": 0.05})
    w.write_peers_file("edgemail", "ipparam edgemail", "linkname edgemail")
    env = {**os.environ, **w.fakepppd_env()}
    if how == "ip-netns-exec":
        argv = ["ip", "netns", "exec", w.edge_ns, w.fakepppd_path, "call", "edgemail"]
    else:
        argv, env["HWSIM_NETNS"] = [w.fakepppd_path, "call", "edgemail"], w.edge_ns
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        w.wait_ppp_up(proc=proc)
        with open(os.path.join(w.ppp_run_dir, "ppp-edgemail.pid")) as f:
            assert f.read().split() == [str(proc.pid), "ppp0"]
    finally:
        proc.terminate()
    assert proc.wait(5) == 5
    assert "Terminating on signal 15" in proc.stderr.read()


def test_dial_with_pyserial_then_pppd_without_connect_script(world):
    """A link manager may dial itself (AT&D0 so that closing its port keeps the call)
    and then run pppd on the connected tty with no connect script."""
    import serial
    w = world(with_isp=False, modem={"connect_delay": 0.05})
    with serial.Serial(w.tty, 115200, timeout=2) as port:
        port.write(b"ATE0&D0\r")
        assert port.read_until(b"OK\r\n").endswith(b"OK\r\n")
        port.write(b"ATDT5551234\r")
        assert port.read_until(b"\r\nCONNECT 56000\r\n").endswith(b"CONNECT 56000\r\n")
    time.sleep(0.1)
    assert w.modem_control("status")["state"] == "data"
    proc = w.start_fakepppd(connect="true")
    w.wait_ppp_up(proc=proc)
    w.modem_control("drop", mode="soft")
    assert proc.wait(5) == 16


def test_second_pppd_on_a_busy_interface_is_fatal(world):
    w = world(with_isp=False, modem={"connect_delay": 0.05})
    first = w.start_fakepppd()
    w.wait_ppp_up(proc=first)
    with w.in_edge():  # a ppp1 that is not ours: the second fakepppd cannot create it
        import netns
        squatter = netns.open_tun("ppp1")
    try:
        second = w.start_fakepppd("unit", "1", connect="true")
        assert second.wait(10) == 1
    finally:
        os.close(squatter)
    assert "fatal" in w.log_tail("fakepppd")


def test_disconnect_script_runs_on_termination_not_after_modem_hangup(world):
    w = world(with_isp=False, modem={"connect_delay": 0.05})
    marker = os.path.join(w.run_dir, "disconnected")
    for action, want_marker in (("signal", True), ("drop", False)):
        proc = w.start_fakepppd("disconnect", f"touch {marker}")
        w.wait_ppp_up(proc=proc)
        if action == "signal":
            proc.terminate()
        else:
            w.modem_control("drop", mode="soft")
        proc.wait(5)
        assert os.path.exists(marker) is want_marker, action
        if want_marker:
            os.unlink(marker)
        deadline = time.monotonic() + 2
        while w.modem_control("status")["state"] != "command" and time.monotonic() < deadline:
            time.sleep(0.02)  # fakepppd dropped DTR (B0): the modem hung up
        assert w.modem_control("status")["state"] == "command"
