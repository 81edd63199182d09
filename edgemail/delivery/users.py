"""delivery/users.py - who exists locally: the names RCPT accepts for our domains.

NAME
    users - the local user list (loader; the Router asks a frozenset)

DESCRIPTION
    ``known_users(local_cfg)`` is the set of local parts that exist, besides
    the alias names (the Router expands those first): the ``local.users``
    list, the names in ``local.users_file`` (one a line; blank lines and
    '#' comments ignored) and, with ``local.system_users`` (the default),
    every account in the system's passwd (``pwd.getpwall``: sendmail's and
    Postfix's local recipients).  "postmaster" always exists (RFC 5321
    4.5.1: the Router adds it).  A name that could not be a mailbox folder
    (config.values.MAILBOX) never matches, so a passwd entry such as "Bob
    Smith" is left out rather than refused.

    Read at start and on every SIGHUP (daemon/reload.py), never per RCPT:
    a passwd served over the network (NSS with LDAP) must not make
    accepting mail wait on the network (DESIGN invariant 1).  A user added
    with adduser is known after ``newaliases`` or a reload.

    The command line (``local_router``: sendmail's check while the daemon
    is down, ``-bv``, ``-bt``) checks a few addresses once, so it never
    reads the whole passwd: ``PasswdUsers`` asks ``pwd.getpwnam`` for each
    local part it is asked about (once; NSS answers one name, where
    ``getpwall`` would enumerate an LDAP directory on every sendmail
    call).  The name asked is the router's, lower-case: an account named
    with capitals is found by the daemon's list (lower-cased) but not
    here (the daemon then decides, as for any name the check lets by).

    ``local.create_mailboxes = true`` turns the check off: any safe local
    part is accepted and its Maildir made on first delivery.

FAILURES
    ``ConfigError`` FILE:LINE for a bad name in the users file, FILE for an
    unreadable one (the daemon refuses to start, ``config check`` says so).
"""

from __future__ import annotations

from pathlib import Path

from edgemail.config.model import LocalConfig
from edgemail.config.values import MAILBOX
from edgemail.errors import ConfigError


def known_users(local: LocalConfig, *, passwd_by_name: bool = False) -> frozenset[str] | PasswdUsers:
    """The local user names of LOCAL (lower-case), read now; PASSWD_BY_NAME:
    passwd asked per name (PasswdUsers) instead of read whole."""
    names = {u.lower() for u in local.users}
    if local.users_file:
        names |= load_users_file(local.users_file)
    if local.system_users and passwd_by_name:
        return PasswdUsers(frozenset(names))
    if local.system_users:
        names |= system_users()
    return frozenset(names)


class PasswdUsers:
    """NAMES, or an account ``pwd.getpwnam`` knows (one name at a time, cached)."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self._seen: dict[str, bool] = {}

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self.names:
            return True
        known = self._seen.get(name)
        if known is None:
            known = self._seen[name] = bool(MAILBOX.fullmatch(name)) and _in_passwd(name)
        return known


def _in_passwd(name: str) -> bool:
    import pwd
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def system_users() -> frozenset[str]:
    import pwd
    names = (p.pw_name.lower() for p in pwd.getpwall())
    return frozenset(n for n in names if MAILBOX.fullmatch(n))


def load_users_file(path: str) -> frozenset[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the users file: {exc.strerror}", file=path,
                          key="local.users_file") from None
    except UnicodeDecodeError:
        raise ConfigError("the users file is not UTF-8 text", file=path, key="local.users_file") from None
    return parse_users(text, path)


def parse_users(text: str, path: str = "<users>") -> frozenset[str]:
    """One name a line; '#' starts a comment."""
    names = set()
    for n, raw in enumerate(text.splitlines(), 1):
        name = raw.partition("#")[0].strip().lower()
        if not name:
            continue
        if not MAILBOX.fullmatch(name):
            raise ConfigError(f"{name!r} is not a user name: letters, digits and . _ = - "
                              "(not first: .), one name a line", file=path, line=n)
        names.add(name)
    return frozenset(names)


def local_router(cfg):
    """The Router the daemon routes with, built here (the command line's
    -bv/-bt and its daemon-down check): CFG's aliases and its local users.
    Raises ConfigError (or OSError) as the loaders do."""
    from edgemail.delivery.aliases import load
    from edgemail.delivery.routing import Router
    return Router(cfg, load(cfg.local.aliases, cfg.local), known_users(cfg.local, passwd_by_name=True))
