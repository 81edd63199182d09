"""smtpc/tls.py - how the SMTP client protects a connection: TLS policy and credentials.

Owns: ``TlsPolicy`` (when to STARTTLS and whether to verify the
certificate), the two policies the runner uses, and the smart host's
credentials file (``load_credentials``; ``load_secret`` for a password
alone, as [link] odmr's secret_file holds it).  session.py applies them.

Decisions:
  * ``MX_TLS`` is opportunistic and unverified (an MX with a self-signed
    cert still gets encryption; RFC 7435); ``SMARTHOST_TLS`` verifies the
    certificate (system CAs or ``cafile``) unless the config says otherwise
    (``TlsPolicy(verify=False)`` for an ISP relay with a self-signed cert).
    STARTTLS is used whenever offered, unless ``mode="none"``.
  * Credentials are sent only over TLS (session.py: a server that offers
    AUTH but no STARTTLS gets TempFail, scope SITE, 4.7.0).  A credentials
    file readable by others, or by a group other than root's and
    edgemail's, is refused (ConfigError); owned by another user: warned
    (maillog.authfile_owner).  The password is never logged or repr()'d.

Never does: network I/O.  Raises ConfigError from ``load_credentials``.
"""

from __future__ import annotations

import grp
import logging
import os
import ssl
import stat
from dataclasses import dataclass, field

from edgemail import maillog
from edgemail.errors import ConfigError

__all__ = ["TlsPolicy", "MX_TLS", "SMARTHOST_TLS", "Credentials", "load_credentials", "load_secret"]

log = logging.getLogger("edgemail.runner")


@dataclass(frozen=True)
class TlsPolicy:
    #: "none" (never STARTTLS), "may" (when offered), "encrypt" (required)
    mode: str = "may"
    verify: bool = False
    cafile: str | None = None

    def context(self) -> ssl.SSLContext:
        if not self.verify:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context(cafile=self.cafile)


MX_TLS = TlsPolicy("may", verify=False)
SMARTHOST_TLS = TlsPolicy("may", verify=True)


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)


def load_credentials(path: str) -> Credentials:
    """Read ``user password`` (one line) from the SmartHostAuthFile.

    Refuses (ConfigError) a file that others may read or write, or that a
    group other than root's or edgemail's may read; warns when it is owned by
    someone other than root or us.  The password is never logged.
    """
    text = _read_private(path, "SmartHostAuthFile")
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            parts = line.strip().split(None, 1)
            if len(parts) != 2:
                raise ConfigError("expected one line \"user password\"", file=path, line=n,
                                  key="SmartHostAuthFile")
            return Credentials(parts[0], parts[1])
    raise ConfigError("empty; expected one line \"user password\"", file=path, key="SmartHostAuthFile")


def load_secret(path: str, key: str) -> str:
    """The secret alone on the first line of PATH (the config's KEY: [link]
    odmr's secret_file), checked as load_credentials checks its file."""
    for line in _read_private(path, key).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()
    raise ConfigError("empty; expected the password on one line", file=path, key=key)


def _read_private(path: str, key: str) -> str:
    """PATH's text, if only root and edgemail may read it (ConfigError otherwise)."""
    try:
        st = os.stat(path)
        text = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=path, key=key) from None
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o007:
        raise ConfigError(f"mode {mode:04o} lets other users read it; chmod 0600 (or 0640 "
                          "group edgemail)", file=path, key=key)
    if mode & 0o070 and st.st_gid not in _trusted_gids():
        raise ConfigError(f"mode {mode:04o} lets group {st.st_gid} read it; only root and "
                          "edgemail may", file=path, key=key)
    if st.st_uid not in (0, os.geteuid()):
        log.warning(maillog.authfile_owner(path, st.st_uid))
    return text


def _trusted_gids() -> set[int]:
    gids = {0}
    try:
        gids.add(grp.getgrnam("edgemail").gr_gid)
    except KeyError:
        pass
    return gids
