"""smtpd/params.py: ESMTP and DSN parameters of MAIL and RCPT (tables)."""

from __future__ import annotations

import pytest

from edgemail.smtpd.params import MailParams, ParamError, RcptParams, mail_params, rcpt_params

MAIL_GOOD = [
    ("", MailParams()),
    ("SIZE=1000", MailParams(size=1000)),
    ("body=8bitmime SMTPUTF8", MailParams(body="8BITMIME", smtputf8=True)),
    ("RET=hdrs ENVID=Abc+2Bdef", MailParams(ret="HDRS", envid="Abc+2Bdef")),
]
MAIL_BAD = [
    ("SIZE=ten", "501 5.5.4"), ("SIZE", "501 5.5.4"), ("SIZE=1 SIZE=2", "501 5.5.4 Duplicate"),
    ("BODY=BINARYMIME", "501 5.5.4"), ("SMTPUTF8=yes", "501 5.5.4"),
    ("RET=ALL", "501 5.5.4 RET"), ("RET", "501 5.5.4 RET needs"),
    ("ENVID=a+zz", "501 5.5.4 ENVID"), ("ENVID=a=b", "501 5.5.4"), ("ENVID=" + "a" * 101, "501 5.5.4 ENVID"),
    ("AUTH=<>", "555 5.5.4"), ("X-FOO", "555 5.5.4"), ("=x", "501 5.5.4"),
]
RCPT_GOOD = [
    ("", RcptParams()),
    ("NOTIFY=NEVER", RcptParams(notify=frozenset({"NEVER"}))),
    ("notify=success,Delay", RcptParams(notify=frozenset({"SUCCESS", "DELAY"}))),
    ("ORCPT=rfc822;User+40Example.org", RcptParams(orcpt="rfc822;User+40Example.org")),
]
RCPT_BAD = [
    ("NOTIFY=NEVER,SUCCESS", "501 5.5.4 NOTIFY"), ("NOTIFY=SOMETIMES", "501 5.5.4 NOTIFY"),
    ("NOTIFY=", "501 5.5.4"), ("NOTIFY=SUCCESS,", "501 5.5.4 NOTIFY"),
    ("ORCPT=rfc822", "501 5.5.4 ORCPT"), ("ORCPT=rfc822;", "501 5.5.4 ORCPT"),
    ("ORCPT=;a@b", "501 5.5.4 ORCPT"), ("ORCPT=rfc822;a+g1", "501 5.5.4 ORCPT"),
    ("RET=FULL", "555 5.5.4"),
]


@pytest.mark.parametrize("text,want", MAIL_GOOD, ids=[t for t, _ in MAIL_GOOD])
def test_mail_good(text, want):
    assert mail_params(text) == want


@pytest.mark.parametrize("text,want", MAIL_BAD, ids=[t[:30] for t, _ in MAIL_BAD])
def test_mail_bad(text, want):
    with pytest.raises(ParamError) as exc:
        mail_params(text)
    assert exc.value.reply.startswith(want), f"got {exc.value.reply!r}, want {want!r}"


@pytest.mark.parametrize("text,want", RCPT_GOOD, ids=[t for t, _ in RCPT_GOOD])
def test_rcpt_good(text, want):
    assert rcpt_params(text) == want


@pytest.mark.parametrize("text,want", RCPT_BAD, ids=[t for t, _ in RCPT_BAD])
def test_rcpt_bad(text, want):
    with pytest.raises(ParamError) as exc:
        rcpt_params(text)
    assert exc.value.reply.startswith(want), f"got {exc.value.reply!r}, want {want!r}"
