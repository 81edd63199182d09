"""smtpd/credentials.py - SMTP AUTH's credentials file, password hashes, and
the count of failed attempts per client.

NAME
    credentials - ``user:hash`` lines; scrypt hashes; AuthFailures

SYNOPSIS
    python3 -m edgemail.smtpd.credentials USER >> /etc/edgemail/smtpd.passwd
        asks for the password twice (no echo) and prints ``USER:HASH``;
        ``systemctl reload edgemail`` (SIGHUP) makes the daemon read the file again.

DESCRIPTION
    The file ([smtpd] auth_file) has one ``user:hash`` line per user;
    blank lines and lines starting with ``#`` are ignored (userfile.py, the
    parser cram.py's secrets share).  A hash is
    ``$scrypt$ln=LOG2N,r=R,p=P$SALT$KEY`` (base64 without padding; the
    form passlib uses), made with the stdlib's ``hashlib.scrypt``: no
    dependency, and scrypt is memory-hard (16 MiB per check at the default
    ln=14), so a stolen file is slow to attack.  ``Credentials.verify``
    compares in constant time and checks an unknown user against a dummy
    hash, so the time taken does not tell which users exist.  A check
    takes tens of milliseconds and its memory: it runs off the loop, one
    at a time (``AuthService.check``: one lock, one worker thread, so the
    daemon holds at most one scrypt block, and malloc one arena for it),
    after the client's failures are counted (over the limit: refused with
    no hash computed).  A hash whose parameters need more than MAXMEM
    (64 MiB) is refused when the file is read: no line can make one check
    cost more.

    The checks waiting are bounded: at most ``auth_max_pending`` at once
    (running or waiting for the lock), ``auth_max_pending_per_client`` from
    one client address (``PendingChecks``); a check over either is not
    queued: the client gets ``454 4.7.0 Temporary authentication failure``
    at once (RFC 4954), which is not a failure (no count).  So a flood of
    AUTH from many sessions costs each a reply, never a growing queue of
    tasks and never a wait for the clients behind it beyond
    auth_max_pending checks.  Counting is O(1) on the loop; nothing here
    blocks it.

    ``AuthFailures`` counts failed AUTH attempts per client address over
    ``auth_failure_window`` (across sessions and listeners); a success
    clears the client's count.  ``AuthService`` is both, with CRAM-MD5's
    secrets (cram.py) when ``[smtpd] cram_secrets`` is set, as the
    listeners share them (daemon/run.py makes one); ``mechanisms`` is what
    they can check.

FILES
    Keep the file ``root:edgemail`` mode 0640: it is read by the daemon
    (after RunAsUser) at start and on SIGHUP.

DIAGNOSTICS
    A bad line raises ConfigError naming the file and the line (the daemon
    then does not start, or a reload changes nothing).  Nothing here logs,
    and no password or hash is ever part of an error.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import hmac
import os
import re
import sys
from collections.abc import Callable, Iterable

from edgemail.config.model import SmtpdConfig
from edgemail.errors import ConfigError
from edgemail.smtpd.auth import CRAM, MECHANISMS
from edgemail.smtpd.userfile import USER, parse as parse_lines
from edgemail.smtpd.cram import CramSecrets

#: the cost of new hashes: N = 2**LOG2N, R, P (16 MiB per check)
LOG2N, R, P = 14, 8, 1
#: the most memory one check may take (hashlib.scrypt's maxmem; a hash needing more is refused)
MAXMEM = 64 << 20
_HASH = re.compile(r"\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d)\$([A-Za-z0-9+/.]+)\$([A-Za-z0-9+/.]+)")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.replace(".", "+") + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, log2n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=1 << log2n, r=r, p=p,
                          maxmem=MAXMEM, dklen=length)


def scrypt_memory(log2n: int, r: int, p: int) -> int:
    """The bytes one check with these parameters needs (OpenSSL's 128*r*(N+p+2))."""
    return 128 * r * ((1 << log2n) + p + 2)


def hash_password(password: str, *, log2n: int = LOG2N) -> str:
    """A new hash of PASSWORD (random salt)."""
    salt = os.urandom(16)
    key = _scrypt(password, salt, log2n, R, P, 32)
    return f"$scrypt$ln={log2n},r={R},p={P}${_b64(salt)}${_b64(key)}"


def check_hash(text: str) -> tuple[int, int, int, bytes, bytes]:
    """(log2n, r, p, salt, key) of a hash.  Raises ValueError."""
    m = _HASH.fullmatch(text)
    if not m:
        raise ValueError("expected a hash $scrypt$ln=N,r=R,p=P$SALT$KEY "
                         "(python3 -m edgemail.smtpd.credentials USER makes one)")
    log2n, r, p = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= log2n <= 20 and 1 <= r <= 16 and 1 <= p <= 4):
        raise ValueError("scrypt parameters out of range (ln 1-20, r 1-16, p 1-4)")
    if scrypt_memory(log2n, r, p) > MAXMEM:
        raise ValueError(f"scrypt parameters need {scrypt_memory(log2n, r, p) >> 20} MiB per check, "
                         f"over the {MAXMEM >> 20} MiB limit (ln=14,r=8,p=1 needs 16)")
    return log2n, r, p, _unb64(m.group(4)), _unb64(m.group(5))


