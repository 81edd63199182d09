"""ispdns.py - the ISP's DNS server: authoritative for the test zones, counts queries.

SYNOPSIS
    zone = Zone.default(edge_ip="10.64.0.2")
    server = DnsServer(zone)                  # sans-IO: server.answer(wire, proto, client, now) -> wire
    await serve_dns(server, "192.0.2.53", 53)  # UDP and TCP on the running loop
    server.count, server.log

DESCRIPTION
    Answers from a fixed table (Zone), never recursing, for every name
    under `example.`:

      edge.example          MX 10 mail.edge.example (the edge host, 10.64.0.2)
                            MX 20 relay.isp.example (the ISP relay, 192.0.2.25)
      (the customer is the primary MX; the ISP relay is the higher-numbered,
      i.e. backup, MX that holds mail while the line is down: the seed's
      "ISP as secondary MX" set-up)
      isp.example           MX 10 relay.isp.example; ns.isp.example A 192.0.2.53
      remote1.example       MX 10 mx.remote1.example (198.51.100.10, a sink)
      remote2.example       MX 10 mx.remote2.example (198.51.100.11, a sink)
      nomx.example          no MX, A 198.51.100.10 (implicit MX, RFC 5321 5.1)
      nullmx.example        MX 0 . (null MX, RFC 7505)
      *.servfail.example    SERVFAIL
      other names under example.   NXDOMAIN (e.g. nxdomain.example)
      names outside example.       REFUSED (the sim is not a resolver)

    A name that exists without the asked type gets NOERROR with no
    answer and the SOA in the authority section (NODATA).  Every query is
    logged (time, protocol, client, name, type, rcode) and counted;
    `silent` (a fault) drops queries without answering (they are still
    counted: the packet did cross the link).

    DnsServer.answer() is pure apart from the log it appends to; the
    asyncio part is serve_dns() (UDP datagrams, TCP with 2-byte length
    prefixes, RFC 1035 4.2.2).
"""
from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 300
ORIGIN = dns.name.from_text("example.")
SOA = "ns.isp.example. hostmaster.isp.example. 1 3600 600 86400 300"


@dataclass
class Zone:
    """name (lower case, absolute) -> {type: [rdata text]}; plus SERVFAIL suffixes."""
    records: dict = field(default_factory=dict)
    servfail: tuple = ("servfail.example.",)

    @classmethod
    def default(cls, edge_ip: str = "10.64.0.2", relay_ip: str = "192.0.2.25",
                dns_ip: str = "192.0.2.53", sinks: dict | None = None) -> "Zone":
        sinks = sinks or {"198.51.100.10": "mx.remote1.example", "198.51.100.11": "mx.remote2.example"}
        r: dict = {}

        def add(name: str, rtype: str, *values: str) -> None:
            r.setdefault(name.lower().rstrip(".") + ".", {}).setdefault(rtype, []).extend(values)

        add("example", "SOA", SOA)
        add("example", "NS", "ns.isp.example.")
        add("edge.example", "MX", "10 mail.edge.example.", "20 relay.isp.example.")
        add("mail.edge.example", "A", edge_ip)
        add("gw.edge.example", "A", edge_ip)
        add("isp.example", "MX", "10 relay.isp.example.")
        add("relay.isp.example", "A", relay_ip)
        add("ns.isp.example", "A", dns_ip)
        for ip, host in sorted(sinks.items()):
            add(host, "A", ip)
            add(host.split(".", 1)[1], "MX", f"10 {host}.")
        add("nomx.example", "A", sorted(sinks)[0])
        add("nullmx.example", "MX", "0 .")
        return cls(r)

    def lookup(self, qname: str, rtype: str) -> tuple[int, list[str]]:
        """(rcode, rdata texts) for one question."""
        name = qname.lower()
        if any(name == s or name.endswith("." + s) for s in self.servfail):
            return dns.rcode.SERVFAIL, []
        if not dns.name.from_text(name).is_subdomain(ORIGIN):
            return dns.rcode.REFUSED, []
        node = self.records.get(name)
        if node is None:
            return dns.rcode.NXDOMAIN, []
        return dns.rcode.NOERROR, list(node.get(rtype, []))

    def mx_hosts(self, domain: str) -> list[tuple[int, str]]:
        """The relay's own routing table (no query, not counted): [(pref, ip)]."""
        rcode, mxs = self.lookup(domain.rstrip(".") + ".", "MX")
        if rcode != dns.rcode.NOERROR:
            return []
        if not mxs:
            return [(0, ip) for ip in self.lookup(domain.rstrip(".") + ".", "A")[1]]
        hosts = []
        for mx in mxs:
            pref, host = mx.split()
            if host == ".":
                return []  # null MX: the domain accepts no mail
            hosts += [(int(pref), ip) for ip in self.lookup(host, "A")[1]]
        return sorted(hosts)


class DnsServer:
    """Sans-IO: wire query in, wire answer out (None: stay silent)."""

    def __init__(self, zone: Zone):
        self.zone = zone
        self.count = 0
        self.log: list[dict] = []
        self.silent = False

    def answer(self, wire: bytes, proto: str, client: str, now: float | None = None) -> bytes | None:
        self.count += 1
        entry = dict(t=round(now if now is not None else time.time(), 3), proto=proto, client=client)
        self.log.append(entry)
        try:
            query = dns.message.from_wire(wire)
        except Exception as e:  # dnspython raises many types for junk
            entry.update(error=type(e).__name__)
            return None
        if not query.question:
            entry.update(error="no question")
            return None
        q = query.question[0]
        qname, qtype = q.name.to_text(), dns.rdatatype.to_text(q.rdtype)
        entry.update(qname=qname, qtype=qtype)
        if self.silent:
            entry.update(rcode="(silent)")
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.flags &= ~dns.flags.RA
        rcode, values = self.zone.lookup(qname, qtype)
        response.set_rcode(rcode)
        if values:
            response.answer.append(dns.rrset.from_text_list(q.name, TTL, dns.rdataclass.IN, q.rdtype, values))
        elif rcode in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            response.authority.append(dns.rrset.from_text_list(ORIGIN, TTL, dns.rdataclass.IN,
                                                               dns.rdatatype.SOA, [SOA]))
        entry.update(rcode=dns.rcode.to_text(rcode), answers=len(values))
        return response.to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer):
        self.server = server

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        reply = self.server.answer(data, "udp", addr[0])
        if reply is not None:
            self.transport.sendto(reply, addr)


async def _tcp_client(server: DnsServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")[0]
    try:
        while True:
            (n,) = struct.unpack("!H", await reader.readexactly(2))
            reply = server.answer(await reader.readexactly(n), "tcp", peer)
            if reply is None:
                continue
            writer.write(struct.pack("!H", len(reply)) + reply)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve_dns(server: DnsServer, host: str, port: int = 53) -> list:
    """Start UDP and TCP listeners; returns [transport, tcp_server]."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(server), local_addr=(host, port))
    tcp = await asyncio.start_server(lambda r, w: _tcp_client(server, r, w), host, port)
    return [transport, tcp]
