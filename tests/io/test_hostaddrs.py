"""daemon/hostaddrs.py against the kernel: a wildcard listener's host
addresses are the ones `ip addr` lists (rtnetlink, no DNS); a listener bound
to a named address asks nothing."""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess

import pytest

from edgemail.daemon.hostaddrs import interface_addresses, with_host_addresses


def ip_addr() -> set:
    out = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, check=True).stdout)
    return {ipaddress.ip_address(a["local"]) for link in out for a in link.get("addr_info", [])}


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2's ip to compare with")
def test_the_host_addresses_are_the_kernels(example_config):
    assert interface_addresses() == ip_addr()
    wild = with_host_addresses(example_config(listen=[{"name": "any", "address": "0.0.0.0", "port": 0}]))
    assert wild.host_addresses == ip_addr()
    assert all(wild.is_local_domain(f"[{ip}]" if ip.version == 4 else f"[IPv6:{ip}]") for ip in ip_addr())
    named = example_config()                   # 127.0.0.1: nothing to read
    assert with_host_addresses(named) is named
