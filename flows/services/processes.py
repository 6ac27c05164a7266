"""Child processes that die with dsr: the servers a run starts for itself (Prefect's ephemeral API, the
bundled model) must not outlive a run killed with SIGKILL, which runs no cleanup of its own."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(signal_number: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` (Linux; None elsewhere): the child gets ``signal_number`` when the thread that forked
    it ends (PR_SET_PDEATHSIG follows the forking thread, not the process), and exits at once when the
    parent is already gone (it died between the fork and the prctl). libc is loaded here, before the fork,
    so the child makes one call and no imports between fork and exec."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # not glibc: the child simply lacks the guard
        return None
    parent_pid = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal_number)
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec
