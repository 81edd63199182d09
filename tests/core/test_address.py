"""address.py: the one canonical parse of envelope addresses (tables)."""

from __future__ import annotations

import ipaddress
import re

import pytest

from edgemail.address import AddressError, check_lengths, parse_address, parse_path

GOOD = [
    # text, canonical, sender_routing, had_route
    ("<user@Example.ORG>", "user@example.org", False, False),
    ("<User.Name+tag@example.org.>", "User.Name+tag@example.org", False, False),
    ("user@example.org", "user@example.org", False, False),              # sendmail tolerates no <>
    ("<u%evil.example@edge.example>", "u%evil.example@edge.example", True, False),
    ("<evil.example!u@edge.example>", "evil.example!u@edge.example", True, False),
    ('<"a@b"@edge.example>', '"a@b"@edge.example', True, False),
    ('<"a b"@edge.example>', '"a b"@edge.example', False, False),
    ('<"ab"@edge.example>', "ab@edge.example", False, False),            # needless quotes go
    ('<"a\\"b"@edge.example>', '"a\\"b"@edge.example', False, False),
    ('<"a>b"@edge.example>', '"a>b"@edge.example', False, False),
    ("<@relay.example,@other.example:u@edge.example>", "u@edge.example", False, True),
    ("<@relay.example:u%x@edge.example>", "u%x@edge.example", True, True),
    ("<u@[192.0.2.1]>", "u@[192.0.2.1]", False, False),
    ("<u@[IPv6:2001:DB8::1]>", "u@[IPv6:2001:db8::1]", False, False),
    ("<Postmaster>", "Postmaster", False, False),
    ("<u@bücher.example>", "u@xn--bcher-kva.example", False, False),
    ("<jörg@example.org>", "jörg@example.org", False, False),
    ("<u@host_1.example>", "u@host_1.example", False, False),
]


@pytest.mark.parametrize("text,canonical,routing,route", GOOD, ids=[g[0] for g in GOOD])
def test_good(text, canonical, routing, route):
    path = parse_path(text)
    assert path.text == canonical, f"got {path.text!r}, want {canonical!r}"
    assert path.address.sender_routing is routing
    assert path.address.had_route is route


BAD = [
    ("<>", "null"),
    ("<u@192.0.2.1>", "bracketed literal"),
    ("<u@10.1>", "bracketed literal"),
    ("<u@host.123>", "bracketed literal"),
    ("<u@[192.0.2.256]>", "bad address literal"),
    ("<u@[example.org]>", "bad address literal"),
    ("<u@[192.0.2.1>", "unterminated"),
    ("<user>", "without a domain"),
    ("<a@b@c.example>", "bad local part"),
    ("<a b@c.example>", "bad local part"),
    ("<.a@c.example>", "bad local part"),
    ("<a..b@c.example>", "bad local part"),
    ('<"a"b@c.example>', "junk"),
    ('<"ab@c.example>', "missing closing"),
    ("<u@-bad.example>", "bad domain"),
    ("<u@exa mple.org>", "bad domain"),
    ("<u@>", "bad domain length"),
    ("<@a.example>", "source route"),
    ("<@a.example,b.example:u@c.example>", "bad source route"),
    ("<@[bad:u@c.example>", "literal"),
    ("<u@c.example", "missing closing"),
    ("<u@c.example>junk", "parameters"),
    ('<"a\x01b"@c.example>', "control character"),
    ("<" + "a" * 129 + "@c.example>", "local part longer than 128 octets (129)"),
    ("<u@" + "b" * 64 + ".example>", "domain label bbbbbbbbbbbbbbbbbbbb... of 64 octets, longer than 63"),
    ("<u@" + "a." * 130 + "example>", "path longer"),
]


@pytest.mark.parametrize("text,why", BAD, ids=[b[0][:40] for b in BAD])
def test_bad(text, why):
    with pytest.raises(AddressError) as exc:
        parse_path(text)
    assert why in str(exc.value), f"got {exc.value!r}, want it to mention {why!r}"


def test_null_sender_only_when_allowed():
    assert parse_path("<>", allow_null=True).address is None
    assert parse_path("<> SIZE=10", allow_null=True).params == "SIZE=10"


def test_params_split_off_after_quoted_bracket():
    path = parse_path('<"a>b"@edge.example> NOTIFY=NEVER ORCPT=rfc822;x@y')
    assert path.address.local == "a>b"
    assert path.params == "NOTIFY=NEVER ORCPT=rfc822;x@y"


def test_literal_ip_kept():
    a = parse_address("u@[192.0.2.7]")
    assert a.literal == ipaddress.ip_address("192.0.2.7")
    assert parse_address("u@example.org").literal is None


def test_canonical_is_a_fixed_point():
    for text, *_ in GOOD:
        canon = parse_path(text).text
        assert parse_path(f"<{canon}>").text == canon


@pytest.mark.parametrize("address,why", [
    ("a" * 5000 + "@c.example", "local part longer than 128 octets (5000)"),
    ("u@" + "d." * 130 + "example", "domain of 267 octets, longer than 255"),
    ("u@" + "b" * 64 + ".example", "of 64 octets, longer than 63"),
])
def test_an_address_from_the_queue_is_held_to_the_same_limits(address, why):
    """check_lengths: what smtpc/wire.py asks before an address goes on the wire."""
    with pytest.raises(AddressError, match=re.escape(why)):
        check_lengths(address)
    check_lengths("a" * 128 + "@" + "b" * 63 + ".example")      # at the limits: fine
    check_lengths("")                                           # the null sender
