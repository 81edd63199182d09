"""The connection rate per client on real sockets (smtpd/policy.py
ConnectionRate): past ``client_connection_rate_limit`` connections within
``connection_rate_time_unit`` an outside client is told ``421 4.7.0`` and
closed, other clients are served, the window ends on the listener's clock
(a FakeClock: no sleeping), and trusted clients are never counted."""

from __future__ import annotations

import logging

import pytest

from edgemail.clock import FakeClock
from tests.io.smtpd_helpers import make_store, running
from tests.io.test_smtpd_slowloris import connect_from

pytestmark = pytest.mark.timeout(60)


async def banners(port: int, source: str, n: int) -> list[str]:
    """N sessions from SOURCE, one after the other: each one's banner (and
    what follows a refusal: the close)."""
    out = []
    for _ in range(n):
        c = await connect_from(port, source)
        out.append(c.banner if c.banner.startswith("220") else c.banner + "\n" + await c.reply())
        await c.close()
    return out


async def test_a_client_over_its_connection_rate_gets_421_and_its_window_ends(example_config, caplog):
    caplog.set_level(logging.INFO, logger="edgemail.smtpd")
    cfg = example_config(smtpd={"client_connection_rate_limit": 3, "connection_rate_time_unit": "60s"})
    clock = FakeClock()
    async with running(cfg, make_store(cfg.spool_dir), trust_loopback=False, clock=clock) as smtpd:
        first = await banners(smtpd.port, "127.0.0.2", 5)
        other = await banners(smtpd.port, "127.0.0.3", 1)
        clock.advance(59.0)
        still = await banners(smtpd.port, "127.0.0.2", 1)
        clock.advance(1.0)
        later = await banners(smtpd.port, "127.0.0.2", 1)
    assert [b[:4] for b in first[:3]] == ["220 "] * 3, first
    assert first[3:] == ["421 4.7.0 gw.edge.example Error: too many connections from 127.0.0.2\n<EOF>"] * 2
    assert other[0].startswith("220 "), "another client is not counted with 127.0.0.2"
    assert still[0].startswith("421 4.7.0 "), "the window lasts the time unit"
    assert later[0].startswith("220 "), "a new window opens after the time unit"
    refused = [r.getMessage() for r in caplog.records if "connection refused" in r.getMessage()]
    assert len(refused) == 3 and all(
        "relay=[127.0.0.2]:" in m and "reply=421 4.7.0 gw.edge.example Error: too many connections from "
        "127.0.0.2" in m for m in refused), refused


@pytest.mark.parametrize("trust", ["loopback", "lan_networks"])
async def test_trusted_clients_are_not_rate_limited(example_config, trust):
    lan = {"lan_networks": ["127.0.0.0/8"]} if trust == "lan_networks" else {}
    cfg = example_config(smtpd={"client_connection_rate_limit": 2}, **lan)
    async with running(cfg, make_store(cfg.spool_dir), trust_loopback=trust == "loopback",
                       clock=FakeClock()) as smtpd:
        out = await banners(smtpd.port, "127.0.0.2", 10)
        assert len(smtpd.admission.rate) == 0, "trusted clients take no memory either"
    assert all(b.startswith("220 ") for b in out), out


async def test_zero_turns_the_limit_off(example_config):
    cfg = example_config(smtpd={"client_connection_rate_limit": 0})
    async with running(cfg, make_store(cfg.spool_dir), trust_loopback=False, clock=FakeClock()) as smtpd:
        out = await banners(smtpd.port, "127.0.0.2", 70)
    assert all(b.startswith("220 ") for b in out), [b for b in out if not b.startswith("220")]


async def test_the_default_admits_sixty_a_minute_from_an_outside_client(example_config):
    cfg = example_config()
    assert (cfg.smtpd.client_connection_rate_limit, cfg.smtpd.connection_rate_time_unit) == (60, 60.0)
    async with running(cfg, make_store(cfg.spool_dir), trust_loopback=False, clock=FakeClock()) as smtpd:
        out = await banners(smtpd.port, "127.0.0.2", 61)
    assert all(b.startswith("220 ") for b in out[:60]) and out[60].startswith("421 4.7.0 "), out[59:]
