"""What is ours and what is a route in disguise (issue 16 §4-7, QA-3, QA-6):
the pure decisions - class w (local domains, our hostname, localhost, literals
of our listeners' addresses and loopback), local domains without a route entry,
ROUTED_REFUSAL, qualification of envelope and header addresses."""

import pytest

from edgemail.address import ROUTED_REFUSAL, Unqualified, parse_address, parse_path
from edgemail.cli.headers import qualify_header
from edgemail.cli.bsrelay import TraceInserter
from edgemail.config import loader as config
from edgemail.delivery import aliases
from edgemail.delivery.routing import Router
from edgemail.smtpd.policy import RelayPolicy

ROUTES = {
    "edge.example": "local",
    "held.example": {"route": "hold", "expensive": True},
    "*": {"route": "smarthost", "expensive": True, "dialdelay": True},
}
LISTEN = [{"name": "lan", "address": "192.168.1.1", "port": 25},
          {"name": "lan6", "address": "2001:db8::25", "port": 25},
          {"name": "any", "address": "0.0.0.0", "port": 2525}]


def cfg(routes=ROUTES, local_domains=("edge.example",), **over):
    return config.from_dict({"hostname": "gw.edge.example", "local_domains": list(local_domains),
                             "SmartHost": "[192.0.2.25]:2525", "routes": routes, "listen": LISTEN,
                             "local": {"maildir": "/var/mail/%u/Maildir", "users": ["ann", "bob"]}, **over})


ALIASES = aliases.parse("postmaster: ann\n", "/etc/aliases")


@pytest.mark.parametrize("address,mailbox", [
    ("ann@localhost", "ann"),                       # QA-3: sendmail's class w
    ("ann@LocalHost.", "ann"),
    ("ann@gw.edge.example", "ann"),                 # our own hostname
    ("ann@[127.0.0.1]", "ann"),
    ("ann@[127.0.0.2]", "ann"),                     # all of 127/8 is this host
    ("ann@[IPv6:::1]", "ann"),
    ("postmaster@[192.168.1.1]", "ann"),            # 16 §5: a listener's address
    ("postmaster@[IPv6:2001:db8::25]", "ann"),
    ("postmaster@[IPv6:::ffff:192.168.1.1]", "ann"),  # IPv4-mapped
    ("postmaster", "ann"),                          # bare postmaster: RFC 5321 4.5.1
])
def test_our_names_and_literals_are_local_never_the_smart_host(address, mailbox):
    [d] = Router(cfg(), ALIASES).route(address)
    assert d.kind == "local" and d.target == f"/var/mail/{mailbox}/Maildir", d


@pytest.mark.parametrize("address", ["ann@[192.0.2.9]", "ann@[0.0.0.0]", "ann@[IPv6:2001:db8::26]",
                                     "ann@gw2.edge.example", "ann@localhost.example"])
def test_other_literals_and_names_are_not_ours(address):
    [d] = Router(cfg(), ALIASES).route(address)
    assert d.kind == "smarthost", d


def test_a_local_domain_without_its_own_route_entry_is_local_not_the_star_route():
    c = cfg(local_domains=("edge.example", "branch.example"))      # branch.example: no entry
    [d] = Router(c, ALIASES).route("bob@branch.example")
    assert (d.kind, d.target, d.expensive) == ("local", "/var/mail/bob/Maildir", False), d
    assert Router(c).check_rcpt("nobody@branch.example") == "550 5.1.1 <nobody@branch.example>... User unknown"
    sub = cfg(routes={**ROUTES, ".edge.example": "relay:[192.168.1.10]:25"},
              local_domains=("edge.example", "pc.edge.example"))
    assert Router(sub).route("bob@pc.edge.example")[0].kind == "relay"     # its own (suffix) entry wins
    assert Router(sub).route("bob@gw.edge.example")[0].kind == "local"     # our hostname: only an exact entry


@pytest.mark.parametrize("address", [
    "ann%far.example@edge.example", "far.example!ann@edge.example", '"ann@far.example"@edge.example',
    "ann%far.example@localhost", "ann%far.example@[127.0.0.1]", "ann%far.example@[192.168.1.1]",
    "ann%far.example@gw.edge.example", "ann+x%far.example@edge.example",       # not "ann" by +detail
    "ann%far.example@held.example", '"ann!x"@held.example', "postmaster%far.example@edge.example",
])
def test_routes_in_disguise_are_refused_with_one_reply(address):
    canon = str(parse_address(address))
    want = ROUTED_REFUSAL.replace("{a}", canon)
    r = Router(cfg(), ALIASES)
    assert r.check_rcpt(canon) == want
    assert all(d.kind == "error" for d in r.route(canon))
    for trusted in (True, False):            # the listener: the same reply from any client
        policy = RelayPolicy(cfg(), check_rcpt=r.check_rcpt)
        assert policy.rcpt_decision(trusted, parse_address(address)) == (canon, want)
        assert RelayPolicy(cfg()).rcpt_decision(trusted, parse_address(address)) == (canon, want)
    assert want.startswith("550 5.7.1 <")


