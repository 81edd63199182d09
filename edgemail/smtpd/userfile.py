"""smtpd/userfile.py - the one parser of AUTH's ``user:VALUE`` files: the
credentials (credentials.py: ``user:hash``) and CRAM-MD5's secrets
(cram.py: ``user:secret``).

One line per user: the user name (no spaces, no colons, not starting with
``#``), a colon, then the value, which the caller's ``check`` converts or
refuses (ValueError).  Blank lines and lines starting with ``#`` are
skipped.  ``strip``: the whole line is stripped of spaces (a hash has
none); without it only the line end is taken off, so a secret keeps its
spaces and colons.

Failures: ConfigError naming the file and the line: not ``user:VALUE``, a
user given twice, or ``user 'NAME': `` and the check's complaint.  No
value is ever part of an error.

Never: reads a file, logs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from edgemail.errors import ConfigError

T = TypeVar("T")
#: a user name in these files (and on credentials.py's command line)
USER = re.compile(r"[^\s:#][^\s:]*")


def parse(lines: Iterable[str], path: str, *, value: str, check: Callable[[str], T],
          strip: bool = False) -> dict[str, T]:
    """``user:VALUE`` lines -> {user: check(VALUE)}.  Raises ConfigError with the line."""
    users: dict[str, T] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip() if strip else raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, text = line.partition(":")
        if not sep or not USER.fullmatch(user):
            problem = f"expected user:{value} (a user name without spaces or colons)"
        elif user in users:
            problem = f"user {user!r} is given twice"
        else:
            try:
                users[user] = check(text)
                continue
            except ValueError as exc:
                problem = f"user {user!r}: {exc}"
        raise ConfigError(problem, file=path, line=number)
    return users
