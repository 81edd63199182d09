"""ISP mode, pure: customers in the config, hold routes, who may ETRN/ATRN what, MX past us."""

import pytest

from edgemail.address import parse_path
from edgemail.config import loader as config
from edgemail.delivery.customers import Client, Flush, atrn_request, beyond_us, covers, etrn_request
from edgemail.delivery.mx import Target
from edgemail.delivery.port import Job
from edgemail.delivery.routing import Router
from edgemail.envelope import Recipient
from edgemail.smtpd.policy import RelayPolicy
from tests.core.test_config import test_errors_name_file_line_key as check_config_error

CUSTOMERS = [
    {"name": "edge", "domains": ["edge.example", ".edge.example"], "networks": ["10.64.0.0/24"],
     "user": "edge"},
    {"name": "shop", "domains": ["shop.example"], "user": "shopkeeper", "deliver": "[192.0.2.7]:2525"},
    {"name": "lab", "domains": ["lab.example"], "networks": ["198.51.100.0/24", "2001:db8::/32"]},
]


def cfg(**over):
    data = {"hostname": "mx.isp.example", "local_domains": ["isp.example"],
            "lan_networks": ["192.168.0.0/16"], "customer": CUSTOMERS,
            "routes": {"held.example": "hold", "*": {"route": "mx", "expensive": True}}}
    data.update(over)
    return config.from_dict(data)


EDGE, SHOP, LAB = Client("10.64.0.2"), Client("203.0.113.9", user="shopkeeper"), Client("198.51.100.4")
STRANGER, LAN = Client("203.0.113.66"), Client("192.168.1.5", trusted=True)


# ---------------------------------------------------------------- routing and relay

@pytest.mark.parametrize("address,kind,target,host,port", [
    ("a@edge.example", "hold", "edge", "edge.example", 25),
    ("a@pc1.edge.example", "hold", "edge", "pc1.edge.example", 25),
    ("a@shop.example", "hold", "shop", "192.0.2.7", 2525),
    ("a@held.example", "hold", "", "held.example", 25),
    ("a@sub.shop.example", "mx", "", "sub.shop.example", 25),
], ids=["customer", "customer-subdomain", "customer-host", "lan-hold", "not-held"])
def test_customer_domains_are_routed_hold_for_their_customer(address, kind, target, host, port):
    (d,) = Router(cfg()).route(address)
    assert (d.kind, d.target, d.host, d.port, d.dialdelay) == (kind, target, host, port, False)


def test_a_hold_route_never_pays_dialdelay():
    c = cfg(routes={"held.example": {"route": "hold", "dialdelay": True}})
    assert [d.dialdelay for d in Router(c).route("a@held.example")] == [False]


@pytest.mark.parametrize("rcpt,trusted,refused", [
    ("a@edge.example", False, False),                  # held: anyone may send to it
    ("a@pc1.edge.example", False, False),
    ("a@held.example", False, False),
    ("a@elsewhere.example", False, True),              # not ours, not held: no relay
    ('"a%b"@edge.example', False, True),              # routed addresses never, even to held domains
    ("a!b@edge.example", True, True),                  # ... not even from the LAN
    ("a%b@elsewhere.example", True, False),            # the LAN relays anywhere (not held)
])
def test_held_domains_take_mail_from_anyone_but_never_routed_addresses(rcpt, trusted, refused):
    path = parse_path(f"<{rcpt}>", allow_null=False)
    _, refusal = RelayPolicy(cfg()).rcpt_decision(trusted, path.address)
    assert bool(refusal) is refused, refusal
    if refused:    # a route in disguise: address.ROUTED_REFUSAL (16 §4); else no relay
        assert refusal.startswith("550 5.7.1" if "%" in rcpt or "!" in rcpt else "554 5.7.1"), refusal


# ---------------------------------------------------------------- ETRN

@pytest.mark.parametrize("node,client,want", [
    ("edge.example", EDGE, Flush(("edge",), "edge.example")),
    ("@edge.example", EDGE, Flush(("edge",), "@edge.example")),
    ("pc1.edge.example", EDGE, Flush(("edge",), "pc1.edge.example")),
    ("#edge", EDGE, Flush(("edge",), "#edge")),
    ("#EDGE", Client("203.0.113.1", user="edge"), Flush(("edge",), "#EDGE")),   # the AUTH user, anywhere
    ("shop.example", SHOP, Flush(("shop",), "shop.example")),
    ("lab.example", Client("2001:db8::9"), Flush(("lab",), "lab.example")),
    ("@example", EDGE, Flush(("edge",), "@example")),        # only what the client may ask for
    ("held.example", LAN, Flush(("",), "held.example")),
    ("elsewhere.example", LAN, None),                        # no one holds it: the LAN's -qR run
    ("elsewhere.example", STRANGER, None),
], ids=["domain", "at-domain", "subdomain", "queue", "queue-by-user", "user", "ipv6-net", "parent",
        "lan-hold", "not-held-lan", "not-held-stranger"])
