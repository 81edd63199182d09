"""isprelay.py - the ISP's mail relay (holds the customer's mail, honours ETRN) and the Internet's MX sinks.

SYNOPSIS
    store = MailStore(run_dir)
    cert, key = make_cert(run_dir, "relay.isp.example", "192.0.2.25")
    relay = Relay(store, zone, customers={"edge.example": ("10.64.0.2", 25)}, users={"edge": "secret"},
                  tls=server_context(cert, key))
    await relay.serve("192.0.2.25", [25, 587])
    await serve_sink(store, "198.51.100.10")

DESCRIPTION
    A second SMTP peer written without edgemail's code (aiosmtpd and
    smtplib only), so that edgemail's client and server meet something
    they were not written against.

    Relay rules (RCPT TO):
      * a customer domain (or a subdomain of one): accepted from anyone and
        HELD in <run_dir>/held/, one JSON file per message and domain;
      * any other domain: only after AUTH (PLAIN or LOGIN; credentials
        from --user), then relayed at once to the domain's MX from the
        zone table (no DNS query, so the DNS counter counts only the
        customer's queries); the outcome is in relay_log (sent / failed:
        null MX, no MX, connect error; with auth=<user> and tls=true|false);
      * otherwise 554 5.7.1 Relaying denied.

    TLS, as a real ISP: STARTTLS is offered on both ports with a
    self-signed certificate (make_cert: the openssl CLI, ECDSA P-256,
    CN and subjectAltName DNS:<hostname>, IP:<relay address>, so a client
    that pins the certificate as its CA file verifies it, host name
    included).  AUTH (PLAIN, LOGIN) is advertised only after STARTTLS; an
    AUTH before it gets 538 5.7.11.  Every AUTH outcome is in relay_log
    (event "auth": user, ok, tls; never the password).  Without a TLS
    context (Relay(tls=None)) there is no STARTTLS and so no AUTH at all.

    ETRN (RFC 1985), advertised in EHLO:
      ETRN edge.example     the messages held for that domain
      ETRN @edge.example    ... and for its subdomains
      ETRN #edge.example    the queue named so (queues are the customer domains)
    replies: 253 OK, <n> pending messages for node <x> started /
    251 OK, no messages waiting for node <x> / 459 Node <x> not allowed:
    not a customer domain / 501 Syntax: ETRN [@|#]node.  After a 253 the
    relay connects to the customer's host (10.64.0.2:25 by default) over
    the link and delivers; delivered messages leave held/, failed ones
    stay (and are logged) for the next ETRN.
    Faults (RelayFaults, at start or through isp.py's control socket):
    etrn_reply = 250|252|458|459 forces that reply (250/252 still start
    the delivery, as sendmail's "250 2.0.0 Queuing for node X started"),
    no_etrn = 500 for ETRN and no ETRN in EHLO, refuse_auth = 535 5.7.8
    for every AUTH (right or wrong credentials).

    Sinks: SMTP servers that accept everything and store each message as
    JSON in <run_dir>/sinks/<address>/.
"""
from __future__ import annotations

import asyncio
import json
import os
import smtplib
import ssl
import subprocess
import time
from dataclasses import asdict, dataclass

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from ispdns import Zone

ETRN_CODES = (250, 252, 458, 459)
ATRN_CODES = (450, 451, 453)


@dataclass
class RelayFaults:
    etrn_reply: int | None = None
    no_etrn: bool = False
    refuse_auth: bool = False
    #: the ODMR server (ispodmr.py) answers every ATRN so
    atrn_reply: int | None = None

    def update(self, changes: dict) -> None:
        codes = {"etrn_reply": ETRN_CODES, "atrn_reply": ATRN_CODES}
        for key, value in changes.items():
            if key not in self.__dataclass_fields__:
                raise ValueError(f"unknown relay fault {key!r}")
            if key in codes and value is not None and int(value) not in codes[key]:
                raise ValueError(f"{key} must be one of {codes[key]} or null")
            setattr(self, key, int(value) if key in codes and value is not None else value)


