"""cli/checks.py - ``edgemail config check``: the configuration file and
every file it names, read with the daemon's own parsers.

Owns: ``check_files(cfg) -> Findings`` (what ``config check`` adds to the
loader's own errors; ``check_files_despite(path)`` the same when the loader
refused the file itself) and ``alias_errors`` (every bad entry of an aliases
file, not only the first).  What is checked, and with what:

    [local] aliases        delivery.aliases (and every :include: file): the
                           daemon refuses to start on any error (exit 78);
                           a file that does not exist is a warning (no aliases)
    [local] users_file     delivery.users (one user name a line): the
                           daemon refuses to start on an error (exit 78)
    [local] aliases, users an alias whose targets all end at an unknown
                           local user (warning: RCPT to it is refused)
    [link] policy          daemon.reload.load_policy, then every bad line
                           (policycmd.every_error): the daemon refuses it
                           too; checked whenever a file is named
    SmartHostAuthFile      smtpc.tls.load_credentials (mode, owner, the
                           "user password" line): delivery to the smart
                           host defers 4.7.0 on it; a file not made yet
                           is a warning (the example names one to make)
    [link] odmr            its secret_file, with smtpc.tls.load_secret (mode,
                           group, the password line) as the ATRN call reads
                           it: a file not made yet is a warning
    SmartHostCAFile        smtpc.tls.TlsPolicy.context(): the smart host's
                           certificate could never be verified
    [smtpd] auth_file      smtpd.credentials.Credentials.load (the
                           "user:hash" lines): the daemon refuses to start
                           on an error (exit 78)
    secrets files          SmartHostAuthFile, [smtpd] auth_file, each tls_key,
                           [link] odmr's secret_file: readable by every user
                           is a warning (the config file itself is 0644:
                           every local user's sendmail reads it)
    [local] maildir_group  the daemon's user must be in it (warning)
    [link] pppd, device    modem mode: missing is a warning (the daemon
                           starts, a dial fails)

Errors are ``FILE:LINE: KEY: problem`` (the line where there is one);
warnings are what the daemon starts with but that will fail later, said
as ``FILE: KEY: warning: ...``.

Never: writes, runs a program, opens the modem or talks to the daemon.  A
file this user may not read (the auth file is root:edgemail 0640) is an
error only for root: anyone else is told it was not checked, and why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgemail.config.model import Config, LocalConfig
from edgemail.errors import ConfigError


@dataclass
class Findings:
    """What ``check_files`` found: errors (exit 78) and warnings (said, exit 0)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


#: the tables and keys that name the files checked here
FILE_KEYS = frozenset({"local_domains", "local", "link", "smtpd", "SmartHostAuthFile", "SmartHostCAFile"})


def check_files_despite(path: str) -> Findings:
    """PATH has errors of its own: the files it names, checked from just the
    tables that name them (nothing when those are wrong too), so that one
    run of the check names every error it can."""
    import tomllib

    from edgemail.config import loader
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text)
        cfg = loader.from_dict({k: v for k, v in data.items() if k in FILE_KEYS}, path=path, text=text)
    except (OSError, ValueError, ConfigError):     # a TOML syntax error is a ValueError
        return Findings()
    return check_files(cfg)


def check_files(cfg: Config) -> Findings:
    out = Findings()
    if cfg.local.aliases and not os.path.lexists(cfg.local.aliases):
        out.warnings.append(f"{cfg.local.aliases}: local.aliases: warning: does not exist: no aliases "
                            "(sendmail too runs without its alias file); create it, then newaliases")
    elif cfg.local.aliases:
        out.errors += [str(e) for e in alias_errors(cfg.local.aliases, cfg.local)]
    if cfg.local.users_file:
        out.errors += _users_errors(cfg.local.users_file)
    if not out.errors:
        out.warnings += _unknown_alias_targets(cfg)
    if cfg.link.policy or cfg.link.mode != "none":
        out.errors += _policy_errors(cfg)
    _smart_host_files(cfg, out)
    if cfg.link.odmr:
        _odmr_secret(cfg.link.odmr.secret_file, out)
    _secrets_kept(cfg, out)
    if cfg.smtpd.auth_file:
        _smtpd_credentials(cfg.smtpd.auth_file, out)
    _identity_and_programs(cfg, out)
    return out


