"""config.py - /etc/edgemail/edgemail.toml -> frozen dataclasses.

One TOML file.  Keys follow sendmail's option names where sendmail has the
concept (DeliveryMode, DialDelay, MinQueueAge, MaxQueueRunSize,
QueueSortOrder, Timeout.*, MaxMessageSize, MinFreeBlocks,
ConnectionCacheSize, ConnectionCacheTimeout, RecipientFactor, ClassFactor,
RetryFactor, SmartHost, LogLevel, PrivacyOptions, RunAsUser), so the sendmail documents
read as our manual.  Our own keys are snake_case with units in values.

Guarantees:
  * ``load()`` either returns a complete ``Config`` or raises ``ConfigError``
    (``ConfigErrors`` when several keys are wrong: all are reported at once).
  * Every error names the file, the key, the line where the key stands (found
    in the text; the TOML parser's own line for syntax errors) and what was
    expected.
  * Unknown keys are errors (a typo must not silently fall back to a default).
  * ``DeliveryMode`` is fixed to ``deferred``: any other value is refused
    with the reason.
  * The host name comes from the file or /etc/hostname, never from a
    resolver (invariant 1: no DNS at start-up).

Durations are sendmail-style strings ("90s", "5m", "1h30m", "5d", "1w") or
integers meaning seconds.  Sizes are integers (bytes) or "10M"/"512K".
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError, ConfigErrors

URGENCIES = ("urgent", "normal", "non-urgent")
ROUTE_KINDS = ("local", "maildir", "lmtp", "relay", "smarthost", "mx", "hold", "error")
QUEUE_SORT_ORDERS = ("priority", "time", "host", "filename", "random")
PRIVACY_WORDS = frozenset("""public needmailhelo needexpnhelo noexpn novrfy needvrfyhelo
    restrictmailq restrictqrun restrictexpand noreceipts nobodyreturn goaway authwarnings
    noetrn noverb noactualrecipient""".split())
LINK_MODES = ("none", "modem", "external")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# ---------------------------------------------------------------- dataclasses

@dataclass(frozen=True)
class Listener:
    """One SMTP listening socket."""

    name: str
    address: str
    port: int
    #: Internet/ISP-facing: reject bare CR, bare LF and NUL (550 5.6.0).
    #: LAN listeners (strict = false) normalise them instead.
    strict: bool = False


@dataclass(frozen=True)
class Timeouts:
    """sendmail's Timeout.* options, in seconds."""

    connect: float = 60.0
    iconnect: float = 30.0
    initial: float = 300.0
    helo: float = 300.0
    mail: float = 600.0
    rcpt: float = 3600.0
    datainit: float = 300.0
    datablock: float = 3600.0
    datafinal: float = 3600.0
    rset: float = 300.0
    quit: float = 120.0
    misc: float = 120.0
    #: server side: the wait for the next command or the next DATA read
    command: float = 300.0
    control: float = 120.0
    hoststatus: float = 1800.0
    #: per urgency ("urgent", "normal", "non-urgent")
    queuewarn: dict[str, float] = field(default_factory=lambda: dict.fromkeys(URGENCIES, 4 * 3600.0))
    queuereturn: dict[str, float] = field(default_factory=lambda: dict.fromkeys(URGENCIES, 5 * 86400.0))


@dataclass(frozen=True)
class Route:
    """A line of the route table: domain pattern -> transport."""

    #: "example.org", ".example.org" (subdomains), or "*"
    pattern: str
    #: one of ROUTE_KINDS
    kind: str
    #: maildir path, "host:port" for lmtp/relay, "CODE text" for error; "" otherwise
    target: str = ""
    #: needs the link (sendmail F=e + HoldExpensive)
    expensive: bool = False
    #: DialDelay applies on a failed first connect (sendmail F=Z)
    dialdelay: bool = False


@dataclass(frozen=True)
class SmtpdConfig:
    max_sessions: int = 100
    max_sessions_per_client: int = 20
    max_bad_commands: int = 10
    #: recipients per message (452 4.5.3 beyond)
    MaxRecipientsPerMessage: int = 100


@dataclass(frozen=True)
class LocalConfig:
    """Local delivery: aliases and mailboxes."""

    aliases: str = ""
    #: Maildir for local users; %u is replaced by the user name
    maildir: str = "/var/mail/%u/Maildir"
    #: users that exist locally (beyond aliases); empty = any name maps to a maildir
    users: tuple[str, ...] = ()
    allow_program_targets: bool = False
    allow_file_targets: bool = False


