"""maillog/text.py - the pieces every log line is made of.

Owns: ``clean()`` (peer-supplied text made safe for one line: CR, LF, tabs,
backslashes and other control characters escaped, so one event is always one
line; it is link/linklog.py's, one escaping for both catalogues), ``duration()`` (sendmail's ``[D+]HH:MM:SS``), ``NOQUEUE`` (the queue id
of a line about no message), and the ``key=value, key=value`` joiner the line
functions share.

Never: logs, reads a clock, or formats a whole line (the line functions in
messages.py, sessions.py, runs.py and daemon.py do, one function per line).
"""

from __future__ import annotations

from collections.abc import Iterable

from link.linklog import clean

__all__ = ["NOQUEUE", "addresses", "clean", "duration", "pairs"]

NOQUEUE = "NOQUEUE"


def pairs(*items: tuple[str, object]) -> str:
    """``key=value`` pairs joined by ``, `` (values cleaned; None left out)."""
    return ", ".join(f"{k}={clean(v)}" for k, v in items if v is not None)


def addresses(recipients: Iterable[object]) -> str:
    """``<a>,<b>``: a recipient list as one value."""
    return ",".join(f"<{clean(r)}>" for r in recipients)


def duration(seconds: float) -> str:
    """sendmail's delay format: ``HH:MM:SS`` or ``D+HH:MM:SS``; negatives clamp to 0."""
    s = max(0, int(round(seconds)))
    days, s = divmod(s, 86400)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{days}+{text}" if days else text