def secret_files(cfg: Config) -> list[tuple[str, str]]:
    """(key, path) of every file the config names that holds a secret: the
    config itself is world-readable (every user's sendmail reads it)."""
    named = [("SmartHostAuthFile", cfg.SmartHostAuthFile), ("smtpd.auth_file", cfg.smtpd.auth_file)]
    named += [(f"listen {lst.name}: tls_key", lst.tls_key) for lst in cfg.listeners]
    if cfg.link.odmr:
        named.append(("link.odmr.secret_file", cfg.link.odmr.secret_file))
    return [(key, path) for key, path in named if path]


def _secrets_kept(cfg: Config, out: Findings) -> None:
    import stat
    for key, path in secret_files(cfg):
        if key in ("SmartHostAuthFile", "link.odmr.secret_file"):
            continue                         # their loader refuses a mode that lets others read (an error)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            continue                         # missing: said where it is read
        if mode & 0o004:
            out.warnings.append(f"{path}: {key}: warning: every local user may read it (mode {mode:04o}): "
                                f"chgrp edgemail {path}; chmod 0640 {path}")


# ---------------------------------------------------------------- aliases

def alias_errors(path: str, local_cfg: LocalConfig) -> list[ConfigError]:
    """Every bad entry of the aliases file at PATH (each entry is parsed
    alone, at its own lines, then the whole file for what only the whole
    shows: a duplicate name).  [] when the daemon would load it."""
    from edgemail.delivery import aliases
    try:
        aliases.load(path, local_cfg)
        return []
    except ConfigError as exc:
        whole = exc
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return [whole]                      # "cannot read": the loader said it
    errors: list[ConfigError] = []
    first: dict[str, tuple[int, list[str]]] = {}
    for start, lines in _entries(text):
        name = lines[0].partition(":")[0].strip().lower()
        pieces = [(start, lines)] if name not in first else [first[name], (start, lines)]
        first.setdefault(name, (start, lines))
        try:
            aliases.parse(_placed(pieces), path, local_cfg)
        except ConfigError as exc:
            errors.append(exc)
    if str(whole) not in {str(e) for e in errors}:
        errors.append(whole)
    return sorted(errors, key=lambda e: e.line or 0)


def _entries(text: str) -> list[tuple[int, list[str]]]:
    """(first line, lines) of each entry: its line and its continuation lines
    (comments between them dropped, as the parser drops them)."""
    out: list[tuple[int, list[str]]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0] in " \t" and out:
            out[-1][1].append(raw)
        else:
            out.append((n, [raw]))
    return out


def _placed(pieces: list[tuple[int, list[str]]]) -> str:
    """Entries at their own line numbers (the parser counts lines), blank elsewhere."""
    lines: list[str] = []
    for start, block in pieces:
        lines += [""] * (start - 1 - len(lines)) + block
    return "\n".join(lines)


def _users_errors(path: str) -> list[str]:
    from edgemail.delivery.users import load_users_file
    try:
        load_users_file(path)
        return []
    except ConfigError as exc:
        return [str(exc)]


def _unknown_alias_targets(cfg: Config) -> list[str]:
    """Aliases whose every target ends at an unknown local user: RCPT to
    them is refused 550 5.1.1 (for postmaster, against RFC 5321 4.5.1)."""
    from edgemail.delivery.aliases import load
    from edgemail.delivery.routing import Router
    from edgemail.delivery.users import known_users
    if not cfg.local.aliases or cfg.local.create_mailboxes:
        return []
    try:
        aliases = load(cfg.local.aliases, cfg.local)
        router = Router(cfg, aliases, known_users(cfg.local))
    except (ConfigError, OSError):
        return []                       # said as an error already
    out = []
    for name in sorted(aliases.entries):
        reply = router.check_rcpt(f"{name}@{cfg.local_domains[0]}")
        if reply and " 5.1.1 " in reply:
            target = reply.partition("<")[2].partition(">")[0]
            out.append(f"{cfg.local.aliases}: local.aliases: warning: {name} -> {target}: not a local "
                       f"user ([local] users, users_file, passwd): RCPT TO:<{name}> is refused 550 5.1.1")
    return out


# ---------------------------------------------------------------- dial policy

