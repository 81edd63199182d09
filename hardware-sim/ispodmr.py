"""ispodmr.py - the ISP's ODMR server (RFC 2645): the customer connects, and the held mail comes back over its own connection.

SYNOPSIS
    odmr = OdmrServer(store, customers=["edge.example"], users={"edge": "secret"},
                      tls=server_context(cert, key), log=relay._log, faults=relay.faults)
    await odmr.serve("192.0.2.25", 366)

DESCRIPTION
    Written from RFC 2645 with asyncio streams only (no edgemail code, not
    aiosmtpd either: nothing there turns a connection round), so that
    edgemail's ODMR client meets a peer that was not written against it.

    The session, as the RFC has it:
      220 greeting; EHLO -> 250 with STARTTLS (before TLS), AUTH PLAIN LOGIN
      (after TLS only: AUTH before it is 538 5.7.11) and ATRN;
      STARTTLS -> 220, the handshake (a self-signed certificate: isprelay.make_cert);
      AUTH PLAIN / AUTH LOGIN -> 235 or 535 5.7.8 (users from --user);
      ATRN [domain[,domain]] -> 530 without AUTH, 450 for a domain that is
      not a customer domain, 453 "You have no mail", 451 when a push for
      that domain is already under way, or 250 "OK, now reversing the
      connection" and the push;
      QUIT -> 221; anything else 502.
    The push (we are now the client): wait for the customer's 220, EHLO,
    then per held message MAIL FROM, RCPT TO each recipient, DATA, the
    dot-stuffed message, and on 250 it leaves held/ (anything else keeps it
    for the next ATRN or ETRN); QUIT, close.
    Faults (RelayFaults, shared with the relay): atrn_reply = 450|451|453
    answers every ATRN so; refuse_auth fails every AUTH.

LOG (the relay's log: relay_log)
    odmr-auth {user, ok, tls}, odmr {user, domains, reply}, odmr-delivery
    {domains, delivered, kept, status}.  Never a password.
"""
from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Callable

ATRN_CODES = (450, 451, 453)


class OdmrServer:
    def __init__(self, store, customers: list[str], users: dict[str, str], *, tls: ssl.SSLContext | None,
                 log: Callable[..., None], faults, hostname: str = "relay.isp.example"):
        self.store, self.customers, self.users = store, [c.lower() for c in customers], users
        self.tls, self.log, self.faults, self.hostname = tls, log, faults, hostname
        self.pushing: set[str] = set()

    async def serve(self, host: str, port: int = 366):
        return await asyncio.start_server(self._session, host, port)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = _Session(self, reader, writer)
        try:
            await s.run()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass
        finally:
            writer.close()


