"""peers — the mail systems the benchmark measures, installed and run privately.

Owns: bench-out/peers/ (Debian packages fetched with `apt-get download` and
unpacked with `dpkg -x`, one root per peer: sendmail 8.17 and Postfix 3.7
conflict as installed packages, unpacked side by side they do not) and
bench-out/state/<system>/ (a fresh queue, config and pid file per run).

Each `MailSystem` knows how to prepare its state, start its daemon listening
on SERVER_IP:<port>, name the root pids of its process tree (for RSS), list
its queue (`mailq_argv`) and stop.  All three are configured for dial-up:
sendmail with DeliveryMode=deferred, Postfix with defer_transports = smtp,
edgemail (fixed deferred) from the MTA worktree.  Durability is each
system's default (sendmail SuperSafe=True, Postfix fsync of every queue
file, edgemail fsync + rename + directory fsync): nothing is tuned down.

Never does: install system packages, touch or read /etc/mail, /etc/postfix
or /etc/resolv.conf (each peer's config names every directory it uses, so a
Debian postfix installed and removed on the machine, with its /etc/postfix,
users and alternatives left behind, changes nothing).  The one system change
is creating the accounts `embench-postfix` and `embench-postdrop` when
missing (Postfix refuses to run without a mail_owner and a setgid_group),
and, when the bench's folder lies under a group- or world-writable one such
as /tmp, sendmail's state in /var/lib/edgemail-bench/ (sendmail refuses
such paths).

Failures: `PeerError` naming the peer and the step (download, unpack, m4,
start) with the command's stderr.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SERVER_IP = "10.255.77.1"          # on lo inside the bench namespace: a "LAN" address
CLIENT_IP = "10.255.77.2"          # the clients' source address: not in /etc/hosts
LAN_NET = "10.255.77.0/24"
MAIL_DOMAIN = "edge.example"       # our local domain; recipients are remote
HOSTNAME = "gw.edge.example"

# Packages per peer; shared libraries are added when not installed system-wide.
PEER_DEBS = {
    "sendmail": ["sendmail-bin", "sendmail-base", "sendmail-cf", "m4"],
    "postfix": ["postfix"],
}
PEER_LIBS = {
    "sendmail": ["libdb5.3", "libldap-2.5-0", "liblockfile1", "libnsl2",
                 "libsasl2-2", "libssl3", "libwrap0"],
    "postfix": ["libdb5.3", "libicu72", "libnsl2", "libsasl2-2", "libssl3"],
}


class PeerError(RuntimeError):
    pass


def run(argv: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise PeerError(f"{what}: {' '.join(argv)} exited {proc.returncode}: "
                        f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc


def installed(pkg: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                         capture_output=True, text=True)
    return out.returncode == 0 and "ok installed" in out.stdout


def install_peer(name: str, peers_dir: Path) -> Path:
    """Download and unpack one peer into peers_dir/name/root (once)."""
    root = peers_dir / name / "root"
    stamp = peers_dir / name / ".installed"
    if stamp.exists():
        return root
    debs = peers_dir / name / "debs"
    shutil.rmtree(peers_dir / name, ignore_errors=True)
    debs.mkdir(parents=True)
    pkgs = PEER_DEBS[name] + [p for p in PEER_LIBS[name] if not installed(p)]
    run(["apt-get", "download", *pkgs], f"{name}: download", cwd=debs)
    for deb in sorted(debs.glob("*.deb")):
        run(["dpkg", "-x", str(deb), str(root)], f"{name}: unpack {deb.name}")
    strip_set_id(root)
    stamp.write_text(" ".join(pkgs) + "\n")
    return root


def strip_set_id(root: Path) -> None:
    """Clear setuid/setgid bits: the bench runs every peer as root, and the
    dynamic loader ignores LD_LIBRARY_PATH for set-id programs."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            mode = path.stat().st_mode
            if mode & 0o6000:
                path.chmod(mode & ~0o6000)


def lib_path(root: Path) -> str:
    dirs = [root / "usr/lib/x86_64-linux-gnu", root / "lib/x86_64-linux-gnu",
            root / "usr/lib/postfix"]
    return ":".join(str(d) for d in dirs if d.is_dir())


