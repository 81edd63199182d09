"""syncer.py - the spool's commit helpers: small processes that write, fsync
and rename new queue files, so the fsyncs of a commit never wait for the
event loop's interpreter lock, nor it for them.

NAME
    syncer - commit new queue files in helper processes

WHY A PROCESS
    A commit is a handful of system calls (create, write, fsync, close,
    rename, fsync of the directory).  On a thread of the daemon each of them
    gives the interpreter lock back and must take it again from a busy event
    loop; measured here that doubled the time a commit takes under load
    (tests/bench/README.md).  A helper has no lock to share: it runs the
    calls back to back and answers through a pipe the event loop already
    watches.

PROTOCOL (one pipe each way, little-endian)
    request   "<IIHH" job, blob length, tmp length, dest length; tmp path;
              dest path; blob
    reply     "<Ii"  job, errno (0: committed: the file is fsynced, renamed
              into place and its directory fsynced)
    The helper takes every request already waiting (one read) as one batch
    and commits it with link/fileio.py's commit_new(), the same function
    the thread fallback uses (writer.py): writes each file and starts its
    write-back, fsyncs each, renames them, then fsyncs each directory
    once.  On an error it removes what it made of that job (tmp and dest)
    and answers the errno; it never answers 0 before the directory fsync.

USAGE
    python -I -S syncer.py DAEMON_PID [FILEIO_PATH]   (syncpool.command())
    FILEIO_PATH is link/fileio.py (default: beside this package, as both
    packages install side by side).  It is loaded by its path, as the
    top-level module "fileio": neither edgemail's nor link's __init__ runs,
    and its compiled form is the one the daemon's own import cached.

NEVER
    Imports anything but errno, os, signal, struct, sys and that file (it is
    started with -I -S from this file's path: a few megabytes), touches a
    file it was not named, or renames a file for a daemon that is gone:
    before each rename it checks that its parent is still the daemon, and
    end of input (the daemon closed the pipe or died) ends it.
"""

from __future__ import annotations

import os
import signal
import struct
import sys

REQUEST = struct.Struct("<IIHH")
REPLY = struct.Struct("<Ii")
#: one read takes every request already waiting (the pipe holds 64 KiB)
READ_SIZE = 1 << 20
#: link/fileio.py when no path is given: edgemail/ and link/ are siblings
FILEIO = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "link", "fileio.py")


def _requests(buf: bytearray) -> list[tuple[int, str, str, bytes]]:
    """Take every whole request from the front of BUF."""
    batch, at = [], 0
    while len(buf) - at >= REQUEST.size:
        job, size, ntmp, ndest = REQUEST.unpack_from(buf, at)
        names = at + REQUEST.size
        end = names + ntmp + ndest + size
        if len(buf) < end:
            break
        tmp = os.fsdecode(bytes(buf[names:names + ntmp]))
        dest = os.fsdecode(bytes(buf[names + ntmp:names + ntmp + ndest]))
        batch.append((job, tmp, dest, bytes(buf[names + ntmp + ndest:end])))
        at = end
    del buf[:at]
    return batch


def serve(rfd: int, wfd: int, fileio, parent: int) -> None:
    """The helper's loop: batches of requests in, one reply per job out,
    committed with FILEIO.commit_new while PARENT is our parent.  A request
    cut off by the end of input was never acknowledged: dropped."""
    buf = bytearray()

    def alive() -> bool:
        return os.getppid() == parent

    while True:
        chunk = os.read(rfd, READ_SIZE)
        if not chunk:
            return
        buf += chunk
        batch = _requests(buf)
        if not batch:
            continue
        try:
            errors = fileio.commit_new([(tmp, dest, blob) for _, tmp, dest, blob in batch], alive)
        except fileio.Abandoned:             # the daemon died: nobody will answer 250
            return
        fileio.write_all(wfd, b"".join(REPLY.pack(job, err) for (job, _, _, _), err in zip(batch, errors)))


def load_fileio(path: str):
    """link/fileio.py as the top-level module "fileio", by its path alone."""
    sys.path.insert(0, os.path.dirname(path))
    try:
        import fileio
    finally:
        del sys.path[0]
    return fileio


def main(argv: list[str]) -> None:
    # the daemon: its pid comes as the first argument (it may die before this
    # process gets here, and then getppid() would already say who adopted us)
    parent = int(argv[1])
    # systemd's stop and a terminal's ^C reach the whole group: the daemon
    # decides when a helper ends (end of input), so commits in flight finish
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() == parent:
        serve(sys.stdin.fileno(), sys.stdout.fileno(), load_fileio(argv[2] if len(argv) > 2 else FILEIO), parent)


if __name__ == "__main__":
    main(sys.argv)