@dataclass(frozen=True)
class DnsConfig:
    #: explicit nameservers; empty = from the link's peer DNS file, then /etc/resolv.conf
    nameservers: tuple[str, ...] = ()
    #: pppd's usepeerdns output, re-read on every link-up
    peer_dns_file: str = "/etc/ppp/resolv.conf"
    port: int = 53
    timeout: float = 10.0


@dataclass(frozen=True)
class RetryConfig:
    min_backoff: float = 300.0
    max_backoff: float = 4 * 3600.0
    #: count only time with the link up towards queuewarn/queuereturn
    count_link_up_time_only: bool = False


@dataclass(frozen=True)
class LinkConfig:
    """The link manager's settings (link package).  Policy lives in its own file."""

    mode: str = "none"
    interface: str = "ppp0"
    #: network namespace the interface lives in (hardware-sim); "" = ours
    netns: str = ""
    policy: str = ""
    #: the ISP's SMTP host for ETRN: "host" or "host:port"
    etrn_host: str = ""
    #: domains to ETRN for; empty = local_domains
    etrn_domains: tuple[str, ...] = ()
    # modem mode
    device: str = "/dev/ttyS0"
    speed: int = 115200
    init: tuple[str, ...] = ("ATZ", "ATE0V1Q0")
    numbers: tuple[str, ...] = ()
    dial_timeout: float = 60.0
    dial_retries: int = 3
    #: AT command reply timeout
    command_timeout: float = 3.0
    #: first wait between dial rounds; doubles each round
    dial_backoff: float = 5.0
    #: how long B0 is held for a DTR hang-up
    dtr_drop: float = 0.5
    #: +++ escape guard time
    escape_guard: float = 1.0
    #: addresses pppd uses in demand mode before a call: not "connected"
    demand_placeholders: tuple[str, ...] = ("10.64.64.64", "10.112.112.112")
    pppd: str = "/usr/sbin/pppd"
    pppd_args: tuple[str, ...] = ("call", "edgemail")
    # external mode
    up_command: tuple[str, ...] = ()
    down_command: tuple[str, ...] = ()
    #: where per-call accounting is kept across restarts
    state_file: str = ""


