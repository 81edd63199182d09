"""delivery/aliases.py - the /etc/aliases file: parse once, expand purely.

NAME
    aliases - sendmail-format alias table (parser, small loader, expansion)

FORMAT (sendmail Installation and Operation Guide, 2.6; aliases(5))
    name: target, target, ...      one alias; the name is matched case-insensitively
      target, target               a line starting with blanks continues the previous one
    # comment                      lines starting with '#' and blank lines are ignored
    Targets:
      user / user@domain           an address; "<...>" around it is accepted
      \\user                        a local user, not expanded further
      :include:/path               one address list per file (commas or lines, '#' comments);
                                   a relative path is relative to the aliases file's folder
      "|command", /file            program and file targets: refused (see below)
    owner-NAME: target             errors for list NAME go here; the envelope sender of
                                   mail expanded through NAME becomes the owner's single
                                   target, or "owner-NAME" when it has several (guide 2.6.3)

DESCRIPTION
    ``load(path, local_cfg)`` reads the file and every :include: file once (the
    loader is the only I/O here; an include loop is an error naming the chain)
    and returns an immutable ``Aliases``.  ``Aliases.expand(local, is_local)``
    is pure: recursive expansion with duplicate suppression, sendmail's
    "user: user, backup" idiom (a name listing itself is delivered to the user
    of that name), loop detection (a -> b -> a is an error naming the chain) and
    a depth limit.

NEVER
    Runs a program or writes a file: edgemail has no program or file
    transport.  Such targets are refused at load time with the file and line;
    ``local.allow_program_targets`` / ``allow_file_targets`` change only the
    wording (they say that no transport delivers them).  Include files are read
    at load time, not per message: edit them, then reload.

FAILURES
    ``ConfigError`` with ``FILE:LINE:`` for every parse problem (bad name,
    continuation before an entry, no targets, duplicate name, unparsable
    target, include loop, unreadable include).  ``AliasLoop`` (ValueError)
    from ``expand``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from edgemail.config.model import LocalConfig
from edgemail.errors import ConfigError

MAX_DEPTH = 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")
_ADDRESS = re.compile(r"[^\s@<>()\[\],;:\\\"%!]+(@[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)?")


class AliasLoop(ValueError):
    """Expansion went round in a circle or too deep."""


@dataclass(frozen=True)
class Target:
    """One resolved target: an address, or a local user not to be expanded."""

    address: str
    #: "\\user": deliver to the local user, skip the alias table
    literal: bool = False


@dataclass(frozen=True)
class Alias:
    name: str
    targets: tuple[Target, ...]
    file: str
    line: int


@dataclass(frozen=True)
class Expansion:
    """The final addresses for one local name, each with the errors-to owner."""

    #: (address, errors_to or None, literal)
    addresses: tuple[tuple[str, str | None, bool], ...]
    #: the alias names walked, in order (for the log)
    via: tuple[str, ...] = ()


@dataclass(frozen=True)
class Aliases:
    """The parsed table; keys are lower-case names."""

    entries: dict[str, Alias] = field(default_factory=dict)
    source: str = ""
    #: the file named does not exist: no aliases (sendmail warns and runs on)
    missing: bool = False

    def __contains__(self, name: str) -> bool:
        return name.lower() in self.entries

    def get(self, name: str) -> Alias | None:
        return self.entries.get(name.lower())

    def owner_of(self, name: str) -> str | None:
        """Envelope sender for errors of list `name` (guide 2.6.3), or None."""
        owner = self.get(f"owner-{name}")
        if owner is None:
            return None
        if len(owner.targets) == 1:
            return owner.targets[0].address
        return owner.name

    def expand(self, local: str, is_local: Callable[[str], str | None],
               max_depth: int = MAX_DEPTH) -> Expansion:
        """Expand a local name.  `is_local(address)` returns the local part
        when the address is in one of our domains (or has none), else None;
        such addresses are expanded again.  Unknown names come back as they
        are (the router decides whether the user exists)."""
        out: dict[str, tuple[str, str | None, bool]] = {}
        via: list[str] = []
        self._walk(local, None, [], out, via, is_local, max_depth)
        return Expansion(tuple(out.values()), tuple(via))

    def _walk(self, address, errors_to, chain, out, via, is_local, max_depth) -> None:
        local = is_local(address)
        alias = self.get(local) if local is not None else None
        if alias is None:
            out.setdefault(address.lower(), (address, errors_to, False))
            return
        if alias.name in chain:
            if chain[-1] == alias.name:            # "user: user, backup"
                out.setdefault(address.lower(), (address, errors_to, True))
                return
            raise AliasLoop(f"{alias.file}:{alias.line}: alias loop: "
                            + " -> ".join(chain[chain.index(alias.name):] + [alias.name]))
        if len(chain) >= max_depth:
            raise AliasLoop(f"{alias.file}:{alias.line}: aliases nested deeper than {max_depth}: "
                            + " -> ".join(chain + [alias.name]))
        via.append(alias.name)
        owner = self.owner_of(alias.name) or errors_to
        for t in alias.targets:
            if t.literal:
                out.setdefault(t.address.lower(), (t.address, owner, True))
            else:
                self._walk(t.address, owner, chain + [alias.name], out, via, is_local, max_depth)


# ---------------------------------------------------------------- parsing

def _split_targets(text: str) -> list[str]:
    """Split on commas outside double quotes."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _logical_lines(lines: Iterable[str], path: str) -> list[tuple[int, str]]:
    """Join continuation lines; drop comments and blanks.  (line number, text)."""
    out: list[tuple[int, str]] = []
    for n, raw in enumerate(lines, 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0] in " \t":
            if not out:
                raise ConfigError("continuation line before any alias", file=path, line=n)
            out[-1] = (out[-1][0], out[-1][1] + " " + raw.strip())
        else:
            out.append((n, raw.strip()))
    return out


