"""What sendmail's own header helpers (no email.utils, no dataclasses on its
path) must be: the very values email.utils and a frozen dataclass give."""

from __future__ import annotations

import email.utils
import random
import time

import pytest

from edgemail.address import Address, parse_address, parse_path
from edgemail.cli.headers import format_address, header_addresses, rfc5322_date

ZONES = ("UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "America/St_Johns")
STAMPS = (0, 1_700_000_000, 1_700_000_000.5, 1_700_000_000.9999996, 1_700_000_000.9999994,
          1_710_054_000, 1_730_595_600, 2_000_000_000.25)


@pytest.fixture(params=ZONES)
def zone(request, monkeypatch):
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_the_date_is_formatdate_localtime_in_every_zone(zone):
    for t in STAMPS:
        assert rfc5322_date(t) == email.utils.formatdate(t, localtime=True), (zone, t)


@pytest.mark.parametrize("name", ["", "J Smith", "Smith, J", 'say "hi"', "back\\slash", "J. R.", "Zoë Ünal"])
def test_format_address_is_formataddr(name):
    assert format_address(name, "j@edge.example") == email.utils.formataddr((name, "j@edge.example"))


def test_a_non_ascii_address_fails_as_formataddr_does():
    with pytest.raises(UnicodeEncodeError):
        email.utils.formataddr(("", "zoë@edge.example"))
    with pytest.raises(UnicodeEncodeError):
        format_address("", "zoë@edge.example")


@pytest.mark.parametrize("values", [
    ["someone@remote.example"], ['"Smith, J" <j@x.example>, b@y.example (Bee), <c@z.example>'],
    ["undisclosed-recipients:;"], ["Group: a@b.example, c@d.example;", "e@f.example"],
    ["bad <<>>, x", "root"], [""]])
def test_header_addresses_is_getaddresses(values):
    assert header_addresses(values) == email.utils.getaddresses(values)


def test_address_compares_hashes_and_refuses_changes_as_a_frozen_dataclass():
    a, b = parse_address("Joe@[192.0.2.1]"), parse_address("Joe@[192.0.2.1]")
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert a != parse_address("joe@[192.0.2.1]") and a != ("Joe", "[192.0.2.1]", a.literal, False)
    assert repr(a) == "Address(local='Joe', domain='[192.0.2.1]', literal=IPv4Address('192.0.2.1'), had_route=False)"
    with pytest.raises(AttributeError, match="frozen"):
        a.local = "x"       # type: ignore[misc]
    assert parse_path("<u>", domain="edge.example") == parse_path("<u@edge.example>")
    assert Address("u", "").with_domain("edge.example") == Address("u", "edge.example")


@pytest.mark.parametrize("values", [
    ["a@b.example, root"], ["\tA.B@C-D.example ,x@y.example  "], ["root"],
    ['Ann  Other <ann@x.example>, "Smith, J" <j@x.example>, <c@z.example>', '"" <e@f.example>'],
    ['"Smith, J', '" <j@x.example>'], ["a@b.example,"], ["a@b.example", ""]])
def test_a_plain_list_is_split_as_getaddresses_splits_it(values):
    assert header_addresses(values) == email.utils.getaddresses(values)


def test_header_addresses_is_getaddresses_on_random_text():
    """Plain lists (split here) and anything else (email.utils) alike."""
    rnd = random.Random(15)
    pieces = list("aZ09-.@, \t!#'`~_\"<>()[]:;\\é") + [
        "@x.example", ", ", "Ann Other ", '"Smith, J" ', "<j@x.example>", "root", '""']
    for _ in range(20_000):
        values = ["".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 12))) for _ in range(rnd.randint(1, 2))]
        assert header_addresses(values) == email.utils.getaddresses(values), values
