"""Children that end with the process that started them.

A sandbox server or child process (redis-server, Tansu, a gateway or worker of a test, the
demo or a benchmark) is stopped by its owner's ``finally`` blocks; an owner killed outright
(SIGKILL, a closed terminal's SIGHUP, a CI timeout) runs none of them, and its children —
not killed with it (a signal to one process reaches no other) — would live on. :func:`die_with_parent` starts the child through
util-linux's ``setpriv --pdeathsig TERM``, which asks Linux to send it SIGTERM when its owner
dies (``PR_SET_PDEATHSIG``) and then executes it (same pid): no code runs in the forked child
of a threaded Python (which ``preexec_fn`` would need).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import threading

__all__ = ["die_with_parent"]


def die_with_parent() -> list[str]:
    """The command prefix that makes a child end (SIGTERM) when this process dies, or ``[]``
    where it cannot be promised: not Linux, no ``setpriv`` that knows ``--pdeathsig``
    (util-linux 2.33 and later), or not on the main thread — Linux sends the signal when the
    *thread* that forked the child ends, and a worker thread may end long before its process.

    >>> prefix = die_with_parent()
    >>> prefix == [] or prefix[1:] == ["--pdeathsig", "TERM", "--"]
    True
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
            threading.main_thread()):
        return []
    setpriv = _setpriv()
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


@functools.cache
def _setpriv() -> str:
    """The path of a ``setpriv`` that runs a command with ``--pdeathsig`` (tried once), or
    ``""`` (none, or one older than util-linux 2.33: it would refuse to start anything)."""
    setpriv = shutil.which("setpriv")
    if not setpriv:
        return ""
    try:
        done = subprocess.run([setpriv, "--pdeathsig", "TERM", "--", "true"],
                              capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return setpriv if done.returncode == 0 else ""
