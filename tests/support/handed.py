"""A stand-in worker for :class:`cnnscope.server.workers.Balancer`: no torch, no uvicorn.

It speaks the balancer's protocol (``READY`` once, a socket with each ``HANDED`` byte,
``CLOSED`` as each connection ends, ``PONG`` for each ``PING``) and answers every request
on a connection with its own pid, so a test sees which worker got which connection.
``hung_worker`` stops answering anything once ready; ``mute_worker`` never gets ready.
"""

from __future__ import annotations

import os
import selectors
import socket
import time

from cnnscope.server.workers import CLOSED, PING, PONG, READY


def pid_worker(channel: socket.socket) -> None:
    """Answer ``HTTP/1.1 200`` with this process's pid to every request, until the
    supervisor's end of ``channel`` closes."""
    sel = selectors.DefaultSelector()
    sel.register(channel, selectors.EVENT_READ, None)
    channel.send(READY)
    body = str(os.getpid()).encode()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                data, fds, _flags, _addr = socket.recv_fds(channel, 1, 1)
                if not data and not fds:
                    return  # the supervisor is gone
                if data == PING:
                    channel.send(PONG)
                for fd in fds:
                    sel.register(socket.socket(fileno=fd), selectors.EVENT_READ, "conn")
                continue
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            if conn.recv(4096):
                conn.sendall(answer)
            else:
                sel.unregister(conn)
                conn.close()
                channel.send(CLOSED)


def hung_worker(channel: socket.socket) -> None:
    """Say ``READY``, then never read or answer anything again (a deadlocked worker)."""
    channel.send(READY)
    while True:
        time.sleep(60)


def mute_worker(channel: socket.socket) -> None:
    """Never say ``READY``: a worker hung while it loads."""
    while True:
        time.sleep(60)
