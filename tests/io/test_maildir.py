"""Maildir delivery on real files: parsed back by mailbox.Maildir (and Dovecot's
doveadm when installed), concurrent deliveries, disk full, permissions, loops."""

import asyncio
import email
import mailbox
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from edgemail.envelope import RcptStatus
from edgemail.errors import PermFail, TempFail
from edgemail.delivery import maildir

MSG = (b"From: Ann <ann@lan.example>\r\nTo: bob@edge.example\r\nSubject: hello %d\r\n"
       b"Message-ID: <m%d@lan.example>\r\n\r\nline one\r\n.leading dot\r\nline three\r\n")


def msg(i=0):
    return MSG.replace(b"%d", str(i).encode())


async def test_delivery_parses_back_with_stdlib(tmp_path):
    box = tmp_path / "bob" / "Maildir"          # missing: created with cur/new/tmp
    att = await maildir.deliver(str(box), msg(1), mail_from="ann@lan.example",
                                rcpt="bob@edge.example", host="gw.edge.example", now=123.0)
    assert att.status is RcptStatus.SENT and att.dsn == "2.0.0" and att.relay == "maildir"
    assert sorted(os.listdir(box)) == ["cur", "new", "tmp"]
    assert os.listdir(box / "tmp") == []
    md = mailbox.Maildir(str(box), factory=None, create=False)
    [m] = list(md)
    assert m["Return-Path"] == "<ann@lan.example>"
    assert m["Delivered-To"] == "bob@edge.example"
    assert m["Subject"] == "hello 1"
    assert m.get_payload() == "line one\n.leading dot\nline three\n"
    assert m.get_subdir() == "new"
    [name] = os.listdir(box / "new")
    assert name in att.text


def test_unique_name_follows_the_spec():
    assert maildir.unique_name(1700000000.25, 4242, 7, "gw/a:b") == "1700000000.M250000P4242Q7.gw\\057a\\072b"


async def test_concurrent_deliveries_get_unique_names(tmp_path):
    box = str(tmp_path / "Maildir")
    n = 60
    results = await asyncio.gather(*[
        maildir.deliver(box, msg(i), mail_from="ann@lan.example", rcpt="bob@edge.example",
                        host="gw", now=0.0) for i in range(n)])
    assert len(results) == n
    names = os.listdir(os.path.join(box, "new"))
    assert len(set(names)) == n
    subjects = sorted(m["Subject"] for m in mailbox.Maildir(box, factory=None, create=False))
    assert subjects == sorted(f"hello {i}" for i in range(n))
    assert os.listdir(os.path.join(box, "tmp")) == []


_CHILD = """
import sys
from edgemail.delivery import maildir
for i in range(int(sys.argv[2])):
    maildir.deliver_sync(sys.argv[1], b"Subject: p%s-%d\\r\\n\\r\\nx\\r\\n" % (sys.argv[3].encode(), i),
                         mail_from="a@b", rcpt="c@d", host="gw")
"""


def test_concurrent_processes_same_box(tmp_path):
    box = str(tmp_path / "Maildir")
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, box, "25", str(k)],
                              cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
             for k in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    got = sorted(m["Subject"] for m in mailbox.Maildir(box, factory=None, create=False))
    assert got == sorted(f"p{k}-{i}" for k in range(3) for i in range(25))


async def test_mail_loop_is_permanent(tmp_path):
    looped = b"Delivered-To: Bob@Edge.Example\r\n" + msg()
    with pytest.raises(PermFail) as ei:
        await maildir.deliver(str(tmp_path / "M"), looped, mail_from="a@b",
                              rcpt="bob@edge.example", host="gw", now=0.0)
    assert ei.value.dsn == "5.4.6" and "mail loop" in ei.value.reason
    assert not (tmp_path / "M").exists()


def test_delivered_to_in_body_is_not_a_loop():
    assert not maildir.has_delivered_to(b"Subject: x\r\n\r\nDelivered-To: bob@edge.example\r\n",
                                        "bob@edge.example")


@pytest.fixture
def tiny_fs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (CI runs as root)")
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount tmpfs: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


async def test_disk_full_is_tempfail_and_leaves_nothing(tiny_fs):
    box = str(tiny_fs / "Maildir")
    big = b"Subject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n"
    with pytest.raises(TempFail) as ei:
        await maildir.deliver(box, big, mail_from="a@b", rcpt="c@d", host="gw", now=0.0)
    assert ei.value.dsn == "4.3.1" and "no space left" in ei.value.reason
    assert os.listdir(os.path.join(box, "tmp")) == [] and os.listdir(os.path.join(box, "new")) == []


