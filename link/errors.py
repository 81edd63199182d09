"""errors.py - the link package's exceptions.

The link never imports ``edgemail`` (DESIGN.md), so this module mirrors the
shape of ``edgemail.errors``' LinkError branch; the daemon maps them onto the
MTA's scopes (a LinkError is scope LINK: the run is deferred, no message's
backoff grows).

    LinkError
    +-- DialFailed(result)          BUSY, NO CARRIER, NO DIALTONE, NO ANSWER, TIMEOUT, ERROR
    +-- LinkLost(ConnectionError)   carrier lost, pppd died, the tty went away
    +-- RemoteProtocolError         the modem sent something no state can explain
    +-- SetupError                  a program of ours cannot be run (pppd, the up command):
                                    our setup is wrong, retrying will not help
"""

from __future__ import annotations

#: every value DialFailed.result may take
DIAL_RESULTS = ("BUSY", "NO CARRIER", "NO DIALTONE", "NO ANSWER", "TIMEOUT", "ERROR")


class LinkError(Exception):
    """Base of every error the link package raises on purpose (scope LINK)."""


class DialFailed(LinkError):
    """A call did not connect.  ``result`` is one of DIAL_RESULTS; ``number``
    the number tried (may be empty).  Temporary by nature."""

    def __init__(self, result: str, *, number: str = "", detail: str = "") -> None:
        if result not in DIAL_RESULTS:
            raise ValueError(f"unknown dial result {result!r}, expected one of {DIAL_RESULTS}")
        self.result = result
        self.number = number
        self.detail = detail
        msg = f"dial failed: {result}"
        if number:
            msg += f" (number={number})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class LinkLost(LinkError, ConnectionError):
    """The line went away while in use (carrier loss, pppd exit, EIO on the tty)."""


class RemoteProtocolError(LinkError):
    """The modem answered in a way no dialogue state allows (treated as temporary)."""


class SetupError(LinkError):
    """A program the link runs cannot be started (ENOENT, EACCES, ENOEXEC,
    EPERM): the setup is wrong and retrying will not help (link.fsm stops
    dialling)."""