@dataclass(frozen=True)
class Config:
    """The whole effective configuration."""

    path: str
    hostname: str
    local_domains: tuple[str, ...]
    lan_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    listeners: tuple[Listener, ...]
    spool_dir: str
    control_socket: str
    routes: tuple[Route, ...]
    DeliveryMode: str = "deferred"
    SmartHost: str = ""
    SmartHostAuthFile: str = ""
    #: verify the smart host's TLS certificate (false for an ISP relay with a self-signed cert)
    SmartHostTLSVerify: bool = True
    #: CA file for that verification ("" = the system CAs)
    SmartHostCAFile: str = ""
    DialDelay: float = 10.0
    MinQueueAge: float = 0.0
    MaxQueueRunSize: int = 0
    QueueSortOrder: str = "priority"
    MaxMessageSize: int = 10 * 1024 * 1024
    MinFreeBlocks: int = 100
    ConnectionCacheSize: int = 2
    ConnectionCacheTimeout: float = 300.0
    RecipientFactor: int = 30000
    ClassFactor: int = 1800
    RetryFactor: int = 90000
    LogLevel: int = 9
    PrivacyOptions: frozenset[str] = frozenset({"authwarnings"})
    #: sendmail's RunAsUser: started as root, become this user after binding ("" = stay)
    RunAsUser: str = ""
    #: queue-run time budget: stop starting deliveries after this many seconds (0 = none)
    queue_run_budget: float = 0.0
    #: [spool] commit_helpers: processes that write and fsync new queue files (0 = threads)
    commit_helpers: int = 1
    Timeout: Timeouts = field(default_factory=Timeouts)
    smtpd: SmtpdConfig = field(default_factory=SmtpdConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    link: LinkConfig = field(default_factory=LinkConfig)

    def is_local_domain(self, domain: str) -> bool:
        return domain.lower().rstrip(".") in self.local_domains


# ---------------------------------------------------------------- value parsers

def parse_duration(value: Any) -> float:
    """"1h30m" -> 5400.0; 90 -> 90.0.  Raises ValueError naming the format."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as \"90s\", \"5m\", \"1h30m\" or seconds")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("expected a duration >= 0")
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("0", "now"):
            return 0.0
        pos, total = 0, 0.0
        for m in _DURATION.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos == len(text) and pos > 0:
            return total
    raise ValueError(f"expected a duration such as \"90s\", \"5m\", \"1h30m\" or seconds, got {value!r}")


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


# ---------------------------------------------------------------- the reader

class _Reader:
    """Pulls typed keys out of the parsed TOML, collecting errors with lines."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.errors: list[ConfigError] = []

    def line_of(self, section: str, key: str) -> int | None:
        """Best-effort line of `key` inside `[section]` (or top level)."""
        current = ""
        leaf = key.split(".")[-1]
        pat = re.compile(r'\s*(["\']' + re.escape(key) + r'["\']|["\']?' + re.escape(leaf) + r'["\']?)\s*=')
        dotted = re.compile(r'\s*' + re.escape(key) + r'\s*=') if "." in key else None
        for i, raw in enumerate(self.lines, 1):
            s = raw.strip()
            m = re.match(r"\[\[?\s*([^\]]+?)\s*\]\]?", s)
            if m:
                current = m.group(1)
                continue
            if current == section and (pat.match(raw) or (dotted and dotted.match(raw))):
                return i
            if section and current == "" and re.match(r"\s*" + re.escape(section) + r"\." + re.escape(leaf) + r"\s*=", raw):
                return i
        return None

    def error(self, section: str, key: str, problem: str) -> None:
        name = f"{section}.{key}" if section else key
        self.errors.append(ConfigError(problem, file=self.path, key=name,
                                       line=self.line_of(section, key)))

    def take(self, table: dict, section: str, key: str, conv, default):
        if key not in table:
            return default
        try:
            return conv(table.pop(key))
        except (ValueError, TypeError) as exc:
            self.error(section, key, str(exc))
            return default

    def leftover(self, table: dict, section: str, known: list[str]) -> None:
        for key in table:
            self.error(section, key, f"unknown key, expected one of: {', '.join(sorted(known))}")


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


def _simple_section(reader: _Reader, data: dict, section: str, cls, convs: dict):
    table = data.pop(section, {})
    if not isinstance(table, dict):
        reader.error("", section, "expected a table")
        return cls()
    values = {}
    for f in fields(cls):
        conv = convs.get(f.name)
        if conv is None:
            default = f.default
            if isinstance(default, bool):
                conv = _typed(bool, "true or false")
            elif isinstance(default, int):
                conv = _nonneg_int
            elif isinstance(default, float):
                conv = parse_duration
            elif isinstance(default, tuple):
                conv = _str_tuple
            else:
                conv = _typed(str, "a string")
        if f.name in table:
            values[f.name] = reader.take(table, section, f.name, conv, None)
            if values[f.name] is None:
                del values[f.name]
    reader.leftover(table, section, [f.name for f in fields(cls)])
    return cls(**values)


def _timeouts(reader: _Reader, data: dict) -> Timeouts:
    table = data.pop("Timeout", {})
    if not isinstance(table, dict):
        reader.error("", "Timeout", "expected a table of sendmail Timeout.* options")
        return Timeouts()
    # accept both  [Timeout] "queuewarn.urgent" = "1h"  and  Timeout.queuewarn = {urgent = "1h"}
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    defaults = Timeouts()
    values: dict[str, Any] = {}
    warn, ret = dict(defaults.queuewarn), dict(defaults.queuereturn)
    for kind, target in (("queuewarn", warn), ("queuereturn", ret)):
        if kind in flat:
            v = reader.take(flat, "Timeout", kind, parse_duration, None)
            if v is not None:
                target.update(dict.fromkeys(URGENCIES, v))
        for urg in URGENCIES:
            k = f"{kind}.{urg}"
            if k in flat:
                v = reader.take(flat, "Timeout", k, parse_duration, None)
                if v is not None:
                    target[urg] = v
    simple = [f.name for f in fields(Timeouts) if f.name not in ("queuewarn", "queuereturn")]
    for name in simple:
        if name in flat:
            v = reader.take(flat, "Timeout", name, parse_duration, None)
            if v is not None:
                values[name] = v
    known = simple + [f"{k}{s}" for k in ("queuewarn", "queuereturn") for s in ("", ".urgent", ".normal", ".non-urgent")]
    reader.leftover(flat, "Timeout", known)
    return Timeouts(queuewarn=warn, queuereturn=ret, **values)


def _listeners(reader: _Reader, data: dict) -> tuple[Listener, ...]:
    items = data.pop("listen", [{"name": "lan", "address": "127.0.0.1", "port": 25}])
    if not isinstance(items, list):
        reader.error("", "listen", "expected [[listen]] tables")
        return ()
    out = []
    for i, item in enumerate(items):
        section = "listen"
        name = item.get("name", f"listen{i}")
        address = reader.take(item, section, "address", _typed(str, "an IP address"), "127.0.0.1")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            reader.error(section, "address", f"expected a numeric IP address (no names: no DNS at start-up), got {address!r}")
        port = reader.take(item, section, "port", _nonneg_int, 25)
        if not 0 <= port < 65536:
            reader.error(section, "port", f"expected a port 0-65535, got {port}")
        strict = reader.take(item, section, "strict", _typed(bool, "true or false"), False)
        item.pop("name", None)
        reader.leftover(item, section, ["name", "address", "port", "strict"])
        out.append(Listener(str(name), address, port, strict))
    return tuple(out)


def _routes(reader: _Reader, data: dict) -> tuple[Route, ...]:
    table = data.pop("routes", {})
    routes = []
    for pattern, value in table.items():
        try:
            routes.append(parse_route(pattern, value))
        except ValueError as exc:
            reader.error("routes", pattern, str(exc))
    return tuple(routes)


_TOP = {
    "hostname": _typed(str, "a host name"),
    "DeliveryMode": _delivery_mode,
    "SmartHost": _typed(str, "\"[host]:port\" or \"host\""),
    "SmartHostAuthFile": _typed(str, "a file path"),
    "SmartHostTLSVerify": _typed(bool, "true or false"),
    "SmartHostCAFile": _typed(str, "a file path"),
    "DialDelay": parse_duration,
    "MinQueueAge": parse_duration,
    "MaxQueueRunSize": _nonneg_int,
    "QueueSortOrder": _choice(QUEUE_SORT_ORDERS),
    "MaxMessageSize": parse_size,
    "MinFreeBlocks": _nonneg_int,
    "ConnectionCacheSize": _nonneg_int,
    "ConnectionCacheTimeout": parse_duration,
    "RecipientFactor": _nonneg_int,
    "ClassFactor": _nonneg_int,
    "RetryFactor": _nonneg_int,
    "LogLevel": _nonneg_int,
    "PrivacyOptions": _privacy,
    "RunAsUser": _run_as_user,
    "queue_run_budget": parse_duration,
}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load(path: str | Path, overrides: dict | None = None, *, etc_hostname: str = "/etc/hostname") -> Config:
    """Read and validate a config file.  `overrides` (same shape as the TOML)
    is merged over the file: the demo and the tests use it for a temporary
    spool and ports.  Relative paths are taken relative to the file's folder."""
    path = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(f"TOML syntax error: {exc}", file=path,
                          line=int(m.group(1)) if m else None) from None
    if overrides:
        data = _merge(data, overrides)
    return from_dict(data, path=path, text=text, etc_hostname=etc_hostname)


def from_dict(data: dict, *, path: str = "<config>", text: str = "", etc_hostname: str = "/etc/hostname") -> Config:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    reader = _Reader(path, text)
    base = Path(path).parent if path != "<config>" else Path.cwd()

    def rel(p: str) -> str:
        return str((base / p).resolve()) if p and not p.startswith("/") else p

    top = {}
    for key, conv in _TOP.items():
        if key in data:
            v = reader.take(data, "", key, conv, None)
            if v is not None:
                top[key] = v
    hostname = top.pop("hostname", None) or read_hostname(etc_hostname)
    local_domains = reader.take(data, "", "local_domains", _domains, ())
    if not local_domains:
        reader.errors.append(ConfigError("expected at least one local domain (mail for it is ours)",
                                         file=path, key="local_domains", line=reader.line_of("", "local_domains")))
    lan = reader.take(data, "", "lan_networks", _networks, ())
    spool = data.pop("spool", {})
    spool_dir = reader.take(spool, "spool", "directory", _typed(str, "a directory path"), "/var/spool/edgemail")
    commit_helpers = reader.take(spool, "spool", "commit_helpers", _bounded_int(0, 16), 1)
    reader.leftover(spool, "spool", ["directory", "commit_helpers"])
    control = data.pop("control", {})
    control_socket = reader.take(control, "control", "socket", _typed(str, "a socket path"), "/run/edgemail/control.sock")
    reader.leftover(control, "control", ["socket"])
    listeners = _listeners(reader, data)
    routes = _routes(reader, data)
    timeouts = _timeouts(reader, data)
    smtpd = _simple_section(reader, data, "smtpd", SmtpdConfig, {})
    local = _simple_section(reader, data, "local", LocalConfig, {})
    dns = _simple_section(reader, data, "dns", DnsConfig, {"timeout": parse_duration})
    retry = _simple_section(reader, data, "retry", RetryConfig, {})
    link = _simple_section(reader, data, "link", LinkConfig, {
        "mode": _choice(LINK_MODES), "speed": _nonneg_int, "dial_retries": _nonneg_int})
    reader.leftover(data, "", list(_TOP) + ["local_domains", "lan_networks", "spool", "control",
                                            "listen", "routes", "Timeout", "smtpd", "local", "dns",
                                            "retry", "link"])
    if top.get("SmartHost"):
        try:
            _smart_host(top["SmartHost"])
        except ValueError as exc:
            reader.error("", "SmartHost", str(exc))
    for r in routes:
        if r.kind == "smarthost" and not top.get("SmartHost"):
            reader.error("routes", r.pattern, "route smarthost needs the SmartHost option")
    if reader.errors:
        raise reader.errors[0] if len(reader.errors) == 1 else ConfigErrors(reader.errors)
    local = replace(local, aliases=rel(local.aliases), maildir=rel(local.maildir))
    link = replace(link, policy=rel(link.policy), state_file=rel(link.state_file))
    return Config(path=path, hostname=hostname, local_domains=local_domains, lan_networks=lan,
                  listeners=listeners, spool_dir=rel(spool_dir), commit_helpers=commit_helpers,
                  control_socket=rel(control_socket),
                  routes=routes, Timeout=timeouts, smtpd=smtpd, local=local, dns=dns, retry=retry,
                  link=link, **top)


def _smart_host(text: str) -> tuple[str, int]:
    """SmartHost: "host", "[host]", "host:port" or "[host]:port"."""
    text = text.strip()
    if re.fullmatch(r"\[?[A-Za-z0-9.:-]+\]?", text) and text.count(":") == 0:
        return text.strip("[]"), 25
    return _host_port(text)


smart_host = _smart_host


def dump(cfg: Config) -> str:
    """The effective configuration as TOML-ish text (for `edgemail config check`)."""
    lines: list[str] = []

    def fmt(v):
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (tuple, list, frozenset, set)):
            items = sorted(v, key=str) if isinstance(v, (frozenset, set)) else v
            return "[" + ", ".join(fmt(str(x) if not isinstance(x, (str, int, float)) else x) for x in items) + "]"
        return repr(v)

    sections = []
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if f.name in ("listeners", "routes") or is_dataclass(v):
            sections.append(f.name)
            continue
        lines.append(f"{f.name} = {fmt(v)}")
    for name in sections:
        v = getattr(cfg, name)
        if name == "listeners":
            for lst in v:
                lines += ["", "[[listen]]"] + [f"{f.name} = {fmt(getattr(lst, f.name))}" for f in fields(lst)]
        elif name == "routes":
            lines += ["", "[routes]"]
            for r in v:
                route = r.kind + (f":{r.target}" if r.target else "")
                lines.append(f'{fmt(r.pattern)} = {{ route = {fmt(route)}, expensive = {fmt(r.expensive)}, dialdelay = {fmt(r.dialdelay)} }}')
        else:
            lines += ["", f"[{name}]"]
            for f in fields(v):
                val = getattr(v, f.name)
                if isinstance(val, dict):
                    for k2, v2 in val.items():
                        lines.append(f'"{f.name}.{k2}" = {fmt(v2)}')
                else:
                    lines.append(f"{f.name} = {fmt(val)}")
    return "\n".join(lines) + "\n"
