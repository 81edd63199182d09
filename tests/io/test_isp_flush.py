"""ISP mode on loopback: held mail for two customers, ETRN authorised per customer
(networks), ETRN domain / @domain / #queue, the flush to the customer's host or MX
(us and worse left out), 458 with our line down, and the ATRN push over the
customer's own connection into the customer's listener."""

from __future__ import annotations

import asyncio
import smtplib

import pytest

from dnsserver import DnsServer
from edgemail.clock import FakeClock
from edgemail.config.model import DnsConfig
from edgemail.delivery.mx import MxResolver
from edgemail.envelope import RcptStatus
from edgemail.smtpd.listener import SmtpListener
from edgemail.config import loader as config
from runner_helpers import FakeLink, make_runner, make_store, submit
from upstream import upstream_factory  # noqa: F401  (fixture)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def clock():
    return FakeClock()


def isp_cfg(tmp_path, edge_to, shop_to):
    """The ISP's configuration (not the example's: edge.example is a customer here)."""
    return config.from_dict({
        "hostname": "mx.isp.example", "local_domains": ["isp.example"], "lan_networks": ["192.168.0.0/16"],
        "spool": {"directory": str(tmp_path / "isp-spool")}, "control": {"socket": str(tmp_path / "isp.sock")},
        "listen": [{"name": "isp", "address": "127.0.0.1", "port": 0, "strict": True}],
        "local": {"maildir": str(tmp_path / "isp-mail" / "%u"), "create_mailboxes": True}, "dns": {"peer_dns_file": ""},
        "routes": {"*": {"route": "mx", "expensive": True}},
        "customer": [
            {"name": "edge", "domains": ["edge.example", ".edge.example"], "networks": ["127.0.0.1/32"],
             "user": "edge", "deliver": edge_to},
            {"name": "shop", "domains": ["shop.example"], "networks": ["127.0.0.2/32"], "deliver": shop_to}]})


def isp(tmp_path, clock, edge_to, shop_to="[127.0.0.1]:1", **kw):
    """(config, store, runner) of the ISP."""
    cfg = isp_cfg(tmp_path, edge_to, shop_to)
    store = make_store(cfg, clock)
    return cfg, store, make_runner(cfg, store, clock, **kw)


async def listening(cfg, store, runner) -> SmtpListener:
    """The ISP's listener: loopback is not trusted here (customers come from outside)."""
    lst = SmtpListener(cfg, cfg.listeners[0], store, on_etrn=runner.etrn, on_commit=runner.on_commit,
                       check_rcpt=runner.check_rcpt, trust_loopback=False)
    await lst.start()
    return lst


def etrn(port: int, node: str, source: str = "127.0.0.1") -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="customer.test", source_address=(source, 0)) as s:
        s.ehlo()
        code, text = s.docmd("ETRN", node)
    return code, text.decode()


async def test_each_customers_etrn_flushes_only_its_own_domains(tmp_path, clock, upstream_factory):
    up_edge, up_shop = await upstream_factory(), await upstream_factory()
    cfg, store, runner = isp(tmp_path, clock, f"[127.0.0.1]:{up_edge.port}", f"[127.0.0.1]:{up_shop.port}")
    both = await submit(store, ["a@edge.example", "b@shop.example"])
    await submit(store, ["c@edge.example"])
    await submit(store, ["d@shop.example"])
    await runner.queue_run(flush=True)                 # an ordinary run never takes held mail
    assert up_edge.messages == [] and up_shop.messages == [] and len(store.entries()) == 3
    lst = await listening(cfg, store, runner)
    try:
        refused = await asyncio.to_thread(etrn, lst.port, "shop.example")          # edge's address
        assert refused[0] == 459 and "not allowed" in refused[1], refused
        code, text = await asyncio.to_thread(etrn, lst.port, "#shop", "127.0.0.2")
        assert (code, text) == (253, "2.0.0 OK, 2 pending messages for node #shop started")
        await runner.idle()
        assert sorted(r for m in up_shop.messages for r in m.rcpt_tos) == ["b@shop.example", "d@shop.example"]
        assert up_edge.messages == []                    # never another customer's mail
        assert store.get(both).rcpt_status["a@edge.example"] is not RcptStatus.SENT
        assert (await asyncio.to_thread(etrn, lst.port, "#edge", "127.0.0.2"))[0] == 459
        code, text = await asyncio.to_thread(etrn, lst.port, "edge.example")
        assert (code, text) == (253, "2.0.0 OK, 2 pending messages for node edge.example started")
        await runner.idle()
        assert sorted(r for m in up_edge.messages for r in m.rcpt_tos) == ["a@edge.example", "c@edge.example"]
        assert store.entries() == []
        assert await asyncio.to_thread(etrn, lst.port, "edge.example") == (
            251, "2.0.0 OK, no messages waiting for node edge.example")
    finally:
        await lst.close()


