"""delivery/etrn.py - ask the ISP to flush the mail it holds for us (RFC 1985 ETRN).

NAME
    etrn - etrn(host, port, domains, helo_name=..., timeout=...) -> [EtrnResult]

DESCRIPTION
    One SMTP session: greeting, EHLO, one ETRN per argument, QUIT.  The
    argument forms are RFC 1985's: `domain` (flush that domain), `@domain`
    (that domain and its subdomains), `#queue` (a named queue); anything
    else is refused before a byte is sent.  Replies:
        250 251 252 253       success (sendmail: "250 2.0.0 Queuing for node X
                              started"; Postfix: "250 Queuing started")
        458 459               the ISP cannot flush now: logged and reported
                              (Postfix: "459 <d>: service unavailable")
        500 501 502           the ISP has no ETRN (or refused the syntax)
    A server whose EHLO does not list ETRN is still asked (many answer
    anyway); its 500/502 says no.  Every domain gets a result; a session that
    breaks gives code 0 with the reason for the domains not yet asked.  This
    is the `etrn` the MTA's link port offers the link manager.

LOG LINES (logger "edgemail.etrn")
    etrn: relay=HOST:PORT, arg=ARG, reply=CODE TEXT, result=ok|deferred|unsupported|error

NEVER
    Resolves names (host is an address or a name the caller resolved),
    retries, or raises for a refusal: the reply is the result.

FAILURES (Raises:)
    ValueError   an argument that is not one of the RFC 1985 forms
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

from edgemail.errors import RemoteProtocolError
from edgemail.smtpc.reply import ReplyParser

log = logging.getLogger("edgemail.etrn")

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_QUEUE = re.compile(r"^#[\x21-\x7e]{1,64}$")
SUCCESS = frozenset({250, 251, 252, 253})
DEFERRED = frozenset({458, 459})
UNSUPPORTED = frozenset({500, 501, 502})


@dataclass(frozen=True)
class EtrnResult:
    domain: str                  #: the argument as sent
    code: int                    #: the reply code; 0 when no reply came
    text: str

    @property
    def ok(self) -> bool:
        return self.code in SUCCESS

    @property
    def outcome(self) -> str:
        if self.code in SUCCESS:
            return "ok"
        if self.code in DEFERRED:
            return "deferred"
        if self.code in UNSUPPORTED:
            return "unsupported"
        return "error"


def check_argument(arg: str) -> str:
    """The argument if it is an RFC 1985 form (domain, @domain, #queue); ValueError otherwise."""
    if _QUEUE.match(arg):
        return arg
    name = arg[1:] if arg.startswith("@") else arg
    if len(name) <= 253 and _DOMAIN.match(name):
        return arg
    raise ValueError(f"ETRN argument {arg!r}: want domain, @domain or #queue (RFC 1985)")


class _Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader, self.writer, self.timeout = reader, writer, timeout
        self.parser = ReplyParser()
        self.pending: list = []

    async def reply(self):
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(4096), self.timeout)
            if not data:
                raise ConnectionError("connection closed by the server")
            self.pending += self.parser.feed(data)
        return self.pending.pop(0)

    async def command(self, line: str):
        self.writer.write(line.encode("ascii") + b"\r\n")
        await asyncio.wait_for(self.writer.drain(), self.timeout)
        return await self.reply()


async def etrn(host: str, port: int, domains, *, helo_name: str, timeout: float = 60.0) -> list[EtrnResult]:
    """EHLO, ETRN for each argument, QUIT; one EtrnResult per argument."""
    args = [check_argument(d) for d in domains]
    relay = f"{host}:{port}"
    results: list[EtrnResult] = []
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        s = _Session(reader, writer, timeout)
        greeting = await s.reply()
        if greeting.code != 220:
            raise ConnectionError(f"greeting {greeting}")
        hello = await s.command(f"EHLO {helo_name}")
        if hello.code != 250:
            hello = await s.command(f"HELO {helo_name}")
            if hello.code != 250:
                raise ConnectionError(f"HELO answered {hello}")
        for arg in args:
            r = await s.command(f"ETRN {arg}")
            results.append(_logged(relay, EtrnResult(arg, r.code, r.text)))
        await s.command("QUIT")
    except (OSError, asyncio.TimeoutError, RemoteProtocolError) as e:
        reason = str(e) or type(e).__name__
        for arg in args[len(results):]:
            results.append(_logged(relay, EtrnResult(arg, 0, reason)))
    finally:
        if writer is not None:
            writer.close()
    return results


def _logged(relay: str, r: EtrnResult) -> EtrnResult:
    level = logging.INFO if r.ok else logging.WARNING
    log.log(level, "etrn: relay=%s, arg=%s, reply=%s %s, result=%s", relay, r.domain, r.code, r.text, r.outcome)
    return r