@pytest.fixture
def open_dir():
    """A folder other users can traverse (pytest's tmp base is 0700 root)."""
    d = tempfile.mkdtemp(prefix="edgemail-maildir-")
    os.chmod(d, 0o755)
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


_NOPERM_CHILD = """
import asyncio, os, sys, concurrent.futures.thread
from edgemail.delivery import maildir
from edgemail.errors import TempFail
if os.geteuid() == 0:             # imports first: the interpreter may live where nobody cannot read
    os.setgid(65534); os.setuid(65534)
try:
    asyncio.run(maildir.deliver(sys.argv[1], b"Subject: x\\r\\n\\r\\ny\\r\\n", mail_from="a@b",
                                rcpt="c@d", host="gw", now=0.0))
except TempFail as exc:
    print(exc.dsn, exc.reason)
"""


def test_missing_permission_is_tempfail_with_reason(open_dir):
    box = open_dir / "locked" / "Maildir"
    box.parent.mkdir()
    os.chmod(box.parent, 0o500)       # nobody (or we, when not root) may not create the box
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-c", _NOPERM_CHILD, str(box)], capture_output=True,
                       text=True, cwd=root, env={**os.environ, "PYTHONPATH": root}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("4.2.0 permission denied writing "), r.stdout
    assert str(box) in r.stdout and "uid" in r.stdout


@pytest.mark.skipif(shutil.which("doveadm") is None, reason="Dovecot's doveadm not installed (optional check)")
async def test_dovecot_reads_the_box(open_dir):
    tmp_path = open_dir
    if os.geteuid() != 0:
        pytest.skip("doveadm check runs the mail access as nobody: needs root")
    box = tmp_path / "Maildir"
    for i in range(3):
        await maildir.deliver(str(box), msg(i), mail_from="ann@lan.example",
                              rcpt="bob@edge.example", host="gw", now=0.0)
    conf = tmp_path / "dovecot.conf"
    conf.write_text(f"mail_location = maildir:{box}\nmail_uid = 65534\nmail_gid = 65534\nssl = no\n")
    subprocess.run(["chown", "-R", "65534:65534", str(box)], check=True)
    r = subprocess.run(["doveadm", "-c", str(conf), "fetch", "hdr.subject hdr.delivered-to",
                        "mailbox", "INBOX", "all"], capture_output=True, text=True, timeout=60,
                       env={"HOME": str(tmp_path), "USER": "nobody", "PATH": os.environ["PATH"]})
    assert r.returncode == 0, r.stderr
    assert sorted(l for l in r.stdout.splitlines() if l.startswith("hdr.subject")) == [
        f"hdr.subject: hello {i}" for i in range(3)]
    assert r.stdout.count("hdr.delivered-to: bob@edge.example") == 3


def test_message_stays_parseable_by_email_package(tmp_path):
    name = maildir.deliver_sync(str(tmp_path / "M"), msg(5), mail_from="", rcpt="x@y", host="gw")
    m = email.message_from_bytes((tmp_path / "M" / "new" / name).read_bytes())
    assert m["Return-Path"] == "<>" and m["Subject"] == "hello 5"


def test_shared_perms_give_every_new_folder_and_file_the_group_and_mode(tmp_path):
    """[local] maildir_group/maildir_mode (Dovecot's shared identity): what is made gets them,
    what exists is left alone."""
    import grp
    import stat as st

    from edgemail.delivery import maildir as md
    if os.geteuid() != 0:
        pytest.skip("chgrp to a group we are not in needs root")
    gid = grp.getgrnam("mail").gr_gid
    perms = md.Perms(gid=gid, mode=0o660, names="mail")
    (tmp_path / "old").mkdir(mode=0o700)
    box = tmp_path / "old" / "kim" / "Maildir"
    name = md.deliver_sync(str(box), b"Subject: s\r\n\r\nx\r\n", mail_from="a@x", rcpt="kim@x", host="h",
                           perms=perms)
    for folder in (box.parent, box, box / "tmp", box / "new", box / "cur"):
        s = folder.stat()
        assert (st.S_IMODE(s.st_mode), s.st_gid) == (0o2770, gid), folder
    assert st.S_IMODE((tmp_path / "old").stat().st_mode) == 0o700        # it existed: unchanged
    f = (box / "new" / name).stat()
    assert (st.S_IMODE(f.st_mode), f.st_gid) == (0o660, gid)
    assert md.Perms(mode=0o640).dir_mode == 0o750 and md.PRIVATE.dir_mode == 0o700