async def test_etrn_domain_is_that_domain_and_at_domain_its_subdomains(tmp_path, clock, upstream_factory):
    up = await upstream_factory()
    cfg, store, runner = isp(tmp_path, clock, f"[127.0.0.1]:{up.port}")
    await submit(store, ["a@edge.example"])
    await submit(store, ["b@pc1.edge.example"])
    assert await runner.etrn("pc1.edge.example", _client("127.0.0.1")) == (
        "253 2.0.0 OK, 1 pending messages for node pc1.edge.example started")
    await runner.idle()
    assert [m.rcpt_tos for m in up.messages] == [["b@pc1.edge.example"]]
    await submit(store, ["c@pc2.edge.example"])
    assert (await runner.etrn("@edge.example", _client("127.0.0.1"))).startswith("253 2.0.0 OK, 2 pending")
    await runner.idle()
    assert sorted(r for m in up.messages for r in m.rcpt_tos) == [
        "a@edge.example", "b@pc1.edge.example", "c@pc2.edge.example"]


def _client(ip, user=None):
    from edgemail.delivery.customers import Client
    return Client(ip, user=user)


async def test_held_domains_take_mail_from_anyone_and_routed_addresses_never(tmp_path, clock):
    cfg, store, runner = isp(tmp_path, clock, "[127.0.0.1]:1")
    lst = await listening(cfg, store, runner)

    def send():
        with smtplib.SMTP("127.0.0.1", lst.port, local_hostname="far.test") as s:
            s.ehlo()
            s.mail("someone@far.test")
            return [s.rcpt(r)[0] for r in ("a@edge.example", "a%b@edge.example", "b!c@shop.example",
                                             "x@elsewhere.test")]
    try:
        assert await asyncio.to_thread(send) == [250, 550, 550, 554]      # 550 5.7.1: routes in disguise (16 §4)
    finally:
        await lst.close()


async def test_etrn_with_our_line_down_says_458_and_starts_nothing(tmp_path, clock, upstream_factory):
    up = await upstream_factory()
    cfg, store, runner = isp(tmp_path, clock, f"[127.0.0.1]:{up.port}", link=FakeLink(state="down"))
    q = await submit(store, ["a@edge.example"])
    reply = await runner.etrn("edge.example", _client("127.0.0.1"))
    assert reply.startswith("458 4.4.2 Unable to queue messages for node edge.example now: 1 message(s) held, but our line is down")
    await runner.idle()
    assert up.messages == [] and store.get(q).attempts == 0


ZONES = {
    "edge.example": {"MX": [(10, "mail.edge.example"), (20, "mx.isp.example")]},
    "mail.edge.example": {"A": ["127.0.0.1"]},
    "mx.isp.example": {"A": ["127.0.0.9"]},
    "pc1.edge.example": {"MX": [(5, "mx.isp.example"), (10, "mail.edge.example")]},
}


