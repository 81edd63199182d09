"""mx.MxResolver against tests/io/dnsserver.py on loopback."""

import asyncio
import json
import random
import socket

import pytest

from dnsserver import DnsServer
from edgemail.clock import FakeClock
from edgemail.config.model import DnsConfig
from edgemail.errors import PermFail, Scope, TempFail
from edgemail.delivery.mx import MxResolver

ZONES = {
    "example.org": {"MX": [(10, "mx1.example.org"), (10, "mx2.example.org"), (20, "mx3.example.org")],
                    "TTL": 60},
    "mx1.example.org": {"A": ["127.0.0.1"], "TTL": 600},
    "mx2.example.org": {"A": ["127.0.0.2"]},
    "mx3.example.org": {"AAAA": ["::1"]},
    "null.example": {"MX": [(0, ".")]},
    "plain.example": {"A": ["127.0.0.9"]},
    "dangling.example": {"MX": [(10, "gone.example")]},
}


@pytest.fixture
async def dns():
    srv = await DnsServer(ZONES, servfail={"broken.example"}).start()
    yield srv
    await srv.close()


def resolver(srv, tmp_path, clock=None, **kw):
    cfg = DnsConfig(nameservers=("127.0.0.1",), port=srv.port, timeout=2.0)
    return MxResolver(cfg, cache_file=str(tmp_path / "dns-cache.json"), clock=clock or FakeClock(),
                      rng=random.Random(7), **kw)


async def test_mx_ordered_with_addresses(dns, tmp_path):
    got = await resolver(dns, tmp_path).targets("example.org")
    assert {t.host for t in got[:2]} == {"mx1.example.org", "mx2.example.org"}
    assert got[2].host == "mx3.example.org" and got[2].addresses == ("::1",)
    assert dict((t.host, t.addresses) for t in got)["mx1.example.org"] == ("127.0.0.1",)


async def test_implicit_mx(dns, tmp_path):
    (t,) = await resolver(dns, tmp_path).targets("plain.example")
    assert t.implicit and t.addresses == ("127.0.0.9",)


@pytest.mark.parametrize("domain,dsn", [("null.example", "5.1.10"), ("nowhere.example", "5.1.2"),
                                        ("dangling.example", "5.4.4")])
async def test_permanent(dns, tmp_path, domain, dsn):
    with pytest.raises(PermFail) as e:
        await resolver(dns, tmp_path).targets(domain)
    assert e.value.dsn == dsn


async def test_servfail_defers(dns, tmp_path):
    with pytest.raises(TempFail) as e:
        await resolver(dns, tmp_path).targets("broken.example")
    assert e.value.scope is Scope.SITE and e.value.dsn == "4.4.3"


async def test_unreachable_nameserver_defers_as_link(tmp_path):
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)    # receives, never answers
    sink.bind(("127.0.0.1", 0))
    try:
        cfg = DnsConfig(nameservers=("127.0.0.1",), port=sink.getsockname()[1], timeout=0.5)
        with pytest.raises(TempFail) as e:
            await MxResolver(cfg).targets("example.org")
        assert e.value.scope is Scope.LINK and "timed out" in e.value.reason
    finally:
        sink.close()


async def test_no_nameservers_defers_as_link(tmp_path):
    cfg = DnsConfig(nameservers=(), peer_dns_file=str(tmp_path / "missing"))
    r = MxResolver(cfg, resolv_conf=str(tmp_path / "also-missing"))
    with pytest.raises(TempFail) as e:
        await r.targets("example.org")
    assert e.value.scope is Scope.LINK
    assert e.value.reason == (f"no nameservers (none in [dns] nameservers, {tmp_path / 'missing'} or "
                              f"{tmp_path / 'also-missing'})"), "where it looked, and no guess about a link"


