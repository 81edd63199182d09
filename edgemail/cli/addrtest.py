"""cli/addrtest.py - ``sendmail -bv`` (verify addresses, send nothing) and
``sendmail -bt`` (a minimal address test mode): where each address goes.

Owns: ``verify(cfg, addresses)`` and ``address_test(cfg, lines)``, and the
one line per final recipient both print, in sendmail's words::

    bob@edge.example... deliverable: mailer local, maildir /var/mail/bob/Maildir, user bob@edge.example
    far@remote.test... deliverable: mailer smarthost, host [192.0.2.25]:25 (waits for the link), user far@remote.test
    nobody@edge.example... 550 5.1.1 <nobody@edge.example>... User unknown

An alias is expanded (``root... via root -> admin``) unless PrivacyOptions
``restrictexpand`` is set and the caller is not root or the edgemail user
(sendmail: restrict -bv): then only "deliverable" or the refusal is said.
The route is the daemon's own (delivery/routing.py with the config's
routes and aliases); nothing is looked up in DNS: an "mx" route names the
domain whose MX hosts the delivery will ask for.

``-bt`` reads lines from stdin: each word is an address (a leading
sendmail ruleset list such as ``3,0`` is skipped, with a note: edgemail has
no rulesets); a line starting with ``/`` or ``.`` (sendmail's test-mode
commands) is answered as not supported.

Never: queues, writes or talks to the daemon.

Exit: 0 every address deliverable, 67 (EX_NOUSER) one refused, 78 the
aliases file does not load.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable

from edgemail.cli.base import EX_CONFIG, EX_NOUSER, EX_OK, err
from edgemail.errors import ConfigError

_RULESETS = re.compile(r"^\d+(,\d+)*$")


def _router(cfg):
    from edgemail.delivery.users import local_router
    return local_router(cfg)


def describe(d, cfg, *, expand: bool = True) -> str:
    """One final recipient's line (after ``ADDR... ``)."""
    if d.kind == "error":
        return d.reply
    if not expand:
        return "deliverable"
    where = {"local": f"maildir {d.target}", "maildir": f"maildir {d.target}",
             "hold": f"held for customer {d.target} until it asks (ETRN/ATRN)" if d.target else
                     "held until someone asks with ETRN",
             "mx": f"host {d.host or split_domain(d.address)} (its MX hosts, looked up at delivery)",
             "smarthost": f"host {cfg.SmartHost}"}.get(d.kind, f"host [{d.host}]:{d.port}")
    link = " (waits for the link)" if d.expensive else ""
    via = f", via {' -> '.join(d.via)}" if d.via else ""
    return f"deliverable: mailer {d.kind}, {where}{link}, user {d.address}{via}"


def split_domain(address: str) -> str:
    return address.rpartition("@")[2]


def _may_expand(cfg) -> bool:
    if "restrictexpand" not in cfg.PrivacyOptions or os.geteuid() == 0:
        return True
    import pwd
    try:
        return os.geteuid() == pwd.getpwnam(cfg.RunAsUser or "edgemail").pw_uid
    except KeyError:
        return False


def verify(cfg, addresses: Iterable[str], out=None) -> int:
    """``sendmail -bv ADDR...``: each address's route; 67 when one is refused."""
    out = out or sys.stdout
    router = _checked_router(cfg)
    if router is None:
        return EX_CONFIG
    expand = _may_expand(cfg)
    return max([_say(router, cfg, a, expand, out) for a in addresses], default=EX_OK)


def _checked_router(cfg):
    """The Router of -bv/-bt; None (said on stderr) when the aliases or users cannot be read."""
    try:
        return _router(cfg)
    except ConfigError as exc:
        err("sendmail", f"configuration error: {exc}")
        return None


def _say(router, cfg, address: str, expand: bool, out) -> int:
    decisions = router.route(address)
    if not expand and any(d.kind != "error" for d in decisions):
        decisions = decisions[:1]
    code = EX_OK
    for d in decisions:
        out.write(f"{d.address if expand else address}... {describe(d, cfg, expand=expand)}\n")
        if d.permanent:
            code = EX_NOUSER
    return code


def address_test(cfg, lines: Iterable[str], out=None) -> int:
    """``sendmail -bt``: the route of every address read, one line at a time."""
    out = out or sys.stdout
    router = _checked_router(cfg)
    if router is None:
        return EX_CONFIG
    out.write("ADDRESS TEST MODE (edgemail: the route of each address; no rulesets)\n"
              "Enter <address> [<address> ...]\n")
    code, expand = EX_OK, _may_expand(cfg)
    for line in lines:
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0][0] in "/.":
            out.write(f"> {line.strip()}\n{words[0]}: not supported (edgemail has no rulesets or macros)\n")
            continue
        if _RULESETS.match(words[0]):
            out.write(f"(ruleset {words[0]} skipped: edgemail has no rulesets)\n")
            words = words[1:]
        for word in words:
            out.write(f"> {word}\n")
            code = max(code, _say(router, cfg, word, expand, out))
        out.flush()
    return code