def _policy_errors(cfg: Config) -> list[str]:
    from edgemail.cli.policycmd import every_error
    from edgemail.daemon.reload import load_policy
    try:
        load_policy(cfg)
        return []
    except ConfigError as exc:
        first = exc
    try:
        text = Path(cfg.link.policy).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError):
        return [str(first)]
    return [str(e) for e in every_error(text, cfg.link.policy)] or [str(first)]


# ---------------------------------------------------------------- smart host

def _smart_host_files(cfg: Config, out: Findings) -> None:
    if cfg.SmartHostAuthFile:
        _auth_file(cfg.SmartHostAuthFile, out)
    if cfg.SmartHostCAFile:
        from edgemail.smtpc.tls import TlsPolicy
        try:
            TlsPolicy("may", verify=True, cafile=cfg.SmartHostCAFile).context()
        except OSError as exc:              # ssl.SSLError is an OSError too
            why = exc.strerror or str(exc)
            out.errors.append(str(ConfigError(f"not a usable CA file: {why}", file=cfg.SmartHostCAFile,
                                              key="SmartHostCAFile")))


def _auth_file(path: str, out: Findings) -> None:
    from edgemail.smtpc.tls import load_credentials
    _private_file(path, "SmartHostAuthFile", load_credentials, out,
                  "the smart host's AUTH fails and its mail defers 4.7.0 until it does (one line \"user password\")")


def _odmr_secret(path: str, out: Findings) -> None:
    """[link] odmr's secret_file, read as the ODMR call reads it (smtpc.tls.load_secret)."""
    from edgemail.smtpc.tls import load_secret
    key = "link.odmr.secret_file"
    _private_file(path, key, lambda p: load_secret(p, key), out,
                  "every ATRN call fails before AUTH until it does (the password alone on one line)")


def _private_file(path: str, key: str, load, out: Findings, missing: str) -> None:
    """A secret read at call time: missing is a warning (MISSING: what fails
    meanwhile); mode, group and format errors are the loader's, as FILE: KEY: ..."""
    if not os.path.lexists(path):
        out.warnings.append(f"{path}: {key}: warning: does not exist (yet): {missing}")
        return
    if os.geteuid() != 0 and not os.access(path, os.R_OK):
        out.warnings.append(f"{path}: {key}: warning: not checked: uid {os.geteuid()} may not "
                            "read it (as it should be); run the check as root")
        return
    try:
        load(path)
    except ConfigError as exc:
        out.errors.append(str(exc))


def _smtpd_credentials(path: str, out: Findings) -> None:
    """SMTP AUTH's credentials file, read as the daemon reads it at start."""
    from edgemail.smtpd.credentials import Credentials
    if os.geteuid() != 0 and os.path.exists(path) and not os.access(path, os.R_OK):
        out.warnings.append(f"{path}: smtpd.auth_file: warning: not checked: uid {os.geteuid()} may not "
                            "read it (as it should be); run the check as root")
        return
    try:
        Credentials.load(path)
    except ConfigError as exc:
        out.errors.append(str(exc))


# ---------------------------------------------------------------- the daemon's user, the link's programs

def _identity_and_programs(cfg: Config, out: Findings) -> None:
    if cfg.local.maildir_group:
        _group_member(cfg, cfg.local.maildir_group, out)
    if cfg.link.mode == "modem":
        if not os.access(cfg.link.pppd, os.X_OK):
            out.warnings.append(f"{cfg.path}: link.pppd: warning: {cfg.link.pppd} is not an executable "
                                "file (apt-get install ppp): every dial will fail")
        if not cfg.link.device.startswith(("socket://", "rfc2217://", "loop://")) \
                and not os.path.exists(cfg.link.device):
            out.warnings.append(f"{cfg.path}: link.device: warning: {cfg.link.device} does not exist "
                                "(yet): every dial will fail until it does")


def _group_member(cfg: Config, group: str, out: Findings) -> None:
    """maildir_group: the daemon's user (RunAsUser, else edgemail) must be in it to give it away."""
    import grp
    import pwd
    user = cfg.RunAsUser or "edgemail"
    try:
        g = grp.getgrnam(group)
        pw = pwd.getpwnam(user)
    except KeyError:
        return                               # the loader named an unknown group; no such user here
    if pw.pw_gid != g.gr_gid and user not in g.gr_mem:
        out.warnings.append(f"{cfg.path}: local.maildir_group: warning: user {user} is not in group "
                            f"{group}: Maildir delivery will defer (usermod -aG {group} {user})")
