"""config/loader.py - /etc/edgemail/edgemail.toml -> frozen dataclasses.

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

Modules: this one reads the file (the reader, the sections, ``load``,
``from_dict``); config/model.py holds the dataclasses and their
vocabularies, config/values.py the value syntax, config/dump.py ``dump``
(a Config as text).  Every public name of the four is importable from here.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from edgemail.config import isp
from edgemail.config.dump import dump
from edgemail.config.model import (
    LINK_MODES,
    PRIVACY_WORDS,
    QUEUE_SORT_ORDERS,
    ROUTE_KINDS,
    URGENCIES,
    Config,
    Customer,
    DnsConfig,
    LinkConfig,
    Listener,
    LocalConfig,
    OdmrClient,
    RetryConfig,
    Route,
    SmtpdConfig,
    Timeouts,
)
from edgemail.config.listeners import listeners as _listeners, smtpd_section
from edgemail.config.reader import Reader, simple_section
from edgemail.config.values import (
    _bounded_int,
    _choice,
    _delivery_mode,
    _domains,
    _networks,
    _nonneg_int,
    _privacy,
    _run_as_user,
    _smart_host,
    _str_tuple,
    _typed,
    host_port,
    mailbox_names,
    maildir_mode,
    parse_duration,
    parse_route,
    parse_size,
    read_hostname,
    smart_host,
    system_name,
)
from edgemail.errors import ConfigError, ConfigErrors

#: what ``from edgemail.config import ...`` offers (the types and value parsers live in
#: config/model.py and config/values.py)
__all__ = ["Config", "Customer", "DnsConfig", "LinkConfig", "Listener", "LocalConfig", "OdmrClient",
           "RetryConfig", "Route",
           "SmtpdConfig", "Timeouts", "LINK_MODES", "PRIVACY_WORDS", "QUEUE_SORT_ORDERS", "ROUTE_KINDS",
           "URGENCIES", "ConfigError", "ConfigErrors", "dump", "from_dict", "host_port", "load",
           "parse_duration", "parse_route", "parse_size", "read_hostname", "smart_host"]


def _timeouts(reader: Reader, data: dict) -> Timeouts:
    table = data.pop("Timeout", {})
    if not isinstance(table, dict):
        reader.error("", "Timeout", "expected a table of sendmail Timeout.* options")
        return Timeouts()
    # accept both  [Timeout] "queuewarn.urgent" = "1h"  and  Timeout.queuewarn = {urgent = "1h"}
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{sub}": v for sub, v in value.items()})
        else:
            flat[key] = value
    defaults = Timeouts()
    warn = _by_urgency(reader, flat, "queuewarn", defaults.queuewarn)
    ret = _by_urgency(reader, flat, "queuereturn", defaults.queuereturn)
    simple = [f.name for f in fields(Timeouts) if f.name not in ("queuewarn", "queuereturn")]
    values = {name: reader.take(flat, "Timeout", name, parse_duration, None)
              for name in simple if name in flat}
    known = simple + [f"{k}{s}" for k in ("queuewarn", "queuereturn") for s in ("", ".urgent", ".normal", ".non-urgent")]
    reader.leftover(flat, "Timeout", known)
    return Timeouts(queuewarn=warn, queuereturn=ret, **{k: v for k, v in values.items() if v is not None})


def _by_urgency(reader: Reader, flat: dict, kind: str, defaults: dict[str, float]) -> dict[str, float]:
    """sendmail's Timeout.queuewarn (every class) refined by Timeout.queuewarn.urgent etc."""
    out = dict(defaults)
    every = reader.take(flat, "Timeout", kind, parse_duration, None)
    if every is not None:
        out.update(dict.fromkeys(URGENCIES, every))
    for urgency in URGENCIES:
        v = reader.take(flat, "Timeout", f"{kind}.{urgency}", parse_duration, None)
        if v is not None:
            out[urgency] = v
    return out


def _routes(reader: Reader, data: dict) -> tuple[Route, ...]:
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
    return load_text(path, overrides, etc_hostname=etc_hostname)[0]


def load_text(path: str | Path, overrides: dict | None = None, *,
              etc_hostname: str = "/etc/hostname") -> tuple[Config, str]:
    """load(), and the file's text exactly as it was parsed (config/snapshot.py)."""
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
    return from_dict(data, path=path, text=text, etc_hostname=etc_hostname), text


#: the tables read by simple_section: name -> (dataclass, converters that differ from the
#: defaults' types); [smtpd] and [[listen]] are config/listeners.py's
_SECTIONS: dict[str, tuple[type, dict[str, Callable[[Any], Any]]]] = {
    "local": (LocalConfig, {"maildir_mode": maildir_mode, "maildir_owner": system_name("user"),
                            "maildir_group": system_name("group"), "users": mailbox_names}),
    "dns": (DnsConfig, {"timeout": parse_duration}),
    "retry": (RetryConfig, {}),
    "link": (LinkConfig, {"mode": _choice(LINK_MODES), "speed": _nonneg_int, "dial_retries": _nonneg_int,
                          "odmr": isp.odmr_client}),
}
_TOP_LEVEL = [*_TOP, "local_domains", "lan_networks", "spool", "control", "listen", "routes", "Timeout",
              "smtpd", "customer", *_SECTIONS]


