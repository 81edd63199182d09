"""config/reader.py - pulling typed keys out of the parsed TOML, with lines.

Owns: ``Reader`` (take a key converted, note an error with the line where
the key stands in the file's text, name unknown keys) and
``simple_section`` (a table whose keys are a dataclass's fields, each
converted by the type of its default unless a converter is given).

Lines: a key is found in the text of its ``[section]`` (or at the top
level, or as ``section.key =``); for an array of tables (``[[listen]]``)
``nth`` names which table, so an error in the second listener points at
the second listener's line.  Keys the text does not show (inline tables,
overrides merged in by tests and the demo) get no line.

Never: reads a file (config/loader.py does) or decides a value's syntax
(config/values.py does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

from edgemail.config.values import _nonneg_int, _str_tuple, _typed, parse_duration
from edgemail.errors import ConfigError

T = TypeVar("T")
D = TypeVar("D")

_HEADER = re.compile(r"\[\[?\s*([^\]]+?)\s*\]\]?")


class Reader:
    """Pulls typed keys out of the parsed TOML, collecting errors with lines."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.errors: list[ConfigError] = []

    def line_of(self, section: str, key: str, nth: int | None = None) -> int | None:
        """Best-effort line of `key` inside `[section]` (or top level); with
        NTH, inside the NTH (from 0) ``[[section]]`` table only."""
        current, seen = "", -1
        leaf = key.split(".")[-1]
        pat = re.compile(r'\s*(["\']' + re.escape(key) + r'["\']|["\']?' + re.escape(leaf) + r'["\']?)\s*=')
        dotted = re.compile(r'\s*' + re.escape(key) + r'\s*=') if "." in key else None
        for i, raw in enumerate(self.lines, 1):
            m = _HEADER.match(raw.strip())
            if m:
                current = m.group(1)
                seen += current == section
                continue
            if nth is not None and seen != nth:
                continue
            if current == section and (pat.match(raw) or (dotted and dotted.match(raw))):
                return i
            if section and current == "" and re.match(r"\s*" + re.escape(section) + r"\." + re.escape(leaf) + r"\s*=", raw):
                return i
        return None

    def error(self, section: str, key: str, problem: str, nth: int | None = None) -> None:
        name = f"{section}.{key}" if section else key
        self.errors.append(ConfigError(problem, file=self.path, key=name,
                                       line=self.line_of(section, key, nth)))

    def take(self, table: dict, section: str, key: str, conv: Callable[[Any], T], default: D,
             nth: int | None = None) -> T | D:
        """table.pop(key) converted by conv; the default if absent, or (an error noted) if bad."""
        if key not in table:
            return default
        try:
            return conv(table.pop(key))
        except (ValueError, TypeError) as exc:
            self.error(section, key, str(exc), nth)
            return default

    def leftover(self, table: dict, section: str, known: list[str], nth: int | None = None) -> None:
        for key in table:
            self.error(section, key, f"unknown key, expected one of: {', '.join(sorted(known))}", nth)


def simple_section(reader: Reader, data: dict, section: str, cls, convs: dict):
    """The table SECTION of DATA as a CLS (its fields' defaults give the types)."""
    table = data.pop(section, {})
    if not isinstance(table, dict):
        reader.error("", section, "expected a table")
        return cls()
    values = {}
    for f in fields(cls):
        if f.name in table:
            conv = convs.get(f.name) or _conv_for(f.default)
            values[f.name] = reader.take(table, section, f.name, conv, None)
            if values[f.name] is None:
                del values[f.name]
    reader.leftover(table, section, [f.name for f in fields(cls)])
    return cls(**values)


def _conv_for(default: Any) -> Callable[[Any], Any]:
    """The converter a field's default implies."""
    if isinstance(default, bool):
        return _typed(bool, "true or false")
    if isinstance(default, int):
        return _nonneg_int
    if isinstance(default, float):
        return parse_duration
    if isinstance(default, tuple):
        return _str_tuple
    return _typed(str, "a string")
