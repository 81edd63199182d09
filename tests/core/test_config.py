"""Config: the example loads; every error names file, line, key and expectation."""

import pytest

from edgemail.config import loader as config
from edgemail.errors import ConfigError, ConfigErrors


def write(tmp_path, text):
    p = tmp_path / "e.toml"
    p.write_text(text)
    return p


BASE = 'local_domains = ["a.example"]\n'


def test_example_config_loads(example_config):
    cfg = example_config()
    assert cfg.DeliveryMode == "deferred"
    assert cfg.local_domains == ("edge.example",)
    assert cfg.Timeout.queuewarn["urgent"] == 3600
    assert cfg.Timeout.queuewarn["normal"] == 4 * 3600
    star = [r for r in cfg.routes if r.pattern == "*"][0]
    assert star.expensive and star.dialdelay and star.kind == "smarthost"
    assert cfg.commit_helpers == 1
    assert cfg.RunAsUser == ""


@pytest.mark.parametrize("text,line,key,words", [
    (BASE + 'DeliveryMode = "background"\n', 2, "DeliveryMode", "deferred"),
    (BASE + 'DialDelay = "ten seconds"\n', 2, "DialDelay", "duration"),
    (BASE + '[Timeout]\nconect = "1m"\n', 3, "Timeout.conect", "unknown key"),
    (BASE + 'MaxMessageSize = -4\n', 2, "MaxMessageSize", "size"),
    (BASE + 'lan_networks = ["192.168.1.0/33"]\n', 2, "lan_networks", "networks"),
    (BASE + '[routes]\n"x.example" = "carrier-pigeon"\n', 3, "routes.x.example", "unknown route kind"),
    (BASE + '[[listen]]\naddress = "mail.example"\n', 3, "listen.address", "numeric IP"),
    ('local_domains = []\n', 1, "local_domains", "at least one"),
    (BASE + '[spool]\ncommit_helpers = 17\n', 3, "spool.commit_helpers", "from 0 to 16"),
    (BASE + 'RunAsUser = "mail:daemon:x"\n', 2, "RunAsUser", "a user name or number, optionally :group"),
    (BASE + '[local]\nmaildir_mode = "0666"\n', 3, "local.maildir_mode", "others may not write"),
    (BASE + '[local]\nmaildir_mode = 0o440\n', 3, "local.maildir_mode", "the owner must read and write"),
    (BASE + '[local]\nmaildir_mode = "rw-rw----"\n', 3, "local.maildir_mode", "a file mode such as"),
    (BASE + '[local]\n\nmaildir_group = "no-such-group-x"\n', 4, "local.maildir_group", "no such group"),
    (BASE + '[local]\nmaildir_owner = "no-such-user-x"\n', 3, "local.maildir_owner", "no such user"),
], ids=["delivery-mode", "duration", "unknown-key", "size", "network", "route", "listen-name", "no-domains",
        "helpers", "run-as-user", "maildir-mode-others", "maildir-mode-owner", "maildir-mode-word",
        "maildir-group", "maildir-owner"])
def test_errors_name_file_line_key(tmp_path, text, line, key, words):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        config.load(p)
    msg = str(ei.value)
    assert f"{p}:{line}: {key}:" in msg, msg
    assert words in msg


def test_syntax_error_has_parser_line(tmp_path):
    p = write(tmp_path, BASE + "DialDelay = = 3\n")
    with pytest.raises(ConfigError) as ei:
        config.load(p)
    assert f"{p}:2:" in str(ei.value)


def test_all_errors_reported_at_once(tmp_path):
    p = write(tmp_path, BASE + 'DialDelay = "x"\nLogLevel = "loud"\n')
    with pytest.raises(ConfigErrors) as ei:
        config.load(p)
    assert {e.key for e in ei.value.errors} == {"DialDelay", "LogLevel"}


def test_hostname_from_etc_hostname_not_resolver(tmp_path):
    hn = tmp_path / "hostname"
    hn.write_text("router7\n")
    cfg = config.load(write(tmp_path, BASE), etc_hostname=str(hn))
    assert cfg.hostname == "router7"


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("5m", 300), ("1h30m", 5400), ("2d", 172800), (45, 45), ("0", 0)])
def test_durations(text, seconds):
    assert config.parse_duration(text) == seconds


def test_dump_shows_every_setting_in_sections(tmp_path):
    cfg = config.from_dict({
        "local_domains": ["a.example"], "PrivacyOptions": "noexpn,goaway", "SmartHost": "[s.example]:587",
        "routes": {"*": "smarthost", "b.example": {"route": "relay:[10.0.0.1]:25", "expensive": True}},
        "Timeout": {"queuewarn": "1h"}, "spool": {"directory": "q"},
        "listen": [{"address": "::1", "port": 2525, "strict": True}, {"name": "wan", "address": "192.0.2.1"}],
    }, path=str(tmp_path / "edgemail.toml"))
    text = config.dump(cfg)
    lines = text.splitlines()
    want_in_order = [
        f'path = "{tmp_path / "edgemail.toml"}"', f'spool_dir = "{tmp_path.resolve() / "q"}"',
        'SmartHost = "[s.example]:587"',
        'PrivacyOptions = ["goaway", "noexpn"]', "",
        "[[listen]]", 'name = "listen0"', 'address = "::1"', "port = 2525", "strict = true", "",
        "[[listen]]", 'name = "wan"', "port = 25", "strict = false", "",
        "[routes]", '"*" = { route = "smarthost", expensive = true, dialdelay = false }',
        '"b.example" = { route = "relay:[10.0.0.1]:25", expensive = true, dialdelay = false }', "",
        "[Timeout]", '"queuewarn.urgent" = 3600.0', '"queuereturn.non-urgent" = 432000.0', "",
        "[smtpd]", "", "[local]", "", "[dns]", "", "[retry]", "", "[link]", 'mode = "none"']
    at = 0
    for want in want_in_order:
        assert want in lines[at:], f"want {want!r} after line {at} of:\n{text}"
        at = lines.index(want, at) + 1
    assert text.endswith("\n") and 'control_socket = "/run/edgemail/control.sock"' in lines


@pytest.mark.parametrize("value, mode", [('"0660"', 0o660), ("0o640", 0o640), ('"600"', 0o600)])
def test_maildir_mode_in_octal_either_way(tmp_path, value, mode):
    cfg = config.load(write(tmp_path, BASE + f'[local]\nmaildir_mode = {value}\nmaildir_group = "mail"\n'))
    assert cfg.local.maildir_mode == mode and cfg.local.maildir_group == "mail"
    assert f'maildir_mode = "{mode:04o}"' in config.dump(cfg)
