"""address.py - the one canonical parse of an SMTP envelope address.

Owns: turning the argument of ``MAIL FROM:`` / ``RCPT TO:`` into a
``Path`` (the address and the ESMTP parameter text after it), and deciding
what in an address is a *destination*.  Everything that decides about an
address (relay control, routing, logging) works on the ``Address`` this
module returns, never on the raw text, so two parts of the program can never
read one address two ways.

Never does: DNS, I/O, or any routing.  Pure; tests are tables.

Rules (each has a test in tests/core/test_address.py):

* The destination is the domain after the last unquoted ``@``; nothing else.
  ``%`` and ``!`` are ordinary local-part characters (no percent hack, no
  UUCP bang paths), and a quoted ``@`` ("a@b"@example.org) is part of the
  local part.  ``Address.sender_routing`` says that such characters are
  present; smtpd refuses these addresses from untrusted clients (Postfix's
  ``allow_untrusted_routing = no``), so they cannot be used to probe a
  relay that somewhere else might honour them.
* Source routes (``<@a,@b:user@c>``) are dropped, as RFC 5321 section 4.1.1.3
  and appendix C tell a server to: the address is ``user@c``; the route
  hosts are never contacted.  ``Address.had_route`` records that one was given.
* A domain must be a host name (LDH labels, ``_`` tolerated; lower-cased,
  trailing dot removed; U-labels are converted to A-labels) or a domain
  literal in brackets: ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]``, checked
  with ``ipaddress``.  An unbracketed IP address (``user@192.0.2.1``), or
  any domain whose last label is all digits, is a syntax error: it would
  otherwise be looked up as a name or taken as an address by accident.
* ``<>`` is the null sender; valid for MAIL only (``allow_null``).
* A bare ``postmaster`` (any case) without a domain is accepted (RFC 5321
  4.5.1); ``Address.domain`` is then "" and the caller supplies its own.
  Any other address without a domain is ``Unqualified`` (an AddressError),
  unless the caller passes ``domain=``: then it is completed with it (RFC
  6409 4.2; sendmail's behaviour for trusted and local submitters), the
  postmaster included.  Who may send unqualified addresses is the caller's
  decision (smtpd: trusted clients; ``sendmail``: always).
* A route in disguise (``%``, ``!`` or a quoted ``@`` in the local part,
  ``sender_routing``) is refused with ``ROUTED_REFUSAL`` wherever the
  destination is ours or held (routing.py, smtpd/policy.py): one reply,
  ``550 5.7.1``, as Postfix refuses ``%``/``!`` relay attempts - a policy
  refusal, not a syntax error (the address is valid RFC 5321).
* Limits: local part 64 octets x 2 (lenient: SRS and VERP addresses pass
  64, and sendmail and Postfix set no local-part limit), domain 255, label
  63, whole path 256.  ``check_lengths`` is the same rule for an address
  already in the queue (smtpc/wire.py: never sent over the limits).
* ``Path.utf8`` says the address as written was not ASCII (a UTF-8 local
  part or a U-label domain): RFC 6531 allows it only with SMTPUTF8, which
  the caller checks.  Text that is not valid UTF-8 (lone surrogates from a
  ``surrogateescape`` decode) is a syntax error.

Header addresses: cli/headers.py (``qualify_header``) completes them by the same rule.

Failures: ``AddressError(reason)`` with a one-line reason fit for a reply.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False     # not typing's: sendmail imports this module on every call
if TYPE_CHECKING:
    import ipaddress

__all__ = ["Address", "AddressError", "Path", "ROUTED_REFUSAL", "Unqualified", "parse_path",
           "parse_address", "check_lengths"]

#: the reply for a route in disguise to a destination of ours ({a}: the address)
ROUTED_REFUSAL = ("550 5.7.1 <{a}>... Sender-specified routing refused: "
                  "'%', '!' or '@' in the local part is not a mailbox here")

MAX_LOCAL = 128
MAX_DOMAIN = 255
MAX_LABEL = 63
MAX_PATH = 256

# RFC 5322 atext (RFC 5321 Atom) plus any non-ASCII character (RFC 6531), as a negated
# class: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-\u0080-\U0010ffff] took 5.6 ms to compile.
_ATOM = r'[^\x00-\x20\x7f"(),.:;<>@\[\\\]]+'
_DOT_STRING = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_ROUTING = frozenset("%!@")


class AddressError(ValueError):
    """The text is not an address we accept; ``str()`` says why."""


class Unqualified(AddressError):
    """An address without a domain (not a bare postmaster), no domain= given."""


class _Frozen:
    """A value compared, hashed and shown as a frozen dataclass; not one, as
    ``dataclasses`` (inspect, ast, dis) costs each sendmail call milliseconds."""

    __slots__: tuple[str, ...] = ()

    def _set(self, **values) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is frozen")

    def _key(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        same = other.__class__ is self.__class__
        return self._key() == other._key() if same else NotImplemented  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in self.__slots__)})"


class Address(_Frozen):
    """A parsed mailbox; ``str()`` is the canonical form used everywhere.  ``local``:
    the local part's value (unquoted); ``domain``: lower-case name, "[literal]"
    text, or "" for a bare postmaster; ``literal``: the literal's IP, or None;
    ``had_route``: a source route was given and dropped."""

    __slots__ = ("local", "domain", "literal", "had_route")
    local: str
    domain: str
    literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    had_route: bool

    def __init__(self, local: str, domain: str,
                 literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None,
                 had_route: bool = False) -> None:
        self._set(local=local, domain=domain, literal=literal, had_route=had_route)

    def with_domain(self, domain: str) -> Address:
        """The same address with DOMAIN (an unqualified one completed)."""
        return Address(self.local, domain, self.literal, self.had_route)

    @property
    def sender_routing(self) -> bool:
        """The local part holds ``%``, ``!`` or ``@``: sender-specified routing."""
        return any(c in _ROUTING for c in self.local)

    @property
    def is_postmaster(self) -> bool:
        return self.local.lower() == "postmaster"

    @property
    def smtputf8(self) -> bool:
        """Needs SMTPUTF8 (non-ASCII local part)."""
        return not self.local.isascii()

    def __str__(self) -> str:
        local = self.local if _DOT_STRING.fullmatch(self.local) else _quote(self.local)
        return f"{local}@{self.domain}" if self.domain else local


class Path(_Frozen):
    """A MAIL/RCPT argument: the address (None for ``<>``) and the parameter
    text; ``utf8``: the address was written with non-ASCII characters (needs SMTPUTF8)."""

    __slots__ = ("address", "params", "utf8")
    address: Address | None
    params: str
    utf8: bool

    def __init__(self, address: Address | None, params: str = "", utf8: bool = False) -> None:
        self._set(address=address, params=params, utf8=utf8)

    @property
    def text(self) -> str:
        """The canonical address text; "" for the null path."""
        return str(self.address) if self.address else ""


def _quote(local: str) -> str:
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_path(arg: str, *, allow_null: bool = False, domain: str | None = None) -> Path:
    """Parse what follows ``FROM:`` / ``TO:``: ``<path> [params]``.

    Brackets are expected; a bare address without spaces is tolerated
    (sendmail accepts ``MAIL FROM:user@host``).  DOMAIN: completes an
    unqualified address (see the module docstring).
    """
    arg = arg.strip()
    if arg.startswith("<"):
        end = _closing_bracket(arg)
        inner, params = arg[1:end], arg[end + 1:]
        if params and not params[0].isspace():
            raise AddressError("text after the closing '>' must be parameters")
    else:
        inner, _, params = arg.partition(" ")
    if len(inner) + 2 > MAX_PATH:
        raise AddressError(f"path longer than {MAX_PATH} characters")
    if inner == "":
        if not allow_null:
            raise AddressError("null address <> not allowed here")
        return Path(None, params.strip())
    utf8 = not inner.isascii()
    if utf8:
        try:
            inner.encode("utf-8")
        except UnicodeEncodeError:
            raise AddressError("address is not valid UTF-8") from None
    return Path(parse_address(inner, domain=domain), params.strip(), utf8)


def _closing_bracket(arg: str) -> int:
    """Index of the '>' closing the path, skipping quoted strings."""
    if '"' not in arg:               # the usual path: no quoted string to skip
        end = arg.find(">")
        if end < 0:
            raise AddressError("missing closing '>'")
        return end
    quoted = escaped = False
    for i, c in enumerate(arg):
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == ">" and not quoted:
            return i
    raise AddressError("missing closing '>'")


def parse_address(text: str, *, domain: str | None = None) -> Address:
    """Parse ``[@route,...:]local@domain`` (no angle brackets); DOMAIN
    completes an address that has none."""
    had_route = False
    if text.startswith("@"):
        route, colon, text = text.partition(":")
        if not colon:
            raise AddressError("source route without ':'")
        for hop in route.split(","):
            if not hop.startswith("@"):
                raise AddressError("bad source route")
            _domain(hop[1:])
        had_route = True
    local, rest = _local_part(text)
    if not rest:
        if domain is not None:
            rest = "@" + domain
        elif local.lower() == "postmaster":
            return Address(local, "", had_route=had_route)
        else:
            raise Unqualified("address without a domain")
    if rest[0] != "@":
        raise AddressError("junk after the local part")
    name, literal = _domain(rest[1:])
    return Address(local, name, literal, had_route)


def _local_part(text: str) -> tuple[str, str]:
    """Split off the local part; returns (value, rest starting at '@' or "")."""
    if text.startswith('"'):
        value, i, escaped = [], 1, False
        while i < len(text):
            c = text[i]
            if escaped:
                value.append(c)
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                break
            elif ord(c) < 32 or c == "\x7f":
                raise AddressError("control character in quoted local part")
            else:
                value.append(c)
            i += 1
        else:
            raise AddressError("unterminated quoted local part")
        local, rest = "".join(value), text[i + 1:]
    else:
        at = text.rfind("@")
        local, rest = (text[:at], text[at:]) if at >= 0 else (text, "")
        if not _DOT_STRING.fullmatch(local):
            raise AddressError("bad local part (quote it)")
    if not local:
        raise AddressError("empty local part")
    if len(local.encode()) > MAX_LOCAL:
        raise AddressError(f"local part longer than {MAX_LOCAL} octets ({len(local.encode())})")
    return local, rest


def _domain(text: str) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address | None]:
    if text.startswith("["):
        return _literal(text)
    name = text.rstrip(".") if text.endswith(".") and not text.endswith("..") else text
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise AddressError("bad internationalised domain") from None
    name = name.lower()
    if not name:
        raise AddressError("bad domain length: empty")
    if len(name) > MAX_DOMAIN:
        raise AddressError(f"domain of {len(name)} octets, longer than {MAX_DOMAIN} (RFC 5321 4.5.3.1.2)")
    labels = name.split(".")
    if long := next((label for label in labels if len(label) > MAX_LABEL), None):
        raise AddressError(f"domain label {long[:20]}... of {len(long)} octets, longer than "
                           f"{MAX_LABEL} (RFC 1035 2.3.4)")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise AddressError("bad domain")
    if labels[-1].isdigit():
        raise AddressError("IP address domain must be a bracketed literal [a.b.c.d]")
    return name, None


def _literal(text: str) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    if not text.endswith("]"):
        raise AddressError("unterminated address literal")
    inner = text[1:-1]
    import ipaddress  # lazily: only an address literal needs it
    try:
        if inner[:5].lower() == "ipv6:":
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(inner[5:])
            return f"[IPv6:{ip.compressed}]", ip
        if not re.fullmatch(r"\d{1,3}(?:\.\d{1,3}){3}", inner):
            raise ValueError(inner)
        ip = ipaddress.IPv4Address(inner)
    except ValueError:
        raise AddressError("bad address literal (want [a.b.c.d] or [IPv6:...])") from None
    return f"[{ip}]", ip


def check_lengths(address: str) -> None:
    """An address from the queue (canonical text, not parsed again): the
    limits above, or AddressError naming the part too long."""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if len(local.encode()) > MAX_LOCAL:
        raise AddressError(f"local part longer than {MAX_LOCAL} octets ({len(local.encode())})")
    if domain and not domain.startswith("["):
        _domain(domain)
