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
#: the results of a call that reached the network (the modem and the line work; the
#: far end did not answer): the line could have been up (MTA: retry.count_offline_time)
PLACED_RESULTS = ("BUSY", "NO CARRIER", "NO ANSWER", "TIMEOUT")


class LinkError(Exception):
    """Base of every error the link package raises on purpose (scope LINK)."""


class DialFailed(LinkError):
    """A call did not connect.  ``result`` is one of DIAL_RESULTS; ``number``
    the number tried (may be empty); ``placed`` whether it reached the network
    (PLACED_RESULTS) or the modem never dialled.  Temporary by nature."""

    def __init__(self, result: str, *, number: str = "", detail: str = "",
                 placed: bool | None = None) -> None:
        if result not in DIAL_RESULTS:
            raise ValueError(f"unknown dial result {result!r}, expected one of {DIAL_RESULTS}")
        self.result = result
        self.number = number
        self.detail = detail
        #: the call reached the network (by default: result in PLACED_RESULTS; a silent
        #: modem's TIMEOUT to AT is not placed)
        self.placed = result in PLACED_RESULTS if placed is None else placed
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
