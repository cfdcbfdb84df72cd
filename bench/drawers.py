"""Drawers for the serving benchmarks: what the page sends, and clients that send it cheaply.

Shared by ``serve_many.py`` (a classroom: many drawers at once) and
``train_while_drawing.py`` (one drawer while a run trains). The requests are what the page
sends while someone draws: ``{"png": <280×280 canvas data URL>}`` of MNIST test digits,
answered with every stage, gzip-encoded as a browser asks.

The clients run on the same cores as the server, so they are made cheap: each request is
encoded once, headers and body, before the clock starts, and :func:`closed_loop` drives
every connection from one thread with non-blocking sockets (no thread per client, no
HTTP library), so that what it measures is the server. Its own CPU time is reported.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import selectors
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from tests.support.rerender import rerender

from cnnscope.data import load_mnist

__all__ = ["Load", "closed_loop", "drawings", "page_png", "request", "sequential"]


def page_png(canvas: np.ndarray) -> bytes:
    """A (H, W) uint8 canvas as the page's ``greyPNG`` (codec.js) writes it: 8-bit grey,
    every row unfiltered, deflated at zlib's default level (CompressionStream's)."""
    h, w = canvas.shape
    rows = np.zeros((h, w + 1), np.uint8)  # each row: filter byte 0, then its pixels
    rows[:, 1:] = canvas

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    pixels = chunk(b"IDAT", zlib.compress(rows.tobytes()))
    return b"\x89PNG\r\n\x1a\n" + header + pixels + chunk(b"IEND", b"")


def drawings(n: int, model: str | None = "deep_mnist", form: str = "page") -> list[bytes]:
    """JSON bodies as the page sends them: a 280×280 canvas PNG as a data URL (seed 0).

    ``form``: ``"page"``, the page's own one-channel PNG; ``"pillow"``, a grey PNG with
    Pillow's filters (what this bench sent before the page had its own encoder);
    ``"rgba"``, the browser's ``canvas.toDataURL()`` (the page until then).
    """
    d = load_mnist()
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        canvas = (rerender(d.test_images[i].numpy() / 255.0, rng) * 255).astype(np.uint8)
        if form == "page":
            png = page_png(canvas)
        else:
            buf = io.BytesIO()
            image = Image.fromarray(canvas)
            (image.convert("RGBA") if form == "rgba" else image).save(buf, format="PNG")
            png = buf.getvalue()
        url = "data:image/png;base64," + base64.b64encode(png).decode()
        body = {"png": url} if model is None else {"png": url, "model": model}
        out.append(json.dumps(body).encode())
    return out


def request(body: bytes, path: str = "/api/predict") -> bytes:
    """One whole HTTP/1.1 POST of ``body`` (JSON), headers included, as a browser asks."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Accept-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


@dataclass
class Load:
    """What ``clients`` closed-loop clients got in ``seconds``."""

    clients: int
    seconds: float
    ok: int
    errors: int
    latencies: list[float]  # ms, answers with status 200
    client_cpu_ms: float = float("nan")  # the client's CPU per answer (this process)
    cpu_ms: float = float("nan")  # the server's CPU per answer: comparable on a busy machine
    statuses: dict[int, int] = field(default_factory=dict)  # errors by status (0: dropped)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


class _Conn:
    """One drawer: a kept-alive connection with at most one request in flight."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = self._connect()
        self.buf = bytearray()
        self.t0 = 0.0
        self.need = -1  # bytes of the whole response once its headers are in; -1 before
        self.status = 0

    def _connect(self) -> socket.socket:
        # Blocking: a request (~10 kB) fits the socket's buffer at once, and recv is only
        # called when the selector says something arrived.
        s = socket.create_connection(("127.0.0.1", self.port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def reconnect(self) -> None:
        self.sock.close()
        self.sock = self._connect()

    def send(self, data: bytes) -> bool:
        """Send a request; ``False`` if the connection was closed (reconnected for the next)."""
        self.buf.clear()
        self.need = -1
        self.t0 = time.perf_counter()
        try:
            self.sock.sendall(data)
        except OSError:
            self.reconnect()
            return False
        return True

    def feed(self) -> bool | None:
        """Read what arrived; ``True`` once the response is whole, ``None`` if closed."""
        try:
            chunk = self.sock.recv(262144)
        except OSError:  # reset by the server
            return None
        if not chunk:
            return None
        self.buf += chunk
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            self.status = int(head[0].split()[1])
            length = next(
                (int(h.split(":", 1)[1]) for h in head[1:] if h[:15].lower() == "content-length:"),
                0,
            )
            self.need = end + 4 + length
        return len(self.buf) >= self.need


def closed_loop(port: int, bodies: list[bytes], clients: int, seconds: float) -> Load:
    """``clients`` drawers for ``seconds``: one request in flight each, the next sent as
    soon as the answer arrives, all from this thread.

    Drawer ``k`` sends drawings ``k``, ``k + clients``, … of ``bodies`` (JSON, encoded into
    whole requests here, before the clock starts).
    """
    requests = [request(b) for b in bodies]
    conns = [_Conn(port) for _ in range(clients)]
    sel = selectors.DefaultSelector()
    nxt = list(range(clients))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    cpu0, t_start = time.process_time(), time.perf_counter()
    stop = t_start + seconds

    def dropped() -> None:
        statuses[0] = statuses.get(0, 0) + 1

    def start(k: int) -> None:
        c = conns[k]
        while not c.send(requests[nxt[k] % len(requests)]):
            dropped()  # the server closed the connection: an error; sent again, anew
        sel.register(c.sock, selectors.EVENT_READ, k)

    for k in range(clients):
        start(k)
    busy = clients
    while busy:
        for key, _ in sel.select(1.0):
            k = key.data
            c = conns[k]
            done = c.feed()
            if done is False:
                continue
            now = time.perf_counter()
            sel.unregister(c.sock)
            if done is None:  # the server closed the connection: an error
                dropped()
                c.reconnect()
            elif c.status == 200:
                latencies.append((now - c.t0) * 1000)
            else:
                statuses[c.status] = statuses.get(c.status, 0) + 1
            if now >= stop:
                busy -= 1
                continue
            nxt[k] += clients
            start(k)
        if time.perf_counter() > stop + 60:  # a server that stopped answering
            statuses[-1] = busy
            break
    elapsed = time.perf_counter() - t_start
    cpu = time.process_time() - cpu0
    for c in conns:
        c.sock.close()
    return Load(
        clients,
        elapsed,
        len(latencies),
        sum(statuses.values()),
        latencies,
        client_cpu_ms=cpu * 1000 / max(len(latencies), 1),
        statuses=statuses,
    )


def sequential(port: int, bodies: list[bytes], path: str = "/api/predict") -> list[float]:
    """Send ``bodies`` one after another on one connection; round trips in ms (all 200)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json", "Accept-Encoding": "gzip"}
    out = []
    for body in bodies:
        t0 = time.perf_counter()
        conn.request("POST", path, body, headers)
        r = conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{path}: {r.status} {data[:200]!r}")
        out.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return out