def make_cert(directory: str, hostname: str, ip: str, days: int = 7) -> tuple[str, str]:
    """A self-signed certificate for the relay in `directory`: (cert path, key path).

    The key is written 0600 and never shown: openssl's own chatter is kept
    only to explain a failure, and it never contains the key."""
    cert, key = os.path.join(directory, "relay-cert.pem"), os.path.join(directory, "relay-key.pem")
    old = os.umask(0o077)
    try:
        out = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", str(days), "-subj", f"/CN={hostname}",
             "-addext", f"subjectAltName=DNS:{hostname},IP:{ip}",
             "-keyout", key, "-out", cert], capture_output=True, text=True, timeout=30)
    finally:
        os.umask(old)
    if out.returncode != 0:
        raise RuntimeError(f"openssl could not make the relay's certificate: {out.stderr.strip()[-500:]}")
    os.chmod(cert, 0o644)
    return cert, key


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


class MailStore:
    """JSON files under the run dir: held/ (relay) and sinks/<addr>/ (sinks)."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.held_dir = os.path.join(run_dir, "held")
        self.sinks_dir = os.path.join(run_dir, "sinks")
        os.makedirs(self.held_dir, exist_ok=True)
        os.makedirs(self.sinks_dir, exist_ok=True)
        self._n = 0

    def _save(self, directory: str, record: dict) -> str:
        os.makedirs(directory, exist_ok=True)
        self._n += 1
        name = f"{time.time():.6f}-{os.getpid()}-{self._n}.json"
        tmp = os.path.join(directory, "." + name)
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, os.path.join(directory, name))
        return name

    def hold(self, domain: str, mail_from: str, rcpts: list[str], data: str) -> str:
        return self._save(self.held_dir, dict(domain=domain, mail_from=mail_from, rcpts=rcpts,
                                              data=data, received=time.time()))

    def held(self, domain: str | None = None) -> list[dict]:
        out = []
        for name in sorted(os.listdir(self.held_dir)):
            if name.startswith("."):
                continue
            with open(os.path.join(self.held_dir, name)) as f:
                rec = json.load(f)
            if domain is None or rec["domain"] == domain:
                out.append({**rec, "id": name})
        return out

    def release(self, msg_id: str) -> None:
        os.unlink(os.path.join(self.held_dir, msg_id))

    def sink(self, addr: str, record: dict) -> None:
        self._save(os.path.join(self.sinks_dir, addr), record)

    def sink_messages(self, addr: str | None = None) -> list[dict]:
        out = []
        for sub in sorted(os.listdir(self.sinks_dir)):
            if addr and sub != addr:
                continue
            for name in sorted(os.listdir(os.path.join(self.sinks_dir, sub))):
                if not name.startswith("."):
                    with open(os.path.join(self.sinks_dir, sub, name)) as f:
                        out.append(json.load(f))
        return out


def _auth_user(session) -> str | None:
    data = session.auth_data if session.authenticated else None
    return data.login.decode(errors="replace") if isinstance(data, LoginPassword) else None


def _domain(addr: str) -> str:
    return addr.rpartition("@")[2].strip("<> ").lower().rstrip(".")


class EtrnSMTP(SMTP):
    """aiosmtpd's SMTP plus the ETRN verb."""

    async def smtp_ETRN(self, arg: str | None) -> None:
        await self.push(await self.event_handler.etrn((arg or "").strip()))


