"""submit — the submission workload and the process-tree memory sampler.

Owns: N persistent SMTP connections (asyncio streams, no pipelining: MAIL,
RCPT, DATA, message, `.` each waited for) that share one counter of
messages, and a sampler of the daemon's process tree.

A message counts only when its final 250 after DATA arrives; its latency is
MAIL sent -> that 250 received.  Any other reply is an error that is
counted and reported (the run never quietly drops a failure).  Messages are
`size` bytes of headers + body (CRLF, dot-stuffing not needed: no line
starts with a dot), each with its own Message-ID.

Memory: `TreeSampler` reads /proc every `interval` seconds, finds every
descendant of the daemon's root pids, and keeps the peak of the sum of
VmRSS (and of Pss from smaps_rollup, which does not count shared pages once
per process) over the tree; at stop it also takes the largest VmHWM seen.

Never does: name resolution (numeric addresses only).
"""
from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class SubmitResult:
    messages: int
    errors: int
    seconds: float
    latencies: list[float] = field(repr=False)
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(round(q * (len(data) - 1))))]

    def summary(self) -> dict:
        return {"messages": self.messages, "errors": self.errors,
                "seconds": round(self.seconds, 3), "msg_per_s": round(self.rate, 1),
                "p50_ms": round(self.percentile(0.50) * 1000, 2),
                "p99_ms": round(self.percentile(0.99) * 1000, 2),
                "mean_ms": round(statistics.fmean(self.latencies) * 1000, 2)
                if self.latencies else None,
                "first_error": self.first_error}


def make_message(i: int, size: int, sender: str, rcpt: str) -> bytes:
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: bench message {i}\r\n"
            f"Message-ID: <bench.{i}.{os.getpid()}@edge.example>\r\n"
            f"Date: Sun, 22 Nov 2026 08:00:00 +0000\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog 0123456789 abcdefghij\r\n"
    body = (line * (size // len(line) + 1))[:max(0, size - len(head) - 2)]
    body = body[: body.rfind(b"\r\n") + 2] if b"\r\n" in body else body + b"\r\n"
    return head + body


class SmtpError(Exception):
    pass


async def reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpError("connection closed")
        lines.append(line.decode(errors="replace").rstrip())
        if len(line) < 4 or line[3:4] != b"-":
            break
    return int(lines[-1][:3]), lines[-1]


async def expect(reader, code: int, what: str) -> None:
    got, text = await reply(reader)
    if got != code:
        raise SmtpError(f"{what}: {text}")


async def session(host: str, port: int, source: str | None, next_index, count: int,
                  size: int, sender: str, rcpt: str, result: SubmitResult) -> None:
    reader, writer = await asyncio.open_connection(
        host, port, local_addr=(source, 0) if source else None)
    try:
        await expect(reader, 220, "greeting")
        writer.write(b"EHLO client.edge.example\r\n")
        await expect(reader, 250, "EHLO")
        while (i := next_index()) < count:
            msg = make_message(i, size, sender, rcpt)
            t0 = time.perf_counter()
            try:
                writer.write(f"MAIL FROM:<{sender}>\r\n".encode())
                await expect(reader, 250, "MAIL")
                writer.write(f"RCPT TO:<{rcpt}>\r\n".encode())
                await expect(reader, 250, "RCPT")
                writer.write(b"DATA\r\n")
                await expect(reader, 354, "DATA")
                writer.write(msg + b".\r\n")
                await expect(reader, 250, "end of DATA")
            except SmtpError as exc:
                result.errors += 1
                result.first_error = result.first_error or str(exc)
                writer.write(b"RSET\r\n")
                await reply(reader)
                continue
            result.latencies.append(time.perf_counter() - t0)
            result.messages += 1
        writer.write(b"QUIT\r\n")
        await writer.drain()
        try:
            await asyncio.wait_for(reply(reader), 5)
        except (SmtpError, asyncio.TimeoutError):
            pass
    finally:
        writer.close()


async def submit(host: str, port: int, *, count: int, size: int, connections: int,
                 source: str | None = None, sender: str = "bench@edge.example",
                 rcpt: str = "user@remote.example") -> SubmitResult:
    """Send `count` messages over `connections` persistent sessions."""
    counter = iter(range(10**9))
    result = SubmitResult(0, 0, 0.0, [])
    t0 = time.perf_counter()
    outcomes = await asyncio.gather(
        *(session(host, port, source, lambda: next(counter), count, size, sender, rcpt,
                  result) for _ in range(connections)), return_exceptions=True)
    result.seconds = time.perf_counter() - t0
    for out in outcomes:
        if isinstance(out, BaseException):
            result.errors += 1
            result.first_error = result.first_error or f"session: {out!r}"
    return result


async def wait_listening(host: str, port: int, timeout: float, check=None) -> float:
    """Wait until a 220 greeting arrives; return the seconds it took."""
    t0 = time.monotonic()
    while True:
        if check:
            check()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            code, text = await asyncio.wait_for(reply(reader), 10)
            writer.write(b"QUIT\r\n")
            writer.close()
            if code == 220:
                return time.monotonic() - t0
        except (OSError, SmtpError, asyncio.TimeoutError):
            pass
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{host}:{port} not answering 220 after {timeout:.0f}s")
        await asyncio.sleep(0.1)


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(roots: list[int]) -> list[int]:
    kids, out, todo = _children_map(), [], list(roots)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class TreeSampler:
    def __init__(self, roots, interval: float = 0.1):
        self.roots, self.interval = roots, interval
        self.peak_rss_kb = self.peak_pss_kb = self.max_hwm_kb = self.max_procs = 0
        self._task: asyncio.Task | None = None

    def sample(self) -> None:
        pids = tree(self.roots())
        self.max_procs = max(self.max_procs, len(pids))
        self.peak_rss_kb = max(self.peak_rss_kb, sum(_status_kb(p, "VmRSS:") for p in pids))
        self.peak_pss_kb = max(self.peak_pss_kb, sum(_pss_kb(p) for p in pids))
        self.max_hwm_kb = max([self.max_hwm_kb] + [_status_kb(p, "VmHWM:") for p in pids])

    async def _loop(self) -> None:
        while True:
            await asyncio.to_thread(self.sample)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> dict:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.sample()
        return {"peak_rss_sum_kb": self.peak_rss_kb, "peak_pss_sum_kb": self.peak_pss_kb,
                "max_vmhwm_kb": self.max_hwm_kb, "max_processes": self.max_procs}
