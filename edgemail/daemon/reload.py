"""daemon/reload.py - what a running daemon reads again, and when.

Owns: SIGHUP (``systemctl reload``; HangUp: a reload once the daemon is up,
a line saying "still starting" before, never the signal's default action,
which would end the daemon), the reload itself (Reloader: the aliases and
the local users (passwd, local.users_file: delivery/users.py), a
new Router for the runner, the dial policy for the link manager, the SMTP
listeners' TLS certificates and keys and the AUTH credentials file (new
handshakes and AUTH checks use them; sessions in progress keep theirs);
the config file is read to check it and to name the settings that
changed, which take effect at restart), and reading the dial policy file
(``load_policy``, at start-up too).

Two kinds: a whole reload (SIGHUP, ``edgemail reload``) reads all three
and, as the admin's word that the setup was fixed, lets a link manager
that stopped dialling after a setup error (pppd's bad options, no kernel
PPP: link.fsm) dial again; ``newaliases`` (``only="aliases"``) reads and
checks the aliases alone, so a broken dial.policy or edgemail.toml never
stands in its way (sendmail's newaliases reads no other file either).

Invariant: all or nothing - any error leaves everything as it was and is
logged (``reload_failed``) with FILE:LINE where there is one.

Never: re-binds sockets, re-opens the spool or restarts the link manager;
those settings are named as needing a restart.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from edgemail import maillog
from edgemail.config.model import Config
from edgemail.daemon.wiredlink import Link
from edgemail.errors import ConfigError

log = logging.getLogger("edgemail.daemon")


class HangUp:
    """SIGHUP (``systemctl reload``): a reload once the daemon is up
    (``arm``); while it starts, a line saying so (never the signal's
    default: the end).  Installed first thing, armed once serving."""

    def __init__(self) -> None:
        self.reload: Callable[[str], dict] | None = None
        self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGHUP, self._fire)

    def arm(self, reload: Callable[[str], dict]) -> None:
        """The daemon is up: SIGHUP now calls reload("SIGHUP")."""
        self.reload = reload

    def _fire(self) -> None:
        if self.reload is None:
            log.warning(maillog.reload_failed("SIGHUP", "the daemon is still starting; send it again"))
        else:
            self.reload("SIGHUP")

    def remove(self) -> None:
        self._loop.remove_signal_handler(signal.SIGHUP)


class Reloader:
    """What a running daemon reads again on SIGHUP or ``newaliases``: the
    aliases (a new Router for the runner), the dial policy (the link
    manager's rules and settings), the listeners' TLS certificates and AUTH
    credentials.  The config file is read to check it and to name the
    settings that changed: those take effect at restart.  All or nothing:
    any error leaves everything as it was.  ``only="aliases"``
    (``newaliases``): the aliases alone, whatever state the other files are in."""

    def __init__(self, cfg: Config, runner=None, link=None, listeners=()) -> None:
        self.cfg, self.runner, self.link = cfg, runner, link
        #: the SMTP listeners: their TLS certificates and AUTH credentials are read again
        self.listeners = list(listeners)

    def __call__(self, reason: str, only: str = "") -> dict:
        """Read the files again (``only="aliases"``: the aliases alone); all or nothing."""
        from edgemail.delivery.aliases import load as load_aliases
        from edgemail.delivery.users import known_users
        from edgemail.smtpd.listener import reload_secrets
        if only not in ("", "aliases"):
            raise ValueError(f"reload: only={only!r}: expected \"aliases\" or nothing")
        try:
            new = None if only else self._config()
            aliases = load_aliases(self.cfg.local.aliases, self.cfg.local)
            users = known_users(self.cfg.local)
            policy = load_policy(self.cfg) if not only and isinstance(self.link, Link) else None
            swap_secrets = None if only else reload_secrets(self.listeners)
        except (ConfigError, OSError) as exc:
            log.error(maillog.reload_failed(reason, exc))
            return {"reloaded": False, "error": str(exc)}
        self._install(aliases, users, policy)
        if new is None or swap_secrets is None:
            log.info(maillog.aliases_reloaded(reason, aliases=len(aliases.entries)))
            return {"reloaded": True, "aliases": len(aliases.entries), "restart_needed": []}
        tls, auth_users = swap_secrets()
        changed = self._changed(new)
        log.info(maillog.reloaded(reason, aliases=len(aliases.entries),
                                  policy=self.cfg.link.policy if policy is not None else "",
                                  tls=tls or None, auth_users=auth_users, restart_needed=changed))
        return {"reloaded": True, "aliases": len(aliases.entries), "tls": tls,
                "auth_users": auth_users, "restart_needed": changed}

    def _config(self) -> Config:
        """The file read again; its snapshot for the command line with it
        (config/snapshot.py: a call that sees the new file must see its values)."""
        from edgemail.config import snapshot
        from edgemail.config.loader import load_text
        new, text = load_text(self.cfg.path)
        snapshot.write(new, text)
        return new

    def _install(self, aliases, users, policy) -> None:
        """The new aliases and local users for the runner; the new policy (and a
        lifted setup stop) for the link."""
        from edgemail.delivery.routing import Router
        if self.runner is not None and hasattr(self.runner, "router"):
            self.runner.router = Router(self.cfg, aliases, users)
        if policy is not None:
            self.link.manager.replace_policy(policy)
            self.link.manager.resume("reload")

    def _changed(self, new: Config) -> list[str]:
        from dataclasses import fields
        return [f.name for f in fields(Config) if f.name not in ("path", "host_addresses")
                and getattr(new, f.name) != getattr(self.cfg, f.name)]


def load_policy(cfg: Config):
    """The dial policy file -> link.policy.Policy.  Raises ConfigError (file:line: field: problem)."""
    from link.policy import PolicyError, parse
    path = cfg.link.policy
    if not path:
        raise ConfigError("a link mode needs a dial policy file", file=cfg.path, key="link.policy")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the dial policy: {exc.strerror}", file=path) from None
    try:
        policy = parse(text, file=path)
    except PolicyError as exc:
        raise ConfigError(exc.problem, file=exc.file, key=exc.field, line=exc.line) from None
    asks = next((r for r in policy.rules if "odmr" in r.actions), None)
    if asks is not None and cfg.link.odmr is None:
        raise ConfigError("action odmr needs [link] odmr in the configuration (the ISP's ODMR "
                          f"server, user and secret file; {cfg.path})", file=path, key="action", line=asks.line)
    return policy