def read_pid(path: Path, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            time.sleep(0.05)
    raise PeerError(f"no pid in {path} after {timeout:.0f}s")


def wait_gone(pid: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except OSError:
            return
        time.sleep(0.05)


class MailSystem:
    name = "?"
    port = 0

    def __init__(self, state: Path):
        self.state = state

    def prepare(self) -> None:
        if self.state.exists():
            shutil.rmtree(self.state)
        self.state.mkdir(parents=True)

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def root_pids(self) -> list[int]: ...
    def mailq_argv(self) -> list[str]: ...
    def env(self) -> dict[str, str]:
        return dict(os.environ)


class UnpackedPeer(MailSystem):
    """A peer run from its dpkg -x root, found by the pid file it writes."""
    pidfile: Path

    def __init__(self, state: Path, root: Path):
        super().__init__(state)
        self.root = root

    def env(self) -> dict[str, str]:
        return dict(os.environ, LD_LIBRARY_PATH=lib_path(self.root))

    def root_pids(self) -> list[int]:
        return [read_pid(self.pidfile)]

    def stop_command(self) -> list[str] | None:
        return None

    def stop(self) -> None:
        try:
            pid = read_pid(self.pidfile, timeout=1)
        except PeerError:
            return
        if cmd := self.stop_command():
            subprocess.run(cmd, capture_output=True, env=self.env())
        else:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                return
        wait_gone(pid)


#: where a peer that checks its paths (sendmail) keeps its state when the
#: bench's own folder lies under a group- or world-writable directory (/tmp)
PRIVATE_STATE = Path("/var/lib/edgemail-bench")


def unsafe_ancestor(path: Path) -> Path | None:
    """The first existing folder on PATH's way up that is group- or
    world-writable or not root's (what sendmail's safefile() refuses), else None."""
    for d in [path, *path.parents]:
        try:
            st = d.stat()
        except FileNotFoundError:
            continue
        if st.st_mode & 0o022 or st.st_uid != 0:
            return d
    return None


def private_state(state: Path, name: str) -> Path:
    """STATE itself when every folder above it is safe, else a private folder
    (PRIVATE_STATE/NAME: root's, 0755, on a chain of root-owned 0755 folders)
    with a symlink at STATE pointing to it (made by prepare()), so that
    bench-out/state/NAME still leads to the peer's files."""
    if unsafe_ancestor(state.parent.resolve()) is None:
        return state
    if unsafe_ancestor(PRIVATE_STATE.parent) is not None:
        raise PeerError(f"{name}: {state} lies under {unsafe_ancestor(state.parent.resolve())} "
                        f"(group/world-writable), and so does {PRIVATE_STATE}")
    return PRIVATE_STATE / name


class Sendmail(UnpackedPeer):
    """sendmail 8.17 from sendmail-bin, a .cf made with m4 from sendmail-cf.

    sendmail refuses files under a group- or world-writable folder ("World
    writable directory /tmp", then no alias database): when the bench's
    folder is under one, the state goes to a private folder (private_state)."""
    name = "sendmail"
    port = 2525

    def __init__(self, state: Path, root: Path):
        self.link = state
        state = private_state(state, f"{state.parent.name}-{state.name}")
        super().__init__(state, root)
        self.binary = root / "usr/libexec/sendmail/sendmail"
        self.cf = state / "sendmail.cf"
        self.pidfile = state / "sendmail.pid"

    def mc(self) -> str:
        s = self.state
        return f"""divert(-1)
# edgemail bench: sendmail for a dial-up gateway (DeliveryMode=deferred).
divert(0)dnl
include(`{self.root}/usr/share/sendmail/cf/m4/cf.m4')dnl
VERSIONID(`edgemail bench dial-up')dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `{HOSTNAME}')dnl
define(`confDELIVERY_MODE', `deferred')dnl
define(`QUEUE_DIR', `{s}/mqueue')dnl
define(`confPID_FILE', `{s}/sendmail.pid')dnl
define(`ALIAS_FILE', `{s}/aliases')dnl
define(`STATUS_FILE', `{s}/statistics')dnl
define(`confCW_FILE', `-o {s}/local-host-names')dnl
define(`confCR_FILE', `-o {s}/relay-domains')dnl
define(`confCT_FILE', `-o {s}/trusted-users')dnl
define(`confHELP_FILE', `{s}/helpfile')dnl
define(`confDEF_USER_ID', `8:8')dnl
DAEMON_OPTIONS(`Family=inet, Name=MTA, Addr={SERVER_IP}, Port={self.port}')dnl
FEATURE(`no_default_msa')dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
"""

    def prepare(self) -> None:
        super().prepare()
        for d in (self.state, *([PRIVATE_STATE] if self.link != self.state else [])):
            d.chmod(0o755)
        if self.link != self.state:
            if self.link.is_symlink() or self.link.is_file():
                self.link.unlink()
            elif self.link.exists():
                shutil.rmtree(self.link)
            self.link.parent.mkdir(parents=True, exist_ok=True)
            self.link.symlink_to(self.state)
        s = self.state
        (s / "mqueue").mkdir(mode=0o700)
        (s / "aliases").write_text("postmaster: root\n")
        (s / "local-host-names").write_text(f"{MAIL_DOMAIN}\n")
        (s / "relay-domains").write_text("10.255.77\n")
        (s / "trusted-users").write_text("")
        (s / "sendmail.mc").write_text(self.mc())
        m4 = self.root / "usr/bin/m4"
        out = run([str(m4), str(s / "sendmail.mc")], "sendmail: m4", env=self.env())
        self.cf.write_text(out.stdout)
        # sendmail rebuilds the alias db when missing; build it now, as newaliases does.
        run([str(self.binary), "-C", str(self.cf), "-bi"], "sendmail: newaliases",
            env=self.env())

    def start(self) -> None:
        run([str(self.binary), "-C", str(self.cf), "-bd"], "sendmail: start", env=self.env())
        read_pid(self.pidfile)

    def mailq_argv(self) -> list[str]:
        return [str(self.binary), "-C", str(self.cf), "-bp"]

    def submit_argv(self) -> list[str]:
        return [str(self.binary), "-C", str(self.cf), "-t"]


class Postfix(UnpackedPeer):
    """Postfix 3.7 from the postfix package, its own config/queue/data dirs."""
    name = "postfix"
    port = 2526

    def __init__(self, state: Path, root: Path, log_file: bool = False):
        super().__init__(state, root)
        self.log_file = log_file          # maillog_file + postlogd instead of (absent) syslog
        self.relayhost = "[192.0.2.25]"   # the ISP's relay (never reached: defer_transports)
        self.config = state / "etc"
        self.queue = state / "queue"
        self.pidfile = self.queue / "pid/master.pid"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env().items() if not k.startswith(("MAIL_", "POSTFIX"))}
        return dict(env, MAIL_CONFIG=str(self.config))

    def main_cf(self, log_file: bool) -> str:
        r, s = self.root, self.state
        return f"""# edgemail bench: Postfix for a dial-up gateway (defer_transports = smtp).
compatibility_level = 3.6
config_directory = {self.config}
queue_directory = {self.queue}
data_directory = {s}/data
command_directory = {r}/usr/sbin
daemon_directory = {r}/usr/lib/postfix/sbin
shlib_directory = {r}/usr/lib/postfix
meta_directory = {self.config}
mail_owner = {PF_USER}
setgid_group = {PF_GROUP}
myhostname = {HOSTNAME}
mydomain = {MAIL_DOMAIN}
mydestination = $mydomain, localhost
inet_interfaces = {SERVER_IP}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8 {LAN_NET}
defer_transports = smtp
relayhost = {self.relayhost}
alias_maps =
alias_database =
biff = no
smtpd_banner = $myhostname ESMTP
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH
# sendmail -t runs postdrop with export_environment only: the unpacked libraries
export_environment = TZ MAIL_CONFIG LANG LD_LIBRARY_PATH={lib_path(r)}
{f"maillog_file = {s}/maillog" if log_file else ""}
{f"maillog_file_prefixes = {s}" if log_file else ""}
"""

    def master_cf(self, log_file: bool) -> str:
        lines = [
            f"{SERVER_IP}:{self.port} inet n - n - - smtpd",
            "pickup    unix  n - n 60 1 pickup",
            "cleanup   unix  n - n -  0 cleanup",
            "qmgr      unix  n - n 300 1 qmgr",
            "rewrite   unix  - - n -  - trivial-rewrite",
            "bounce    unix  - - n -  0 bounce",
            "defer     unix  - - n -  0 bounce",
            "trace     unix  - - n -  0 bounce",
            "verify    unix  - - n -  1 verify",
            "flush     unix  n - n 1000? 0 flush",
            "proxymap  unix  - - n -  - proxymap",
            "proxywrite unix - - n -  1 proxymap",
            "smtp      unix  - - n -  - smtp",
            "relay     unix  - - n -  - smtp",
            "showq     unix  n - n -  - showq",
            "error     unix  - - n -  - error",
            "retry     unix  - - n -  - error",
            "discard   unix  - - n -  - discard",
            "local     unix  - n n -  - local",
            "anvil     unix  - - n -  1 anvil",
            "scache    unix  - - n -  1 scache",
        ]
        if log_file:
            lines.append("postlog   unix-dgram n - n - 1 postlogd")
        return "\n".join(lines) + "\n"

    def prepare(self) -> None:
        ensure_postfix_users()
        super().prepare()
        self.config.mkdir()
        (self.state / "data").mkdir()
        self.queue.mkdir()
        (self.config / "main.cf").write_text(self.main_cf(self.log_file))
        (self.config / "master.cf").write_text(self.master_cf(self.log_file))
        shutil.copy(self.root / "etc/postfix/postfix-files", self.config / "postfix-files")
        (self.config / "dynamicmaps.cf").write_text("")
        (self.config / "dynamicmaps.cf.d").mkdir()
        (self.config / "postfix-files.d").mkdir()
        # `postfix check` creates the queue directories; data_directory is ours to chown.
        run([str(self.root / "usr/sbin/postfix"), "-c", str(self.config), "check"],
            "postfix: check", env=self.env())
        shutil.chown(self.state / "data", PF_USER)

    def start(self) -> None:
        run([str(self.root / "usr/sbin/postfix"), "-c", str(self.config), "start"],
            "postfix: start", env=self.env())
        read_pid(self.pidfile)

    def stop_command(self) -> list[str]:
        return [str(self.root / "usr/sbin/postfix"), "-c", str(self.config), "stop"]

    def mailq_argv(self) -> list[str]:
        return [str(self.root / "usr/sbin/postqueue"), "-c", str(self.config), "-p"]

    def submit_argv(self) -> list[str]:
        return [str(self.root / "usr/sbin/sendmail"), "-C", str(self.config), "-t"]

    def flush_argv(self) -> list[str]:
        return [str(self.root / "usr/sbin/postqueue"), "-c", str(self.config), "-f"]


#: the bench's own accounts for Postfix (mail_owner, setgid_group): never
#: Debian's postfix/postdrop, which a removed postfix package leaves behind
#: in whatever state (a user without its group, a group without its user)
PF_USER, PF_GROUP = "embench-postfix", "embench-postdrop"


def ensure_postfix_users() -> None:
    """Postfix needs its mail_owner and setgid_group: create the bench's own if missing."""
    if subprocess.run(["getent", "group", PF_GROUP], capture_output=True).returncode:
        run(["groupadd", "--system", PF_GROUP], f"postfix: groupadd {PF_GROUP}")
    if subprocess.run(["getent", "passwd", PF_USER], capture_output=True).returncode:
        have_group = not subprocess.run(["getent", "group", PF_USER], capture_output=True).returncode
        run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", *(["-g", PF_USER] if have_group else ["--user-group"]),
             PF_USER], f"postfix: useradd {PF_USER}")