async def test_flush_by_mx_goes_past_us_and_never_to_a_worse_mx(tmp_path, clock, upstream_factory):
    up = await upstream_factory()
    dns = await DnsServer(ZONES).start()
    try:
        cfg = isp_cfg(tmp_path, "mx", "[127.0.0.1]:1")
        store = make_store(cfg, clock)
        resolver = MxResolver(DnsConfig(nameservers=("127.0.0.1",), port=dns.port, timeout=2.0),
                              cache_file=str(tmp_path / "dns.json"), clock=clock)
        runner = make_runner(cfg, store, clock, resolver=resolver, mx_port=up.port)
        q1 = await submit(store, ["a@edge.example"])
        q2 = await submit(store, ["b@pc1.edge.example"])          # we are its best MX: nowhere to go
        assert (await runner.etrn("@edge.example", _client("127.0.0.1"))).startswith("253")
        await runner.idle()
        assert [m.rcpt_tos for m in up.messages] == [["a@edge.example"]]
        assert q1 not in {e.qid for e in store.entries()}
        entry = store.get(q2)
        assert entry.rcpt_status["b@pc1.edge.example"] is RcptStatus.DEFERRED
        assert "no MX host is more preferred than us" in entry.last_reply["b@pc1.edge.example"]
    finally:
        await dns.close()


async def test_atrn_push_goes_over_the_customers_connection_into_its_listener(example_config, clock, tmp_path):
    """Both halves of the turned connection, real code and a real TCP connection: the
    ISP's push (runner.atrn + the push over the transport) and the customer's listener
    adopting the connection it opened (the AUTH and ATRN words themselves: test_smtpd_core)."""
    isp = isp_cfg(tmp_path, "mx", "mx")
    isp_store = make_store(isp, clock)
    isp_runner = make_runner(isp, isp_store, clock)
    mine = await submit(isp_store, ["alice@edge.example", "bob@shop.example"],
                        data=b"Subject: held\r\n\r\nfor edge\r\n")
    theirs = await submit(isp_store, ["carol@shop.example"])
    customer = example_config(spool={"directory": str(tmp_path / "customer-spool")})
    cust_store = make_store(customer, clock)
    cust_listener = SmtpListener(customer, customer.listeners[0], cust_store, trust_loopback=False)

    accepted: asyncio.Future = asyncio.get_running_loop().create_future()
    server = await asyncio.get_running_loop().create_server(
        lambda: _Accept(accepted), "127.0.0.1", 0)
    try:
        transport, _ = await asyncio.get_running_loop().create_connection(
            asyncio.Protocol, "127.0.0.1", server.sockets[0].getsockname()[1])
        session = cust_listener.adopt(transport)             # the customer serves its own connection
        isp_side = await accepted
        reply, push = isp_runner.atrn("edge", (), "[127.0.0.1]:4000")
        assert reply == "250 2.0.0 OK, now reversing the connection" and push is not None
        assert isp_runner.atrn("edge", (), "[127.0.0.1]:4001")[0].startswith("451 4.3.0")   # one at a time
        report = await push(isp_side, b"")
        await session.done
        assert (report.selected, report.sent) == (1, 1) and session.commits == 1
        (got,) = cust_store.entries()
        assert [r.address for r in got.envelope.recipients] == ["alice@edge.example"]
        data = cust_store.read_data(got.qid)
        assert data.startswith(b"Received: from mx.isp.example ([127.0.0.1])") and data.endswith(b"for edge\r\n")
        left = {e.qid: e for e in isp_store.entries()}
        assert set(left) == {mine, theirs}                  # bob's and carol's stay held for shop
        assert left[mine].rcpt_status["alice@edge.example"] is RcptStatus.SENT
        assert isp_runner.atrn("edge", (), "[127.0.0.1]:4002")[0] == "453 4.0.0 You have no mail"
        assert isp_runner.atrn("edge", ("shop.example",), "x")[0].startswith("450 4.7.1")
    finally:
        server.close()


class _Accept(asyncio.Protocol):
    def __init__(self, fut: asyncio.Future) -> None:
        self.fut = fut

    def connection_made(self, transport) -> None:
        transport.pause_reading()
        self.fut.set_result(transport)