def from_dict(data: dict, *, path: str = "<config>", text: str = "", etc_hostname: str = "/etc/hostname") -> Config:
    """The parsed TOML (`text` is the file's, for the lines in errors) -> Config.
    Raises ConfigError, or ConfigErrors with every error at once."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    reader = Reader(path, text)
    top = _top_level(reader, data)
    hostname = top.pop("hostname", None) or read_hostname(etc_hostname)
    local_domains = reader.take(data, "", "local_domains", _domains, ())
    if not local_domains:
        reader.error("", "local_domains", "expected at least one local domain (mail for it is ours)")
    lan = reader.take(data, "", "lan_networks", _networks, ())
    places = _places(reader, data)
    rel = _relative_to(path)
    smtpd = smtpd_section(reader, data, rel)
    listeners = _listeners(reader, data, smtpd, rel)
    routes, timeouts = _routes(reader, data), _timeouts(reader, data)
    customers = isp.customers(reader, data)
    sections = {name: simple_section(reader, data, name, cls, convs)
                for name, (cls, convs) in _SECTIONS.items()}
    reader.leftover(data, "", _TOP_LEVEL)
    _check_smart_host(reader, top.get("SmartHost", ""), routes)
    isp.check(reader, local_domains=local_domains, routes=routes, customers=customers,
              listeners=listeners, link=sections["link"])
    _check_retry(reader, sections["retry"], sections["link"])
    if reader.errors:
        raise reader.errors[0] if len(reader.errors) == 1 else ConfigErrors(reader.errors)
    local, link = sections.pop("local"), sections.pop("link")
    return Config(path=path, hostname=hostname, local_domains=local_domains, lan_networks=lan,
                  listeners=listeners, spool_dir=rel(places["spool_dir"]),
                  commit_helpers=places["commit_helpers"], control_socket=rel(places["control_socket"]),
                  routes=routes, Timeout=timeouts, smtpd=smtpd, customers=customers,
                  local=replace(local, aliases=rel(local.aliases), maildir=rel(local.maildir),
                                users_file=rel(local.users_file)),
                  link=replace(link, policy=rel(link.policy), state_file=rel(link.state_file),
                               odmr=link.odmr and replace(link.odmr, secret_file=rel(link.odmr.secret_file),
                                                          cafile=rel(link.odmr.cafile))),
                  **sections, **top)


def _top_level(reader: Reader, data: dict) -> dict[str, Any]:
    """The sendmail options and other top-level keys of _TOP that are given (converted)."""
    top = {}
    for key, conv in _TOP.items():
        v = reader.take(data, "", key, conv, None)
        if v is not None:
            top[key] = v
    return top


def _places(reader: Reader, data: dict) -> dict[str, Any]:
    """[spool] directory and commit_helpers, [control] socket."""
    spool, control = data.pop("spool", {}), data.pop("control", {})
    out = {"spool_dir": reader.take(spool, "spool", "directory", _typed(str, "a directory path"),
                                    "/var/spool/edgemail"),
           "commit_helpers": reader.take(spool, "spool", "commit_helpers", _bounded_int(0, 16), 1),
           "control_socket": reader.take(control, "control", "socket", _typed(str, "a socket path"),
                                         "/run/edgemail/control.sock")}
    reader.leftover(spool, "spool", ["directory", "commit_helpers"])
    reader.leftover(control, "control", ["socket"])
    return out


def _check_smart_host(reader: Reader, smart_host: str, routes: tuple[Route, ...]) -> None:
    if smart_host:
        try:
            _smart_host(smart_host)
        except ValueError as exc:
            reader.error("", "SmartHost", str(exc))
    for r in routes:
        if r.kind == "smarthost" and not smart_host:
            reader.error("routes", r.pattern, "route smarthost needs the SmartHost option")


def _check_retry(reader: Reader, retry: RetryConfig, link: LinkConfig) -> None:
    """retry.count_offline_time = false needs a link that dials (it counts the
    line's calls and dials) and contradicts count_link_up_time_only."""
    if retry.count_offline_time:
        return
    if retry.count_link_up_time_only:
        reader.error("retry", "count_offline_time", "false contradicts count_link_up_time_only = true "
                     "(which counts link-up time alone): set one of them")
    elif link.mode == "none":
        reader.error("retry", "count_offline_time", "false needs a link that dials ([link] mode = "
                     "\"modem\" or \"external\"): with mode none edgemail never learns whether the "
                     "line could have been up")
    if retry.offline_after <= 0:
        reader.error("retry", "offline_after", "expected a duration above 0 (how long a call or a "
                     "dial that reached the network vouches for the line)")


def _relative_to(path: str) -> Callable[[str], str]:
    """Relative paths in the config are taken relative to the file's folder."""
    base = Path(path).parent if path != "<config>" else Path.cwd()

    def rel(p: str) -> str:
        return str((base / p).resolve()) if p and not p.startswith("/") else p
    return rel
