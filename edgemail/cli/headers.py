"""cli/headers.py - the header words local submission writes and reads,
without email.utils (random, datetime, urllib, email.charset: milliseconds and
a megabyte on every sendmail call): the same values, tested against it
(tests/core/test_header_words.py).

Header addresses (``qualify_header``), for trusted local submission only
(``sendmail``, ``sendmail -t``, ``sendmail -bs``; never mail from an SMTP
client): an unqualified address in From:, Sender:, Reply-To:, To:, Cc:,
Bcc:, their Resent- forms and Disposition-Notification-To: is completed by
the same rule as the envelope's (address.py ``parse_address(domain=)``), as
sendmail does for local mail.  A field with nothing to complete is kept byte
for byte; a field that changes is written anew (display names kept, RFC 2047
for non-ASCII ones), so ``From: root`` becomes ``From: root@DOMAIN``.

``header_addresses`` is email.utils.getaddresses: a plain list
(``a@b.example, Ann Other <ann@x.example>, "Smith, J" <j@x.example>, root``) is split here, anything else goes to it (with the
strict mode Python 3.13 and Debian's 3.11.2 have, where they have it).
``format_address`` is formataddr, ``rfc5322_date`` formatdate(localtime=True).

Never: parses what it cannot vouch for; an address it cannot complete
leaves the field as it came.
"""

from __future__ import annotations

import re
import time

from edgemail.address import AddressError, parse_address

#: header fields holding addresses that local submission qualifies
ADDRESS_FIELDS = frozenset("""from sender reply-to to cc bcc resent-from resent-sender
    resent-reply-to resent-to resent-cc resent-bcc disposition-notification-to""".split())


def qualify_header(field: bytes, domain: str) -> bytes:
    """One header field (folded lines joined by CRLF): its unqualified
    addresses completed with DOMAIN (see the module docstring)."""
    name, colon, raw = field.partition(b":")
    if not colon or name.strip().lower().decode("ascii", "replace") not in ADDRESS_FIELDS:
        return field
    try:
        value = raw.decode("utf-8").replace("\r\n", "")
    except UnicodeDecodeError:
        return field
    pairs = [(n, a) for n, a in header_addresses([value]) if a]
    if not any("@" not in a for _, a in pairs):
        return field
    parts = []
    for display, addr in pairs:
        if "@" not in addr:
            try:
                addr = str(parse_address(addr, domain=domain))
            except AddressError:
                return field            # not an address we can complete: left as it is
        parts.append(format_address(display, addr))
    joined = ", ".join(parts)
    sep = ",\r\n\t" if len(name) + len(joined) > 76 else ", "
    return name + b": " + sep.join(parts).encode("utf-8")


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN = rf"{_ATEXT}(?:\.{_ATEXT})*(?:@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)?"
#: one mailbox of a plain list: an address, bare or in <>, after a name of
#: words or a quoted string without escapes; no comments, no groups
_ITEM = re.compile(rf'[ \t]*(?:(?P<bare>{_PLAIN})|(?:(?P<words>{_ATEXT}(?:[ \t]+{_ATEXT})*)'
                   rf'|"(?P<quoted>[^"\\\r\n]*)")?[ \t]*<(?P<addr>{_PLAIN})>)[ \t]*(?:,|$)')


def _plain_list(joined: str) -> list[tuple[str, str]] | None:
    """JOINED split as getaddresses splits it, or None if it is not a plain list."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(joined) or not out:
        m = _ITEM.match(joined, pos)
        if m is None or (m.group().endswith(",") and m.end() == len(joined)):
            return None
        words, quoted = m["words"], m["quoted"]
        name = " ".join(words.split()) if words else quoted or ""
        out.append((name, m["bare"] or m["addr"]))
        pos = m.end()
    return out


def header_addresses(values: list[str]) -> list[tuple[str, str]]:
    """email.utils.getaddresses(VALUES); a plain list is split here, without
    email.utils's imports (random, datetime, urllib, email.charset)."""
    lists = [_plain_list(v) for v in values]          # each alone: no quote spans two values
    if values and all(found is not None for found in lists):
        return [pair for found in lists for pair in found or ()]
    import email.utils  # anything else: its own parser (and, where it has it, its strict mode)
    return email.utils.getaddresses(values)


_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


def format_address(name: str, address: str) -> str:
    """email.utils.formataddr((NAME, ADDRESS)); a non-ASCII name is left to
    email.utils (its RFC 2047 encoded word)."""
    address.encode("ascii")              # as formataddr: UnicodeEncodeError for a non-ASCII one
    if not name:
        return address
    if not name.isascii():
        import email.utils
        return email.utils.formataddr((name, address))
    quotes = '"' if _SPECIALS.search(name) else ""
    name = name.replace("\\", "\\\\").replace('"', '\\"')
    return f"{quotes}{name}{quotes} <{address}>"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc5322_date(now: float) -> str:
    """email.utils.formatdate(NOW, localtime=True) without email.utils:
    RFC 5322 3.3 ``Fri, 04 Dec 2026 03:05:09 +0100`` in the local zone."""
    t = time.localtime(round(now, 6))          # datetime rounds to microseconds, then truncates
    off = t.tm_gmtoff or 0
    zone = f"{'-' if off < 0 else '+'}{abs(off) // 3600:02d}{abs(off) % 3600 // 60:02d}"
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} {zone}")
