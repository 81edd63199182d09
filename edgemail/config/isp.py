"""config/isp.py - the ISP-mode keys: ``[[customer]]`` and ``[link] odmr``.

Owns: reading and checking the customers (ISP mode: the domains we hold
for them, who may ETRN or ATRN them, where a flush delivers) and the ODMR
client's table in ``[link]``, with line-precise errors (the line of the
key inside the right ``[[customer]]`` block, or of ``odmr`` in ``[link]``),
and the checks that need more than one section (``check``):

  * a customer needs ``name`` (its queue: ``ETRN #name``; letters, digits,
    ``.``, ``_``, ``-``; unique) and ``domains`` ("d" or ".d" for d's
    subdomains; never one of local_domains, never another customer's);
  * someone must be able to ask for its mail: ``networks`` (ETRN from
    those clients) or ``user`` (the AUTH user: ETRN and ATRN) or both;
  * ``deliver`` is "mx" (the domain's MX hosts, those less preferred than
    us left out) or "[HOST]:PORT" / "HOST:PORT";
  * a [routes] entry for a customer's domain pattern is an error (the
    customer's hold route and the table would disagree);
  * ``[[listen]] odmr = true`` needs a customer with a ``user``, AUTH
    (``[smtpd] auth_file`` or ``cram_secrets``) and TLS for it (or
    ``auth_plaintext``, or ``cram_plaintext`` for CRAM-MD5: fetchmail's ODMR);
  * ``[link] odmr`` needs host, user and secret_file; with ``etrn_host``
    as well it is an error (the call asks one way: ETRN or ODMR).

Never: reads a secret (the ODMR secret_file is read during the call, as
SmartHostAuthFile is during a run), resolves a name.

Failures: every problem is a ConfigError appended to the reader's list
(config/loader.py raises them together).
"""

from __future__ import annotations

import re
from typing import Any