def test_etrn_flushes_what_the_client_may_ask_for(node, client, want):
    assert etrn_request(cfg(), node, client) == want


@pytest.mark.parametrize("node,client,words", [
    ("edge.example", STRANGER, "customer's network or authenticated as its user"),
    ("edge.example", SHOP, "customer's network"),            # another customer's user
    ("shop.example", Client("203.0.113.9", user="edge"), "customer's network"),
    ("#shop", EDGE, "customer's network"),
    ("#nobody", EDGE, "no such queue"),
    ("@example", STRANGER, "customer's network"),
    ("held.example", STRANGER, "held for the LAN only"),
    ("edge.example", LAN, "customer's network"),             # the LAN is not the customer
])
def test_etrn_refused_with_459_naming_the_node(node, client, words):
    reply = etrn_request(cfg(), node, client)
    assert isinstance(reply, str) and reply.startswith(f"459 4.7.1 Node {node} not allowed: "), reply
    assert words in reply


def job(address, decision_from=None):
    (d,) = Router(cfg()).route(address)
    return Job(Recipient(address), d, address)


@pytest.mark.parametrize("flush,address,wanted", [
    (Flush(("edge",), "edge.example"), "a@edge.example", True),
    (Flush(("edge",), "edge.example"), "a@pc1.edge.example", False),   # ETRN domain: that domain only
    (Flush(("edge",), "@edge.example"), "a@pc1.edge.example", True),
    (Flush(("edge",), "#edge"), "a@pc1.edge.example", True),
    (Flush(("edge",), "#edge"), "a@shop.example", False),               # never another customer's
    (Flush(("edge", "shop"), "@example"), "a@shop.example", True),
    (Flush(("",), "held.example"), "a@held.example", True),
    (Flush(("",), "held.example"), "a@edge.example", False),
    (Flush(("edge",), "*"), "a@elsewhere.example", False),              # not held at all
    (Flush(("edge",), "edge.example,pc1.edge.example"), "a@pc1.edge.example", True),
])
def test_a_flush_takes_only_its_customers_held_jobs(flush, address, wanted):
    assert flush.wants(job(address)) is wanted


def test_covers():
    assert covers("@example.org", "a.b.example.org") and not covers("@example.org", "xexample.org")
    assert covers("Example.ORG.", "example.org") and covers("#q", "anything.example")


# ---------------------------------------------------------------- ATRN

@pytest.mark.parametrize("user,domains,want", [
    ("edge", (), Flush(("edge",), "*")),
    ("edge", ("edge.example",), Flush(("edge",), "edge.example")),
    ("edge", ("pc1.edge.example", "EDGE.example"), Flush(("edge",), "pc1.edge.example,edge.example")),
    ("shopkeeper", ("shop.example",), Flush(("shop",), "shop.example")),
    (None, ("edge.example",), "530 5.7.0 Authentication required"),
    ("edge", ("shop.example",), "450 4.7.1 ATRN request refused: shop.example is not a domain of yours"),
    ("mallory", (), "450 4.7.1 ATRN request refused: no domains are held for mallory"),
], ids=["all", "one", "two", "other-user", "no-auth", "not-yours", "no-customer"])
def test_atrn_needs_auth_and_the_users_own_domains(user, domains, want):
    assert atrn_request(cfg(), user, domains) == want


# ---------------------------------------------------------------- MX past us

def test_beyond_us_drops_us_and_every_mx_less_preferred():
    ts = [Target("mail.edge.example", 10, addresses=("10.64.0.2",)),
          Target("mx2.edge.example", 10, addresses=("10.64.0.3",)),
          Target("mx.isp.example", 20, addresses=("192.0.2.25",)),
          Target("mx3.edge.example", 30, addresses=("10.64.0.4",))]
    assert [t.host for t in beyond_us(ts, ["MX.isp.example."], [])] == ["mail.edge.example", "mx2.edge.example"]
    assert [t.host for t in beyond_us(ts, ["other"], ["10.64.0.3"])] == []            # us at 10: nothing better
    assert beyond_us(ts, ["other"], ["203.0.113.1"]) == ts                            # not listed: all of them


