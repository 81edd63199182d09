"""ODMR (RFC 2645), both halves, on loopback: the customer's ODMR client (the MTA
port's odmr: STARTTLS verified, AUTH, ATRN, then our listener serves the turned
connection) against an ISP edgemail (an ODMR listener with TLS and AUTH, the
runner's ATRN and its push).  Only the customer's own held mail crosses; the
refusals (no mail, not yours, a wrong password, no TLS) leave everything held."""

from __future__ import annotations

import logging
import subprocess

import pytest

from edgemail.clock import FakeClock
from edgemail.config import loader as config
from edgemail.daemon.mtaport import MtaPort
from edgemail.envelope import RcptStatus
from edgemail.smtpd.credentials import hash_password
from edgemail.smtpd.listener import SmtpListener
from runner_helpers import make_runner, make_store, submit

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("odmr-tls")
    crt, key = d / "isp.crt", d / "isp.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=odmr.isp.example",
                    "-addext", "subjectAltName=DNS:odmr.isp.example,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
    return str(crt), str(key)


class Isp:
    """The ISP: an ODMR listener (STARTTLS, AUTH) on its runner, two customers' mail held."""

    def __init__(self, tmp_path, cert, *, tls: bool = True) -> None:
        passwd = tmp_path / "isp.passwd"
        passwd.write_text(f"edge:{hash_password('edge-secret', log2n=4)}\nshop:{hash_password('x', log2n=4)}\n")
        listener = {"name": "odmr", "address": "127.0.0.1", "port": 0, "odmr": True, "greet_pause": 0}
        if tls:
            listener |= {"tls_cert": cert[0], "tls_key": cert[1]}
        else:
            listener |= {"auth_plaintext": True}
        self.cfg = config.from_dict({
            "hostname": "odmr.isp.example", "local_domains": ["isp.example"],
            "spool": {"directory": str(tmp_path / "isp-spool")}, "control": {"socket": str(tmp_path / "c")},
            "listen": [listener], "smtpd": {"auth_file": str(passwd)}, "dns": {"peer_dns_file": ""},
            "customer": [{"name": "edge", "domains": ["edge.example"], "user": "edge"},
                         {"name": "shop", "domains": ["shop.example"], "user": "shop"}]})
        self.store = make_store(self.cfg, FakeClock())
        self.runner = make_runner(self.cfg, self.store, self.store.clock)
        self.listener = SmtpListener(self.cfg, self.cfg.listeners[0], self.store, on_atrn=self.runner.atrn,
                                     trust_loopback=False)


async def customer(example_config, tmp_path, isp_port: int, cert, password="edge-secret"):
    """The customer: its spool and listener, and the MTA port whose odmr() asks the ISP at ISP_PORT."""
    secret = tmp_path / "odmr.secret"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    cfg = example_config(spool={"directory": str(tmp_path / "customer-spool")},
                         link={"etrn_host": "", "odmr": {"host": "127.0.0.1", "port": isp_port,
                                                         "user": "edge", "secret_file": str(secret),
                                                         "domains": ["edge.example"], "cafile": cert[0]}})
    store = make_store(cfg, FakeClock())
    listener = SmtpListener(cfg, cfg.listeners[0], store, trust_loopback=False)
    return store, MtaPort(cfg, store, runner=None, listeners=[listener])