class Relay:
    """The relay's handler (aiosmtpd hooks) and its ETRN delivery."""

    def __init__(self, store: MailStore, zone: Zone, customers: dict, users: dict,
                 faults: RelayFaults | None = None, hostname: str = "relay.isp.example",
                 tls: ssl.SSLContext | None = None):
        self.store, self.zone = store, zone
        self.customers = {d.lower(): hp for d, hp in customers.items()}
        self.users = users
        self.faults = faults or RelayFaults()
        self.hostname = hostname
        self.tls = tls
        self.log: list[dict] = []
        self.tasks: set = set()
        self.flush_locks: dict[str, asyncio.Lock] = {}

    # -- serving -------------------------------------------------------------

    def factory(self) -> SMTP:
        return EtrnSMTP(self, hostname=self.hostname, ident="ISP relay (hardware-sim)", tls_context=self.tls,
                        auth_require_tls=True, authenticator=self.authenticate, timeout=120)

    async def serve(self, host: str, ports: list[int]) -> list:
        loop = asyncio.get_running_loop()
        return [await loop.create_server(self.factory, host, port) for port in ports]

    # -- policy ---------------------------------------------------------------

    def customer_of(self, domain: str) -> str | None:
        for cust in self.customers:
            if domain == cust or domain.endswith("." + cust):
                return cust
        return None

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        user = auth_data.login.decode(errors="replace") if isinstance(auth_data, LoginPassword) else ""
        ok = (not self.faults.refuse_auth and isinstance(auth_data, LoginPassword)
              and self.users.get(user) == auth_data.password.decode(errors="replace"))
        self._log("auth", mechanism=mechanism, user=user, ok=ok, tls=session.ssl is not None,
                  refused_by_fault=self.faults.refuse_auth)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if not self.faults.no_etrn:
            responses.insert(-1, "250-ETRN")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.customer_of(_domain(address)) or session.authenticated:
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"
        return "554 5.7.1 Relaying denied"

    async def handle_DATA(self, server, session, envelope):
        data = envelope.content.decode("utf-8", errors="surrogateescape") \
            if isinstance(envelope.content, bytes) else envelope.content
        held: dict[str, list[str]] = {}
        onward: list[str] = []
        for rcpt in envelope.rcpt_tos:
            cust = self.customer_of(_domain(rcpt))
            if cust:
                held.setdefault(cust, []).append(rcpt)
            else:
                onward.append(rcpt)
        for cust, rcpts in held.items():
            self.store.hold(cust, envelope.mail_from, rcpts, data)
            self._log("held", domain=cust, rcpts=rcpts, mail_from=envelope.mail_from)
        if onward:
            how = dict(auth=_auth_user(session), tls=session.ssl is not None)
            self._spawn(self._relay_onward(envelope.mail_from, onward, data, how))
        return "250 2.0.0 OK: queued"

    # -- ETRN -------------------------------------------------------------------

    async def etrn(self, arg: str) -> str:
        if self.faults.no_etrn:
            return '500 Error: command "ETRN" not recognized'
        if not arg or " " in arg or arg in ("@", "#"):
            return "501 5.5.4 Syntax: ETRN [@|#]node"
        node = arg.lstrip("@#").lower().rstrip(".")
        if arg.startswith("@"):
            domains = [c for c in self.customers if c == node or c.endswith("." + node)]
        else:
            domains = [c for c in self.customers if c == node]
        if not domains:
            self._log("etrn", arg=arg, reply=459)
            return f"459 4.7.1 Node {node} not allowed: not a customer domain of this relay"
        forced = self.faults.etrn_reply
        if forced in (458, 459):
            self._log("etrn", arg=arg, reply=forced)
            return (f"458 4.4.0 Unable to queue messages for node {node}" if forced == 458
                    else f"459 4.7.1 Node {node} not allowed: refused by configuration")
        pending = sum(len(self.store.held(d)) for d in domains)
        for d in domains:
            self._spawn(self.flush(d))
        self._log("etrn", arg=arg, reply=forced or (253 if pending else 251), pending=pending)
        if forced == 250:
            return f"250 2.0.0 Queuing for node {node} started"
        if forced == 252:
            return f"252 OK, pending messages for node {node} started"
        if pending:
            return f"253 OK, {pending} pending messages for node {node} started"
        return f"251 OK, no messages waiting for node {node}"

    async def flush(self, domain: str) -> None:
        """Deliver what is held for `domain` to the customer's host; one run per
        domain at a time (a second ETRN during a run waits, then finds what is left)."""
        lock = self.flush_locks.setdefault(domain, asyncio.Lock())
        async with lock:
            await self._flush(domain)

    async def _flush(self, domain: str) -> None:
        msgs = self.store.held(domain)
        if not msgs:                    # logged too: a test can see that a run ended
            self._log("etrn-delivery", domain=domain, status="empty", delivered=0)
            return
        host, port = self.customers[domain]
        try:
            sent = await asyncio.to_thread(self._deliver_batch, host, port, msgs)
        except (OSError, smtplib.SMTPException) as e:
            self._log("etrn-delivery", domain=domain, host=f"{host}:{port}", status="deferred", error=str(e))
            return
        for msg_id in sent:
            self.store.release(msg_id)
        self._log("etrn-delivery", domain=domain, host=f"{host}:{port}", status="sent",
                  delivered=len(sent), kept=len(msgs) - len(sent))

    def _deliver_batch(self, host: str, port: int, msgs: list[dict]) -> list[str]:
        sent = []
        with smtplib.SMTP(host, port, local_hostname=self.hostname, timeout=60) as smtp:
            for msg in msgs:
                try:
                    smtp.sendmail(msg["mail_from"], msg["rcpts"], msg["data"].encode("utf-8", "surrogateescape"))
                    sent.append(msg["id"])
                except smtplib.SMTPResponseException as e:
                    self._log("etrn-delivery", id=msg["id"], status="refused", reply=f"{e.smtp_code} {e.smtp_error!r}")
                    smtp.rset()
        return sent

    # -- onward relaying ---------------------------------------------------------

    async def _relay_onward(self, mail_from: str, rcpts: list[str], data: str, how: dict) -> None:
        by_domain: dict[str, list[str]] = {}
        for r in rcpts:
            by_domain.setdefault(_domain(r), []).append(r)
        for domain, group in by_domain.items():
            hosts = self.zone.mx_hosts(domain)
            if not hosts:
                self._log("relay", domain=domain, rcpts=group, status="failed", error="no MX (null MX or unknown)",
                          **how)
                continue
            _, ip = hosts[0]
            try:
                await asyncio.to_thread(self._send, ip, mail_from, group, data)
                self._log("relay", domain=domain, rcpts=group, relay=ip, status="sent", **how)
            except (OSError, smtplib.SMTPException) as e:
                self._log("relay", domain=domain, rcpts=group, relay=ip, status="failed", error=str(e), **how)

    def _send(self, ip: str, mail_from: str, rcpts: list[str], data: str) -> None:
        with smtplib.SMTP(ip, 25, local_hostname=self.hostname, timeout=30) as smtp:
            smtp.sendmail(mail_from, rcpts, data.encode("utf-8", "surrogateescape"))

    # -- helpers -----------------------------------------------------------------

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _log(self, event: str, **kw) -> None:
        entry = dict(t=round(time.time(), 3), event=event, **kw)
        self.log.append(entry)
        print("isprelay: " + json.dumps(entry), flush=True)

    def status(self) -> dict:
        return dict(faults=asdict(self.faults), held=len(self.store.held()), customers=self.customers)


class Sink:
    """An Internet MX that keeps everything it is given."""

    def __init__(self, store: MailStore, addr: str):
        self.store, self.addr = store, addr

    async def handle_DATA(self, server, session, envelope):
        content = envelope.content
        data = content.decode("utf-8", errors="surrogateescape") if isinstance(content, bytes) else content
        self.store.sink(self.addr, dict(sink=self.addr, mail_from=envelope.mail_from, rcpts=envelope.rcpt_tos,
                                        data=data, peer=session.peer[0], helo=session.host_name,
                                        received=time.time()))
        return "250 2.0.0 OK: stored"


async def serve_sink(store: MailStore, addr: str, port: int = 25):
    loop = asyncio.get_running_loop()
    sink = Sink(store, addr)
    return await loop.create_server(lambda: SMTP(sink, hostname=f"sink-{addr}", ident="sink"), addr, port)