class _Session:
    """One ODMR session: the server part, then (after a 250 to ATRN) the push."""

    def __init__(self, server: OdmrServer, reader, writer):
        self.srv, self.r, self.w = server, reader, writer
        self.user: str | None = None

    @property
    def tls(self) -> bool:
        return self.w.get_extra_info("sslcontext") is not None

    async def say(self, line: str) -> None:
        self.w.write(line.encode() + b"\r\n")
        await self.w.drain()

    async def line(self) -> str:
        data = await asyncio.wait_for(self.r.readline(), 120)
        if not data:
            raise ConnectionError("closed")
        return data.decode("utf-8", "replace").rstrip("\r\n")

    async def run(self) -> None:
        await self.say(f"220 {self.srv.hostname} ESMTP ODMR (hardware-sim)")
        while True:
            verb, _, arg = (await self.line()).partition(" ")
            verb = verb.upper()
            if verb == "QUIT":
                await self.say("221 2.0.0 Bye")
                return
            if verb == "ATRN" and await self.atrn(arg.strip()):
                await self.push(self._domains(arg.strip()))
                return
            if verb != "ATRN":
                await self.command(verb, arg.strip())

    async def command(self, verb: str, arg: str) -> None:
        if verb == "EHLO":
            offers = [f"{self.srv.hostname} Hello {arg}"] + ([] if self.tls or not self.srv.tls else ["STARTTLS"])
            offers += (["AUTH PLAIN LOGIN"] if self.tls else []) + ["ATRN"]
            await self.say("\r\n".join(f"250{'-' if i < len(offers) - 1 else ' '}{o}" for i, o in enumerate(offers)))
        elif verb == "STARTTLS" and self.srv.tls and not self.tls:
            await self.say("220 2.0.0 Ready to start TLS")
            await self.w.start_tls(self.srv.tls)
        elif verb == "AUTH":
            await self.auth(arg)
        elif verb in ("NOOP", "RSET"):
            await self.say("250 2.0.0 OK")
        else:
            await self.say(f"502 5.5.1 {verb} not implemented (ODMR service)")

    async def auth(self, arg: str) -> None:
        if not self.tls:
            await self.say("538 5.7.11 Encryption required for requested authentication mechanism")
            return
        mech, _, initial = arg.partition(" ")
        user, password = await self._credentials(mech.upper(), initial)
        ok = (user is not None and not self.srv.faults.refuse_auth and self.srv.users.get(user) == password)
        self.srv.log("odmr-auth", user=user or "", ok=ok, tls=self.tls)
        self.user = user if ok else None
        await self.say("235 2.7.0 Authentication successful" if ok else "535 5.7.8 Authentication credentials invalid")

    async def _credentials(self, mech: str, initial: str) -> tuple[str | None, str]:
        if mech == "PLAIN":
            if not initial:
                await self.say("334 ")
                initial = await self.line()
            parts = _b64(initial).split("\0")
            return (parts[1], parts[2]) if len(parts) == 3 else (None, "")
        if mech == "LOGIN":
            await self.say("334 " + base64.b64encode(b"Username:").decode())
            user = _b64(await self.line())
            await self.say("334 " + base64.b64encode(b"Password:").decode())
            return user, _b64(await self.line())
        return None, ""

    def _domains(self, arg: str) -> list[str]:
        return [d.lower() for d in arg.split(",") if d] if arg else list(self.srv.customers)

    async def atrn(self, arg: str) -> bool:
        """The reply to ATRN; True after a 250 (the push follows)."""
        domains = self._domains(arg)
        forced = self.srv.faults.atrn_reply
        if self.user is None:
            reply = "530 5.7.0 Authentication required"
        elif forced in ATRN_CODES:
            reply = {450: "450 4.7.1 ATRN request refused", 451: "451 4.3.0 Unable to process ATRN request now",
                     453: "453 You have no mail"}[forced]
        elif any(d not in self.srv.customers for d in domains):
            reply = "450 4.7.1 ATRN request refused: not a customer domain"
        elif any(d in self.srv.pushing for d in domains):
            reply = "451 4.3.0 Unable to process ATRN request now"
        elif not any(self.srv.store.held(d) for d in domains):
            reply = "453 You have no mail"
        else:
            reply = "250 OK, now reversing the connection"
        self.srv.log("odmr", user=self.user or "", domains=domains, reply=int(reply[:3]))
        await self.say(reply)
        return reply.startswith("250")

    async def push(self, domains: list[str]) -> None:
        """We are the client now: the held mail for DOMAINS over this connection."""
        self.srv.pushing.update(domains)
        msgs = [m for d in domains for m in self.srv.store.held(d)]
        sent, status = 0, "sent"
        try:
            await self.expect("220")
            await self.client(f"EHLO {self.srv.hostname}", "250")
            for msg in msgs:
                if await self.deliver(msg):
                    self.srv.store.release(msg["id"])
                    sent += 1
            await self.client("QUIT", "221")
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError) as e:
            status = f"broken: {e}"
        finally:
            self.srv.pushing.difference_update(domains)
            self.srv.log("odmr-delivery", domains=domains, delivered=sent, kept=len(msgs) - sent, status=status)

    async def deliver(self, msg: dict) -> bool:
        """One held message; False (it stays held) when the customer refuses it."""
        try:
            await self.client(f"MAIL FROM:<{msg['mail_from']}>", "250")
            for rcpt in msg["rcpts"]:
                await self.client(f"RCPT TO:<{rcpt}>", "250")
            await self.client("DATA", "354")
        except ValueError:
            await self.client("RSET", "250")
            return False
        body = msg["data"].replace("\r\n", "\n").replace("\n", "\r\n")
        lines = [("." + ln if ln.startswith(".") else ln) for ln in body.split("\r\n")]
        text = "\r\n".join(lines).rstrip("\r\n") + "\r\n.\r\n"
        self.w.write(text.encode("utf-8", "surrogateescape"))
        await self.w.drain()
        return (await self.reply()).startswith("250")

    async def client(self, command: str, want: str) -> None:
        await self.say(command)
        await self.expect(want)

    async def expect(self, want: str) -> None:
        got = await self.reply()
        if not got.startswith(want):
            raise ValueError(f"wanted {want}, got {got[:80]!r}")

    async def reply(self) -> str:
        """One reply (the last line of a multi-line one)."""
        while True:
            ln = await self.line()
            if ln[3:4] != "-":
                return ln


def _b64(text: str) -> str:
    try:
        return base64.b64decode(text.strip(), validate=True).decode("utf-8", "replace")
    except ValueError:
        return ""
