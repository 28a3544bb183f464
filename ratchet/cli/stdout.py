"""A ``ratchet`` command whose reader went away (``ratchet projects list | head -1``).

Python ignores ``SIGPIPE``, so writing to a pipe nobody reads raises :class:`BrokenPipeError` —
a subclass of :class:`ConnectionError`, which the CLI otherwise reports as "Redis is
unavailable". :func:`stdout_closed` tells the two apart, and :func:`leave_quietly` ends the
command the way ``cat`` or ``grep`` end in that case: no message, exit status 141 (128 +
SIGPIPE, what a shell reports for a process killed by ``SIGPIPE``; a script under
``set -o pipefail`` sees a truncated listing exactly as it would from any other tool).
"""

from __future__ import annotations

import os
import select
import sys

__all__ = ["SIGPIPE_STATUS", "leave_quietly", "stdout_closed"]

#: 128 + SIGPIPE (13): the status of a process a closed pipe ended.
SIGPIPE_STATUS = 141


def stdout_closed() -> bool:
    """Whether nobody reads stdout any more (its pipe's read end is closed)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced or closed stdout
        return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError):  # no poll() (Windows): try the write itself
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            return True
        return False
    return any(ev & select.POLLERR for _, ev in events)


def leave_quietly() -> int:
    """Point stdout at /dev/null (so the interpreter's last flush cannot fail and print
    "Exception ignored") and return :data:`SIGPIPE_STATUS`."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return SIGPIPE_STATUS
