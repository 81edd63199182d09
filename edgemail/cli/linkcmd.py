"""cli/linkcmd.py - ``edgemail link``: ask the link manager, dial, hang up, and the ppp hooks.

Synopsis::

    edgemail link explain                        would it dial now, why, when next (the daemon's view)
    edgemail link explain --offline [--at TIME]  the same from the policy file alone (cli/policycmd.py)
    edgemail link dial | hangup                  dial now whatever the policy says / hang up now
    edgemail link hook ip-up|ip-down -- IFACE TTY SPEED LOCAL REMOTE [IPPARAM]

Owns: the ``link`` subcommands that talk to the daemon, and ``hook_request``
(pppd's arguments and environment -> the ``link_up``/``link_down`` request).

``link hook`` is for the ppp hooks (/etc/ppp/ip-up.d, ip-down.d): pppd's
arguments in pppd's order, the ``IFNAME``, ``IPLOCAL``, ``IPREMOTE`` and
``IPPARAM`` variables where an argument is missing, and the environment's
CONNECT_TIME, BYTES_SENT, BYTES_RCVD (ip-down's accounting) among
``HOOK_ENV`` passed on.  A hook gives up after HOOK_TIMEOUT_S and exits 0
when the daemon is down, too slow, or the config unreadable: pppd must
never wait for us, and the daemon learns of the link from netlink anyway.
Only a refusal by the daemon exits 75.

Exit codes: ``dial`` and ``hangup`` exit 0 when the line is, or is going,
where it was asked to be (dialing from down; already dialing, connecting
or up; hanging up; already down), 75 when it cannot be now (backing off
after a failed dial, hanging up).  With ``[link] mode = "none"`` every
subcommand but ``explain --offline`` says there is no link manager (65).

Never: touches the modem or pppd: each subcommand is one control request.
"""

from __future__ import annotations

import argparse
import os

from edgemail.cli.base import EX_DATAERR, EX_OK, EX_TEMPFAIL, ask, err, load_config
from edgemail.cli.show import dial_text, hangup_text, hook_text, print_json

#: a ppp hook's whole conversation with the daemon (pppd runs it without waiting)
HOOK_TIMEOUT_S = 0.8
#: pppd environment passed on by the hooks (ip-down's accounting among them)
HOOK_ENV = ("CONNECT_TIME", "BYTES_SENT", "BYTES_RCVD", "LINKNAME", "DNS1", "DNS2", "PPPD_PID")
#: link states in which a dial or a hang-up request is already where it was asked to be
_DIAL_DONE = ("dialing", "connecting", "up")
_HANGUP_DONE = ("down", "hanging-up")


def link_command(args: argparse.Namespace) -> int:
    """``edgemail link explain|dial|hangup|hook``."""
    if args.link_cmd == "explain" and args.offline:
        from edgemail.cli.policycmd import explain_offline
        return explain_offline(args)
    if args.link_cmd == "hook":
        cfg = load_config(getattr(args, "config", None), "edgemail", failure=EX_OK)
        return link_hook(cfg, args.event, args.pppd_args, os.environ, as_json=getattr(args, "json", False))
    cfg = load_config(getattr(args, "config", None), "edgemail")
    op = {"explain": "link_explain", "dial": "link_dial", "hangup": "link_hangup"}[args.link_cmd]
    reply, code = ask(cfg, "edgemail", op)
    if reply is None:
        if code == EX_DATAERR and cfg.link.mode == "none":
            err("edgemail", "no link manager: [link] mode is \"none\" in the configuration")
        return code
    reply.pop("ok", None)
    if getattr(args, "json", False):
        print_json(reply)
    else:
        print(_words(args.link_cmd, reply))
    return _exit_code(args.link_cmd, reply)


def _words(cmd: str, reply: dict) -> str:
    if cmd == "dial":
        return dial_text(reply)
    if cmd == "hangup":
        return hangup_text(reply)
    return str(reply.get("text", ""))


def _exit_code(cmd: str, reply: dict) -> int:
    """0 when the line is (going) where it was asked to be, 75 when it cannot be now."""
    state = reply.get("state")
    if cmd == "dial" and not reply.get("dialing") and state not in _DIAL_DONE:
        return EX_TEMPFAIL
    if cmd == "hangup" and not reply.get("hangup") and state not in _HANGUP_DONE:
        return EX_TEMPFAIL
    return EX_OK


def hook_request(event: str, argv: list[str], env) -> dict:
    """pppd's ip-up/ip-down arguments and environment -> the control request's fields."""
    names = ("iface", "tty", "speed", "local", "remote", "ipparam")
    fields: dict[str, object] = dict(zip(names, argv))
    for key, var in (("iface", "IFNAME"), ("local", "IPLOCAL"), ("remote", "IPREMOTE"), ("ipparam", "IPPARAM")):
        fields.setdefault(key, env.get(var, ""))
    fields["env"] = {k: env[k] for k in HOOK_ENV if k in env}
    return fields


def link_hook(cfg, event: str, argv: list[str], env, *, as_json: bool = False) -> int:
    """``edgemail link hook ip-up|ip-down -- ARGS``: tell the daemon; never keep pppd waiting."""
    from edgemail.daemon.client import ControlClient, RequestFailed
    from edgemail.errors import ControlError
    op = "link_up" if event == "ip-up" else "link_down"
    try:
        reply = ControlClient(cfg.control_socket, timeout=HOOK_TIMEOUT_S).request(op, **hook_request(event, argv, env))
    except RequestFailed as exc:
        err("edgemail", f"{event}: the daemon refused: {exc}")
        return EX_TEMPFAIL
    except (ControlError, OSError) as exc:     # down, or too slow to answer: netlink tells it anyway
        err("edgemail", f"{event}: daemon not reachable ({exc}); nothing to tell")
        return EX_OK
    reply.pop("ok", None)
    if as_json:
        print_json(reply)
    else:
        print(hook_text(event, reply))
    return EX_OK
