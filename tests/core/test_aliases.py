"""aliases: the sendmail format, includes, owner-, loops, and errors naming file:line."""

import pytest

from edgemail.delivery import aliases
from edgemail.delivery.aliases import AliasLoop, Target
from edgemail.config.model import LocalConfig
from edgemail.errors import ConfigError


def local_only(address):
    """Test domain rule: no domain or @edge.example is local."""
    local, at, domain = address.rpartition("@")
    if not at:
        return domain.lower()
    return local.lower() if domain.lower() == "edge.example" else None


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_format_comments_continuations_quotes(tmp_path):
    p = write(tmp_path, "aliases", (
        "# system aliases\n"
        "\n"
        "Postmaster: root\n"
        "staff: ann, bob@edge.example,\n"
        "\tcarol@far.example\n"
        "   , <dave@far.example>\n"
        "root: \\root, admin\n"))
    a = aliases.load(str(p))
    assert a.get("POSTMASTER").targets == (Target("root"),)
    assert [t.address for t in a.get("staff").targets] == [
        "ann", "bob@edge.example", "carol@far.example", "dave@far.example"]
    assert a.get("root").targets == (Target("root", literal=True), Target("admin"))
    assert a.get("staff").line == 4


def test_include_relative_to_aliases_file_and_nested(tmp_path):
    (tmp_path / "lists").mkdir()
    write(tmp_path / "lists", "team", "# team members\nann\nbob, :include:more\n")
    write(tmp_path / "lists", "more", "zed@far.example\n")
    p = write(tmp_path, "aliases", "team: :include:lists/team\n")
    a = aliases.load(str(p))
    assert [t.address for t in a.get("team").targets] == ["ann", "bob", "zed@far.example"]


@pytest.mark.parametrize("text,line,words", [
    ("root\n", 1, 'expected "name: target'),
    ("  ann\nroot: ann\n", 1, "continuation line before any alias"),
    ("a: b\nb:\n", 2, "has no targets"),
    ("a: b\nA: c\n", 2, "duplicate alias 'A' (first on line 1)"),
    ("a: b\n\nc: x@y@z\n", 3, "bad target"),
    ("a: user%far.example@edge.example\n", 1, "bad target"),
    ("a: far!user\n", 1, "bad target"),
    ("# c\nprog: \"|/usr/bin/procmail -a x\"\n", 2, "program targets are refused"),
    ("log: /var/log/mail.copy\n", 1, "file targets are refused"),
    ("a: :include:\n", 1, ":include: needs a file name"),
    ("a: b\nlist: :include:missing\n", 2, "cannot read"),
], ids=["no-colon", "orphan-continuation", "empty", "duplicate", "two-at", "percent-hack",
        "bang-path", "program", "file", "include-empty", "include-missing"])
def test_parse_errors_name_file_and_line(tmp_path, text, line, words):
    p = write(tmp_path, "aliases", text)
    with pytest.raises(ConfigError) as ei:
        aliases.load(str(p))
    msg = str(ei.value)
    assert msg.startswith(f"{p}:{line}: "), msg
    assert words in msg, msg


def test_program_target_allowed_still_refused_with_reason(tmp_path):
    p = write(tmp_path, "aliases", "prog: |/bin/cat\n")
    with pytest.raises(ConfigError, match="allow_program_targets is set, but edgemail has no program transport"):
        aliases.load(str(p), LocalConfig(allow_program_targets=True))


def test_error_inside_include_names_the_include_line(tmp_path):
    inc = write(tmp_path, "members", "ann\n\n|/bin/sh\n")
    p = write(tmp_path, "aliases", "list: :include:members\n")
    with pytest.raises(ConfigError) as ei:
        aliases.load(str(p))
    assert str(ei.value).startswith(f"{inc.resolve()}:3: ")


def test_include_loop_detected(tmp_path):
    write(tmp_path, "a.inc", ":include:b.inc\n")
    write(tmp_path, "b.inc", "ann, :include:a.inc\n")
    p = write(tmp_path, "aliases", "x: :include:a.inc\n")
    with pytest.raises(ConfigError, match=r":include: loop: .*a\.inc -> .*b\.inc -> .*a\.inc"):
        aliases.load(str(p))


def test_same_include_twice_is_not_a_loop(tmp_path):
    write(tmp_path, "m.inc", "ann\n")
    p = write(tmp_path, "aliases", "x: :include:m.inc\ny: :include:m.inc, bob\n")
    assert len(aliases.load(str(p)).get("y").targets) == 2


def test_no_aliases_file_is_an_empty_table():
    assert aliases.load("").entries == {}


# ---------------------------------------------------------------- expansion

TABLE = aliases.parse(
    "unix-wizards: eric@ucbarpa.example, wnj@monet.example, nosuchuser,\n"
    "  sam@matisse.example\n"
    "owner-unix-wizards: unix-wizards-request\n"
    "unix-wizards-request: eric@ucbarpa.example\n"
    "all: unix-wizards, staff\n"
    "owner-staff: ann, bob\n"
    "staff: ann, Bob@edge.example, ann\n"
    "ann: ann, ann@home.example\n"
    "ping: pong\n"
    "pong: ping@edge.example\n"
    + "".join(f"d{i}: d{i + 1}\n" for i in range(30)),
    "/etc/aliases")


@pytest.mark.parametrize("name,want", [
    ("unix-wizards", [("eric@ucbarpa.example", "unix-wizards-request"),
                      ("wnj@monet.example", "unix-wizards-request"),
                      ("nosuchuser", "unix-wizards-request"),
                      ("sam@matisse.example", "unix-wizards-request")]),
    ("staff", [("ann", "owner-staff"), ("ann@home.example", "owner-staff"),
               ("bob@edge.example", "owner-staff")]),
    ("ANN", [("ann", None), ("ann@home.example", None)]),
    ("nobody", [("nobody", None)]),
], ids=["owner-single-target", "owner-several-dedupe", "self-reference-idiom", "not-an-alias"])
def test_expand(name, want):
    got = [(a.lower(), owner) for a, owner, _ in TABLE.expand(name, local_only).addresses]
    assert got == want


def test_nested_list_keeps_innermost_owner():
    got = dict((a, o) for a, o, _ in TABLE.expand("all", local_only).addresses)
    assert got["nosuchuser"] == "unix-wizards-request"
    assert got["ann"] == "owner-staff"


def test_loop_through_other_names_is_an_error_naming_the_chain():
    with pytest.raises(AliasLoop, match=r"/etc/aliases:\d+: alias loop: ping -> pong -> ping"):
        TABLE.expand("ping", local_only)


def test_depth_limit():
    with pytest.raises(AliasLoop, match="nested deeper than 20"):
        TABLE.expand("d0", local_only)
    assert TABLE.expand("d12", local_only).addresses[0][0] == "d30"