async def test_peer_dns_file_reloaded(dns, tmp_path):
    peer = tmp_path / "resolv.conf"
    cfg = DnsConfig(nameservers=(), peer_dns_file=str(peer), port=dns.port, timeout=2.0)
    r = MxResolver(cfg, resolv_conf=str(tmp_path / "none"))
    assert r.reload_nameservers() == ()                    # link down: no peer DNS yet
    peer.write_text("nameserver 127.0.0.1\n")              # pppd usepeerdns on link-up
    assert r.reload_nameservers() == ("127.0.0.1",)
    assert (await r.targets("plain.example"))[0].addresses == ("127.0.0.9",)


async def test_no_query_at_construction(dns, tmp_path):
    before = asyncio.all_tasks()
    resolver(dns, tmp_path)
    MxResolver.from_config(type("C", (), {"dns": DnsConfig(), "spool_dir": str(tmp_path)})())
    assert asyncio.all_tasks() == before          # nothing started that could query later
    assert dns.queries == []


async def test_cache_ttl_on_fake_clock(dns, tmp_path):
    clock = FakeClock()
    r = resolver(dns, tmp_path, clock)
    await r.targets("example.org")
    n = len(dns.queries)
    await r.targets("example.org")
    assert len(dns.queries) == n, "second lookup within TTL must come from the cache"
    clock.advance(61)                                       # MX TTL 60 expired, mx1 A (600) not
    await r.targets("example.org")
    new = dns.queries[n:]
    assert ("example.org", "MX") in new and ("mx1.example.org", "A") not in new
    assert ("mx2.example.org", "A") not in new              # default TTL 300 still fresh


async def test_negative_answers_cached(dns, tmp_path):
    r = resolver(dns, tmp_path)
    for _ in range(2):
        with pytest.raises(PermFail):
            await r.targets("nowhere.example")
    assert dns.queries.count(("nowhere.example", "MX")) == 1


async def test_servfail_not_cached(dns, tmp_path):
    r = resolver(dns, tmp_path)
    for _ in range(2):
        with pytest.raises(TempFail):
            await r.targets("broken.example")
    assert dns.queries.count(("broken.example", "MX")) == 2


async def test_cache_survives_restart(dns, tmp_path):
    clock = FakeClock()
    await resolver(dns, tmp_path, clock).targets("example.org")
    n = len(dns.queries)
    saved = json.loads((tmp_path / "dns-cache.json").read_text())
    assert "example.org/MX" in saved["entries"]
    again = resolver(dns, tmp_path, clock)                  # "restart": new object, same file
    got = await again.targets("example.org")
    assert len(dns.queries) == n and len(got) == 3
    clock.advance(3600)
    await resolver(dns, tmp_path, clock).targets("example.org")
    assert len(dns.queries) > n                             # expired across the restart too


async def test_lookups_side_by_side_each_save_the_cache(dns, tmp_path):
    """A queue run delivers two messages at once: their lookups save the
    cache concurrently (once two writers of one temporary file lost a rename)."""
    r = resolver(dns, tmp_path, FakeClock())
    got = await asyncio.gather(*(r.targets(d) for d in ["example.org", "plain.example"] * 4))
    assert all(got)
    (tmp_path / "alone").mkdir()
    alone = resolver(dns, tmp_path / "alone", FakeClock())
    await alone.targets("example.org")
    await alone.targets("plain.example")
    assert r.queries == alone.queries                   # the same question went out once
    saved = json.loads((tmp_path / "dns-cache.json").read_text())
    assert {"example.org/MX", "plain.example/MX"} <= set(saved["entries"])
    assert [p.name for p in tmp_path.iterdir() if ".tmp." in p.name] == []


async def test_corrupt_cache_file_ignored(dns, tmp_path, caplog):
    (tmp_path / "dns-cache.json").write_text("{not json")
    got = await resolver(dns, tmp_path).targets("plain.example")
    assert got[0].addresses == ("127.0.0.9",) and "unreadable" in caplog.text
    json.loads((tmp_path / "dns-cache.json").read_text())   # replaced by a good one
