"""config/snapshot.py - the few settings a ``sendmail``/``mailq`` call needs,
as the daemon validated them, without loading the config (issue 15 §2).

A call of ``sendmail -t`` or ``mailq`` needs six values of the config (the
control socket and its timeout, the spool directory, the host name, the
first local domain, MaxMessageSize; RetryFactor for the listing read from
disk).  Loading the whole config (tomllib, the model's dataclasses, the
listeners' ssl, the ISP tables) was half of each call's 80-120 ms.  So the
daemon, which loads and validates the file anyway, writes what those calls
need to a snapshot, and the calls read it when it is still true.

Where: ``$EDGEMAIL_RUNTIME_DIR`` (default /run/edgemail, the unit's
RuntimeDirectory), ``cli-<config path with / as _>.json``, mode 0644 (every
local user runs sendmail).  Written by ``edgemail run`` after its load, and
again after every reload that read the file (SIGHUP, ``edgemail reload``);
removed when the daemon stops.  A daemon that cannot write there goes on
without it (the calls then load the config, as before).

When a call uses it (``read``), all of these hold, else it loads the config:
  * the snapshot names this config file (its absolute path), and each file
    the values came from (the config itself, /etc/hostname) holds exactly
    the bytes the daemon read: any edit, even one with the same size and
    time stamp, is seen at the next call;
  * it is a regular file (no symlink followed), owned by root or by the
    owner of its directory, writable by neither group nor others, in a
    directory writable by neither group nor others: a local user cannot put
    a snapshot there that would send other users' mail to a socket of theirs;
  * it parses, carries this format's version, and each value has its type.
What it does not redo: checks of the config that look at other files (the
users named, certificates, the aliases): the daemon made them when it wrote
the snapshot; ``edgemail config check`` still makes them all.

Imports only os and json (a call's start-up is its cost); the writer side is
used by the daemon only.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from edgemail.config.model import Config

FORMAT = 1
ENV = "EDGEMAIL_RUNTIME_DIR"
DEFAULT_DIR = "/run/edgemail"
#: the files a Config's values may come from besides the config file itself
HOSTNAME_FILE = "/etc/hostname"
#: the values kept, and their types (Timeout.control is "Timeout_control")
FIELDS = {"hostname": str, "local_domains": list, "MaxMessageSize": int, "control_socket": str,
          "Timeout_control": float, "spool_dir": str, "RetryFactor": int}


class Timeouts:
    """The one timeout a call uses, where Config has it (cfg.Timeout.control)."""

    def __init__(self, control: float) -> None:
        self.control = control


class CliConfig:
    """What a ``sendmail -t`` or ``mailq`` call reads of the config, from a snapshot."""

    def __init__(self, path: str, values: dict) -> None:
        self.path = path
        self.hostname: str = values["hostname"]
        self.local_domains: tuple[str, ...] = tuple(values["local_domains"])
        self.MaxMessageSize: int = values["MaxMessageSize"]
        self.control_socket: str = values["control_socket"]
        self.Timeout = Timeouts(values["Timeout_control"])
        self.spool_dir: str = values["spool_dir"]
        self.RetryFactor: int = values["RetryFactor"]
        #: what loads the whole config when a path needs more than the snapshot holds
        self.load_full: Callable[[], Config] | None = None

    def __getattr__(self, name: str):
        """A setting the snapshot does not hold (the daemon is down and the
        recipients are checked here: cfg.local): the whole config, loaded
        once by ``load_full`` (the command line's loader: it says what is
        wrong with the file and exits 78)."""
        if name.startswith("__") or self.__dict__.get("load_full") is None:
            raise AttributeError(name)
        full = self.__dict__.get("_full")
        if full is None:
            full = self.__dict__["_full"] = self.__dict__["load_full"]()
        return getattr(full, name)


def snapshot_path(config_path: str) -> str | None:
    """Where the snapshot of CONFIG_PATH lives (None: a path too long for one name)."""
    name = "cli-" + os.path.abspath(config_path).replace("/", "_") + ".json"
    if len(name) > 255:
        return None
    return os.path.join(os.environ.get(ENV) or DEFAULT_DIR, name)


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


# ---------------------------------------------------------------- the calls' side

def read(config_path: str) -> CliConfig | None:
    """The snapshot of CONFIG_PATH when every condition of the module's
    docstring holds, else None (the caller loads the config)."""
    where = snapshot_path(config_path)
    if where is None:
        return None
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not _trusted(fd, os.path.dirname(where)):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            doc = json.loads(f.read())
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return _valid(doc, os.path.abspath(config_path))


def _trusted(fd: int, directory: str) -> bool:
    st, dst = os.fstat(fd), os.stat(directory)
    if (st.st_mode & 0o170000) != 0o100000 or st.st_mode & 0o022 or dst.st_mode & 0o022:
        return False
    return st.st_uid in (0, dst.st_uid) and dst.st_uid in (0, st.st_uid)


def _valid(doc, path: str) -> CliConfig | None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("config") != path:
        return None
    sources, values = doc.get("sources"), doc.get("values")
    if not isinstance(sources, dict) or path not in sources or not isinstance(values, dict):
        return None
    for name, text in sources.items():
        if not isinstance(text, str) or _read_bytes(name) != text.encode("utf-8", "surrogateescape"):
            return None
    for key, kind in FIELDS.items():
        if type(values.get(key)) is not kind:
            return None
    if not values["local_domains"] or not all(isinstance(d, str) for d in values["local_domains"]):
        return None
    return CliConfig(path, values)


# ---------------------------------------------------------------- the daemon's side

def publish(cfg: Config) -> str | None:
    """The daemon is up with CFG: the snapshot of its file, when CFG is what
    the file says (a config built with overrides, or from a dict, as the
    demo and tests make, gets none).  Returns its path, or None."""
    from dataclasses import replace

    from edgemail.config.loader import load_text
    from edgemail.errors import ConfigError
    try:
        fresh, text = load_text(cfg.path)
    except ConfigError:
        return None
    # the daemon's host_addresses (a wildcard listener's, read from the kernel) are no part of the file
    return write(fresh, text) if replace(fresh, host_addresses=cfg.host_addresses) == cfg else None


def write(cfg: Config, text: str) -> str | None:
    """Write the snapshot of CFG, loaded from TEXT (the exact text of
    cfg.path the loader parsed).  Returns its path, or None when it could
    not be written (no runtime directory, no permission): never fails."""
    where = snapshot_path(cfg.path)
    if where is None:
        return None
    sources = {os.path.abspath(cfg.path): text}
    hostname_text = _read_bytes(HOSTNAME_FILE)
    if hostname_text is not None:
        sources[HOSTNAME_FILE] = hostname_text.decode("utf-8", "surrogateescape")
    values = {"hostname": cfg.hostname, "local_domains": list(cfg.local_domains),
              "MaxMessageSize": int(cfg.MaxMessageSize), "control_socket": cfg.control_socket,
              "Timeout_control": float(cfg.Timeout.control), "spool_dir": cfg.spool_dir,
              "RetryFactor": int(cfg.RetryFactor)}
    doc = {"format": FORMAT, "config": os.path.abspath(cfg.path), "sources": sources, "values": values}
    tmp = f"{where}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.fchmod(fd, 0o644)            # whatever the umask: every local user reads it
            os.write(fd, json.dumps(doc).encode())
        finally:
            os.close(fd)
        os.rename(tmp, where)
    except OSError:
        with _quiet():
            os.unlink(tmp)
        return None
    return where


def remove(config_path: str) -> None:
    """The daemon stops: its snapshot goes (a stale one would be checked and
    refused anyway, this keeps the runtime directory clean)."""
    where = snapshot_path(config_path)
    if where:
        with _quiet():
            os.unlink(where)


class _quiet:
    """contextlib.suppress(OSError) without importing contextlib."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        return kind is not None and issubclass(kind, OSError)
