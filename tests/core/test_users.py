"""delivery/users.py: who exists locally (local.users, users_file, passwd) and its config keys."""

import pwd

import pytest

from edgemail.config import loader as config
from edgemail.delivery.routing import Router
from edgemail.delivery.users import known_users, parse_users
from edgemail.errors import ConfigError


def load(tmp_path, local_toml: str):
    path = tmp_path / "edgemail.toml"
    path.write_text('hostname = "gw.edge.example"\nlocal_domains = ["edge.example"]\n'
                    f'SmartHost = "[192.0.2.25]:25"\n[local]\n{local_toml}\n')
    return config.load(path)


def test_users_file_names_comments_and_case():
    assert parse_users("# staff\nAnn\n\n  bob   # the boss\n") == {"ann", "bob"}


def test_users_file_bad_name_is_file_and_line():
    with pytest.raises(ConfigError, match=r"^/etc/edgemail/users:3: 'bob smith' is not a user name"):
        parse_users("ann\n# x\nbob smith\n", "/etc/edgemail/users")


def test_known_users_reads_the_list_the_file_and_passwd(tmp_path):
    (tmp_path / "users").write_text("carol\n")
    cfg = load(tmp_path, 'users = ["Ann"]\nusers_file = "users"')
    assert cfg.local.users_file == str(tmp_path / "users")          # relative to the config file
    names = known_users(cfg.local)
    me = pwd.getpwuid(0).pw_name
    assert {"ann", "carol", me} <= names
    router = Router(cfg, users=names)
    assert router.check_rcpt(f"{me}@edge.example") is None           # a passwd account
    assert router.check_rcpt("carol@edge.example") is None
    assert router.check_rcpt("NoSuchUser@edge.example") == "550 5.1.1 <NoSuchUser@edge.example>... User unknown"


def test_system_users_off_leaves_passwd_out(tmp_path):
    cfg = load(tmp_path, 'users = ["ann"]\nsystem_users = false')
    assert known_users(cfg.local) == {"ann"}


def test_unreadable_users_file_is_an_error(tmp_path):
    cfg = load(tmp_path, 'users_file = "missing"')
    with pytest.raises(ConfigError, match=r"missing: local.users_file: cannot read the users file"):
        known_users(cfg.local)


@pytest.mark.parametrize("toml,problem", [
    ('users = ["bob smith"]', r":5: local.users: 'bob smith' is not a user name"),
    ('users = [".x"]', r":5: local.users: '.x' is not a user name"),
    ('create_mailboxes = "yes"', r":5: local.create_mailboxes: expected true or false"),
    ('system_users = 1', r":5: local.system_users: expected true or false"),
], ids=["space", "dot", "create-not-bool", "system-not-bool"])
def test_config_check_validates_the_keys(tmp_path, toml, problem):
    with pytest.raises(ConfigError, match=problem):
        load(tmp_path, toml)


def test_passwd_by_name_asks_getpwnam_once_per_name_and_never_getpwall(tmp_path, monkeypatch):
    """The command line's users (local_router): each name asked of passwd once, a name that
    could not be a mailbox never; the whole passwd never read."""
    asked = []
    real = pwd.getpwnam
    monkeypatch.setattr(pwd, "getpwall", lambda: pytest.fail("getpwall called"))
    monkeypatch.setattr(pwd, "getpwnam", lambda name: (asked.append(name), real(name))[1])
    cfg = load(tmp_path, 'users = ["Ann"]\ncreate_mailboxes = false')
    users = known_users(cfg.local, passwd_by_name=True)
    router = Router(cfg, None, users)
    got = [router.check_rcpt(f"{u}@edge.example") for u in ("ann", "root", "root", "nosuchuser9", "postmaster")]
    assert got[:3] == [None, None, None] and got[4] is None, got
    assert got[3] == "550 5.1.1 <nosuchuser9@edge.example>... User unknown"
    assert "bad/name" not in users and "Bob Smith" not in users
    assert asked == ["root", "nosuchuser9"], f"got {asked}, want each name asked once"


def test_passwd_by_name_off_with_system_users_off(tmp_path):
    cfg = load(tmp_path, 'users = ["ann"]\nsystem_users = false')
    assert known_users(cfg.local, passwd_by_name=True) == {"ann"}
