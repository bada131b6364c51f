"""Helper processes that do not outlive the process that started them (workers, upload checkers)."""

from __future__ import annotations

import os


def die_with_parent(parent: int) -> None:
    """On Linux, have the kernel kill this process when its parent dies, even by SIGKILL: no orphan runs on.

    Call it first thing in the child, with the parent's pid as the parent saw it. The signal follows the parent
    *thread* that started the child, so start children from a thread that lives as long as the process.
    """
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