async def test_odmr_pushes_the_customers_own_mail_over_its_connection(example_config, tmp_path, cert, caplog):
    caplog.set_level(logging.INFO)
    isp = Isp(tmp_path, cert)
    mine = await submit(isp.store, ["alice@edge.example", "bob@shop.example"], data=b"Subject: x\r\n\r\nheld\r\n")
    theirs = await submit(isp.store, ["carol@shop.example"])
    await isp.listener.start()
    try:
        store, port = await customer(example_config, tmp_path, isp.listener.port, cert)
        (result,) = await port.odmr(("edge.example",))
        assert (result.domain, result.code) == ("edge.example", 250), result
        (got,) = store.entries()                            # in our spool, by our listener
        assert [r.address for r in got.envelope.recipients] == ["alice@edge.example"]
        data = store.read_data(got.qid)
        assert data.startswith(b"Received: from odmr.isp.example ([127.0.0.1])") and data.endswith(b"held\r\n")
        assert b"with ESMTPS" in data.split(b"\r\n\r\n")[0] and got.envelope.proto == "ESMTPS"   # inside our TLS
        left = {e.qid: e for e in isp.store.entries()}
        assert set(left) == {mine, theirs} and left[mine].rcpt_status["alice@edge.example"] is RcptStatus.SENT
        assert left[mine].rcpt_status["bob@shop.example"] is not RcptStatus.SENT
        (again,) = await port.odmr(("edge.example",))
        assert (again.code, again.text) == (453, "4.0.0 You have no mail")
        (other,) = await port.odmr(("shop.example",))       # edge may not ask for shop's
        assert other.code == 450 and "shop.example is not a domain of yours" in other.text
        assert len(isp.store.entries()) == 2 and len(store.entries()) == 1
    finally:
        await isp.listener.close()
    log = caplog.text
    assert "odmr: relay=127.0.0.1:" in log and "reply=250" in log and "push=ended, messages=1, reason=closed" in log
    assert "NOQUEUE: atrn=edge.example, relay=[127.0.0.1]:" in log and "auth=edge, customers=edge" in log
    assert "edge-secret" not in log


async def test_odmr_refusals_leave_everything_held(example_config, tmp_path, cert):
    isp = Isp(tmp_path, cert)
    await submit(isp.store, ["alice@edge.example"])
    await isp.listener.start()
    try:
        store, port = await customer(example_config, tmp_path, isp.listener.port, cert, password="guess")
        (wrong,) = await port.odmr(("edge.example",))
        assert wrong.code == 0 and "authentication as edge" in wrong.text and "535" in wrong.text
    finally:
        await isp.listener.close()
    (tmp_path / "plain").mkdir()
    plain = Isp(tmp_path / "plain", cert, tls=False)
    await submit(plain.store, ["alice@edge.example"])
    await plain.listener.start()
    try:
        store, port = await customer(example_config, tmp_path, plain.listener.port, cert)
        (clear,) = await port.odmr(("edge.example",))
        assert clear.code == 0 and "does not offer STARTTLS" in clear.text   # no password in clear
    finally:
        await plain.listener.close()
    assert store.entries() == [] and len(isp.store.entries()) == 1 and len(plain.store.entries()) == 1


async def test_odmr_client_against_the_simulated_isps_odmr_server(example_config, tmp_path):
    """The customer's side against hardware-sim's ODMR server (written from RFC 2645
    without edgemail's code): the held mail lands in our spool, the server's log says
    AUTH went over TLS, a forced 451 is reported as such and keeps the mail."""
    from ispodmr import OdmrServer
    from isprelay import MailStore, RelayFaults, make_cert, server_context
    crt, key = make_cert(str(tmp_path), "relay.isp.example", "127.0.0.1")
    events: list[tuple[str, dict]] = []
    held = MailStore(str(tmp_path / "isp"))
    faults = RelayFaults()
    server = OdmrServer(held, ["edge.example"], {"edge": "edge-secret"}, tls=server_context(crt, key),
                        log=lambda event, **kw: events.append((event, kw)), faults=faults)
    held.hold("edge.example", "someone@far.test", ["alice@edge.example"],
              "Subject: waited\r\n\r\n.leading dot\r\nheld at the ISP\r\n")
    srv = await server.serve("127.0.0.1", 0)
    try:
        store, port = await customer(example_config, tmp_path, srv.sockets[0].getsockname()[1], (crt, key))
        faults.atrn_reply = 451
        (later,) = await port.odmr(("edge.example",))
        assert later.code == 451 and store.entries() == [] and len(held.held()) == 1
        faults.atrn_reply = None
        (result,) = await port.odmr(("edge.example",))
        assert result.code == 250, result
        (got,) = store.entries()
        assert store.read_data(got.qid).endswith(b"\r\n.leading dot\r\nheld at the ISP\r\n")   # dot-stuffing undone
        assert held.held() == []
    finally:
        srv.close()
    assert [kw for e, kw in events if e == "odmr-auth"] == [{"user": "edge", "ok": True, "tls": True}] * 2
    assert [kw["delivered"] for e, kw in events if e == "odmr-delivery"] == [1]
