"""The SMTP listener against real clients (smtplib, swaks, raw sockets) on
127.0.0.1 with the spool in tmp_path."""

from __future__ import annotations

import asyncio
import smtplib

import pytest

from tests.io.smtpd_helpers import Raw, make_store, running

MSG = (b"From: a@edge.example\r\nTo: b@edge.example\r\nSubject: hi\r\n"
       b"Message-ID: <m1@lan.example>\r\nPrecedence: bulk\r\n\r\nhello\r\n")


@pytest.fixture
def cfg(example_config):
    return example_config()


@pytest.fixture
def store(cfg):
    return make_store(cfg.spool_dir)


def smtplib_send(port, sender, rcpts, msg, **kw):
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.lan", timeout=10) as s:
        s.ehlo()
        return s.sendmail(sender, rcpts, msg, **kw), s


async def test_smtplib_submission_is_queued_with_envelope(cfg, store, caplog):
    caplog.set_level("INFO", logger="edgemail.smtpd")
    async with running(cfg, store) as smtpd:
        refused, _ = await asyncio.to_thread(
            smtplib_send, smtpd.port, "a@edge.example", ["b@edge.example", "c@far.example"], MSG)
    assert refused == {}
    lines = [r.getMessage() for r in caplog.records if "from=<a@edge.example>" in r.getMessage()]
    assert len(lines) == 1, lines
    qid = lines[0].split(":")[0]
    env = store.get(qid).envelope
    assert env.mail_from == "a@edge.example"
    assert [r.address for r in env.recipients] == ["b@edge.example", "c@far.example"]
    assert env.msgid == "m1@lan.example" and env.precedence == -60 and env.proto == "ESMTP"
    data = store.read_data(qid)
    assert data.startswith(b"Received: from client.lan ([127.0.0.1])\r\n\tby gw.edge.example (edgemail) with ESMTP;")
    assert data.endswith(MSG)
    assert env.size == len(data)
    assert f"size={len(data)}, class=-60, nrcpts=2, msgid=<m1@lan.example>, proto=ESMTP, relay=[127.0.0.1]:" in lines[0]
