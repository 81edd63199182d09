"""smtpd/cram.py - CRAM-MD5 (RFC 2195): the secrets file, the challenge and
the check.

NAME
    cram - ``CramSecrets`` (``[smtpd] cram_secrets``), ``challenge()``

DESCRIPTION
    CRAM-MD5 proves a secret without sending it: we send a challenge
    ``<RANDOM.TIME@HOSTNAME>``, the client answers ``USER HEXDIGEST`` with
    HEXDIGEST = HMAC-MD5(secret, challenge).  Checking that needs the secret
    itself, so a scrypt hash (credentials.py) cannot serve: the secrets live
    in a file of their own, used for CRAM-MD5 only, never for PLAIN/LOGIN
    (a leaked PLAIN password file of hashes stays a file of hashes).
    fetchmail's ``protocol ODMR`` (odmr.c) authenticates only this way.

    The file has one ``user:secret`` line per user (the secret is the rest
    of the line, colons and spaces included; blank and ``#`` lines are
    skipped: userfile.py, the parser credentials.py's file shares).
    Checking is one HMAC (microseconds): no thread, no scrypt memory; ``verify`` compares in constant time and computes an HMAC for
    an unknown user too.

    Where it is offered (secure.py): over TLS, or before TLS on a listener
    with ``cram_plaintext = true`` (the secret never crosses, but the
    challenge and answer can be attacked offline by a listener on the
    wire, and the session itself is in clear): say so per listener.

FILES
    The file must be a regular file owned by the daemon's user (or root),
    mode 0600 or 0640 (no write for the group, nothing for others): it
    holds plaintext secrets.  Anything else is refused at start and on
    SIGHUP, naming the file and its mode.

DIAGNOSTICS
    ConfigError naming the file (and the line).  Nothing here logs, and no
    secret is ever part of an error or a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import time

from edgemail.errors import ConfigError
from edgemail.smtpd.userfile import parse as parse_lines

MECH = "CRAM-MD5"


def challenge(hostname: str) -> str:
    """A fresh challenge in RFC 2195's form: ``<RANDOM.TIME@HOSTNAME>``."""
    return f"<{int.from_bytes(os.urandom(8), 'big')}.{int(time.time())}@{hostname}>"


def digest(secret: bytes, text: str) -> str:
    """HMAC-MD5(SECRET, TEXT) in lower-case hex (what the client sends)."""
    return hmac.new(secret, text.encode("utf-8"), hashlib.md5).hexdigest()


class CramSecrets:
    """The users of one secrets file (``load`` again to re-read)."""

    def __init__(self, secrets: dict[str, bytes], path: str = "") -> None:
        self._secrets, self.path = secrets, path
        self._dummy = os.urandom(16)

    def __repr__(self) -> str:
        return f"CramSecrets({self.path!r}, {len(self._secrets)} users)"

    def __len__(self) -> int:
        return len(self._secrets)

    @classmethod
    def load(cls, path: str) -> "CramSecrets":
        """Read PATH after checking its owner and mode.  Raises ConfigError."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise ConfigError(f"cannot read the CRAM-MD5 secrets: {exc.strerror}", file=path) from None
        with os.fdopen(fd, "rb") as f:
            _check_file(os.fstat(f.fileno()), path)
            raw = f.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("the CRAM-MD5 secrets file is not UTF-8", file=path) from None
        return cls(parse(text.splitlines(), path), path)

    def verify(self, user: str, challenge_text: str, answer: str) -> bool:
        """Is ANSWER the HMAC of CHALLENGE_TEXT under USER's secret?"""
        secret = self._secrets.get(user)
        expected = digest(secret if secret is not None else self._dummy, challenge_text)
        return hmac.compare_digest(expected, answer.lower()) and secret is not None


def _check_file(st: os.stat_result, path: str) -> None:
    """A regular file of ours (or root's), mode 0600/0640 at most."""
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("the CRAM-MD5 secrets must be a regular file", file=path)
    if st.st_uid not in (0, os.geteuid()):
        raise ConfigError(f"the CRAM-MD5 secrets file is owned by uid {st.st_uid}: it must be the "
                          f"daemon's user's (uid {os.geteuid()}) or root's", file=path)
    if mode & 0o037:
        raise ConfigError(f"the CRAM-MD5 secrets file has mode {mode:04o}: it holds plaintext secrets, "
                          "make it 0600 or 0640 (chmod 0640, group edgemail)", file=path)


def parse(lines: list[str], path: str) -> dict[str, bytes]:
    """``user:secret`` lines -> {user: secret}.  Raises ConfigError with the line (userfile.py)."""
    return parse_lines(lines, path, value="secret", check=_secret)


def _secret(text: str) -> bytes:
    if not text:
        raise ValueError("empty secret")
    return text.encode("utf-8")
