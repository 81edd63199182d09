"""smtpc/transaction.py - one message over an open session: MAIL, RCPT, DATA, the dot.

Owns: ``Transaction``, one message for one server (the sender, the
recipients, the data and its parameters), and ``Transaction.run(dialogue)``
over an open, greeted ``Dialogue`` (dialogue.py): the checks before
any byte, the commands in one round trip when the server offers
PIPELINING (RFC 2920) or one at a time when it does not, the message
after 354, and the ``DeliveryResult`` (results.py) from the replies: one
``RcptResult`` per recipient, in LMTP mode from the recipient's own reply
to the final dot (RFC 2033).  For a cached connection (``probe=True``) an
RSET goes first, in the same round trip when pipelining.

Never does: open or close connections (opening.py), decide what to cache
or retry (SmtpClient in session.py), read or write the socket itself
(``Dialogue.exchange``), logging.

Invariants:
  * every refusal we can know of comes before the first byte: SIZE,
    8BITMIME and SMTPUTF8 (core.mail_command), a line too long
    (core.encode_data), CR/LF/controls in an address or parameter
    (wire.command_line);
  * the message is sent only after a 354 and only when at least one
    recipient was accepted; a server that says 354 when we will not send
    (MAIL refused, no recipient accepted) leaves the dialogue ``broken``,
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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from edgemail.envelope import Recipient
from edgemail.errors import DeliveryFailure, Scope, TempFail
from edgemail.smtpc import core
from edgemail.smtpc.core import MessageParams
from edgemail.smtpc.dialogue import Dialogue
from edgemail.smtpc.events import Command, Data, Mail, Message, Rcpt, Response, Rset
from edgemail.smtpc.results import (
    DeliveryResult,
    RcptResult,
    StaleConnection,
    as_recipient,
)
from edgemail.smtpc.wire import command_line

__all__ = ["Transaction"]


class Transaction:
    """One message for one server (see the module docstring)."""

    def __init__(self, sender: str, recipients: Sequence[Recipient | str], data: bytes,
                 params: MessageParams = MessageParams()) -> None:
        self.sender = sender
        self.recipients = [as_recipient(r) for r in recipients]
        self.data = data
        self.params = params

    async def run(self, d: Dialogue, *, probe: bool = False) -> DeliveryResult:
        """Send the message over ``d``; ``probe``: RSET first (a cached connection)."""
        cmds = self._commands(d.conn.capabilities)
        if d.conn.capabilities.pipelining:
            replies = await self._pipelined(d, cmds, probe)
        else:
            replies = await self._lockstep(d, cmds, probe)
        result = await self._finish(d, cmds, replies)
        return replace(result, dsn=d.conn.capabilities.dsn)

    def _commands(self, caps: core.Capabilities) -> list[Mail | Rcpt]:
        """MAIL and the RCPTs; every refusal we can know of is raised here, before any byte."""
        mail = core.mail_command(caps, self.sender, self.data, self.params, tuple(self.recipients))
        core.encode_data(self.data)                 # line too long -> PermFail before MAIL
        cmds: list[Mail | Rcpt] = [mail, *(core.rcpt_command(caps, r) for r in self.recipients)]
        for c in cmds:                              # refuse CR/LF before any byte goes out
            command_line(c)
        return cmds

    async def _pipelined(self, d: Dialogue, cmds: Sequence[Command], probe: bool) -> list[Response]:
        batch: list[Command] = [*([Rset()] if probe else []), *cmds, Data()]
        try:
            replies = await d.exchange(batch)
        except DeliveryFailure:
            # dead before MAIL was answered: the cached connection had gone stale
            if probe and isinstance(d.conn.awaiting, (Rset, Mail)):
                raise StaleConnection() from None
            raise
        if probe:
            rset, replies = replies[0], replies[1:]
            if not rset.reply.positive:
                raise StaleConnection()
        return replies

    async def _lockstep(self, d: Dialogue, cmds: Sequence[Command], probe: bool) -> list[Response]:
        if probe:
            try:
                (r,) = await d.exchange([Rset()])
            except DeliveryFailure:
                raise StaleConnection() from None
            if not r.reply.positive:
                raise StaleConnection()
        replies = await d.exchange([cmds[0]])
        if not replies[0].reply.positive:
            return replies
        for c in cmds[1:]:
            replies += await d.exchange([c])
        if d.conn.accepted_recipients:
            replies += await d.exchange([Data()])
        return replies

    async def _finish(self, d: Dialogue, cmds: Sequence[Command],
                      replies: list[Response]) -> DeliveryResult:
        mail_fail = core.failure(replies[0].command, replies[0].reply, host=d.host)
        if mail_fail is not None:
            if d.conn.in_data:          # broken server said 354 anyway: do not send
                d.broken = True
            raise mail_fail
        results: dict[str, RcptResult] = {}
        for r, resp in zip(self.recipients, replies[1:len(cmds)]):
            results[r.address] = RcptResult(r.address, resp.reply,
                                            core.failure(resp.command, resp.reply, host=d.host))
        accepted = [a for a, res in results.items() if res.ok]
        data_resp = replies[len(cmds)] if len(replies) > len(cmds) else None
        if not accepted:
            if data_resp is not None and data_resp.reply.code == 354:
                d.broken = True
            return DeliveryResult(d.relay, results)
        try:
            final = await self._send_data(d, data_resp)
        except DeliveryFailure as exc:
            return DeliveryResult(d.relay, {**results, **{
                a: RcptResult(a, None, exc) for a in accepted}}, failure=exc)
        return _final(d, results, accepted, final)

    async def _send_data(self, d: Dialogue, data_resp: Response | None) -> list[Response]:
        if data_resp is None:
            raise TempFail("no reply to DATA", scope=Scope.MESSAGE)
        fail = core.failure(data_resp.command, data_resp.reply, host=d.host)
        if fail is not None:
            raise fail
        if data_resp.reply.code != 354:
            raise TempFail(f"DATA answered {data_resp.reply}, not 354", scope=Scope.MESSAGE)
        return await d.exchange([Message(self.data)])


def _final(d: Dialogue, results: dict[str, RcptResult], accepted: list[str],
           final: list[Response]) -> DeliveryResult:
    """The results after the final dot: one reply each (LMTP) or one for all."""
    if d.conn.lmtp:
        for resp in final:
            address = resp.recipient or ""
            results[address] = RcptResult(address, resp.reply, core.failure(
                resp.command, resp.reply, host=d.host))
        return DeliveryResult(d.relay, results)
    (resp,) = final
    fail = core.failure(resp.command, resp.reply, host=d.host)
    for a in accepted:
        results[a] = RcptResult(a, resp.reply, fail)
    return DeliveryResult(d.relay, results, failure=fail, reply=resp.reply)
