"""pppdopts.py - the pppd command-line subset fakepppd understands (pure).

SYNOPSIS
    opts = parse(sys.argv[1:], read_file=open_text, peers_dir="/etc/ppp/peers")
    opts.device, opts.speed, opts.connect, opts.idle, ...

DESCRIPTION
    pppd's grammar: options are words, some take one argument; a word
    that starts with "/" (or "tty") is the serial device, a number is the
    speed, "a.b.c.d:e.f.g.h" sets local:remote addresses.  `file F`
    reads more words from F and `call NAME` from <peers_dir>/NAME, with
    shell-like quoting and `#` comments (as pppd's options files).

    Understood: connect, disconnect, init, nodetach, updetach, detach,
    defaultroute, nodefaultroute, replacedefaultroute, usepeerdns,
    ipparam, linkname, idle, maxconnect, persist, nopersist, maxfail,
    holdoff, call, file, unit, ifname, ip-up-script, ip-down-script,
    and fakepppd's own `netns NAME` (enter that network namespace first).
    Accepted and ignored (they are about PPP negotiation, locking or
    modem lines, which the simulated link does not have): see IGNORED
    and IGNORED_WITH_ARG.  Refused by name: NOT_SIMULATED (``demand``).
    Anything else is "unrecognized option", as pppd says it, and fakepppd
    exits 2.

    No I/O here apart from the read_file callback; errors raise
    OptionError with pppd's wording.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Callable

IGNORED = {
    "noauth", "auth", "crtscts", "nocrtscts", "cdtrcts", "modem", "local", "lock", "nolock",
    "noipdefault", "hide-password", "show-password", "noccp", "novj", "novjccomp", "nobsdcomp",
    "nodeflate", "noaccomp", "nopcomp", "nopredictor1", "debug", "noipv6", "+ipv6", "passive",
    "silent", "proxyarp", "noproxyarp", "ipcp-accept-local", "ipcp-accept-remote", "nomagic",
    "default-asyncmap", "receive-all", "xonxoff", "nomultilink", "noendpoint", "refuse-pap",
    "refuse-chap", "refuse-eap", "refuse-mschap", "refuse-mschap-v2", "require-pap",
    "require-chap", "require-mschap", "require-mschap-v2", "persist-ipcp", "noremoteip",
    "lcp-echo-adaptive", "noktune", "ktune", "dump", "nosendip", "noip", "ip",
}
IGNORED_WITH_ARG = {
    "user", "password", "remotename", "name", "asyncmap", "welcome", "logfile", "logfd",
    "kdebug", "ms-dns", "ms-wins", "domain", "lcp-echo-interval", "lcp-echo-failure",
    "lcp-max-configure", "lcp-max-failure", "lcp-max-terminate", "lcp-restart",
    "ipcp-max-configure", "ipcp-max-failure", "ipcp-max-terminate", "ipcp-restart",
    "connect-delay", "mtu", "mru", "netmask", "remotenumber", "escape", "pppoe",
}
NUMERIC = {"idle", "maxconnect", "maxfail", "holdoff", "unit", "mtu", "mru", "kdebug",
           "lcp-echo-interval", "lcp-echo-failure", "connect-delay"}
STRING = {"connect": "connect", "disconnect": "disconnect", "init": "init", "ipparam": "ipparam",
          "linkname": "linkname", "ifname": "ifname", "ip-up-script": "ip_up",
          "ip-down-script": "ip_down", "netns": "netns"}
INT = {"idle": "idle", "maxconnect": "maxconnect", "maxfail": "maxfail", "holdoff": "holdoff",
       "unit": "unit"}
FLAGS = {"nodetach": ("nodetach", True), "updetach": ("nodetach", True), "detach": ("nodetach", False),
         "defaultroute": ("defaultroute", True), "nodefaultroute": ("defaultroute", False),
         "replacedefaultroute": ("replacedefaultroute", True), "usepeerdns": ("usepeerdns", True),
         "persist": ("persist", True), "nopersist": ("persist", False)}
ADDR_PAIR = re.compile(r"^(\d{1,3}(?:\.\d{1,3}){3})?:(\d{1,3}(?:\.\d{1,3}){3})?$")


#: pppd options fakepppd refuses by name (exit 2) rather than as "unrecognized"
NOT_SIMULATED = {
    "demand": "dial-on-demand is edgemail's link manager's job; the simulator dials when started",
}


class OptionError(Exception):
    """Bad options: pppd exits 2."""


@dataclass
class Options:
    device: str | None = None
    speed: int | None = None
    connect: str | None = None
    disconnect: str | None = None
    init: str | None = None
    nodetach: bool = False
    defaultroute: bool = False
    replacedefaultroute: bool = False
    usepeerdns: bool = False
    ipparam: str | None = None
    linkname: str | None = None
    idle: int = 0
    maxconnect: int = 0
    persist: bool = False
    maxfail: int = 10
    holdoff: int = 30                   # pppd's default (options.c)
    unit: int = 0
    ifname: str | None = None
    ip_up: str | None = None
    ip_down: str | None = None
    netns: str | None = None
    call: str | None = None
    local_ip: str | None = None
    remote_ip: str | None = None
    ignored: list = field(default_factory=list)

    @property
    def interface(self) -> str:
        return self.ifname or f"ppp{self.unit}"


def split_words(text: str) -> list[str]:
    """An options file's words: shell-like quoting, # comments."""
    lex = shlex.shlex(text, posix=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    return list(lex)


def parse(argv: list[str], read_file: Callable[[str], str], peers_dir: str = "/etc/ppp/peers",
          opts: Options | None = None, depth: int = 0) -> Options:
    """Parse pppd words into Options; `file`/`call` recurse through read_file."""
    if depth > 8:
        raise OptionError("options files nested too deeply")
    opts = opts or Options()
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word in ("file", "call"):
            arg, i = _arg(words, i, word)
            path = arg if word == "file" else os.path.join(peers_dir, arg)
            if word == "call":
                if "/" in arg:
                    raise OptionError(f"call option value may not contain .. or start with /: {arg}")
                opts.call = arg
            try:
                text = read_file(path)
            except OSError as e:
                raise OptionError(f"Can't open options file {path}: {e.strerror}") from None
            parse(split_words(text), read_file, peers_dir, opts, depth + 1)
        elif word in FLAGS:
            name, value = FLAGS[word]
            setattr(opts, name, value)
        elif word in STRING or word in INT or word in IGNORED_WITH_ARG:
            arg, i = _arg(words, i, word)
            _set_valued(opts, word, arg)
        elif word in IGNORED:
            opts.ignored.append(word)
        elif word in NOT_SIMULATED:
            raise OptionError(f"option '{word}' is not supported by fakepppd: {NOT_SIMULATED[word]}")
        else:
            _set_positional(opts, word)
    return opts


def _arg(words: list[str], i: int, option: str) -> tuple[str, int]:
    if i >= len(words):
        raise OptionError(f"too few parameters for option '{option}'")
    return words[i], i + 1


def _set_valued(opts: Options, word: str, arg: str) -> None:
    if word in NUMERIC and not re.fullmatch(r"-?\d+", arg):
        raise OptionError(f"invalid numeric parameter '{arg}' for {word} option")
    if word in STRING:
        setattr(opts, STRING[word], arg)
    elif word in INT:
        setattr(opts, INT[word], int(arg))
    else:
        opts.ignored.append(f"{word} {arg}")


def _set_positional(opts: Options, word: str) -> None:
    if word.startswith("/") or word.startswith("tty"):
        opts.device = word if word.startswith("/") else "/dev/" + word
    elif word.isdigit():
        opts.speed = int(word)
    elif (m := ADDR_PAIR.match(word)) and (m.group(1) or m.group(2)):
        opts.local_ip = m.group(1) or opts.local_ip
        opts.remote_ip = m.group(2) or opts.remote_ip
    else:
        raise OptionError(f"unrecognized option '{word}'")
