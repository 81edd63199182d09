"""config/dump.py - a Config as text: what ``edgemail config check`` prints.

Owns: ``dump(cfg)``, the effective configuration (every setting, defaults
included) in TOML-ish form: top-level settings first, then ``[[listen]]``
per listener, ``[routes]`` with each route's flags, ``[[customer]]`` per
customer (ISP mode), and one table per section (``[link] odmr`` inline); dict settings (``Timeout.queuewarn``) as ``"queuewarn.urgent" =``
lines, sets sorted so the output is stable.

Never: reads a file or validates (config/loader.py does; a Config is
already valid), or prints secrets (the config holds file paths, never the
credentials in them).
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from edgemail.config.model import Config, Customer, Listener, Route

#: Config fields written as their own tables (the rest of the dataclasses are sections too)
_TABLES = ("listeners", "routes", "customers")


def dump(cfg: Config) -> str:
    """The effective configuration as TOML-ish text (for `edgemail config check`)."""
    lines: list[str] = []
    sections = []
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if f.name == "host_addresses":        # the daemon's, never a key of the file
            continue
        if f.name in _TABLES or is_dataclass(v):
            sections.append(f.name)
        else:
            lines.append(f"{f.name} = {_value(v)}")
    for name in sections:
        table = _table(name, getattr(cfg, name))
        lines += ["", *table] if table else []
    return "\n".join(lines) + "\n"


def _table(name: str, v: Any) -> list[str]:
    if name == "listeners":
        return _listeners(v)
    if name == "routes":
        return ["[routes]", *(_route(r) for r in v)]
    if name == "customers":
        return _customers(v)
    lines = [f"[{name}]"]
    for f in fields(v):
        val = getattr(v, f.name)
        if isinstance(val, dict):
            lines += [f'"{f.name}.{k}" = {_value(x)}' for k, x in val.items()]
        elif f.name.endswith("_mode"):
            lines.append(f'{f.name} = "{val:04o}"')          # a file mode reads in octal
        elif is_dataclass(val):         # [link] odmr: an inline table
            inner = ", ".join(f"{g.name} = {_value(getattr(val, g.name))}" for g in fields(val))
            lines.append(f"{f.name} = {{ {inner} }}")
        else:
            lines.append(f"{f.name} = {_value(val)}")
    return lines


def _customers(customers: tuple[Customer, ...]) -> list[str]:
    lines: list[str] = []
    for i, c in enumerate(customers):
        deliver = f"[{c.deliver[0]}]:{c.deliver[1]}" if c.deliver else "mx"
        lines += ([""] if i else []) + ["[[customer]]", f"name = {_value(c.name)}",
                                         f"domains = {_value(c.domains)}", f"networks = {_value(c.networks)}",
                                         f"user = {_value(c.user)}", f"deliver = {_value(deliver)}"]
    return lines


def _listeners(listeners: tuple[Listener, ...]) -> list[str]:
    lines: list[str] = []
    for i, lst in enumerate(listeners):
        lines += ([""] if i else []) + ["[[listen]]"]
        lines += [f"{f.name} = {_value(getattr(lst, f.name))}" for f in fields(lst)]
    return lines


def _route(r: Route) -> str:
    route = r.kind + (f":{r.target}" if r.target else "")
    return (f"{_value(r.pattern)} = {{ route = {_value(route)}, expensive = {_value(r.expensive)}, "
            f"dialdelay = {_value(r.dialdelay)} }}")


def _value(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list, frozenset, set)):
        items = sorted(v, key=str) if isinstance(v, (frozenset, set)) else v
        return "[" + ", ".join(_value(x if isinstance(x, (str, int, float)) else str(x)) for x in items) + "]"
    return repr(v)
