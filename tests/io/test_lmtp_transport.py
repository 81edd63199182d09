"""edgemail.delivery.lmtp against a real LMTP peer on loopback (hardware-sim upstream, aiosmtpd LMTP)."""

import pytest

from edgemail.config.model import Timeouts
from edgemail.envelope import Envelope, RcptStatus, Recipient
from edgemail.errors import TempFail
from edgemail.smtpc.session import SmtpClient
from edgemail.delivery import lmtp
from upstream import Faults, upstream_factory  # noqa: F401  (fixture)

MSG = b"From: a@lan.example\r\nSubject: lmtp\r\n\r\nbody\r\n"
RCPTS = (Recipient("ann@edge.example"), Recipient("bob@edge.example"), Recipient("cy@edge.example"))


@pytest.fixture
async def client():
    c = SmtpClient(helo_name="gw.test", timeouts=Timeouts(connect=5, iconnect=5))
    yield c
    await c.close()


async def test_per_recipient_attempts(upstream_factory, client):  # noqa: F811
    up = await upstream_factory(lmtp=True, faults=Faults(rcpt_replies={
        "lmtp:bob@edge.example": "452 4.2.2 Mailbox full",
        "lmtp:cy@edge.example": "550 5.1.1 No such user"}))
    env = Envelope("a@lan.example", RCPTS)
    got = await lmtp.deliver(client, "127.0.0.1", up.port, env, list(RCPTS), MSG, now=42.0)
    assert got["ann@edge.example"].status is RcptStatus.SENT
    assert got["bob@edge.example"].status is RcptStatus.DEFERRED and got["bob@edge.example"].dsn == "4.2.2"
    assert got["cy@edge.example"].status is RcptStatus.BOUNCED and got["cy@edge.example"].dsn == "5.1.1"
    assert all(a.relay == f"127.0.0.1:{up.port}" and a.at == 42.0 for a in got.values())
    assert up.messages[0].rcpt_tos == [r.address for r in RCPTS]
    assert up.messages[0].content.endswith(b"body\r\n")


async def test_connect_refused_raises_tempfail(upstream_factory, client):  # noqa: F811
    up = await upstream_factory(lmtp=True)
    port = up.port
    await up.close()
    with pytest.raises(TempFail):
        await lmtp.deliver(client, "127.0.0.1", port, Envelope("a@x", RCPTS[:1]), list(RCPTS[:1]), MSG, now=0.0)