def verify_hash(password: str, text: str) -> bool:
    log2n, r, p, salt, key = check_hash(text)
    return hmac.compare_digest(_scrypt(password, salt, log2n, r, p, len(key)), key)


class Credentials:
    """The users of one credentials file (loaded at once; ``load`` again to re-read)."""

    def __init__(self, users: dict[str, str], path: str = "") -> None:
        self.users, self.path = users, path
        self._dummy = hash_password("", log2n=LOG2N)

    @classmethod
    def load(cls, path: str) -> "Credentials":
        """Read PATH.  Raises ConfigError (FILE:LINE: problem)."""
        try:
            with open(path, encoding="utf-8") as f:
                return cls(parse(f, path), path)
        except OSError as exc:
            raise ConfigError(f"cannot read the AUTH credentials: {exc.strerror}", file=path) from None
        except UnicodeDecodeError:
            raise ConfigError("the AUTH credentials file is not UTF-8", file=path) from None

    def verify(self, user: str, password: str) -> bool:
        """Is PASSWORD USER's?  (As slow for an unknown user.)"""
        stored = self.users.get(user)
        ok = verify_hash(password, stored or self._dummy)
        return ok and stored is not None


def parse(lines: Iterable[str], path: str) -> dict[str, str]:
    """``user:hash`` lines -> {user: hash}.  Raises ConfigError with the line (userfile.py)."""
    return parse_lines(lines, path, value="hash", check=_checked_hash, strip=True)


def _checked_hash(text: str) -> str:
    check_hash(text)
    return text


