"""smtpd/protocol.py - one SMTP session: aiosmtpd's protocol, our commands.

Owns the dialogue with one client: EHLO/HELO, MAIL, RCPT, DATA, RSET,
NOOP, QUIT, VRFY (252), EXPN (refused), ETRN, and every reply's wording.
aiosmtpd supplies the session and transaction state, the command table
(and HELP from it), QUIT and HELP; MAIL, RCPT, DATA, EHLO and HELO are ours.

Reading is ours too (smtpd/reader.py, the CommandReader mixin): MAIL, RCPT,
DATA, RSET and NOOP are answered inline; the rest run as a task.

Invariants:
  * 250 after DATA only after ``await store.commit()`` returned (the file and
    its directory are fsynced: invariant 2).
  * No name lookups: the host name is the configured one; the client is its
    IP address (invariant 1).
  * Every reply except the greeting and the EHLO/HELO answer carries an
    enhanced status code (RFC 2034); replies aiosmtpd words itself get one
    added in ``_reply()``.
  * The timeout is per read (sendmail's Timeout.command): any bytes from
    the client re-arm it, so a slow but moving DATA is never cut; a stalled
    client gets ``421 4.4.2`` and is closed.
  * ``max_bad_commands`` 5xx replies end the session with ``421 4.7.0``.

Failures: an exception in a command (ours or a hook's) answers ``451 4.3.0``
and is logged once with its traceback; the session goes on.  SpoolFull
answers ``452 4.3.1``.  Nothing here can stop the listener.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from typing import TYPE_CHECKING

from aiosmtpd.smtp import SMTP, syntax

from edgemail import maillog
from edgemail.address import AddressError, parse_path
from edgemail.envelope import Envelope, Recipient, precedence_class
from edgemail.errors import SpoolError, SpoolFull
from edgemail.smtpd import params
from edgemail.smtpd.data import DataCollector, received_header, summarise
from edgemail.smtpd.reader import CommandReader

if TYPE_CHECKING:
    from edgemail.smtpd.listener import SmtpListener

log = logging.getLogger("edgemail.smtpd")

#: sendmail's MaxHopCount default
MAX_HOPS = 25
_ENHANCED = re.compile(r"\d{3}[ -][245]\.\d{1,3}\.\d{1,3}( |$)")
_DEFAULT_ENHANCED = {500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4",
                     530: "5.7.0", 421: "4.3.0"}
_ETRN_ARG = re.compile(r"[@#]?[A-Za-z0-9][A-Za-z0-9._-]*")


def with_enhanced(reply: str) -> str:
    """Add an enhanced status code to a reply that lacks one (not 220/354)."""
    code = reply[:3]
    if not code.isdigit() or code[0] not in "245" or code == "220" or _ENHANCED.match(reply):
        return reply
    enh = _DEFAULT_ENHANCED.get(int(code), f"{code[0]}.0.0")
    return f"{reply[:4]}{enh} {reply[4:]}".rstrip()


class _Transaction:
    """The mail transaction (aiosmtpd's "envelope" slot): reset by RSET/HELO/DATA."""

    def __init__(self) -> None:
        self.mail_from: str | None = None
        self.mail = params.MailParams()
        self.rcpts: list[Recipient] = []


class EdgeSMTP(CommandReader, SMTP, asyncio.BufferedProtocol):
    def __init__(self, listener: "SmtpListener") -> None:
        cfg = listener.cfg
        super().__init__(object(), hostname=cfg.hostname, ident="ESMTP edgemail",
                         data_size_limit=cfg.MaxMessageSize, enable_SMTPUTF8=True,
                         timeout=cfg.Timeout.command, loop=asyncio.get_running_loop())
        self.listener = listener
        self.cfg = cfg
        self.command_size_limits = {"MAIL": 1024, "RCPT": 1024}
        self.verb = "CONNECT"
        self.arg: str | None = None
        self.peer_ip = ""
        self.relay = ""
        #: may this client relay (lan_networks, loopback)?  Decided at connect.
        self.trusted = False
        self.errors = 0
        self._last_read = self.loop.time()
        self._busy = False
        self._quit = False
        self._init_reader({"MAIL": self._mail, "RCPT": self._rcpt, "DATA": self._data,
                           "RSET": self._rset, "NOOP": self._noop})

    # ---------------------------------------------------------------- plumbing

    def _create_envelope(self) -> _Transaction:  # type: ignore[override]
        return _Transaction()

    def connection_made(self, transport) -> None:
        peer = transport.get_extra_info("peername") or ("0.0.0.0", 0)
        ip = ipaddress.ip_address(peer[0].split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        self.peer_ip = str(ip)
        self.relay = f"[{self.peer_ip}]:{peer[1]}"
        self.trusted = self.listener.trusted(self.peer_ip)
        super().connection_made(transport)

    def connection_lost(self, error) -> None:
        self.listener._release(self)
        if not self._quit and self.verb != "CONNECT-REFUSED":
            log.info(maillog.lost_connection(self.relay, self.verb))
        if self._task is not None:
            self._task.cancel()
        super().connection_lost(error)

    def _reset_timeout(self, duration=None) -> None:
        self._last_read = self.loop.time()
        if self._timeout_handle is None:
            self._timeout_handle = self.loop.call_later(self._timeout_duration, self._timeout_cb)

    def _timeout_cb(self) -> None:
        idle = self.loop.time() - self._last_read
        if self._busy or idle < self._timeout_duration:
            wait = self._timeout_duration - (0 if self._busy else idle)
            self._timeout_handle = self.loop.call_later(wait, self._timeout_cb)
            return
        log.info(maillog.timeout(self.relay, self.verb))
        if self.transport is not None:
            self.transport.write(f"421 4.4.2 {self.hostname} Error: timeout exceeded\r\n".encode())
            self._quit = True
            self.transport.close()

    async def _handle_client(self) -> None:
        """The greeting (aiosmtpd's command loop is replaced by _take_input)."""
        refusal = self.listener._admit(self)
        if refusal:
            log.warning(maillog.refused(self.relay, refusal))
            self.verb = "CONNECT-REFUSED"
            self._write(refusal)
            self.transport.close()
            return
        log.debug(maillog.connect(self.relay, self.listener.listener.name))
        self._write(f"220 {self.hostname} {self.__ident__}")
        self._greeted = True
        self._take_input()

    def _write(self, status: str) -> None:
        if self.transport is not None:
            self.transport.write(status.encode("utf-8", "surrogateescape") + b"\r\n")

    def _reply(self, status: str) -> None:
        """Send one reply line: the enhanced code added, a refusal logged,
        the session ended after smtpd.max_bad_commands 5xx replies."""
        status = with_enhanced(status)
        self._write(status)
        if status[:1] in "45" and self.verb not in ("CONNECT",):
            if status[:3] not in ("421",):
                log.warning(maillog.reject(status, cmd=self.verb, arg=self.arg, relay=self.relay))
        if status[:1] == "5":
            self.errors += 1
            if self.errors >= self.cfg.smtpd.max_bad_commands and self.transport is not None:
                log.warning(maillog.too_many_errors(self.relay, self.verb))
                self._write(f"421 4.7.0 {self.hostname} Error: too many errors")
                self._quit = True
                self.transport.close()

    async def push(self, status: str) -> None:  # type: ignore[override]
        """aiosmtpd's reply call, for the commands it answers (QUIT, HELP...)."""
        self._reply(status)
        if self._paused and self.transport is not None:
            await self._drain_helper()

    def _internal_error(self, error: Exception) -> str:
        log.error(maillog.internal_error(self.relay, self.verb), exc_info=error)
        return "451 4.3.0 Error: internal error, try again later"

    async def unknown_command(self, verb: str, arg) -> None:
        await self.push(f"500 5.5.2 Error: command {verb[:20]!r} not recognised")

    # ---------------------------------------------------------------- greeting

    def _hello(self, helo: str) -> str:
        safe = re.sub(r"[^\x21-\x7e]", "?", helo)[:64]
        return f"{self.hostname} Hello {safe} [{self.peer_ip}]"

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        if not hostname:
            await self.push("501 5.5.4 Syntax: EHLO hostname")
            return
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = hostname
        lines = [self._hello(hostname), f"SIZE {self.cfg.MaxMessageSize}", "8BITMIME",
                 "PIPELINING", "ENHANCEDSTATUSCODES", "DSN", "SMTPUTF8"]
        if self.listener.on_etrn is not None:
            lines.append("ETRN")
        lines.append("HELP")
        self._write("\r\n".join(f"250{'-' if i < len(lines) - 1 else ' '}{line}"
                                  for i, line in enumerate(lines)))

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        if not hostname:
            await self.push("501 5.5.4 Syntax: HELO hostname")
            return
        self._set_rset_state()
        self.session.extended_smtp = False
        self.session.host_name = hostname
        self._write(f"250 {self._hello(hostname)}")

    @syntax("QUIT")
    async def smtp_QUIT(self, arg: str) -> None:
        self._quit = not arg
        await super().smtp_QUIT(arg)

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str) -> None:
        await self.push("252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery")

    async def smtp_EXPN(self, arg: str) -> None:
        await self.push("502 5.5.1 EXPN not available")

    async def smtp_AUTH(self, arg: str) -> None:
        await self.push("502 5.5.1 AUTH not available")

    # ---------------------------------------------------------------- transaction

    def _parse(self, arg: str | None, keyword: str, *, sender: bool):
        """Parse a MAIL/RCPT argument: (Path, parameters), or the refusal reply."""
        rest = self._strip_command_keyword(keyword, arg) if arg else None
        if rest is None:
            verb = "MAIL FROM" if sender else "RCPT TO"
            return f"501 5.5.4 Syntax: {verb}:<address>"
        try:
            path = parse_path(rest, allow_null=sender)
        except AddressError as exc:
            what = "sender" if sender else "recipient"
            return f"501 5.1.{7 if sender else 3} Bad {what} address syntax: {exc}"
        if path.params and not self.session.extended_smtp:
            return "501 5.5.4 Parameters need EHLO"
        try:
            parsed = (params.mail_params if sender else params.rcpt_params)(path.params)
        except params.ParamError as exc:
            return exc.reply
        smtputf8 = parsed.smtputf8 if sender else self.envelope.mail.smtputf8
        if path.utf8 and not smtputf8:     # RFC 6531 section 3.4
            what = "sender" if sender else "recipient"
            return f"553 5.6.7 Non-ASCII {what} address needs the SMTPUTF8 parameter on MAIL"
        return path, parsed

    def _helo_needed(self) -> str | None:
        return None if self.session.host_name else "503 Error: send HELO first"

    # The transaction's commands answer inline (_command); these entries keep
    # them in aiosmtpd's command table for HELP.
    @syntax("MAIL FROM:<address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        await self.push(self._mail(arg))

    @syntax("RCPT TO:<address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        await self.push(self._rcpt(arg))

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        reply = self._data(arg)
        if reply:
            await self.push(reply)

    def _mail(self, arg: str | None) -> str:
        if refusal := self._helo_needed():
            return refusal
        if self.envelope.mail_from is not None:
            return "503 5.5.1 Error: nested MAIL command"
        parsed = self._parse(arg, "FROM:", sender=True)
        if isinstance(parsed, str):
            return parsed
        path, mail = parsed
        if mail.size is not None and mail.size > self.cfg.MaxMessageSize:
            return f"552 5.3.4 Message size exceeds fixed maximum message size ({self.cfg.MaxMessageSize})"
        if not self.listener.store.has_room(mail.size or 0):
            return "452 4.3.1 Insufficient system storage"
        self.envelope.mail_from = path.text
        self.envelope.mail = mail
        return f"250 2.1.0 Sender <{path.text}> OK"

    def _rcpt(self, arg: str | None) -> str:
        if refusal := self._helo_needed():
            return refusal
        txn = self.envelope
        if txn.mail_from is None:
            return "503 5.5.1 Error: need MAIL command"
        parsed = self._parse(arg, "TO:", sender=False)
        if isinstance(parsed, str):
            return parsed
        path, rcpt = parsed
        if len(txn.rcpts) >= self.cfg.smtpd.MaxRecipientsPerMessage:
            return "452 4.5.3 Too many recipients"
        address, refusal = self.listener.rcpt_decision(self.trusted, path.address)
        if refusal:
            return refusal
        txn.rcpts.append(Recipient(address, rcpt.orcpt, rcpt.notify))
        return f"250 2.1.5 Recipient <{address}> OK"

    def _data(self, arg: str | None) -> str | None:
        """DATA: 354, then _take_input feeds the collector until the end."""
        if refusal := self._helo_needed():
            return refusal
        if not self.envelope.rcpts:
            return "503 5.5.1 Error: need RCPT command"
        if arg:
            return "501 5.5.4 Syntax: DATA"
        self._reply("354 End data with <CR><LF>.<CR><LF>")
        self._collector = DataCollector(strict=self.listener.listener.strict,
                                        limit=self.cfg.MaxMessageSize)
        return None

    def _data_end(self) -> None:
        """The end of DATA was read: the refusal, or the commit (a task)."""
        collector, self._collector = self._collector, None
        txn = self.envelope
        self._set_post_data_state()
        if collector.refusal:
            self._reply(collector.refusal)
        else:
            self._start(self._queue_and_reply(txn, collector.message()))

    async def _queue_and_reply(self, txn: _Transaction, message: bytes) -> None:
        self._reply(await self._queue(txn, message))

    def _rset(self, arg: str | None) -> str:
        if arg:
            return "501 Syntax: RSET"
        self._set_rset_state()
        return "250 OK"

    def _noop(self, arg: str | None) -> str:
        return "250 OK"

    async def _queue(self, txn: _Transaction, message: bytes) -> str:
        """Commit a message; the reply to the final dot."""
        facts = summarise(message)
        if facts.hops > MAX_HOPS:
            return f"554 5.4.6 Too many hops ({facts.hops}): mail loop?"
        arrived = self.listener.clock.wall()
        rcpt = txn.rcpts[0].address if len(txn.rcpts) == 1 else None
        data = received_header(helo=self.session.host_name, ip=self.peer_ip,
                               hostname=self.hostname, proto=self._proto(), rcpt=rcpt,
                               when=arrived) + message
        env = self._envelope(txn, facts, arrived, len(data))
        store = self.listener.store
        if not store.has_room(len(data)):
            return "452 4.3.1 Insufficient system storage"
        self._busy = True
        try:
            qid = await store.commit(env, data)
        except SpoolFull:
            return "452 4.3.1 Insufficient system storage"
        except SpoolError:
            log.error(maillog.internal_error(self.relay, "DATA"), exc_info=True)
            return "451 4.3.0 Error: queue file write error, try again later"
        finally:
            self._busy = False
            self._last_read = self.loop.time()
        log.info(maillog.received(qid, env))
        self.listener._committed(qid)
        return f"250 2.0.0 {qid} Message accepted for delivery"

    def _proto(self) -> str:
        return "ESMTP" if self.session.extended_smtp else "SMTP"

    def _envelope(self, txn: _Transaction, facts, arrived: float, size: int) -> Envelope:
        mail = txn.mail
        return Envelope(
            mail_from=txn.mail_from or "", recipients=tuple(txn.rcpts), ret=mail.ret,
            envid=mail.envid, body=mail.body, smtputf8=mail.smtputf8,
            precedence=precedence_class(facts.precedence), msgid=facts.msgid,
            proto=self._proto(), client=self.relay,
            helo=self.session.host_name or "", arrived=arrived, size=size)

    # ---------------------------------------------------------------- ETRN (RFC 1985)

    @syntax("ETRN <domain>")
    async def smtp_ETRN(self, arg: str | None) -> None:
        on_etrn = self.listener.on_etrn
        if on_etrn is None:
            await self.push("502 5.5.1 ETRN not available")
        elif not self.trusted:
            await self.push(f"459 4.7.1 Node {(arg or '')[:64]} not allowed: ETRN from LAN only")
        elif not arg or not _ETRN_ARG.fullmatch(arg):
            await self.push("501 5.5.4 Syntax: ETRN <domain>")
        else:
            try:
                reply = await on_etrn(arg)
            except Exception:
                log.error(maillog.internal_error(self.relay, "ETRN"), exc_info=True)
                reply = f"458 4.3.0 Unable to queue messages for node {arg}"
            await self.push(reply)
