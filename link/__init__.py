"""link - the line: modem, PPP, when to call.  Never imports `edgemail`.

Cores (no I/O, take `now`): at (Hayes dialogue), policy (cron-style dial
policy; its file's grammar in policyfile), fsm (link state machine; its
states, events, actions and transition table in transitions).
Drivers: modem (pyserial), ppp (pppd), netwatch (pyroute2), accounting
(state file), and the manager, composed of parts that each own their
state: manager (the loop, the FSM) owns a call driver (calls: the line in
line.py, netwatch, the ledger, the MTA's runs and ETRN) and a policy driver
(policydriver: asking the policy, its schedule jobs); port is the MTA as
link sees it (MtaPort, guarded calls) and the clock; report is what the
manager says of itself (status, explain).  Every log line is made in
linklog.  The daemon wires the manager to the MTA through the
runner's LinkPort (docs/interfaces.md).

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