class AuthFailures:
    """Failed AUTH attempts per client address within WINDOW seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._times: dict[str, list[float]] = {}

    def count(self, ip: str, now: float) -> int:
        times = self._times.get(ip)
        if not times:
            return 0
        times[:] = [t for t in times if now - t < self.window]
        return len(times)

    def record(self, ip: str, now: float) -> int:
        """One more failure for IP; the count now."""
        if len(self._times) > 1000:         # forget clients whose failures are all old
            self._times = {k: v for k, v in self._times.items() if v and now - v[-1] < self.window}
        self._times.setdefault(ip, []).append(now)
        return self.count(ip, now)

    def clear(self, ip: str) -> None:
        self._times.pop(ip, None)


#: RFC 4954 section 6: the reply to an AUTH whose check is not queued (PendingChecks)
BUSY = "454 4.7.0 Temporary authentication failure"


class PendingChecks:
    """The checks in progress (running or waiting), overall and per client:
    at most LIMIT and PER_CLIENT; the counts hold only clients with one."""

    def __init__(self, limit: int, per_client: int) -> None:
        self.limit, self.per_client = limit, per_client
        self.total = 0
        self._per_ip: dict[str, int] = {}

    def enter(self, ip: str) -> bool:
        """One more check for IP, or False (over a limit: not counted)."""
        n = self._per_ip.get(ip, 0)
        if self.total >= self.limit or n >= self.per_client:
            return False
        self.total, self._per_ip[ip] = self.total + 1, n + 1
        return True

    def leave(self, ip: str) -> None:
        n = self._per_ip.pop(ip) - 1
        self.total -= 1
        if n:
            self._per_ip[ip] = n

    def __len__(self) -> int:
        return len(self._per_ip)


class AuthService:
    """What AUTH needs, shared by a daemon's listeners: the credentials and
    CRAM-MD5's secrets (each replaced whole on SIGHUP: listener.py's
    reload_secrets) and the failure counts."""

    def __init__(self, path: str, window: float, cram_path: str = "", *,
                 max_pending: int = 16, max_pending_per_client: int = 4) -> None:
        self.path, self.cram_path = path, cram_path
        self.credentials = Credentials.load(path) if path else Credentials({})
        self.cram = CramSecrets.load(cram_path) if cram_path else None
        self.failures = AuthFailures(window)
        self.pending = PendingChecks(max_pending, max_pending_per_client)
        #: one check at a time, on one thread (module docstring)
        self._lock = asyncio.Lock()
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="edgemail-auth")

    @classmethod
    def of(cls, smtpd: SmtpdConfig) -> "AuthService":
        """The service [smtpd] describes (raises ConfigError as the loaders do)."""
        return cls(smtpd.auth_file, smtpd.auth_failure_window, smtpd.cram_secrets,
                   max_pending=smtpd.auth_max_pending, max_pending_per_client=smtpd.auth_max_pending_per_client)

    async def check(self, ip: str, mech: str, user: str, secret: str, challenge: str, *,
                    now: Callable[[], float], limit: int) -> bool | str:
        """Are these the credentials of USER?  False without a hash computed
        when IP has LIMIT failures already (counted once the lock is ours);
        BUSY, at once, when the check would be over the pending limits."""
        if not self.pending.enter(ip):
            return BUSY
        try:
            async with self._lock:
                if self.failures.count(ip, now()) >= limit:
                    return False
                if mech == CRAM:
                    return self.cram is not None and self.cram.verify(user, challenge, secret)
                credentials = self.credentials
                return await asyncio.get_running_loop().run_in_executor(
                    self._worker, credentials.verify, user, secret)
        finally:
            self.pending.leave(ip)

    def settle(self, ip: str, ok: bool, now: float) -> int:
        """A check's outcome for IP's count: a success clears it (0), a failure
        is counted (IP's failures now)."""
        if ok:
            self.failures.clear(ip)
            return 0
        return self.failures.record(ip, now)

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """The AUTH mechanisms these secrets can check."""
        return (MECHANISMS if self.path else ()) + ((CRAM,) if self.cram is not None else ())

    def reread(self) -> tuple[Credentials, CramSecrets | None]:
        """Both files read again (raises ConfigError; nothing changes here)."""
        return (Credentials.load(self.path) if self.path else Credentials({}),
                CramSecrets.load(self.cram_path) if self.cram_path else None)


def main(argv: list[str] | None = None) -> int:
    """``python3 -m edgemail.smtpd.credentials USER``: print USER:HASH."""
    import getpass
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not USER.fullmatch(args[0]):
        print("usage: python3 -m edgemail.smtpd.credentials USER  (prints USER:HASH)", file=sys.stderr)
        return 64
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("credentials: the passwords differ", file=sys.stderr)
            return 65
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("credentials: empty password refused", file=sys.stderr)
        return 65
    print(f"{args[0]}:{hash_password(password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
