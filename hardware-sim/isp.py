#!/usr/bin/env python3
"""isp.py - the ISP side of the world: DNS, the relay, the Internet's MX sinks.

SYNOPSIS
    isp.py --netns ISPNS --run-dir DIR --control DIR/isp.sock
           [--domain edge.example] [--edge-host 10.64.0.2] [--edge-port 25]
           [--user edge:secret] [--etrn-reply 458|459|250|252] [--no-etrn] [--refuse-auth]
           [--dns-addr 192.0.2.53] [--relay-addr 192.0.2.25] [--relay-port 25 --relay-port 587]
           [--odmr-port 366]
           [--sink 198.51.100.10 --sink 198.51.100.11] [--tls-cert PEM --tls-key PEM]

DESCRIPTION
    One asyncio process, moved into the ISP namespace at start (before any
    thread exists), serving ispdns.DnsServer on --dns-addr:53 (UDP and
    TCP), isprelay.Relay on --relay-addr (25 and 587), ispodmr.OdmrServer
    on --relay-addr:366 (--odmr-port; RFC 2645: the customer's ATRN, the
    push over its connection) and a sink on each --sink address, port 25.  The addresses must exist in the namespace
    (simworld puts them on its lo).  Files live in --run-dir: held/,
    sinks/<addr>/, dns.log (one JSON line per query), and the relay's
    self-signed certificate relay-cert.pem (a client's CA file) with its
    key relay-key.pem (0600), made at start with the openssl CLI unless
    --tls-cert/--tls-key name existing ones.  The relay offers STARTTLS
    and AUTH only after it (isprelay.py).

    Defaults: customer domain edge.example delivered to 10.64.0.2:25 on
    ETRN; AUTH user "edge" password "secret".

CONTROL SOCKET
    JSON lines over --control (a unix socket: reachable from any network
    namespace), one reply per request, {"ok": true, ...} or {"ok": false, "error": ...}:
      {"cmd": "status"}
      {"cmd": "dns_count"}                    -> {"count": n}  queries so far
      {"cmd": "dns_log"}                      -> {"queries": [{t, proto, client, qname, qtype, rcode}, ...]}
      {"cmd": "dns_faults", "silent": true}   drop queries unanswered (still counted)
      {"cmd": "held"}                         -> {"messages": [...]}  mail held for customers
      {"cmd": "inject", "rcpt": "u@edge.example", "mail_from": "...", "data": "..."}
                                              hold a message as if the Internet had sent it
      {"cmd": "relay_faults", "etrn_reply": 458|459|250|252|null, "no_etrn": bool, "refuse_auth": bool,
       "atrn_reply": 450|451|453|null}
      {"cmd": "relay_log"}                    -> {"log": [...]}  held / etrn / etrn-delivery / relay events
      {"cmd": "sink_messages", "sink": "198.51.100.10"|null} -> {"messages": [...]}
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from email.utils import formatdate, make_msgid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ctlsock  # noqa: E402
import netns  # noqa: E402
from ispdns import DnsServer, Zone, serve_dns  # noqa: E402
from ispodmr import OdmrServer  # noqa: E402
from isprelay import MailStore, Relay, RelayFaults, make_cert, serve_sink, server_context  # noqa: E402


class Isp:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        sinks = {ip: f"mx.remote{i}.example" for i, ip in enumerate(args.sink, start=1)}
        self.zone = Zone.default(edge_ip=args.edge_host, relay_ip=args.relay_addr,
                                 dns_ip=args.dns_addr, sinks=sinks)
        self.dns = DnsServer(self.zone)
        self.store = MailStore(args.run_dir)
        users = dict(u.split(":", 1) for u in args.user)
        faults = RelayFaults(etrn_reply=args.etrn_reply, no_etrn=args.no_etrn, refuse_auth=args.refuse_auth)
        customers = {d: (args.edge_host, args.edge_port) for d in args.domain}
        cert, key = args.tls_cert, args.tls_key
        if not (cert and key):
            cert, key = make_cert(args.run_dir, "relay.isp.example", args.relay_addr)
        tls = server_context(cert, key)
        self.relay = Relay(self.store, self.zone, customers, users, faults, tls=tls)
        self.odmr = OdmrServer(self.store, list(customers), users, tls=tls, log=self.relay._log, faults=faults)
        self.cert = cert
        self.dns_log = open(os.path.join(args.run_dir, "dns.log"), "a")
        self._logged = 0

    async def start(self) -> None:
        a = self.args
        await serve_dns(self.dns, a.dns_addr, 53)
        await self.relay.serve(a.relay_addr, a.relay_port)
        await self.odmr.serve(a.relay_addr, a.odmr_port)
        for ip in a.sink:
            await serve_sink(self.store, ip)
        await ctlsock.serve(a.control, self.command)

    def flush_dns_log(self) -> None:
        for entry in self.dns.log[self._logged:]:
            self.dns_log.write(json.dumps(entry) + "\n")
        self._logged = len(self.dns.log)
        self.dns_log.flush()

    def command(self, req: dict) -> dict:
        cmd = req.pop("cmd")
        self.flush_dns_log()
        if cmd == "status":
            return dict(dns_count=self.dns.count, dns_silent=self.dns.silent, tls_cert=self.cert,
                        **self.relay.status())
        if cmd == "dns_count":
            return {"count": self.dns.count}
        if cmd == "dns_log":
            return {"queries": self.dns.log}
        if cmd == "dns_faults":
            self.dns.silent = bool(req.get("silent", False))
            return {"silent": self.dns.silent}
        if cmd == "held":
            return {"messages": self.store.held(req.get("domain"))}
        if cmd == "inject":
            return self.inject(**req)
        if cmd == "relay_faults":
            self.relay.faults.update(req)
            return self.relay.status()
        if cmd == "relay_log":
            return {"log": self.relay.log}
        if cmd == "sink_messages":
            return {"messages": self.store.sink_messages(req.get("sink"))}
        raise ValueError(f"unknown command {cmd!r}")

    def inject(self, rcpt: str, mail_from: str = "someone@remote1.example", data: str | None = None) -> dict:
        domain = rcpt.rpartition("@")[2].lower()
        cust = self.relay.customer_of(domain)
        if not cust:
            raise ValueError(f"{rcpt}: not a customer domain of this relay")
        if data is None:
            data = (f"From: <{mail_from}>\r\nTo: <{rcpt}>\r\nSubject: held for you\r\n"
                    f"Date: {formatdate(time.time())}\r\nMessage-ID: {make_msgid(domain='remote1.example')}\r\n"
                    f"\r\nThis message waited at the ISP until ETRN.\r\n")
        msg_id = self.store.hold(cust, mail_from, [rcpt], data)
        self.relay._log("held", domain=cust, rcpts=[rcpt], mail_from=mail_from, injected=True)
        return {"id": msg_id}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="isp.py", description="the simulated ISP: DNS, relay, MX sinks")
    p.add_argument("--netns", help="network namespace to serve in (default: the current one)")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--domain", action="append", help="customer domain held until ETRN (repeatable)")
    p.add_argument("--edge-host", default="10.64.0.2")
    p.add_argument("--edge-port", type=int, default=25)
    p.add_argument("--user", action="append", help="AUTH credentials user:password (repeatable)")
    p.add_argument("--etrn-reply", type=int, choices=[250, 252, 458, 459])
    p.add_argument("--no-etrn", action="store_true")
    p.add_argument("--refuse-auth", action="store_true")
    p.add_argument("--dns-addr", default="192.0.2.53")
    p.add_argument("--relay-addr", default="192.0.2.25")
    p.add_argument("--relay-port", type=int, action="append")
    p.add_argument("--odmr-port", type=int, default=366, help="the ODMR server's port (RFC 2645)")
    p.add_argument("--sink", action="append")
    p.add_argument("--tls-cert", help="the relay's certificate (PEM); default: made in --run-dir")
    p.add_argument("--tls-key", help="its private key (PEM)")
    a = p.parse_args(argv)
    if bool(a.tls_cert) != bool(a.tls_key):
        p.error("--tls-cert and --tls-key go together")
    a.domain = a.domain or ["edge.example"]
    a.user = a.user or ["edge:secret"]
    a.relay_port = a.relay_port or [25, 587]
    a.sink = a.sink or ["198.51.100.10", "198.51.100.11"]
    return a


async def amain(args: argparse.Namespace) -> int:
    isp = Isp(args)
    await isp.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"isp: ready dns={args.dns_addr} relay={args.relay_addr}:{args.relay_port} sinks={args.sink}", flush=True)
    while not stop.is_set():
        isp.flush_dns_log()
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
    isp.flush_dns_log()
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.netns and not netns.enter_or_complain(args.netns, "isp"):  # before any thread exists
        return 1
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
