"""fakepppd's pppd option grammar (pure) and its option/tty exit codes (no root needed)."""
import os
import subprocess

import pytest

from tests.hwsim.hwsim_helpers import HWSIM
from pppdopts import OptionError, parse, split_words

FAKEPPPD = str(HWSIM / "fakepppd")


def no_files(path):
    raise FileNotFoundError(2, "No such file or directory")


@pytest.mark.parametrize("argv, want", [
    (["/dev/ttyS0", "115200"], dict(device="/dev/ttyS0", speed=115200)),
    (["ttyS1", "57600"], dict(device="/dev/ttyS1", speed=57600)),
    (["/x", "connect", "chat -f x", "nodetach", "defaultroute", "usepeerdns"],
     dict(connect="chat -f x", nodetach=True, defaultroute=True, usepeerdns=True)),
    (["/x", "ipparam", "edgemail", "linkname", "edge1", "idle", "60", "maxconnect", "600"],
     dict(ipparam="edgemail", linkname="edge1", idle=60, maxconnect=600)),
    (["/x", "persist", "maxfail", "3", "holdoff", "5"], dict(persist=True, maxfail=3, holdoff=5)),
    (["/x", "10.1.1.2:10.1.1.1"], dict(local_ip="10.1.1.2", remote_ip="10.1.1.1")),
    (["/x", ":10.1.1.1"], dict(local_ip=None, remote_ip="10.1.1.1")),
    (["/x", "unit", "3"], dict(unit=3, interface="ppp3")),
    (["/x", "ifname", "modem0"], dict(interface="modem0")),
    (["/x", "netns", "emedge-1-2", "ip-up-script", "/u", "ip-down-script", "/d"],
     dict(netns="emedge-1-2", ip_up="/u", ip_down="/d")),
    (["/x", "noauth", "crtscts", "lock", "user", "bob", "password", "pw", "mtu", "1500", "lcp-echo-interval", "30"],
     dict(device="/x")),
    (["/x", "persist", "nopersist", "detach"], dict(persist=False, nodetach=False)),
    (["/x"], dict(maxfail=10, holdoff=30, idle=0, maxconnect=0, unit=0, interface="ppp0")),
])
def test_parse(argv, want):
    opts = parse(argv, no_files)
    got = {k: getattr(opts, k) for k in want}
    assert got == want


@pytest.mark.parametrize("argv, message", [
    (["/x", "bogusoption"], "unrecognized option 'bogusoption'"),
    (["/x", "idle", "soon"], "invalid numeric parameter 'soon' for idle option"),
    (["/x", "connect"], "too few parameters for option 'connect'"),
    (["/x", "file", "/nonexistent"], "Can't open options file /nonexistent"),
    (["/x", "call", "../etc/passwd"], "call option value"),
    (["/x", "persist", "demand"], "option 'demand' is not supported by fakepppd: dial-on-demand is edgemail's"),
])
def test_parse_errors(argv, message):
    with pytest.raises(OptionError, match=message.replace("(", r"\(")):
        parse(argv, no_files)


def test_call_reads_the_peers_file(tmp_path):
    (tmp_path / "isp").write_text(
        '# the ISP\n/dev/ttyS0 115200   # modem\nconnect "/usr/sbin/chat -v -f /etc/chatscripts/isp"\n'
        "noauth defaultroute usepeerdns\nipparam edgemail\nfile %s\n" % (tmp_path / "more"))
    (tmp_path / "more").write_text("idle 120\nlinkname isp\n")
    opts = parse(["call", "isp", "nodetach"], lambda p: open(p).read(), peers_dir=str(tmp_path))
    assert (opts.call, opts.device, opts.speed, opts.connect, opts.ipparam, opts.idle, opts.linkname,
            opts.nodetach, opts.defaultroute) == (
        "isp", "/dev/ttyS0", 115200, "/usr/sbin/chat -v -f /etc/chatscripts/isp", "edgemail", 120, "isp",
        True, True)


def test_split_words_quotes_and_comments():
    assert split_words('connect "chat -f \'x y\'" # comment\nidle 5') == ["connect", "chat -f 'x y'", "idle", "5"]


def run_fakepppd(*args, env=None):
    return subprocess.run([FAKEPPPD, *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})


def test_bad_option_exits_2():
    out = run_fakepppd("/dev/null", "bogusoption")
    assert out.returncode == 2 and "unrecognized option 'bogusoption'" in out.stderr


def test_demand_mode_exits_2_and_says_why():
    out = run_fakepppd("/dev/null", "demand", "idle", "60")
    assert out.returncode == 2 and "option 'demand' is not supported by fakepppd" in out.stderr


def test_no_device_exits_2():
    assert run_fakepppd("nodetach").returncode == 2


def test_unopenable_tty_exits_7(tmp_path):
    out = run_fakepppd(str(tmp_path / "no-such-tty"), "nodetach", env={"FAKEPPPD_RUN_DIR": str(tmp_path)})
    assert out.returncode == 7, out.stderr


def test_failed_connect_script_exits_8(tmp_path, modem):
    m = modem("--connect-delay", "0.05", "--result", "BUSY")
    run_dir = tmp_path / "run"
    out = run_fakepppd(m.tty, "115200", "connect", "/usr/sbin/chat -t 2 ABORT BUSY '' AT OK ATDT1 CONNECT",
                       "nodetach", "linkname", "t", env={"FAKEPPPD_RUN_DIR": str(run_dir)})
    assert out.returncode == 8 and "Connect script failed" in out.stderr
    assert os.listdir(run_dir) == []  # the linkname pid file is gone again


def test_failed_init_script_exits_18(tmp_path, modem):
    m = modem()
    out = run_fakepppd(m.tty, "init", "false", "connect", "true", env={"FAKEPPPD_RUN_DIR": str(tmp_path)})
    assert out.returncode == 18
