"""The control socket against the real client, over a real unix socket."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat

import pytest

from edgemail.daemon.control import ControlClient, ControlServer, DaemonUnreachable, RequestFailed, Stream
from edgemail.errors import ControlError


async def _echo(req: dict) -> dict:
    return {"echo": req.get("value"), "peer": req["_peer"]}


async def _boom(req: dict) -> dict:
    raise RuntimeError("bug")


async def _bad(req: dict) -> dict:
    raise KeyError(f"unknown queue id {req.get('qid')!r}")


async def _listing(req: dict) -> Stream:
    n = int(req["n"])
    return Stream(({"i": i} for i in range(n)), {"total": n})


HANDLERS = {"echo": _echo, "boom": _boom, "bad": _bad, "list": _listing}


@pytest.fixture
async def server(tmp_path):
    srv = ControlServer(str(tmp_path / "run" / "control.sock"), HANDLERS, max_request=4096, timeout=5)
    await srv.start()
    yield srv
    await srv.close()


def _call(path, op, **fields):
    return ControlClient(path, timeout=5).request(op, **fields)


async def test_roundtrip_and_mode(server):
    reply = await asyncio.to_thread(_call, server.path, "echo", value="héllo", _peer={"uid": 12345})
    assert reply == {"ok": True, "echo": "héllo",
                     "peer": {"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid()}}
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o660


async def test_stream_reply_collects_items(server):
    reply = await asyncio.to_thread(_call, server.path, "list", n=5000)
    assert reply["total"] == 5000
    assert [x["i"] for x in reply["items"]] == list(range(5000))


@pytest.mark.parametrize("op, want", [
    ("nosuch", "unknown op 'nosuch'"),
    ("boom", "internal error"),
    ("bad", "unknown queue id 'Q1'"),
], ids=["unknown-op", "handler-bug", "handler-keyerror"])
async def test_errors_are_replies(server, op, want):
    with pytest.raises(RequestFailed) as exc:
        await asyncio.to_thread(_call, server.path, op, qid="Q1")
    assert want in str(exc.value), f"got {exc.value}, want {want!r}"
    # the server survives
    assert (await asyncio.to_thread(_call, server.path, "echo", value=1))["echo"] == 1


def _raw(path: str, payload: bytes) -> list[dict]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return [json.loads(x) for x in data.splitlines()]


@pytest.mark.parametrize("payload, want", [
    (b"{not json\n", "bad JSON"),
    (b"[1,2]\n", "JSON object with a string \"op\""),
    (b'{"op": 5}\n', "JSON object with a string \"op\""),
    (b'{"op": "x"}' + b" " * 5000 + b"\n", "request too long"),
], ids=["bad-json", "not-object", "op-not-string", "too-long"])
async def test_bad_requests(server, payload, want):
    replies = await asyncio.to_thread(_raw, server.path, payload)
    assert replies[0]["ok"] is False
    assert want in replies[0]["error"]


async def test_several_requests_on_one_connection(server):
    payload = b'{"op":"echo","value":1}\n{"op":"echo","value":2}\n'
    replies = await asyncio.to_thread(_raw, server.path, payload)
    assert [r["echo"] for r in replies] == [1, 2]


def test_client_daemon_down(tmp_path):
    with pytest.raises(DaemonUnreachable) as exc:
        ControlClient(str(tmp_path / "none.sock")).request("status")
    assert "daemon not running" in str(exc.value)


async def test_stale_socket_replaced_live_one_refused(tmp_path):
    path = str(tmp_path / "c.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()                      # a dead daemon's socket file
    first = ControlServer(path, HANDLERS)
    await first.start()
    try:
        second = ControlServer(path, HANDLERS)
        with pytest.raises(ControlError, match="another daemon"):
            await second.start()
    finally:
        await first.close()
    assert not os.path.exists(path)


async def test_client_gone_mid_stream_stops_the_writes(server, caplog):
    """A client that leaves after the header (mailq piped to head, or killed)
    ends the stream: no write to the dead socket, so asyncio's "socket.send()
    raised exception." never floods the log, and the server goes on serving."""
    produced, ended = [], []
    stream_closed = asyncio.Event()

    async def slow_listing(req):
        def items():
            try:
                for i in range(200_000):
                    produced.append(i)
                    yield {"i": i, "pad": "x" * 100}
            finally:                            # the server is done with this stream
                ended.append(len(produced))
                stream_closed.set()
        return Stream(items(), {"total": 200_000})
    server.handlers["slow"] = slow_listing
    caplog.set_level("WARNING", logger="asyncio")

    def leave_after_header():
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(server.path)
            s.sendall(b'{"op": "slow"}\n')
            assert json.loads(s.makefile("rb").readline())["stream"] is True
    for n in range(1, 4):
        await asyncio.to_thread(leave_after_header)
        while len(ended) < n:                   # the server ended the stream (no more writes)
            await asyncio.wait_for(stream_closed.wait(), 10)
            stream_closed.clear()
    assert "socket.send() raised exception" not in caplog.text
    assert len(produced) < 3 * 200_000          # it stopped early
    assert (await asyncio.to_thread(_call, server.path, "echo", value=1))["echo"] == 1


async def test_ops_not_public_need_an_administrator(tmp_path):
    from edgemail.daemon.control import is_admin
    srv = ControlServer(str(tmp_path / "c.sock"), HANDLERS, public={"list"})
    await srv.start()
    try:
        assert stat.S_IMODE(os.stat(srv.path).st_mode) == 0o666    # public ops: anyone connects
    finally:
        await srv.close()
    me = os.getpid()
    user = {"uid": 65534, "gid": 65534, "pid": me}
    refused = await srv.dispatch(b'{"op": "echo", "value": 1}', user)
    assert refused["ok"] is False and "echo: permission denied (uid 65534)" in refused["error"]
    assert (await srv.dispatch(b'{"op": "list", "n": 1}', user)).header == {"total": 1}
    assert (await srv.dispatch(b'{"op": "echo", "value": 1}', None))["echo"] == 1   # in-process
    assert (await srv.dispatch(b'{"op": "echo", "value": 1}', {}))["ok"] is False    # no credentials
    assert is_admin({"uid": 0, "gid": 5, "pid": me}) and is_admin({"uid": 1000, "gid": os.getegid(), "pid": 1})
    assert not is_admin({"uid": 1000, "gid": 1000, "pid": 2 ** 22 + 7})          # no such pid: no groups
