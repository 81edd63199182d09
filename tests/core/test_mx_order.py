"""mx.order_targets: preference order, shuffling only among equals, implicit and null MX."""

import random

import pytest
from hypothesis import given, strategies as st

from edgemail.errors import PermFail, Scope
from edgemail.delivery.mx import order_targets, parse_resolv_conf


def test_implicit_mx():
    (t,) = order_targets("Example.ORG.", [], random.Random(1))
    assert (t.host, t.implicit) == ("example.org", True)


@pytest.mark.parametrize("answers", [[(0, ".")], [(0, "")], [(10, ".")]], ids=["dot", "empty", "pref10"])
def test_null_mx(answers):
    with pytest.raises(PermFail) as e:
        order_targets("null.example", answers, random.Random(1))
    assert e.value.dsn == "5.1.10" and e.value.scope is Scope.SITE


def test_null_mx_mixed_with_real_is_ignored():
    assert [t.host for t in order_targets("d", [(0, "."), (10, "mx.d")], random.Random(1))] == ["mx.d"]


def test_duplicates_keep_best_preference():
    got = order_targets("d", [(20, "a.d"), (10, "A.d."), (30, "b.d")], random.Random(1))
    assert [(t.host, t.preference) for t in got] == [("a.d", 10), ("b.d", 30)]


mx_lists = st.lists(st.tuples(st.integers(0, 3), st.sampled_from([f"h{i}.d" for i in range(8)])),
                    min_size=1, max_size=10)


@given(mx_lists, st.integers())
def test_order_keeps_preference_and_shuffles_only_equals(answers, seed):
    got = order_targets("d", answers, random.Random(seed))
    prefs = [t.preference for t in got]
    assert prefs == sorted(prefs)
    best = {}
    for p, h in answers:
        best[h] = min(p, best.get(h, p))
    assert {t.host: t.preference for t in got} == best


def test_equal_preferences_are_shuffled():
    answers = [(10, f"h{i}.d") for i in range(6)]
    orders = {tuple(t.host for t in order_targets("d", answers, random.Random(s))) for s in range(20)}
    assert len(orders) > 1


def test_parse_resolv_conf():
    text = "# pppd\nnameserver 10.0.0.1\nnameserver  10.0.0.2 # second\nsearch x\nnameserver\n"
    assert parse_resolv_conf(text) == ("10.0.0.1", "10.0.0.2")
