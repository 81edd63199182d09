"""dnscount — a counting DNS server for the benchmark's network namespace.

Usage: dnscount.py --listen 127.0.0.1 --port 53 --log FILE

Owns: one UDP and one TCP socket on the given address.  Every query that
arrives is appended to FILE as one line `time proto qtype qname` (flushed at
once, so the harness can count lines between two instants) and answered
NXDOMAIN at once, so that a resolver never waits for a timeout and the
measured speed of a mail system is not changed by the counting.

Never does: recursion, forwarding, or any traffic beyond its own sockets.
It runs inside the bench's private network namespace, whose resolv.conf
(/etc/netns/<ns>/resolv.conf, bind-mounted by `ip netns exec`) points at it.
"""
from __future__ import annotations

import argparse
import select
import socket
import struct
import time

QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX",
          16: "TXT", 28: "AAAA", 33: "SRV", 255: "ANY"}


def parse_question(msg: bytes) -> tuple[str, int, int]:
    """Return (qname, qtype, end offset of the question) of a DNS query."""
    labels, pos = [], 12
    while pos < len(msg):
        n = msg[pos]
        pos += 1
        if n == 0:
            break
        labels.append(msg[pos:pos + n].decode("ascii", "replace"))
        pos += n
    qtype = struct.unpack("!H", msg[pos:pos + 2])[0] if pos + 2 <= len(msg) else 0
    return ".".join(labels) + ".", qtype, pos + 4


def nxdomain(msg: bytes) -> bytes:
    """An NXDOMAIN answer echoing the query's id, RD bit and question."""
    _, _, end = parse_question(msg)
    qid, flags = struct.unpack("!HH", msg[:4])
    rflags = 0x8000 | (flags & 0x0100) | 0x0080 | 3     # QR, RD copied, RA, NXDOMAIN
    return struct.pack("!HHHHHH", qid, rflags, 1, 0, 0, 0) + msg[12:end]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((args.listen, args.port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((args.listen, args.port))
    tcp.listen(16)
    with open(args.log, "a", buffering=1) as log:
        log.write(f"# ready {time.time():.6f}\n")
        while True:
            ready, _, _ = select.select([udp, tcp], [], [])
            if udp in ready:
                msg, peer = udp.recvfrom(4096)
                if len(msg) >= 12:
                    name, qtype, _ = parse_question(msg)
                    log.write(f"{time.time():.6f} udp {QTYPES.get(qtype, qtype)} {name}\n")
                    udp.sendto(nxdomain(msg), peer)
            if tcp in ready:
                conn, _ = tcp.accept()
                conn.settimeout(2)
                try:
                    size = struct.unpack("!H", conn.recv(2))[0]
                    msg = b""
                    while len(msg) < size:
                        chunk = conn.recv(size - len(msg))
                        if not chunk:
                            break
                        msg += chunk
                    if len(msg) >= 12:
                        name, qtype, _ = parse_question(msg)
                        log.write(f"{time.time():.6f} tcp {QTYPES.get(qtype, qtype)} {name}\n")
                        reply = nxdomain(msg)
                        conn.sendall(struct.pack("!H", len(reply)) + reply)
                except (OSError, struct.error):
                    pass
                finally:
                    conn.close()


if __name__ == "__main__":
    main()