class _Loader:
    def __init__(self, local_cfg: LocalConfig) -> None:
        self.cfg = local_cfg

    def read(self, path: Path, line: int | None, parent: str | None) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"cannot read {path}: {why}", file=parent or str(path),
                              line=line) from None

    def target(self, text: str, base: Path, path: str, line: int,
               stack: tuple[str, ...]) -> list[Target]:
        unq = text[1:-1].strip() if len(text) > 1 and text[0] == text[-1] == '"' else text
        if unq.startswith("|"):
            return self.refuse("program", unq, self.cfg.allow_program_targets,
                               "local.allow_program_targets", path, line)
        if unq.startswith("/"):
            return self.refuse("file", unq, self.cfg.allow_file_targets,
                               "local.allow_file_targets", path, line)
        if unq.lower().startswith(":include:"):
            return self.include(unq[9:].strip(), base, path, line, stack)
        literal = unq.startswith("\\")
        addr = unq[1:] if literal else unq
        if addr.startswith("<") and addr.endswith(">"):
            addr = addr[1:-1]
        if not _ADDRESS.fullmatch(addr) or (literal and "@" in addr):
            raise ConfigError(f"bad target {text!r}: expected user, user@domain, \\user, "
                              ":include:/path (no %, !, quotes or source routes)", file=path, line=line)
        return [Target(addr, literal)]

    def refuse(self, what, text, allowed, key, path, line) -> list[Target]:
        why = (f"{key} is set, but edgemail has no {what} transport" if allowed
               else f"{what} targets are refused ({key} is off, and edgemail has no {what} transport)")
        raise ConfigError(f"{text!r}: {why}", file=path, line=line)

    def include(self, name, base, path, line, stack) -> list[Target]:
        if not name:
            raise ConfigError(":include: needs a file name", file=path, line=line)
        inc = (base / name).resolve()
        if str(inc) in stack:
            chain = " -> ".join(list(stack[stack.index(str(inc)):]) + [str(inc)])
            raise ConfigError(f":include: loop: {chain}", file=path, line=line)
        text = self.read(inc, line, path)
        out: list[Target] = []
        for n, raw in _logical_list(text):
            for item in _split_targets(raw):
                out += self.target(item, inc.parent, str(inc), n, stack + (str(inc),))
        return out

    def parse(self, text: str, path: str) -> Aliases:
        base = Path(path).resolve().parent
        entries: dict[str, Alias] = {}
        for n, logical in _logical_lines(text.splitlines(), path):
            name, sep, rest = logical.partition(":")
            name = name.strip()
            if not sep or not _NAME.fullmatch(name):
                raise ConfigError(f"expected \"name: target, ...\", got {logical[:60]!r}", file=path, line=n)
            key = name.lower()
            if key in entries:
                raise ConfigError(f"duplicate alias {name!r} (first on line {entries[key].line})",
                                  file=path, line=n)
            targets: list[Target] = []
            for item in _split_targets(rest):
                targets += self.target(item, base, path, n, (str(Path(path).resolve()),))
            if not targets:
                raise ConfigError(f"alias {name!r} has no targets", file=path, line=n)
            entries[key] = Alias(key, tuple(targets), path, n)
        return Aliases(entries, path)


def _logical_list(text: str) -> list[tuple[int, str]]:
    """An include file: every non-comment line is part of one list."""
    return [(n, raw.strip()) for n, raw in enumerate(text.splitlines(), 1)
            if raw.strip() and not raw.lstrip().startswith("#")]


def parse(text: str, path: str = "<aliases>", local_cfg: LocalConfig | None = None) -> Aliases:
    """Parse aliases text (include paths relative to `path`'s folder)."""
    return _Loader(local_cfg or LocalConfig()).parse(text, path)


def load(path: str, local_cfg: LocalConfig | None = None) -> Aliases:
    """Read and parse the aliases file and its includes.  "" -> empty table;
    a file that does not exist -> an empty table marked ``missing`` (as
    sendmail without /etc/aliases: a warning, no aliases).  An :include:
    that does not exist stays an error."""
    if not path:
        return Aliases()
    if not Path(path).exists() and not Path(path).is_symlink():
        return Aliases(source=path, missing=True)
    loader = _Loader(local_cfg or LocalConfig())
    return loader.parse(loader.read(Path(path), None, None), path)