class Edgemail(MailSystem):
    """edgemail's daemon from another worktree's virtualenv: `python -m edgemail run -c CONFIG`."""
    name = "edgemail"
    port = 2527

    def __init__(self, state: Path, tree: Path):
        super().__init__(state)
        self.tree = tree
        self.python = tree / ".venv/bin/python"
        self.proc: subprocess.Popen | None = None
        self.config = state / "edgemail.toml"
        self.smart_host = "[192.0.2.25]:25"      # the drain points it at the paced line

    def available(self) -> str | None:
        """None when this tree can run the daemon, else why not."""
        if not self.python.exists():
            return f"{self.python} missing"
        if not (self.tree / "edgemail/__main__.py").exists():
            return f"{self.tree}/edgemail/__main__.py missing"
        return None

    def config_text(self) -> str:
        s = self.state
        return f"""# edgemail bench: the example configuration's policy, private paths.
hostname = "{HOSTNAME}"
local_domains = ["{MAIL_DOMAIN}"]
lan_networks = ["{LAN_NET}"]
DeliveryMode = "deferred"
SmartHost = "{self.smart_host}"
MaxMessageSize = "10M"
MinFreeBlocks = 100
LogLevel = 9

[spool]
directory = "{s}/spool"

[control]
socket = "{s}/control.sock"

[smtpd]
# the idle-session phase holds 500 sessions from the bench's one client address
max_sessions = 600
max_sessions_per_client = 600

[[listen]]
name = "lan"
address = "{SERVER_IP}"
port = {self.port}
strict = false

[routes]
"{MAIL_DOMAIN}" = "local"
"*" = {{ route = "smarthost", expensive = true, dialdelay = true }}

[local]
aliases = "{s}/aliases"
maildir = "{s}/mail/%u/Maildir"
create_mailboxes = true

[dns]
nameservers = []
peer_dns_file = "{s}/ppp-resolv.conf"

[link]
mode = "none"
state_file = "{s}/link.json"
"""

    def prepare(self) -> None:
        super().prepare()
        (self.state / "spool").mkdir()
        (self.state / "run").mkdir(mode=0o755)
        (self.state / "aliases").write_text("postmaster: root\n")
        self.config.write_text(self.config_text())

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
        env["EDGEMAIL_CONFIG"] = str(self.config)
        env["EDGEMAIL_RUNTIME_DIR"] = str(self.state / "run")   # the daemon's config snapshot
        return env

    def start(self) -> None:
        log = open(self.state / "daemon.log", "wb")
        # EDGEMAIL_BENCH_CPROFILE=DIR: the daemon runs under cProfile and writes
        # DIR/<state>.prof when it stops (a profiling aid for issue 15 §3: the
        # product has no switch; the figures of such a run are not comparable)
        prof = os.environ.get("EDGEMAIL_BENCH_CPROFILE")
        profile = ["-m", "cProfile", "-o", str(Path(prof) / f"{self.state.name}.prof")] if prof else []
        self.proc = subprocess.Popen(
            [str(self.python), *profile, "-m", "edgemail", "run", "-c", str(self.config)],
            cwd=self.tree, env=self.env(), stdout=log, stderr=subprocess.STDOUT)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.state / "daemon.log").read_text(errors="replace")[-3000:]
            raise PeerError(f"edgemail: daemon exited {self.proc.returncode}:\n{tail}")

    def root_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def mailq_argv(self) -> list[str]:
        return [str(self.tree / ".venv/bin/mailq")]      # the console script users call

    def submit_argv(self) -> list[str]:
        return [str(self.tree / ".venv/bin/sendmail"), "-t"]

    def installed_argv(self, program: str) -> list[str]:
        """PROGRAM as the Debian package installs it (packaging/deb/build.py's
        wrapper: python3 -IS, the code's folder put on sys.path), here with
        the tree's interpreter and the tree as that folder."""
        func = {"sendmail": "sendmail_main", "mailq": "mailq_main"}[program]
        path = self.state / "bin" / program
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"#!{self.python} -IS\nimport sys\nsys.path.insert(0, {str(self.tree)!r})\n"
                        f"from edgemail.cli import {func}\nsys.exit({func}())\n")
        path.chmod(0o755)
        return [str(path)]

    def queue_run_argv(self) -> list[str]:
        """`edgemail queue run`: what a user types (sendmail -q); it returns at once."""
        return [str(self.python), "-m", "edgemail", "-c", str(self.config), "queue", "run"]


def _selftest() -> None:   # python peers.py: install both peers and print their roots
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench-out") / "peers"
    for name in PEER_DEBS:
        print(name, install_peer(name, out))


if __name__ == "__main__":
    _selftest()
