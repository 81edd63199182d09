"""dnsserver.py - a tiny authoritative DNS server for tests (dnspython, UDP + TCP).

Zones are data::

    DnsServer({
        "example.org":   {"MX": [(10, "mx1.example.org"), (20, "mx2.example.org")], "TTL": 60},
        "mx1.example.org": {"A": ["127.0.0.1"]},
        "null.example":  {"MX": [(0, ".")]},
    }, servfail={"broken.example"})

A name listed without the asked type gets NOERROR with no answer (and an
SOA in the authority section, for negative caching); a name not listed gets
NXDOMAIN; names in ``servfail`` get SERVFAIL.  Every query is counted in
``queries`` as (name, type).  Loopback only.
"""

from __future__ import annotations

import asyncio
import struct

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

NEGATIVE_TTL = 120


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


class DnsServer:
    def __init__(self, zones: dict[str, dict], *, servfail: set[str] = frozenset(),
                 host: str = "127.0.0.1") -> None:
        self.zones = {_fqdn(k).lower(): v for k, v in zones.items()}
        self.servfail = {_fqdn(n).lower() for n in servfail}
        self.host = host
        self.port = 0
        self.queries: list[tuple[str, str]] = []
        self._udp = None
        self._tcp = None

    # ---------------------------------------------------------------- answers
    def answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        resp = dns.message.make_response(query)
        resp.flags |= dns.flags.AA
        q = query.question[0]
        name = q.name.to_text().lower()
        self.queries.append((name.rstrip("."), dns.rdatatype.to_text(q.rdtype)))
        if name in self.servfail:
            resp.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.zones:
            resp.set_rcode(dns.rcode.NXDOMAIN)
            resp.authority.append(self._soa(name))
        else:
            self._fill(resp, q, self.zones[name])
        return resp.to_wire()

    def _fill(self, resp, q, zone: dict) -> None:
        rtype = dns.rdatatype.to_text(q.rdtype)
        ttl = zone.get("TTL", 300)
        values = zone.get(rtype)
        if not values:
            resp.authority.append(self._soa(q.name.to_text()))
            return
        texts = ([f"{p} {_fqdn(h)}" for p, h in values] if rtype == "MX"
                 else [str(v) for v in values])
        resp.answer.append(dns.rrset.from_text_list(q.name, ttl, "IN", rtype, texts))

    def _soa(self, name: str):
        return dns.rrset.from_text(name, NEGATIVE_TTL, "IN", "SOA",
                                   f"ns.test. hostmaster.test. 1 3600 600 86400 {NEGATIVE_TTL}")

    # ---------------------------------------------------------------- serving
    async def start(self) -> "DnsServer":
        loop = asyncio.get_running_loop()
        server = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                out = server.answer(data)
                if out:
                    self.transport.sendto(out, addr)

        for _ in range(20):      # the UDP port may be taken for TCP: pick another
            self._udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=(self.host, 0))
            self.port = self._udp.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._tcp_client, self.host, self.port)
                return self
            except OSError:
                self._udp.close()
        raise OSError("no port free for both UDP and TCP")

    async def _tcp_client(self, reader, writer) -> None:
        try:
            while True:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
                out = self.answer(await reader.readexactly(n))
                if out:
                    writer.write(struct.pack("!H", len(out)) + out)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._udp:
            self._udp.close()
        if self._tcp:
            self._tcp.close()
