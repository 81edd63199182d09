"""link.durations: the one duration grammar (edgemail.toml and the dial policy file)."""

import pytest

from edgemail.config.values import parse_duration
from link import durations
from link.policy import parse


@pytest.mark.parametrize("text, want", [
    ("90s", 90), ("15m", 900), ("1h30m", 5400), ("1h 30m", 5400), ("2d", 172800), ("1w", 604800),
    ("90", 90), ("1.5h", 5400), ("now", 0), ("0", 0), (" 5M ", 300), (90, 90), (2.5, 2.5),
], ids=str)
def test_parse(text, want):
    assert durations.parse(text) == want, f"got {durations.parse(text)}, want {want}"


@pytest.mark.parametrize("bad", ["", "5x", "h", "1h30", "-5s", "5s junk", True, -1, None, "1e3s"], ids=repr)
def test_parse_refuses_with_the_forms(bad):
    with pytest.raises(ValueError, match="duration"):
        durations.parse(bad)


@pytest.mark.parametrize("seconds, want", [
    (14400, "4 hours"), (432000, "5 days"), (90, "90 seconds"), (60, "1 minute"), (5400, "90 minutes"),
    (604800, "1 week"), (1.5, "1.5 seconds"), (0, "0 seconds"),
])
def test_describe(seconds, want):
    assert durations.describe(seconds) == want


def test_config_and_policy_file_share_the_grammar():
    # "1h30m" used to work in edgemail.toml and not in dial.policy
    assert parse_duration("1h30m") == 5400
    policy = parse("set idle_hangup = 1h30m\nset max_connect = 2m30s\n", file="dial.policy")
    assert policy.settings.idle_hangup_s == 5400
    assert policy.settings.max_connect_s == 150
