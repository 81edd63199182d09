"""cli/base.py - what every command line program builds on: exit codes,
the config file's path, messages on stderr, and one control request with
the exit code of its failure.

Owns: the sysexits.h codes the programs return (0 ok, 64 usage, 65 data
error (bad address, too big), 66 no input, 75 temporary failure, 76 a
daemon of another version, 78 configuration error), ``UsageError`` and
``DataError`` (the two failures of a command line or a message that are
not the daemon's), ``Exit`` (leave a command with a code once the reason
is said), which config file a program reads (``-c``/``-C``, else
$EDGEMAIL_CONFIG, else /etc/edgemail/edgemail.toml), ``load_config`` and
``load_light_config`` (the daemon's snapshot of it, for sendmail and mailq),
and how a control request's failure is told: one line ``PROG: why`` on
stderr, then the exit code.

Never: prints to stdout, reads stdin, or retries a request: a command
asks once and says what happened.

Invariants:
  * ``ask`` and ``control_failed`` map every ``ControlError`` to an exit
    code: the daemon refused (65), answered in another version's form
    (76), or could not be reached or answer in time (75); nothing from the
    control socket ends as a traceback.
  * A reply whose shape this program does not read becomes
    ``OtherVersion`` (``field``), named with what came instead.
"""

from __future__ import annotations

import os
import sys

from edgemail.daemon.client import ControlClient, RequestFailed
from edgemail.errors import ConfigError, ControlError

TYPE_CHECKING = False     # not typing's: a call's start-up is its cost (config/snapshot.py)
if TYPE_CHECKING:
    from edgemail.config.model import Config

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_NOUSER = 0, 64, 65, 66, 67
EX_SOFTWARE, EX_TEMPFAIL, EX_PROTOCOL, EX_CONFIG = 70, 75, 76, 78
DEFAULT_CONFIG = "/etc/edgemail/edgemail.toml"


class UsageError(Exception):
    """Bad command line (EX_USAGE)."""


class DataError(Exception):
    """Bad message or address (EX_DATAERR)."""


class Exit(Exception):
    """Leave the command with ``code``; the reason has been said on stderr."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class OtherVersion(ControlError):
    """The daemon answered in a form this program does not read: most likely
    a daemon of another edgemail version still running after an upgrade."""


def config_path(explicit: str | None) -> str:
    return explicit or os.environ.get("EDGEMAIL_CONFIG") or DEFAULT_CONFIG


def load_config(explicit: str | None, prog: str, *, failure: int = EX_CONFIG) -> Config:
    """The config the program reads; an unusable one is said on stderr and
    raises Exit(failure) (78; a ppp hook passes 0: pppd must not care)."""
    from edgemail.config import loader
    try:
        return loader.load(config_path(explicit))
    except ConfigError as exc:
        err(prog, f"configuration error: {exc}")
        raise Exit(failure) from None


def load_light_config(explicit: str | None, prog: str):
    """What ``sendmail`` (submission) and ``mailq`` read: the daemon's
    snapshot of the config when it is still true (config/snapshot.py: six
    values, no TOML parse), else the config loaded as load_config does."""
    from edgemail.config import snapshot
    light = snapshot.read(config_path(explicit))
    if light is None:
        return load_config(explicit, prog)
    light.load_full = lambda: load_config(explicit, prog)     # a path that needs more of it
    return light


def err(prog: str, text: str) -> None:
    print(f"{prog}: {text}", file=sys.stderr)


def other_version(what: str, came: str) -> OtherVersion:
    return OtherVersion(f"the daemon's {what} is not in the form this program reads ({came}): is the "
                        "running daemon another version of edgemail? Restart it from this installation")


def field(obj, key: str, kind: type, what: str):
    """obj[key] when it is a KIND, else OtherVersion naming what came instead."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        got = f"keys {', '.join(sorted(map(str, obj))[:6])}" if isinstance(obj, dict) else type(obj).__name__
        raise other_version(what, f"no {key!r} {kind.__name__}; got {got}")
    return value


def control_failed(prog: str, exc: ControlError) -> int:
    """Say why a control request failed; the exit code for it: the daemon
    refused (bad request, 65), answered in another version's form (76), or
    could not be reached or answer in time (75)."""
    err(prog, str(exc))
    if isinstance(exc, OtherVersion):
        return EX_PROTOCOL
    return EX_DATAERR if isinstance(exc, RequestFailed) else EX_TEMPFAIL


def ask(cfg, prog: str, op: str, **fields) -> tuple[dict | None, int]:
    """One control request -> (reply, EX_OK), or (None, exit code) after saying why on stderr."""
    try:
        return ControlClient(cfg.control_socket, timeout=cfg.Timeout.control).request(op, **fields), EX_OK
    except ControlError as exc:
        return None, control_failed(prog, exc)

