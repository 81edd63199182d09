"""daemon/hostaddrs.py - this host's own addresses, for a wildcard listener.

Owns: ``with_host_addresses(cfg)``: when a listener is bound to a wildcard
(``0.0.0.0``, ``::``), the Config with ``host_addresses`` set to the
addresses the kernel lists on every interface (rtnetlink through pyroute2:
no DNS, no packet on any wire; invariant 1).  A literal of one of them
(``postmaster@[192.168.1.1]``) is then ours, as RFC 5321 4.1.3 and
Postfix's ``inet_interfaces = all`` make it.  Read once at start (sendmail
fills class w the same way); an address that appears later (ppp0's, on a
call) is not among them.  Listeners bound to named addresses need none of
this: ``Config.listener_addresses`` names them.

Fails: never; a kernel that cannot be asked leaves ``host_addresses`` empty
(loopback and the named listeners' addresses stay ours).
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from edgemail.config.model import Config

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def interface_addresses() -> frozenset[IP]:
    """Every address on this host's interfaces (IFA_LOCAL: a point-to-point
    link's own end, not its peer's)."""
    try:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            found = [a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS") for a in ipr.get_addr()]
    except (ImportError, OSError):
        return frozenset()
    out = set()
    for text in found:
        try:
            out.add(ipaddress.ip_address(str(text).split("%")[0]))
        except ValueError:
            continue
    return frozenset(out)


def with_host_addresses(cfg: Config) -> Config:
    """CFG, with ``host_addresses`` when a listener is bound to a wildcard."""
    if not any(_wildcard(lst.address) for lst in cfg.listeners):
        return cfg
    return replace(cfg, host_addresses=interface_addresses())


def _wildcard(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_unspecified
    except ValueError:
        return address in ("", "*")
