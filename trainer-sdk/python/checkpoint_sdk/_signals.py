"""Diagnosis of the classic reason a trainer never sees the pod's SIGTERM: a shell in between."""

from __future__ import annotations

import os
from typing import Optional

#: Process names of shells that neither forward SIGTERM to their children nor exit on it while waiting for one.
SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "busybox"})

RECIPE = (
    "Make the trainer the process that receives the pod's SIGTERM: end the entrypoint script with "
    "`exec python train.py ...` (exec replaces the shell), or run an init that forwards signals as PID 1 "
    "(`tini -g -- python train.py`, `dumb-init python train.py`). "
    "Set CHECKPOINT_SDK_SIGNAL_WARNING=0 to silence this warning."
)


def _comm(proc: str, pid: int) -> Optional[str]:
    try:
        with open(os.path.join(proc, str(pid), "comm"), encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def diagnose_signal_delivery(pid: Optional[int] = None, ppid: Optional[int] = None, proc: str = "/proc") -> Optional[str]:
    """Returns why SIGTERM sent to the container may never reach this process, or None when nothing looks wrong.

    The kubelet (through the container runtime) signals only the container's PID 1. When this process is not
    PID 1 and PID 1, or this process's parent, is a shell, the signal usually stops at the shell.
    """
    pid = os.getpid() if pid is None else pid
    ppid = os.getppid() if ppid is None else ppid
    if pid == 1:
        return None
    init = _comm(proc, 1)
    if init in SHELLS:
        return (f"this trainer is pid {pid}, but PID 1 is the shell '{init}', which does not forward SIGTERM: when the "
                f"pod is preempted the trainer may never learn of it and is SIGKILLed without a checkpoint. {RECIPE}")
    parent = _comm(proc, ppid) if ppid > 0 else None
    if parent in SHELLS:
        return (f"this trainer (pid {pid}) was started by the shell '{parent}' (pid {ppid}), which does not forward "
                f"SIGTERM: if that shell is what the container runtime signals, the trainer never learns of the "
                f"preemption. {RECIPE}")
    return None