# ---------------------------------------------------------------- the config

BASE = 'local_domains = ["isp.example"]\n'


@pytest.mark.parametrize("text,line,key,words", [
    (BASE + '[[customer]]\nname = "a"\ndomains = ["a.example"]\n', 3, "customer.name", "nobody could ask"),
    (BASE + '[[customer]]\nname = "a b"\ndomains = ["a.example"]\nuser = "a"\n', 3, "customer.name",
     "queue name"),
    (BASE + '[[customer]]\nname = "a"\nuser = "a"\n', 2, "customer.domains", "the customer's domains"),
    (BASE + '[[customer]]\nname = "a"\nuser = "a"\ndomains = ["isp.example"]\n', 5, "customer.domains",
     "local_domains"),
    (BASE + '[[customer]]\nname = "a"\nuser = "a"\ndomains = ["a.example"]\n[[customer]]\nname = "b"\n'
     'user = "b"\ndomains = ["a.example"]\n', 9, "customer.domains", "customer 'a''s already"),
    (BASE + '[[customer]]\nname = "a"\nuser = "a"\ndomains = ["a.example"]\n[[customer]]\nname = "A"\n'
     'user = "b"\ndomains = ["b.example"]\n', 7, "customer.name", "named twice"),
    (BASE + '[[customer]]\nname = "a"\nuser = "a"\ndomains = ["a.example"]\nnetworks = ["10.0.0.0/33"]\n', 6,
     "customer.networks", "networks"),
    (BASE + '[[customer]]\nname = "a"\nuser = "a"\ndomains = ["a.example"]\ndeliver = "smtp"\n', 6,
     "customer.deliver", '"mx" or "[HOST]:PORT"'),
    (BASE + '[[customer]]\nname = "a"\nuser = "a"\ndomains = ["a.example"]\nqueue = "x"\n', 6,
     "customer.queue", "unknown key"),
    (BASE + '[[customer]]\nname = "a"\nuser = "a"\ndomains = ["a.example"]\n[routes]\n"a.example" = "mx"\n', 5,
     "customer.domains", "[routes] has an entry"),
    (BASE + '[[listen]]\naddress = "127.0.0.1"\nodmr = true\n', 4, "listen.odmr", "[[customer]] with a user"),
    (BASE + '[[customer]]\nname = "a"\nuser = "a"\ndomains = ["a.example"]\n[[listen]]\naddress = "127.0.0.1"\n'
     'odmr = true\n', 8, "listen.odmr", "needs AUTH: set [smtpd] auth_file"),
    (BASE + '[link]\nodmr = { host = "192.0.2.25", user = "e" }\n', 3, "link.odmr", "secret_file"),
    (BASE + '[link]\nodmr = { host = "192.0.2.25", user = "e", secret_file = "s", prot = 366 }\n', 3,
     "link.odmr", "unknown key"),
    (BASE + '[link]\netrn_host = "192.0.2.25"\nodmr = { host = "192.0.2.25", user = "e", secret_file = "s" }\n',
     4, "link.odmr", "one way"),
], ids=["nobody", "bad-name", "no-domains", "local-domain", "two-owners", "same-name", "network",
        "deliver", "unknown", "route-clash", "odmr-listener", "odmr-no-auth", "odmr-secret", "odmr-unknown", "odmr-and-etrn"])
def test_isp_config_errors_name_file_line_key(tmp_path, text, line, key, words):
    check_config_error(tmp_path, text, line, key, words)


def test_isp_config_loads_and_dumps(tmp_path):
    c = cfg(link={"odmr": {"host": "[192.0.2.25]", "user": "edge", "secret_file": "/etc/edgemail/odmr.secret"}})
    assert [x.name for x in c.customers] == ["edge", "shop", "lab"]
    assert c.customer_of("PC1.Edge.Example.").name == "edge" and c.customer_of("isp.example") is None
    assert c.holds_mail_for("held.example") and not c.holds_mail_for("elsewhere.example")
    assert (c.link.odmr.host, c.link.odmr.port, c.link.odmr.tls_verify) == ("192.0.2.25", 366, True)
    text = config.dump(c)
    assert '[[customer]]\nname = "shop"' in text and 'deliver = "[192.0.2.7]:2525"' in text
    assert 'odmr = { host = "192.0.2.25", port = 366, user = "edge"' in text
