"""routing: route table matching, aliases, local users, check_rcpt replies."""

import pytest

from edgemail.delivery import aliases
from edgemail.config import loader as config
from edgemail.delivery.routing import Router, match_route


#: the users these tests send to (unknown local users are refused by default)
USERS = ("ann", "bob", "admin", "alice", "listbox")


def cfg(routes=None, users=USERS, maildir="/var/mail/%u/Maildir", create_mailboxes=False, **over):
    data = {
        "hostname": "gw.edge.example",
        "local_domains": ["edge.example", "alt.example"],
        "SmartHost": "[192.0.2.25]:2525",
        "routes": routes if routes is not None else ROUTES,
        "local": {"maildir": maildir, "users": list(users), "create_mailboxes": create_mailboxes},
    }
    data.update(over)
    return config.from_dict(data)


ROUTES = {
    "edge.example": "local",
    "alt.example": "maildir:/srv/alt/%u",
    "lan.edge.example": "lmtp:[192.168.1.5]:24",
    ".lan.edge.example": {"route": "relay:[192.168.1.10]:25"},
    ".dept.lan.edge.example": {"route": "relay:[192.168.1.11]:25"},
    "partner.example": {"route": "mx", "expensive": True, "dialdelay": True},
    "held.example": {"route": "hold", "expensive": True},
    "gone.example": "error:550 5.1.2 This domain is gone",
    "later.example": "error:451 try later",
    "*": {"route": "smarthost", "expensive": True, "dialdelay": True},
}

ALIASES = aliases.parse(
    "postmaster: root\n"
    "root: admin\n"
    "team: ann, bob, carol@partner.example, nosuchuser\n"
    "owner-team: team-request\n"
    "team-request: ann\n"
    "ann+lists: listbox\n"
    "lan: dev@host.lan.edge.example\n"
    "loop1: loop2\n"
    "loop2: loop1@alt.example\n",
    "/etc/aliases")


@pytest.mark.parametrize("domain,pattern", [
    ("lan.edge.example", "lan.edge.example"),          # exact beats .lan.edge.example
    ("pc1.lan.edge.example", ".lan.edge.example"),
    ("pc1.dept.lan.edge.example", ".dept.lan.edge.example"),  # longest suffix wins
    ("dept.lan.edge.example", ".lan.edge.example"),    # ".x" is subdomains only
    ("partner.example", "partner.example"),
    ("sub.partner.example", "*"),
    ("elsewhere.org", "*"),
], ids=["exact-over-sub", "sub", "longest-sub", "sub-not-self", "exact", "no-sub-rule", "star"])
def test_match_route(domain, pattern):
    got = match_route(cfg().routes, domain)
    assert got.pattern == pattern, f"got {got.pattern}, want {pattern}"


def test_no_star_nonlocal_defaults_to_expensive_mx():
    [d] = Router(cfg(routes={"edge.example": "local"})).route("x@far.example")
    assert (d.kind, d.host, d.port, d.expensive) == ("mx", "far.example", 25, True)


@pytest.mark.parametrize("address,want", [
    ("x@far.example", ("smarthost", "", "192.0.2.25", 2525, True, True)),
    ("x@partner.example", ("mx", "", "partner.example", 25, True, True)),
    ("x@pc1.lan.edge.example", ("relay", "", "192.168.1.10", 25, False, False)),
    ("x@lan.edge.example", ("lmtp", "", "192.168.1.5", 24, False, False)),
    ("x@held.example", ("hold", "", "held.example", 25, True, False)),
    ("Ann@Edge.Example", ("local", "/var/mail/ann/Maildir", "", 0, False, False)),
    ("ann+news@edge.example", ("local", "/var/mail/ann/Maildir", "", 0, False, False)),
    ("ann@alt.example", ("maildir", "/srv/alt/ann", "", 0, False, False)),
    ("ann", ("local", "/var/mail/ann/Maildir", "", 0, False, False)),
], ids=["smarthost", "mx-flags", "lan-relay", "lmtp", "hold", "local-case", "detail",
        "maildir-route", "bare-local"])
def test_route_kinds(address, want):
    [d] = Router(cfg()).route(address)
    got = (d.kind, d.target, d.host, d.port, d.expensive, d.dialdelay)
    assert got == want, f"got {got}, want {want}"


def test_detail_kept_in_address_dropped_in_mailbox():
    [d] = Router(cfg()).route("Ann+News@edge.example")
    assert d.address == "Ann+News@edge.example"
    assert d.target == "/var/mail/ann/Maildir"


def test_alias_with_detail_takes_precedence():
    [d] = Router(cfg(), ALIASES).route("ann+lists@edge.example")
    assert d.address == "listbox@edge.example" and d.target == "/var/mail/listbox/Maildir"


def test_list_expansion_routes_each_member_and_sets_owner():
    r = Router(cfg(users=["ann", "bob", "admin"]), ALIASES)
    # owner-team has one target: it becomes the envelope sender (guide 2.6.3)
    got = {d.address: (d.kind, d.errors_to, d.reply) for d in r.route("Team@edge.example")}
    assert got == {
        "ann@edge.example": ("local", "team-request@edge.example", ""),
        "bob@edge.example": ("local", "team-request@edge.example", ""),
        "carol@partner.example": ("mx", "team-request@edge.example", ""),
        "nosuchuser@edge.example": ("error", "team-request@edge.example",
                                    "550 5.1.1 <nosuchuser@edge.example>... User unknown"),
    }
    # the list is accepted: the bad member is the owner's problem, not the sender's
    assert r.check_rcpt("team@edge.example") is None


def test_alias_to_lan_host_routes_by_table():
    [d] = Router(cfg(), ALIASES).route("lan@alt.example")
    assert (d.kind, d.host, d.address, d.via) == ("relay", "192.168.1.10", "dev@host.lan.edge.example", ("lan",))