from edgemail.config.model import Customer, Listener, OdmrClient, Route
from edgemail.config.values import _domains, _networks, _str_tuple, host_port
from edgemail.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_USER = re.compile(r"[A-Za-z0-9._@+=-]+")
_PATTERN = re.compile(r"\.?[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
CUSTOMER_KEYS = ("name", "domains", "networks", "user", "deliver")
ODMR_KEYS = ("host", "port", "user", "secret_file", "domains", "cafile", "tls_verify")


class _Block:
    """Errors of one ``[[customer]]`` table, each at the line of its key
    inside that table (the N-th ``[[customer]]`` header and what follows)."""

    def __init__(self, reader: Any, index: int) -> None:
        self.reader, self.start, self.end = reader, *_block(reader.lines, "customer", index)

    def error(self, key: str, problem: str) -> None:
        line = self.start
        for n in range(self.start, self.end):
            if re.match(r"\s*" + re.escape(key) + r"\s*=", self.reader.lines[n - 1]):
                line = n
                break
        self.reader.errors.append(ConfigError(problem, file=self.reader.path, key=f"customer.{key}",
                                              line=line or None))


def _block(lines: list[str], table: str, index: int) -> tuple[int, int]:
    """(first line, line after the last) of the INDEX-th ``[[TABLE]]`` (1-based lines; 0, 0 if absent)."""
    heads = [n for n, raw in enumerate(lines, 1) if re.match(r"\s*\[\[\s*" + table + r"\s*\]\]", raw)]
    if index >= len(heads):
        return 0, 0
    end = next((n for n, raw in enumerate(lines, 1) if n > heads[index] and re.match(r"\s*\[", raw)),
               len(lines) + 1)
    return heads[index], end


# ---------------------------------------------------------------- [[customer]]

def customers(reader: Any, data: dict) -> tuple[Customer, ...]:
    """The ``[[customer]]`` tables, checked one by one (``check`` does the rest)."""
    items = data.pop("customer", [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        reader.error("", "customer", "expected [[customer]] tables")
        return ()
    out = [_customer(_Block(reader, i), dict(item)) for i, item in enumerate(items)]
    return tuple(c for c in out if c is not None)


def _customer(block: _Block, item: dict) -> Customer | None:
    name = item.pop("name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        block.error("name", f"expected a queue name (letters, digits, '.', '_', '-'), got {name!r}")
        name = None
    domains = _take(block, item, "domains", _patterns, ())
    if domains == ():
        block.error("domains", "expected the customer's domains (\"example.org\", \".example.org\")")
    networks = _take(block, item, "networks", _networks, ())
    user = _take(block, item, "user", _user, "")
    deliver = _take(block, item, "deliver", _deliver, None)
    for key in item:
        block.error(key, f"unknown key, expected one of: {', '.join(CUSTOMER_KEYS)}")
    if networks in ((), _BAD) and user in ("", _BAD):
        block.error("name", "nobody could ask for this customer's mail: give networks "
                            "(who may ETRN), user (the AUTH user for ETRN and ATRN), or both")
    if name is None or _BAD in (domains, networks, user, deliver) or not domains:
        return None
    return Customer(name, domains, networks, user, deliver)


#: what _take returns for a value that was given but wrong (its error is noted)
_BAD: Any = object()


def _take(block: _Block, item: dict, key: str, conv, default):
    """item.pop(key) converted; DEFAULT if absent; _BAD (an error noted) if wrong."""
    if key not in item:
        return default
    try:
        return conv(item.pop(key))
    except (ValueError, TypeError) as exc:
        block.error(key, str(exc))
        return _BAD


def _patterns(v) -> tuple[str, ...]:
    out = []
    for d in _str_tuple(v):
        d = d.strip().lower().rstrip(".")
        if not _PATTERN.fullmatch(d):
            raise ValueError(f"expected domains (\"example.org\") or subdomains (\".example.org\"), got {d!r}")
        out.append(d)
    return tuple(out)


def _user(v) -> str:
    if not isinstance(v, str) or not _USER.fullmatch(v):
        raise ValueError(f"expected an AUTH user name, got {v!r}")
    return v


def _deliver(v) -> tuple[str, int] | None:
    if v == "mx":
        return None
    if not isinstance(v, str):
        raise ValueError(f"expected \"mx\" or \"[HOST]:PORT\", got {v!r}")
    try:
        return host_port(v)
    except ValueError:
        raise ValueError(f"expected \"mx\" or \"[HOST]:PORT\", got {v!r}") from None


# ---------------------------------------------------------------- [link] odmr

def odmr_client(v) -> OdmrClient:
    """``[link] odmr`` (a table) as an OdmrClient; ValueError naming the sub-key."""
    if not isinstance(v, dict):
        raise ValueError("expected a table { host, port, user, secret_file, domains }")
    extra = sorted(set(v) - set(ODMR_KEYS))
    if extra:
        raise ValueError(f"unknown key(s) {extra}, expected some of: {', '.join(ODMR_KEYS)}")
    for key in ("host", "user", "secret_file"):
        if not isinstance(v.get(key), str) or not v[key].strip():
            raise ValueError(f"{key}: expected a non-empty string, got {v.get(key)!r}")
    port = v.get("port", 366)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port: expected a port 1-65535, got {port!r}")
    if not isinstance(v.get("tls_verify", True), bool):
        raise ValueError(f"tls_verify: expected true or false, got {v['tls_verify']!r}")
    if not isinstance(v.get("cafile", ""), str):
        raise ValueError(f"cafile: expected a file path, got {v['cafile']!r}")
    return OdmrClient(host=v["host"].strip().strip("[]"), port=port, user=_user(v["user"]),
                      secret_file=v["secret_file"], domains=_domains(v.get("domains", [])),
                      cafile=v.get("cafile", ""), tls_verify=v.get("tls_verify", True))


# ---------------------------------------------------------------- across sections

def check(reader: Any, *, local_domains: tuple[str, ...], routes: tuple[Route, ...],
          customers: tuple[Customer, ...], listeners: tuple[Listener, ...], link: Any) -> None:
    """The checks that need several sections (the module docstring's list)."""
    _check_customers(reader, local_domains, routes, customers)
    for nth, lst in enumerate(listeners):
        if lst.odmr:
            _check_odmr_listener(reader, lst, nth, customers)
    if link.odmr is not None and link.etrn_host:
        reader.error("link", "odmr", "etrn_host is set too: the call asks the ISP one way, "
                                     "ETRN (etrn_host) or ODMR (odmr); remove one")


def _check_odmr_listener(reader: Any, lst: Listener, nth: int, customers) -> None:
    """ATRN is for authenticated customers: AUTH (and TLS for it) and someone to authenticate."""
    if not any(c.user for c in customers):
        why = "an ODMR listener needs a [[customer]] with a user (ATRN is for authenticated customers only)"
    elif not lst.auth:
        why = "an ODMR listener needs AUTH: set [smtpd] auth_file or cram_secrets (the customers' secrets)"
    elif not lst.tls and not lst.auth_plaintext and not lst.cram_plaintext:
        why = ("AUTH is offered only after STARTTLS: give tls_cert and tls_key (or auth_plaintext = true, "
               "or cram_plaintext = true with [smtpd] cram_secrets)")
    else:
        return
    reader.error("listen", "odmr", f"listener {lst.name!r}: {why}", nth)


def _check_customers(reader: Any, local_domains, routes, customers) -> None:
    owner: dict[str, str] = {}
    names: set[str] = set()
    for i, c in enumerate(customers):
        block = _Block(reader, i)
        if c.name.lower() in names:
            block.error("name", f"customer {c.name!r} is named twice (its queue is #{c.name})")
        names.add(c.name.lower())
        for d in c.domains:
            if d.lstrip(".") in local_domains and d[0] != ".":
                block.error("domains", f"{d} is one of local_domains: mail for it is ours, not held")
            if d in owner:
                block.error("domains", f"{d} is customer {owner[d]!r}'s already")
            owner.setdefault(d, c.name)
            if any(r.pattern == d for r in routes):
                block.error("domains", f"[routes] has an entry for {d} too; a customer's domains "
                                       "are held for it: remove one")
