"""smtpd/userfile.py: the one parser of the credentials and CRAM-MD5 secrets files."""

from __future__ import annotations

import pytest

from edgemail.errors import ConfigError
from edgemail.smtpd import cram, credentials
from edgemail.smtpd.userfile import parse


def upper(text: str) -> str:
    if text == "bad":
        raise ValueError("not good")
    return text.upper()


@pytest.mark.parametrize("strip, want", [
    (False, {"ann": " A:B C ", "bob": "X"}),
    (True, {"ann": " A:B C", "bob": "X"}),      # the line stripped, not the value
], ids=["secret-keeps-spaces", "stripped"])
def test_values_comments_and_blank_lines(strip, want):
    lines = ["# users", "", "   # indented comment", "ann: a:b c \r\n" if not strip else "  ann: a:b c  ", "bob:x"]
    got = parse(lines, "F", value="v", check=upper, strip=strip)
    assert got == want, f"got {got}, want {want}"


@pytest.mark.parametrize("text, want", [
    ("ann\n", "F:1: expected user:v (a user name without spaces or colons)"),
    ("ok:x\n:x\n", "F:2: expected user:v"),
    ("ann:x\nann:y\n", "F:2: user 'ann' is given twice"),
    ("ann:bad\n", "F:1: user 'ann': not good"),
], ids=["no-colon", "empty-user", "twice", "check-refuses"])
def test_errors_name_the_line(text, want):
    with pytest.raises(ConfigError) as err:
        parse(text.splitlines(), "F", value="v", check=upper)
    assert want in str(err.value), f"got {err.value}, want {want}"
    assert "bad" not in str(err.value), "no value is part of an error"


def test_both_files_share_it():
    good = credentials.hash_password("pw", log2n=4)
    assert credentials.parse([f" alice:{good} "], "P") == {"alice": good}
    assert cram.parse(["shop: s e:cret"], "C") == {"shop": b" s e:cret"}