R = Router(cfg(users=["ann", "admin"]), ALIASES)


@pytest.mark.parametrize("address,reply", [
    ("ann@edge.example", None),
    ("ANN@edge.example", None),
    ("nobody@edge.example", "550 5.1.1 <nobody@edge.example>... User unknown"),
    ("nobody@alt.example", "550 5.1.1 <nobody@alt.example>... User unknown"),
    ("postmaster@edge.example", None),                 # alias -> root -> admin
    ("x@gone.example", "550 5.1.2 This domain is gone"),
    ("x@later.example", "451 4.0.0 try later"),
    ("x@far.example", None),
    ("x@lan.edge.example", None),                      # LMTP server decides users
    ("../etc@edge.example", "550 5.1.3 <../etc@edge.example>... Bad mailbox name"),
    (".hidden@edge.example", "550 5.1.3 <.hidden@edge.example>... Bad mailbox name"),
    ("loop1@edge.example", "554 5.4.6 <loop1@edge.example>... /etc/aliases:8: alias loop: loop1 -> loop2 -> loop1"),
    ("@edge.example", "553 5.1.3 <@edge.example>... Empty local part"),
], ids=["user", "user-case", "unknown", "unknown-maildir-route", "postmaster-alias", "error-route",
        "temp-error-route", "remote", "lmtp", "traversal", "dot", "loop", "empty"])
def test_check_rcpt(address, reply):
    got = R.check_rcpt(address)
    assert got == reply, f"got {got!r}, want {reply!r}"


def test_postmaster_always_exists_even_without_alias_or_user_entry():
    r = Router(cfg(users=["ann"]))
    assert r.check_rcpt("PostMaster@edge.example") is None
    [d] = r.route("postmaster@edge.example")
    assert d.target == "/var/mail/postmaster/Maildir"


def test_unknown_user_refused_by_default_even_with_no_user_list():
    r = Router(cfg(users=()))
    assert r.check_rcpt("NoSuchUser@edge.example") == "550 5.1.1 <NoSuchUser@edge.example>... User unknown"
    assert r.check_rcpt("postmaster@edge.example") is None
    # abuse is not implied (RFC 2142 is met by the aliases file: abuse: postmaster)
    assert r.check_rcpt("abuse@edge.example") == "550 5.1.1 <abuse@edge.example>... User unknown"


def test_create_mailboxes_accepts_any_safe_name():
    r = Router(cfg(users=(), create_mailboxes=True))
    assert r.check_rcpt("whoever@edge.example") is None
    [d] = r.route("Whoever@edge.example")
    assert d.target == "/var/mail/whoever/Maildir"
    assert r.check_rcpt("../etc@edge.example") == "550 5.1.3 <../etc@edge.example>... Bad mailbox name"


def test_users_given_to_the_router_replace_the_config_list():
    r = Router(cfg(users=("ann",)), users=frozenset({"zoe"}))
    assert r.check_rcpt("zoe@edge.example") is None
    assert r.check_rcpt("ann@edge.example") == "550 5.1.1 <ann@edge.example>... User unknown"


def test_program_targets_refused_at_load(tmp_path):
    p = tmp_path / "aliases"
    p.write_text("ann: ann\nbin: \"|/usr/local/bin/process\"\n")
    with pytest.raises(config.ConfigError, match=rf"{p}:2: .*program targets are refused"):
        aliases.load(str(p))


def test_route_is_remembered_and_callers_cannot_spoil_it():
    r = Router(cfg(), aliases.parse("office: alice, bob\n"))
    first = r.route("office@edge.example")
    first.append("spoiled")
    assert r.route("office@edge.example") == first[:-1]
    assert [d.address for d in first[:-1]] == ["alice@edge.example", "bob@edge.example"]
    fresh = Router(cfg(), aliases.parse("office: alice, bob\n"))
    assert r.route("x@partner.example") == fresh.route("x@partner.example")


# ---------------------------------------------------------------- QA-7: one delivery per mailbox

def test_one_per_mailbox_after_alias_expansion_case_and_idn():
    from edgemail.address import parse_address
    from edgemail.delivery.port import one_per_mailbox, pending_jobs
    from edgemail.envelope import Envelope, Recipient
    from edgemail.spool.record import new_entry
    r = Router(cfg(), ALIASES)
    given = ["Bob@EDGE.example", "bob+x@edge.example", "team@edge.example", "carol@partner.example",
             "Carol@partner.example", "bob@edge.example", "u@bücher.example", "u@xn--bcher-kva.example",
             "x@gone.example", "y@gone.example"]
    rcpts = tuple(Recipient(str(parse_address(a))) for a in given)
    entry = new_entry("q1", Envelope("s@edge.example", rcpts), created=0, size=1, priority=0)
    jobs, _ = pending_jobs(entry, r.route)
    # the repeated bob@edge.example and the IDN spelled twice are one envelope key each
    assert [j.key for j in jobs].count("bob@edge.example") == 1
    assert [j.key for j in jobs].count("u@xn--bcher-kva.example") == 1
    deliver, riders = one_per_mailbox(jobs)
    assert [j.decision.address for j in deliver] == [
        "Bob@edge.example", "ann@edge.example", "carol@partner.example", "nosuchuser@edge.example",
        "Carol@partner.example", "u@xn--bcher-kva.example", "x@gone.example", "y@gone.example"]
    # a local mailbox by its maildir (case, +detail, the alias); a remote local part keeps its case
    assert riders == {"bob+x@edge.example": "Bob@edge.example", "team@edge.example>bob@edge.example":
                      "Bob@edge.example", "carol@partner.example": "team@edge.example>carol@partner.example",
                      "bob@edge.example": "Bob@edge.example"}
