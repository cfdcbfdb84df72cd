"""``choose_threads``: how many torch threads a training run should use on this machine.

On a 2-core machine shared with other work, two OpenMP threads that *spin* while they wait
collapse: each convolution waits at a barrier for the thread the scheduler has parked,
while the waiting one burns its core's share; two threads trained at 0.15–1.2× one
thread's images/s (bench/train_profile.py, load average 7–13). Threads that *sleep* at
the barrier (``OMP_WAIT_POLICY=PASSIVE``, which ``cnnscope train`` sets unless the
environment chooses) do not: on the same busy machine two passive threads trained at
1.1–2.2× one thread's images/s. So with passive waiting a run takes every core; with
spinning ones, only the cores idle when it starts, never fewer than one.
"""

from __future__ import annotations

import math
import os

__all__ = ["choose_threads"]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def choose_threads(requested: int = 0) -> int:
    """Torch threads for training.

    Parameters
    ----------
    requested
        A count > 0 is used as given. 0 (auto): ``OMP_NUM_THREADS`` when the environment
        sets it (``serve``'s Train tab runs its trainer with 1); else every core this
        process may use when OpenMP threads sleep while they wait
        (``OMP_WAIT_POLICY=PASSIVE``); else those cores minus the 1-minute load average,
        rounded, at least 1.
    """
    if requested > 0:
        return requested
    if (env := os.environ.get("OMP_NUM_THREADS", "").strip()).isdigit() and int(env) > 0:
        return int(env)
    cores = _cores()
    if os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE":
        return cores
    try:
        busy = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this system: trust the cores
        busy = 0.0
    return max(1, min(cores, math.floor(cores - busy + 0.5)))
