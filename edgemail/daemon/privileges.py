"""daemon/privileges.py - RunAsUser: a daemon started as root gives root up.

sendmail's option of the same name, for routers without systemd's User=
(procd, sysvinit, a shell).  ``RunAsUser = "edgemail"`` or
``"edgemail:mail"`` (names or numbers); empty (the default) keeps the
process as it was started.

Owns: resolving the option to a uid, a gid and the user's supplementary
groups (``dip``/``dialout`` for pppd and the modem come from there, as
with systemd's User=); making sure what the daemon writes belongs to that
user (the spool, the control socket's folder, the link's state folder):
made when missing, and when present but someone else's, refused with the
``chown`` to run; then the switch itself: setgroups, setgid, setuid, and a
check that root cannot be taken back.

Order (daemon.serve): the SMTP sockets are bound first (port 25 needs
root), then ``preload()`` (every module the daemon runs is imported while
root can read them all: an installation only root may read, such as a
virtualenv under /root, keeps working), then ``drop()``, then everything
else: the spool lock, recovery, the commit helpers and pppd all run as
the user.  (If the user may not execute the interpreter, the spool
commits on threads instead and logs so: spool/store.py.)

Never: changes the owner of anything that exists (no ``chown -R`` behind
the administrator's back), or goes on as root when a switch fails.
Failures raise PrivilegeError (exit 77, EX_NOPERM) naming the user, the
path and what to do.
"""

from __future__ import annotations

import grp
import importlib
import os
import pkgutil
import pwd
from dataclasses import dataclass

from edgemail.errors import EdgemailError


class PrivilegeError(EdgemailError):
    """RunAsUser cannot be honoured; the daemon does not start."""


@dataclass(frozen=True)
class Identity:
    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def __str__(self) -> str:
        return f"{self.user} (uid {self.uid}, gid {self.gid}, groups {','.join(map(str, self.groups)) or 'none'})"


def resolve(spec: str) -> Identity:
    """"user" or "user:group" (names or numbers) -> Identity."""
    user, _, group = spec.partition(":")
    try:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"RunAsUser: no such user {user!r}") from None
    gid = pw.pw_gid
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise PrivilegeError(f"RunAsUser: no such group {group!r}") from None
    groups = tuple(sorted(set(os.getgrouplist(pw.pw_name, gid))))
    return Identity(pw.pw_name, pw.pw_uid, gid, groups)


def prepare(ident: Identity, folders: list[tuple[str, int]]) -> None:
    """Each (folder, mode): made for IDENT when missing; refused when it
    belongs to someone else."""
    for path, mode in folders:
        if not path:
            continue
        try:
            st = os.stat(path)
        except FileNotFoundError:
            os.makedirs(path, mode=mode, exist_ok=True)
            os.chown(path, ident.uid, ident.gid)
            continue
        if st.st_uid != ident.uid:
            raise PrivilegeError(f"{path} belongs to uid {st.st_uid}, not to {ident.user} "
                                 f"(RunAsUser): chown -R {ident.user}: {path}")


#: our modules that are not part of the running daemon
_NOT_RUN = {"__main__"}
#: standard modules that other modules import only when first needed
_LATE = ("queue", "concurrent.futures.thread", "logging.handlers", "email.utils", "json",
         "ssl", "subprocess", "selectors", "tomllib")


def preload() -> None:
    """Import every module of edgemail and link (and the standard modules
    they import late) while the process can still read them all."""
    import edgemail
    import link
    for package in (edgemail, link):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.rsplit(".", 1)[-1] not in _NOT_RUN:
                importlib.import_module(info.name)
    for name in _LATE:
        importlib.import_module(name)


def drop(ident: Identity) -> None:
    """Become IDENT for good (real, effective and saved ids)."""
    os.setgroups(list(ident.groups))
    os.setresgid(ident.gid, ident.gid, ident.gid)
    os.setresuid(ident.uid, ident.uid, ident.uid)
    if ident.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            return
        raise PrivilegeError(f"RunAsUser: root could be taken back after switching to {ident.user}")
