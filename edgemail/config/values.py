"""config/values.py - the syntax of configuration values.

Owns: sendmail-style durations ("90s", "5m", "1h30m", "5d", "1w", or
seconds), sizes (bytes, "10M", "512K"), routes ("kind[:target]" or a table
with expensive/dialdelay), HOST:PORT and SmartHost forms, networks,
domains, PrivacyOptions words, RunAsUser, and the small converters
config/loader.py's reader applies per key.  /etc/hostname is read here (never a
resolver: invariant 1).

Failures: every parser raises ValueError whose text says what was expected
and what was given; config/loader.py adds the file, the key and the line.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from edgemail.config.model import PRIVACY_WORDS, ROUTE_KINDS, Route
from link import durations


def parse_duration(value: Any) -> float:
    """"1h30m" -> 5400.0; 90 -> 90.0 (link/durations.py: the one grammar).  Raises ValueError naming the format."""
    return durations.parse(value)


def parse_size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)[bB]?\s*", value)
        if m:
            return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
    raise ValueError(f"expected a size in bytes such as 10485760 or \"10M\", got {value!r}")


def parse_route(pattern: str, value: Any) -> Route:
    """A route table entry: "kind[:target]" or a table {route=..., expensive=..., dialdelay=...}."""
    flags: dict[str, Any] = {}
    if isinstance(value, dict):
        extra = set(value) - {"route", "expensive", "dialdelay"}
        if extra:
            raise ValueError(f"unknown route field(s) {sorted(extra)}, expected route, expensive, dialdelay")
        flags = {k: value[k] for k in ("expensive", "dialdelay") if k in value}
        for k, v in flags.items():
            if not isinstance(v, bool):
                raise ValueError(f"{k} must be true or false, got {v!r}")
        value = value.get("route")
    if not isinstance(value, str) or not value:
        raise ValueError("expected a route such as \"local\", \"maildir:/path\", \"lmtp:HOST:PORT\", "
                         "\"relay:[HOST]:PORT\", \"smarthost\", \"mx\", \"hold\" or \"error:CODE text\"")
    kind, _, target = value.partition(":")
    kind = kind.strip().lower()
    if kind not in ROUTE_KINDS:
        raise ValueError(f"unknown route kind {kind!r}, expected one of {', '.join(ROUTE_KINDS)}")
    if kind in ("maildir", "lmtp", "relay", "error") and not target:
        raise ValueError(f"route {kind} needs a target after ':'")
    if kind in ("lmtp", "relay"):
        _host_port(target)
    if kind == "error" and not re.match(r"[45]\d\d(\s|$)", target):
        raise ValueError(f"error route needs \"error:CODE text\" with a 4xx or 5xx code, got {target!r}")
    if pattern != "*" and not re.fullmatch(r"\.?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?", pattern):
        raise ValueError("a route pattern is a domain, .subdomain or *")
    expensive = flags.get("expensive", kind in ("smarthost", "mx"))
    return Route(pattern.lower(), kind, target, expensive, flags.get("dialdelay", False))


def _host_port(text: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d{1,5})", text.strip())
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ValueError(f"expected HOST:PORT or [HOST]:PORT, got {text!r}")
    return m.group(1), int(m.group(2))


host_port = _host_port


def read_hostname(etc_hostname: str = "/etc/hostname") -> str:
    """The host name from /etc/hostname; never from a resolver."""
    try:
        name = Path(etc_hostname).read_text().split()[0]
    except (OSError, IndexError):
        return "localhost"
    return name


def _typed(kind: type, what: str):
    def conv(v):
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            return float(v)
        if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
            raise ValueError(f"expected {what}, got {v!r}")
        return v
    return conv


def _bounded_int(low: int, high: int):
    def conv(v):
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {v!r}")
        return v
    return conv


def _nonneg_int(v):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"expected a whole number >= 0, got {v!r}")
    return v


def _str_tuple(v):
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"expected a list of strings, got {v!r}")
    return tuple(v)


def _choice(options):
    def conv(v):
        if v not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {v!r}")
        return v
    return conv


def _delivery_mode(v):
    if v != "deferred":
        raise ValueError(
            f"edgemail always runs in DeliveryMode=deferred (got {v!r}): accepting mail must never "
            "touch DNS or the link; mail for expensive routes waits for a queue run on link-up. "
            "Remove the key or set it to \"deferred\"")
    return v


def _privacy(v):
    words = frozenset(w.strip().lower() for w in (v.split(",") if isinstance(v, str) else v) if w.strip())
    bad = words - PRIVACY_WORDS
    if bad:
        raise ValueError(f"unknown PrivacyOptions {sorted(bad)}, expected some of {', '.join(sorted(PRIVACY_WORDS))}")
    return words


_ID = r"(?:[A-Za-z_][A-Za-z0-9_.-]*\$?|\d+)"


def _run_as_user(v):
    if not isinstance(v, str) or v and not re.fullmatch(f"{_ID}(?::{_ID})?", v):
        raise ValueError(f"expected a user name or number, optionally :group (\"edgemail\", "
                         f"\"edgemail:mail\"), got {v!r}")
    return v


def maildir_mode(v) -> int:
    """A Maildir file mode: 0o660 (TOML's octal) or "0660"; the owner must read and
    write, others may never write (mail is not world-writable)."""
    mode = v if isinstance(v, int) and not isinstance(v, bool) else None
    if isinstance(v, str) and re.fullmatch(r"0?[0-7]{3}", v.strip()):
        mode = int(v, 8)
    if mode is None or not 0 <= mode <= 0o777:
        raise ValueError(f"expected a file mode such as \"0660\" or 0o660, got {v!r}")
    if mode & 0o600 != 0o600 or mode & 0o002:
        raise ValueError(f"mode {mode:04o}: the owner must read and write (0600) and others may not write")
    return mode


#: a local user's mailbox name (it becomes a path: %u in local.maildir)
MAILBOX = re.compile(r"[a-z0-9_=-][a-z0-9._=-]*")


def mailbox_names(v) -> tuple[str, ...]:
    """local.users: names such as "alice" (matched case-insensitively, so kept lower-case)."""
    names = tuple(n.strip().lower() for n in _str_tuple(v))
    for name in names:
        if not MAILBOX.fullmatch(name):
            raise ValueError(f"{name!r} is not a user name: letters, digits and . _ = - "
                             "(not first: .), as it becomes the Maildir's folder")
    return names


def system_name(kind: str):
    """A user (kind "user") or group ("group") that exists on this machine, or ""."""
    def conv(v):
        import grp
        import pwd
        if not isinstance(v, str) or v and not re.fullmatch(_ID, v):
            raise ValueError(f"expected a {kind} name or number, got {v!r}")
        if v:
            try:
                look = pwd.getpwnam if kind == "user" else grp.getgrnam
                look(v) if not v.isdigit() else (pwd.getpwuid if kind == "user" else grp.getgrgid)(int(v))
            except KeyError:
                raise ValueError(f"no such {kind} {v!r} on this machine") from None
        return v
    return conv


def _networks(v):
    nets = []
    for item in _str_tuple(v):
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"expected networks such as \"192.168.1.0/24\", got {item!r}") from None
    return tuple(nets)


def _domains(v):
    out = []
    for d in _str_tuple(v):
        d = d.strip().lower().rstrip(".")
        if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", d):
            raise ValueError(f"expected domain names, got {d!r}")
        out.append(d)
    return tuple(out)


def _smart_host(text: str) -> tuple[str, int]:
    """SmartHost: "host", "[host]", "host:port" or "[host]:port"."""
    text = text.strip()
    if re.fullmatch(r"\[?[A-Za-z0-9.:-]+\]?", text) and text.count(":") == 0:
        return text.strip("[]"), 25
    return _host_port(text)


smart_host = _smart_host
