"""edgemail import's cores: reading sendmail.mc / sendmail.cf / crontab
(cli/mcread.py), what they become (cli/migrate.py, cli/migrateroutes.py),
and the text written (cli/importrender.py), on the configurations of the
seed documents (tests/core/fixtures/sendmail/: each file says which seed and
which lines)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from link.policy import parse as parse_policy

from edgemail.cli import mcread, migrate, migrateroutes
from edgemail.cli.importrender import config_text, policy_text
from edgemail.config.loader import from_dict

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sendmail"


def _items(name: str) -> list[mcread.Item]:
    text = (FIXTURES / name).read_text()
    return mcread.read_cf(text) if name.endswith(".cf") else mcread.read_mc(text)


def _plan(name: str, crontab: str = "", **kw) -> migrate.Plan:
    inputs = migrate.Inputs(source=name, crontab=crontab, zone=kw.pop("zone", "Europe/Berlin"),
                            hostname=kw.pop("hostname", "vm"), **kw)
    plan = migrate.migrate(_items(name), inputs)
    jobs = mcread.read_crontab((FIXTURES / crontab).read_text()) if crontab else []
    migrateroutes.finish(plan, jobs, inputs)
    return plan


def _config(plan: migrate.Plan):
    text = config_text(plan, ["test"])
    return from_dict(tomllib.loads(text), path="/etc/edgemail/edgemail.toml", text=text)


# ---------------------------------------------------------------- reading

def test_mc_reads_like_m4_quotes_dnl_and_arguments():
    items = mcread.read_mc("define(`A_B', `x, (y)')dnl ignored(`z')\n"
                           "define(`confDIAL_DELAY',`10s')\nFEATURE(`msp', `[mail.example.org]')\n"
                           "MODIFY_MAILER_FLAGS(`SMTP', `+eZ')dnl\nLOCAL_DOMAIN(`a.example b.example')\n")
    got = [(i.kind, i.name, i.value) for i in items]
    assert got == [("define", "A_B", "x, (y)"), ("option", "DialDelay", "10s"),
                   ("feature", "msp", "[mail.example.org]"), ("flags", "smtp", "+eZ"),
                   ("domain", "a.example", "a.example"), ("domain", "b.example", "b.example")]


def test_mc_names_what_m4_would_not_read():
    items = _items("irix.mc")
    broken = next(i for i in items if i.line == 3)
    assert broken.kind == "unread" and "space before the parenthesis" in broken.note
    assert [i.line for i in items if i.line == 3] == [3]            # named once
    comment = next(i for i in items if i.kind == "feature" and i.name == "foo")
    assert "inside a # comment" in comment.note                      # m4 still expands it
    assert not any(i.name == "define" for i in items if i.line == 7)  # `define' quoted in a comment
    stray = next(i for i in _items("redhat.mc") if i.kind == "unread")
    assert stray.line == 18 and stray.text == "LOGIN PLAIN')dnl"


def test_cf_reads_options_mailers_classes_and_counts_the_rules():
    items = _items("dialup.cf")
    options = {i.name: i.value for i in items if i.kind == "option"}
    assert options == {"DeliveryMode": "delay", "DialDelay": "10s", "HoldExpensive": "True"}
    flags = next(i for i in items if i.kind == "flags")
    assert (flags.name, flags.value, flags.line) == ("qsmtp", "=mDFMuXae", 9)   # continuation joined
    assert {i.name for i in items if i.kind == "class"} == {"C{CustDoms}", "F{CustDoms}", "Cm", "Fm"}
    assert any(i.kind == "unread" and i.value == "2 rewriting rules" for i in items)


@pytest.mark.parametrize("line, kind, args", [
    ("0 * * * * /usr/lib/sendmail -q >/dev/null 2>&1", "queue-run", ()),
    ("*/30 * * * * /usr/sbin/sendmail -L sm-msp-queue -Ac -q", "queue-run", ()),
    ("@hourly root /usr/lib/sendmail -qR@edge.example", "queue-run", ("R@edge.example",)),
    ("1 * * * * /usr/local/bin/etrn.pl mail.isp.example edge.example >/dev/null 2>&1", "etrn",
     ("mail.isp.example", "edge.example")),
    ("0 */3 * * sat,sun root fetchmail -s", "poll", ()),
    ("1 * * * * /usr/local/bin/ >/dev/null 2>&1", "other", ()),       # the seed's line, its script name lost
    ("@reboot root /usr/local/sbin/start-fax", "other", ()),
])
def test_crontab_jobs(line, kind, args):
    (job,) = mcread.read_crontab(f"MAILTO=root\n{line}\n")
    assert (job.kind, job.args, job.line) == (kind, args, 2)


def test_a_cron_line_of_two_commands_is_a_queue_run_and_an_etrn():
    line = ("*/15 * * * * /usr/sbin/sendmail -q; /usr/share/sendmail/etrn.pl mail.isp.example edge.example"
            " > /dev/null 2>&1")
    jobs = mcread.read_crontab(line + "\n")
    assert [(j.kind, j.args, j.line) for j in jobs] == [("queue-run", (), 1),
                                                        ("etrn", ("mail.isp.example", "edge.example"), 1)]
    inputs = migrate.Inputs(source="x.mc", crontab="cron", zone="UTC", hostname="vm", domains=("edge.example",))
    plan = migrate.migrate(mcread.read_mc("define(`SMART_HOST',`mail.isp.example')\n"), inputs)
    migrateroutes.finish(plan, jobs, inputs)
    assert [(f, a) for f, a, _ in plan.rules] == [("*/15 * * * *", ["queue-run", "etrn"])]
    assert plan.link["etrn_host"][0] == "mail.isp.example" and plan.link["etrn_domains"][0] == ["edge.example"]
    assert not [d for d in plan.dropped if "cron:1" in d], plan.dropped
    cfg = _config(plan)
    assert cfg.link.etrn_host and cfg.link.etrn_domains == ("edge.example",)
    assert "*/15 * * * *             queue-run etrn" in policy_text(plan, ["test"])


# ---------------------------------------------------------------- what they become

def test_the_dialup_mc_carries_every_option_the_task_names():
    plan = _plan("dialup.mc", "office.crontab", lan=("192.168.1.0/24",))
    cfg = _config(plan)
    assert (cfg.DeliveryMode, cfg.SmartHost, cfg.DialDelay, cfg.MinQueueAge) == ("deferred", "[mail.isp.example]",
                                                                                 10.0, 27 * 60.0)
    assert (cfg.MaxMessageSize, cfg.hostname, cfg.local_domains) == (10485760, "gw.edge.example",
                                                                     ("edge.example", "gw.edge.example"))
    assert (cfg.Timeout.connect, cfg.Timeout.initial, cfg.Timeout.queuewarn["urgent"]) == (60.0, 300.0, 3600.0)
    assert cfg.Timeout.queuereturn["normal"] == 5 * 86400.0
    star = next(r for r in cfg.routes if r.pattern == "*")
    assert (star.kind, star.expensive, star.dialdelay) == ("smarthost", True, True)          # F=e, F=Z
    assert [(lst.name, lst.address) for lst in cfg.listeners] == [("MTA", "192.168.1.1"), ("WAN", "10.64.0.2")]
    assert (cfg.link.etrn_host, cfg.link.etrn_domains, cfg.local.aliases) == (
        "mail.isp.example", ("edge.example",), "/etc/mail/aliases")
    assert any("HostStatusDirectory" not in c and "hoststat.json" in c for c in plan.carried)
    assert any("confTO_IDENT" in d and "IDENT" in d for d in plan.dropped)


def test_the_dialup_crontab_becomes_rules_at_the_same_times_in_crons_zone():
    plan = _plan("dialup.mc", "office.crontab", zone="UTC")
    text = policy_text(plan, ["test"])
    policy = parse_policy(text)
    assert policy.zone.key == "Europe/Berlin"                         # the crontab's CRON_TZ
    rules = [(r.text.split()[:5], sorted(r.actions)) for r in policy.rules]
    assert rules[0] == (["*/15", "8-17", "*", "*", "mon-fri"], ["etrn", "queue-run"])   # same times: one rule
    assert (["0", "*/3", "*", "*", "sat,sun"], ["poll"]) in rules
    assert (["0", "*", "*", "*", "*"], ["queue-run"]) in rules        # @hourly
    assert any("run-parts" in d and "stays in cron" in d for d in plan.dropped)
    assert any("-qR@edge.example" in d for d in plan.dropped)


def test_the_seed_cf_delay_mode_dialdelay_without_z_and_its_cron():
    plan = _plan("dialup.cf", "dialup.crontab", domains=("edge.example",))
    cfg = _config(plan)
    star = next(r for r in cfg.routes if r.pattern == "*")
    assert (cfg.DialDelay, star.kind, star.dialdelay) == (10.0, "mx", True)   # no F=Z anywhere: DialDelay kept
    assert any("DeliveryMode=delay -> DeliveryMode = 'deferred'" in c for c in plan.carried)
    assert any("qsmtp" in d for d in plan.dropped) and any("CustDoms" in d for d in plan.dropped)
    rules = parse_policy(policy_text(plan, ["t"])).rules
    assert [r.text.split()[-1] for r in rules] == ["queue-run"]       # the lost ETRN line is not a rule
    assert any("dialup.crontab:4" in d and "stays in cron" in d for d in plan.dropped)


def test_redhat_mc():
    plan = _plan("redhat.mc", domains=("office.example",))
    cfg = _config(plan)
    assert cfg.local_domains == ("office.example", "localhost.localdomain")
    assert cfg.PrivacyOptions == {"authwarnings", "novrfy", "noexpn", "restrictqrun"}
    assert (cfg.listeners[0].address, cfg.listeners[0].port, cfg.local.aliases) == ("0.0.0.0", 25, "/etc/aliases")
    for name in ("confTRUSTED_USER", "UUCP_MAILER_MAX", "confUSERDB_SPEC", "confAUTH_OPTIONS", "LOGIN PLAIN",
                 "mailertable", "virtusertable", "local_procmail", "access_db", "confTO_IDENT"):
        assert any(name in d for d in plan.dropped), name
    assert not any("dnl define" in d or "confCACERT" in d for d in plan.dropped)   # dnl lines are comments


def test_laptop_msp_and_its_clientmqueue_cron():
    plan = _plan("laptop-submit.mc", "msp.crontab", domains=("laptop.example",))
    assert _config(plan).SmartHost == "mail.example.org"
    assert [r.text for r in parse_policy(policy_text(plan, ["t"])).rules] == ["*/30 * * * *             queue-run"]


@pytest.mark.parametrize("seconds, fields, exact", [
    (15 * 60, "*/15 * * * *", True), (29 * 60, "*/29 * * * *", False), (3600, "0 */1 * * *", True),
    (5 * 3600, "0 */5 * * *", False), (2 * 86400, "0 0 * * *", False)])
def test_queue_interval_as_cron_fields(seconds, fields, exact):
    got, note = migrateroutes.interval_fields(seconds)
    assert got == fields and (note == "") == exact


def test_no_local_domain_is_an_error_naming_the_fix():
    with pytest.raises(ValueError, match="--domain"):
        _plan("redhat.mc", hostname="vm")
    assert _plan("redhat.mc", hostname="gw.office.example").routes[0][0] == "gw.office.example"


def test_values_the_loader_refuses_are_named_not_written():
    items = mcread.read_mc("define(`confDIAL_DELAY', `soon')\ndefine(`confQUEUE_SORT_ORDER', `Modification')\n"
                           "define(`confPRIVACY_FLAGS', `goaway,frobnicate')\nLOCAL_DOMAIN(`a.example')\n")
    inputs = migrate.Inputs(source="x.mc")
    plan = migrate.migrate(items, inputs)
    migrateroutes.finish(plan, [], inputs)
    cfg = _config(plan)
    assert cfg.DialDelay == 10.0 and cfg.QueueSortOrder == "priority" and cfg.PrivacyOptions == {"goaway"}
    assert [d.split(":")[1] for d in plan.dropped[:3]] == ["1", "2", "3"], plan.dropped


def test_privacy_options_each_word_carried_or_named():
    inputs = migrate.Inputs(source="p.mc", zone="UTC", hostname="vm", domains=("edge.example",))
    plan = migrate.migrate(mcread.read_mc("define(`confPRIVACY_FLAGS', `authwarnings,goaway,noetrn,restrictqrun,"
                                          "noreceipts,restrictexpand')\n"), inputs)
    carried = "\n".join(plan.carried)
    for word, effect in [("noetrn", "ETRN is not offered (502 5.5.1)"), ("novrfy", "VRFY is 252 2.5.2"),
                         ("noexpn", "EXPN is 502 5.5.1"), ("needmailhelo", "MAIL before HELO/EHLO is 503"),
                         ("restrictqrun", "sendmail -q: root, the edgemail user and group only"),
                         ("noreceipts", "no success reports")]:
        assert f"PrivacyOptions {word} -> {effect}" in carried, carried       # goaway gave novrfy, noexpn...
    dropped = "\n".join(plan.dropped)
    assert "PrivacyOptions restrictexpand -> sendmail -bv / -bt show an alias's expansion" in carried
    for word in ("authwarnings", "noactualrecipient"):
        assert f"PrivacyOptions {word}: " in dropped, dropped
    assert plan.top["PrivacyOptions"][0] == "authwarnings,goaway,noetrn,restrictqrun,noreceipts,restrictexpand"
