"""Which process holds which TCP connection to a server (Linux ``/proc``), for the tests and
benchmarks of ``serve --workers``: how the connections were shared between the workers."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["holders", "workers_of"]


def _inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` has open."""
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def holders(server_port: int, pids: list[int]) -> dict[int, int | None]:
    """For each connection to ``server_port`` on 127.0.0.1 (keyed by the client's port),
    the process among ``pids`` holding the server's end (``None``: none of them)."""
    by_client: dict[int, str] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        local, remote, inode = f[1], f[2], f[9]
        if int(local.split(":")[1], 16) == server_port and inode != "0":
            by_client[int(remote.split(":")[1], 16)] = inode
    held = {pid: _inodes(pid) for pid in pids}
    return {
        client: next((pid for pid, inodes in held.items() if inode in inodes), None)
        for client, inode in by_client.items()
    }


def workers_of(pid: int) -> list[int]:
    """The worker processes of ``serve --workers`` started as ``pid`` (multiprocessing's
    spawned children; its resource tracker, a child too, is left out)."""
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(k) for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]
