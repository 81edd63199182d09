"""Loaded at start-up by every Python process whose PYTHONPATH holds this
folder (tests/system/test_zero_dns.py).  With $EDGEMAIL_NODNS_LOG set, any
name resolution - getaddrinfo/gethostbyname(_ex) of a non-numeric name,
gethostbyaddr, getfqdn, getnameinfo without NI_NUMERICHOST - is written to
that file and fails.  With $EDGEMAIL_NODNS_PORT set, dnspython's default
resolver asks 127.0.0.1 on that port (the test's counting server)."""

import ipaddress
import os
import socket

_LOG = os.environ.get("EDGEMAIL_NODNS_LOG")


def _numeric(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        ipaddress.ip_address(str(host).split("%")[0])
        return True
    except ValueError:
        return False


def _forbidden(fn: str, arg) -> None:
    with open(_LOG, "a") as f:
        f.write(f"{os.getpid()} {fn} {arg!r}\n")
    raise socket.gaierror(socket.EAI_NONAME, f"name lookup forbidden in this test: {fn}({arg!r})")


def _install() -> None:
    orig_gai, orig_ghbn, orig_ghbn_ex = socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex
    orig_gni = socket.getnameinfo

    def getaddrinfo(host, *a, **k):
        if not _numeric(host):
            _forbidden("getaddrinfo", host)
        return orig_gai(host, *a, **k)

    def gethostbyname(host):
        if not _numeric(host):
            _forbidden("gethostbyname", host)
        return orig_ghbn(host)

    def gethostbyname_ex(host):
        if not _numeric(host):
            _forbidden("gethostbyname_ex", host)
        return orig_ghbn_ex(host)

    def gethostbyaddr(addr):
        _forbidden("gethostbyaddr", addr)

    def getfqdn(name=""):
        _forbidden("getfqdn", name)

    def getnameinfo(sockaddr, flags):
        if not flags & socket.NI_NUMERICHOST:
            _forbidden("getnameinfo", sockaddr)
        return orig_gni(sockaddr, flags)

    socket.getaddrinfo, socket.gethostbyname, socket.gethostbyname_ex = getaddrinfo, gethostbyname, gethostbyname_ex
    socket.gethostbyaddr, socket.getfqdn, socket.getnameinfo = gethostbyaddr, getfqdn, getnameinfo
    port = os.environ.get("EDGEMAIL_NODNS_PORT")
    if port:
        import dns.resolver
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = int(port)
        dns.resolver.default_resolver = r


if _LOG:
    _install()
