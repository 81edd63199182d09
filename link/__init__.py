"""link - the line: modem, PPP, when to call.  Never imports `edgemail`.

Cores (no I/O, take `now`): at (Hayes dialogue), policy (cron-style dial
policy; its file's grammar in policyfile), fsm (link state machine).
Drivers: modem (pyserial), netwatch (pyroute2), accounting (state file),
and the manager (manager, with its calls and policydriver mixins).  The
daemon wires the manager to the MTA through the runner's LinkPort
(docs/interfaces.md).

This package's top level imports only the errors and the state enum, so that
importing a core never pulls in pyserial or pyroute2.
"""

from link.errors import DialFailed, LinkError, LinkLost, RemoteProtocolError
from link.transitions import LinkState

__all__ = ["DialFailed", "LinkError", "LinkLost", "LinkManager", "LinkState", "RemoteProtocolError"]


def __getattr__(name: str):
    """LinkManager on first use, so importing a core never loads the drivers."""
    if name == "LinkManager":
        from link.manager import LinkManager
        return LinkManager
    raise AttributeError(f"module 'link' has no attribute {name!r}")
