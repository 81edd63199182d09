"""config/listeners.py - the SMTP listener's settings: ``[smtpd]`` and
each ``[[listen]]``.

Owns: reading ``[smtpd]`` (limits, ``auth_file``, the AUTH failure limit,
the ``[smtpd.sender_login]`` table) and the ``[[listen]]`` tables
(address, port, strict, greet_pause, tls_cert/tls_key, require_tls, auth,
auth_plaintext, cram_plaintext, submission, odmr), and the rules between them:

  * tls_cert and tls_key come together, and must load (PEM, the key
    matching the certificate): ``edgemail config check`` says so before
    the daemon would; a key this user may not read is not checked unless
    we are root (every local user's sendmail loads this file; the key is
    root:edgemail 0640);
  * require_tls needs TLS; a submission listener needs ``auth_file`` and a
    way to authenticate (TLS, or auth_plaintext); ``auth = true`` needs
    ``auth_file`` or ``cram_secrets``; ``cram_plaintext`` needs ``cram_secrets``;
  * greet_pause defaults to 0.5 s on strict listeners, 0 elsewhere; auth
    defaults to whether ``auth_file`` or ``cram_secrets`` is set.

Errors name the key and the line of the listener it is in (the second
``[[listen]]``'s line for the second listener).  Paths are taken relative
to the config file's folder.

Never: reads the credentials file (smtpd/credentials.py does, at start
and on SIGHUP) or keeps the TLS context it tried (the listener makes its own).
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Callable
from dataclasses import replace

from edgemail.config.model import Listener, SmtpdConfig
from edgemail.config.reader import Reader, simple_section
from edgemail.config.values import _nonneg_int, _str_tuple, _typed, parse_duration

_BOOL = _typed(bool, "true or false")
_PATH = _typed(str, "a file path")
_LISTEN_KEYS = ["name", "address", "port", "strict", "greet_pause", "tls_cert", "tls_key",
                "require_tls", "auth", "auth_plaintext", "cram_plaintext", "submission", "odmr"]
_SENDER = re.compile(r"(?:[^@\s<>]+)?@[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
STRICT_GREET_PAUSE = 0.5


def smtpd_section(reader: Reader, data: dict, rel: Callable[[str], str]) -> SmtpdConfig:
    """[smtpd], its sender_login table included."""
    table = data.get("smtpd")
    logins: dict[str, tuple[str, ...]] = {}
    if isinstance(table, dict) and "sender_login" in table:
        logins = _sender_login(reader, table.pop("sender_login"))
    smtpd = simple_section(reader, data, "smtpd", SmtpdConfig, {})
    if smtpd.max_session_time <= 0:
        reader.error("smtpd", "max_session_time", "expected a duration above 0 (every session would end at once)")
    for key in ("auth_max_pending", "auth_max_pending_per_client"):
        if getattr(smtpd, key) < 1:
            reader.error("smtpd", key, "expected 1 or more (0 would refuse every AUTH)")
    if smtpd.connection_rate_time_unit <= 0:
        reader.error("smtpd", "connection_rate_time_unit",
                     "expected a duration above 0 (client_connection_rate_limit counts per time unit)")
    return replace(smtpd, auth_file=rel(smtpd.auth_file), cram_secrets=rel(smtpd.cram_secrets),
                   sender_login=logins)


def _sender_login(reader: Reader, table: object) -> dict[str, tuple[str, ...]]:
    """user -> the addresses ("a@example.org") and domains ("@example.org") it may send as."""
    if not isinstance(table, dict):
        reader.error("smtpd", "sender_login", "expected a table: user = [\"addr@domain\", \"@domain\"]")
        return {}
    out = {}
    for user, value in table.items():
        try:
            senders = _str_tuple(value)
            bad = [s for s in senders if not _SENDER.fullmatch(s)]
            if bad:
                raise ValueError(f"expected addresses or @domains, got {bad[0]!r}")
        except ValueError as exc:
            reader.error("smtpd.sender_login", user, str(exc))
            continue
        out[user] = tuple(s.lower() for s in senders)
    return out


def listeners(reader: Reader, data: dict, smtpd: SmtpdConfig,
              rel: Callable[[str], str]) -> tuple[Listener, ...]:
    """The [[listen]] tables (one on 127.0.0.1:25 when there is none)."""
    items = data.pop("listen", [{"name": "lan", "address": "127.0.0.1", "port": 25}])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        reader.error("", "listen", "expected [[listen]] tables")
        return ()
    return tuple(_listener(reader, dict(item), nth, smtpd, rel) for nth, item in enumerate(items))


def _listener(reader: Reader, item: dict, nth: int, smtpd: SmtpdConfig,
              rel: Callable[[str], str]) -> Listener:
    s = "listen"
    name = str(item.pop("name", f"listen{nth}"))
    address = reader.take(item, s, "address", _typed(str, "an IP address"), "127.0.0.1", nth)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        reader.error(s, "address", "expected a numeric IP address (no names: no DNS at start-up), "
                     f"got {address!r}", nth)
    port = reader.take(item, s, "port", _nonneg_int, 25, nth)
    if not 0 <= port < 65536:
        reader.error(s, "port", f"expected a port 0-65535, got {port}", nth)
    strict = reader.take(item, s, "strict", _BOOL, False, nth)
    pause = reader.take(item, s, "greet_pause", parse_duration,
                        STRICT_GREET_PAUSE if strict else 0.0, nth)
    flags = {key: reader.take(item, s, key, _BOOL, None, nth)
             for key in ("require_tls", "auth", "auth_plaintext", "cram_plaintext", "submission", "odmr")}
    cert, key = (rel(reader.take(item, s, k, _PATH, "", nth)) for k in ("tls_cert", "tls_key"))
    reader.leftover(item, s, _LISTEN_KEYS, nth)
    lst = Listener(name, address, port, strict, greet_pause=pause, tls_cert=cert, tls_key=key,
                   require_tls=bool(flags["require_tls"]),
                   auth=bool(smtpd.auth_file or smtpd.cram_secrets) if flags["auth"] is None else flags["auth"],
                   auth_plaintext=bool(flags["auth_plaintext"]), cram_plaintext=bool(flags["cram_plaintext"]),
                   submission=bool(flags["submission"]),
                   odmr=bool(flags["odmr"]))
    _check_listener(reader, lst, nth, smtpd, explicit_auth=flags["auth"])
    return lst


def _check_listener(reader: Reader, lst: Listener, nth: int, smtpd: SmtpdConfig, *,
                    explicit_auth: bool | None) -> None:
    """The rules between one listener's keys (module docstring)."""
    def error(key: str, problem: str) -> None:
        reader.error("listen", key, f"listener {lst.name!r}: {problem}", nth)

    if bool(lst.tls_cert) != bool(lst.tls_key):
        error("tls_cert" if lst.tls_cert else "tls_key", "tls_cert and tls_key go together")
    elif lst.tls_cert and (problem := tls_problem(lst.tls_cert, lst.tls_key)):
        error("tls_cert", problem)
    if lst.require_tls and not lst.tls_cert:
        error("require_tls", "require_tls needs tls_cert and tls_key")
    if explicit_auth and not smtpd.auth_file and not smtpd.cram_secrets:
        error("auth", "auth = true needs [smtpd] auth_file (the credentials) or cram_secrets")
    if lst.cram_plaintext and not smtpd.cram_secrets:
        error("cram_plaintext", "cram_plaintext needs [smtpd] cram_secrets (the CRAM-MD5 secrets)")
    if lst.submission:
        if not smtpd.auth_file or explicit_auth is False:
            error("submission", "a submission listener needs AUTH: set [smtpd] auth_file")
        elif not lst.tls_cert and not lst.auth_plaintext:
            error("submission", "AUTH is offered only after STARTTLS: give tls_cert and tls_key "
                  "(or auth_plaintext = true)")


def tls_problem(cert: str, key: str) -> str | None:
    """Why CERT and KEY cannot serve TLS, or None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:          # (an OSError too: first)
        return f"cannot load the certificate {cert} with the key {key}: {exc.reason or exc}"
    except PermissionError:
        if os.geteuid() == 0:
            return f"cannot read {key}: permission denied"
        return None     # a user's sendmail may not read the key (0640 root:edgemail): the daemon checks it
    except OSError as exc:
        return f"cannot read {exc.filename or cert}: {exc.strerror}"
    return None
