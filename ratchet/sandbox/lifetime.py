"""Children that end with the process that started them.

A sandbox server or child process (redis-server, Tansu, a gateway or worker of a test, the
demo or a benchmark) is stopped by its owner's ``finally`` blocks; an owner killed outright
(SIGKILL, a closed terminal's SIGHUP, a CI timeout) runs none of them, and its children —
each in a session of its own — would live on. :func:`die_with_parent` starts the child through
util-linux's ``setpriv --pdeathsig TERM``, which asks Linux to send it SIGTERM when its owner
dies (``PR_SET_PDEATHSIG``) and then executes it (same pid): no code runs in the forked child
of a threaded Python (which ``preexec_fn`` would need).
"""

from __future__ import annotations

import shutil
import sys
import threading

__all__ = ["die_with_parent"]


def die_with_parent() -> list[str]:
    """The command prefix that makes a child end (SIGTERM) when this process dies, or ``[]``
    where it cannot be promised: not Linux, no ``setpriv`` (util-linux), or not on the main
    thread — Linux sends the signal when the *thread* that forked the child ends, and a worker
    thread may end long before its process.

    >>> prefix = die_with_parent()
    >>> prefix == [] or prefix[1:] == ["--pdeathsig", "TERM", "--"]
    True
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
            threading.main_thread()):
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