def test_no_alias_name_can_hold_routing_characters():
    # so "delivered locally only when the whole local part is a real local
    # address" never applies: alias names (and mailbox names) exclude them
    with pytest.raises(config.ConfigError):
        aliases.parse("list%old: bob\n", "/etc/aliases")


def test_a_remote_domain_keeps_its_own_local_parts_for_the_lan():
    [d] = Router(cfg(), ALIASES).route("ann%x@far.example")      # the remote host's business
    assert d.kind == "smarthost"
    assert RelayPolicy(cfg()).rcpt_decision(False, parse_address("ann%x@far.example"))[1].startswith(
        "554 5.7.1 <ann%x@far.example>... Relaying denied")


def test_literals_of_ours_take_mail_from_outside_clients_other_literals_do_not():
    policy = RelayPolicy(cfg())
    assert policy.rcpt_decision(False, parse_address("postmaster@[192.168.1.1]")) == (
        "postmaster@[192.168.1.1]", None)
    assert policy.rcpt_decision(False, parse_address("ann@[192.0.2.9]"))[1] == (
        "554 5.7.1 <ann@[192.0.2.9]>... Relaying denied")


def test_unqualified_addresses_complete_only_when_a_domain_is_given():
    assert str(parse_path("<root>", domain="edge.example").address) == "root@edge.example"
    assert str(parse_path('<"a b">', domain="edge.example").address) == '"a b"@edge.example'
    assert str(parse_path("<PostMaster>", domain="edge.example").address) == "PostMaster@edge.example"
    assert str(parse_path("<postmaster>").address) == "postmaster"
    with pytest.raises(Unqualified):
        parse_path("<root>")


@pytest.mark.parametrize("field,want", [
    (b"From: root", b"From: root@edge.example"),
    (b"To: root, bob@far.example", b"To: root@edge.example, bob@far.example"),
    (b'Cc: "Ops Team" <ops>', b"Cc: Ops Team <ops@edge.example>"),
    (b"Reply-To: Charlie Root <root>", b"Reply-To: Charlie Root <root@edge.example>"),
    (b"Resent-To: root", b"Resent-To: root@edge.example"),
    (b"Subject: root", b"Subject: root"),                         # not an address field
    (b"To: ann@edge.example,\r\n\tbob@far.example", b"To: ann@edge.example,\r\n\tbob@far.example"),
    (b"To: undisclosed-recipients:;", b"To: undisclosed-recipients:;"),
    (b"From: \xff root", b"From: \xff root"),                     # not UTF-8: left as it came
])
def test_header_addresses_are_qualified_by_the_envelope_rule(field, want):
    assert qualify_header(field, "edge.example") == want


TRACE = b"Received: (from ann@localhost)\r\n\tby gw.edge.example (edgemail); DATE\r\n"


def test_sendmail_bs_qualifies_the_header_and_keeps_the_rest():
    core = TraceInserter(lambda: TRACE, "edge.example")
    core.from_server(b"220 gw ESMTP\r\n")
    assert core.from_client(b"HELO x\r\nDATA\r\n") == b"HELO x\r\nDATA\r\n"
    core.from_server(b"250 ok\r\n")
    assert core.from_server(b"354 go\r\n") == TRACE
    assert core.from_client(b"From: root\r\nTo: ann,\r\n") == b""            # the header is held
    assert core.from_client(b" bob\r\nSubject: From: root\r\n\r\nTo: root\r\n.\r\n") == (
        b"From: root@edge.example\r\nTo: ann@edge.example, bob@edge.example\r\nSubject: From: root\r\n"
        b"\r\nTo: root\r\n.\r\n")
    assert core.mode == "command"
    assert core.from_client(b"QUIT\r\n") == b"QUIT\r\n"


def test_a_wildcard_listeners_literals_are_the_host_addresses_the_daemon_read():
    from dataclasses import replace
    import ipaddress
    c = cfg()
    assert not c.is_local_domain("[192.0.2.2]")
    c = replace(c, host_addresses=frozenset({ipaddress.ip_address("192.0.2.2"), ipaddress.ip_address("fd00::2")}))
    assert c.is_local_domain("[192.0.2.2]") and c.is_local_domain("[IPv6:fd00::2]")
    assert Router(c).route("postmaster@[192.0.2.2]")[0].kind == "local"
