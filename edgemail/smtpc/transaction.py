"""smtpc/transaction.py - one message over an open session: MAIL, RCPT, DATA, the dot.

Owns: the mixin ``Transaction``, ``Session.transact``: the checks before
any byte, the commands in one round trip when the server offers
PIPELINING (RFC 2920) or one at a time when it does not, the message
after 354, and the ``DeliveryResult`` (results.py) from the replies: one
``RcptResult`` per recipient, in LMTP mode from the recipient's own reply
to the final dot (RFC 2033).  For a cached connection (``probe=True``) an
RSET goes first, in the same round trip when pipelining.

Never does: open or close connections, decide what to cache or retry
(SmtpClient in session.py), read or write the socket itself (``exchange``),
logging.

Invariants:
  * every refusal we can know of comes before the first byte: SIZE,
    8BITMIME and SMTPUTF8 (core.mail_command), a line too long
    (core.encode_data), CR/LF/controls in an address or parameter
    (wire.command_line);
  * the message is sent only after a 354 and only when at least one
    recipient was accepted; a server that says 354 when we will not send
    (MAIL refused, no recipient accepted) leaves the session ``broken``,
    never reused;
  * ``StaleConnection`` (the RSET probe failed, or the connection died
    before MAIL was answered) is raised only before any message data was
    sent: opening a new connection cannot duplicate the message.

Failures: raises DeliveryFailure when the message failed as a whole
before the replies to MAIL, RCPT and DATA were read (MAIL refused, a
timeout or a lost connection, the PermFails above); once they are, returns
a DeliveryResult, a later failure (DATA refused, a timeout or a lost
connection after the final dot: the RFC 1047 window) set on every accepted
recipient and as ``failure``.

The session supplies: ``exchange``, ``conn``, ``host``, ``relay``,
``broken``.
"""

from __future__ import annotations

from edgemail.envelope import Recipient
from edgemail.errors import DeliveryFailure, Scope, TempFail
from edgemail.smtpc import core
from edgemail.smtpc.core import MessageParams
from edgemail.smtpc.events import Data, Message, Response, Rset
from edgemail.smtpc.results import (
    DeliveryResult,
    RcptResult,
    StaleConnection,
    as_recipient,
)
from edgemail.smtpc.wire import command_line

__all__ = ["Transaction"]


class Transaction:
    """Mixin for Session: deliver one message (see the module docstring)."""

    async def transact(self, sender: str, recipients: list, data: bytes,
                       params: MessageParams, *, probe: bool = False) -> DeliveryResult:
        rcpts = [as_recipient(r) for r in recipients]
        caps = self.conn.capabilities
        mail = core.mail_command(caps, sender, data, params, tuple(rcpts))
        core.encode_data(data)                     # line too long -> PermFail before MAIL
        cmds = [mail, *(core.rcpt_command(caps, r) for r in rcpts)]
        for c in cmds:                              # refuse CR/LF before any byte goes out
            command_line(c)
        if caps.pipelining:
            replies = await self._pipelined(cmds, probe)
        else:
            replies = await self._lockstep(cmds, probe)
        return await self._finish(rcpts, cmds, replies, data)

    async def _pipelined(self, cmds: list, probe: bool) -> list[Response]:
        batch = ([Rset()] if probe else []) + cmds + [Data()]
        try:
            replies = await self.exchange(batch)
        except DeliveryFailure:
            # dead before MAIL was answered: the cached connection had gone stale
            if probe and isinstance(self.conn.awaiting, (Rset, core.Mail)):
                raise StaleConnection() from None
            raise
        if probe:
            rset, replies = replies[0], replies[1:]
            if not rset.reply.positive:
                raise StaleConnection()
        return replies

    async def _lockstep(self, cmds: list, probe: bool) -> list[Response]:
        if probe:
            try:
                (r,) = await self.exchange([Rset()])
            except DeliveryFailure:
                raise StaleConnection() from None
            if not r.reply.positive:
                raise StaleConnection()
        replies = [(await self.exchange([cmds[0]]))[0]]
        if not replies[0].reply.positive:
            return replies
        for c in cmds[1:]:
            replies += await self.exchange([c])
        if self.conn.accepted_recipients:
            replies += await self.exchange([Data()])
        return replies

    async def _finish(self, rcpts: list[Recipient], cmds: list, replies: list[Response],
                      data: bytes) -> DeliveryResult:
        mail_fail = core.failure(replies[0].command, replies[0].reply, host=self.host)
        if mail_fail is not None:
            if self.conn._in_data:      # broken server said 354 anyway: do not send
                self.broken = True
            raise mail_fail
        results: dict[str, RcptResult] = {}
        for r, resp in zip(rcpts, replies[1:len(cmds)]):
            results[r.address] = RcptResult(r.address, resp.reply,
                                            core.failure(resp.command, resp.reply, host=self.host))
        accepted = [a for a, res in results.items() if res.ok]
        data_resp = replies[len(cmds)] if len(replies) > len(cmds) else None
        if not accepted:
            if data_resp is not None and data_resp.reply.code == 354:
                self.broken = True
            return DeliveryResult(self.relay, results)
        try:
            final = await self._send_data(data_resp, data)
        except DeliveryFailure as exc:
            return DeliveryResult(self.relay, {**results, **{
                a: RcptResult(a, None, exc) for a in accepted}}, failure=exc)
        return self._final(results, accepted, final)

    async def _send_data(self, data_resp: Response | None, data: bytes) -> list[Response]:
        if data_resp is None:
            raise TempFail("no reply to DATA", scope=Scope.MESSAGE)
        fail = core.failure(data_resp.command, data_resp.reply, host=self.host)
        if fail is not None:
            raise fail
        if data_resp.reply.code != 354:
            raise TempFail(f"DATA answered {data_resp.reply}, not 354", scope=Scope.MESSAGE)
        return await self.exchange([Message(data)])

    def _final(self, results: dict, accepted: list[str], final: list[Response]) -> DeliveryResult:
        if self.conn.lmtp:
            for resp in final:
                results[resp.recipient] = RcptResult(resp.recipient, resp.reply, core.failure(
                    resp.command, resp.reply, host=self.host))
            return DeliveryResult(self.relay, results)
        (resp,) = final
        fail = core.failure(resp.command, resp.reply, host=self.host)
        for a in accepted:
            results[a] = RcptResult(a, resp.reply, fail)
        return DeliveryResult(self.relay, results, failure=fail, reply=resp.reply)
