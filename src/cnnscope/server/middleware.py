"""ASGI middleware: request timing, the body limit, and "local means local" (Host, Origin)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "GZIP_LEVEL",
    "GZIP_MIN_BYTES",
    "LOOPBACK_HOSTS",
    "MAX_BODY_BYTES",
    "BodyLimit",
    "LocalOnly",
    "ServerTiming",
    "gzipped",
]

MAX_BODY_BYTES = 2 * 1024 * 1024
# Responses are gzipped from this size (starlette's GZipMiddleware, or gzipped() on a
# worker thread). Level 1: 27.6 kB for a typical 55 kB answer in 0.8 ms with zlib; level 9
# saves 5 % for 2× the time.
GZIP_LEVEL = 1
GZIP_MIN_BYTES = 1024

try:  # ISA-L's deflate, level 1: 0.11 ms and 28.7 kB for a prediction's 55 kB (zlib's
    # level 1: 0.76 ms, 29.3 kB), a sixth of the CPU a classroom's answer cost
    from isal import isal_zlib as _deflate
except ImportError:  # a platform without isal's wheel: the standard library's
    import zlib as _deflate  # type: ignore[no-redef]


def gzipped(body: bytes, accept_encoding: str) -> tuple[bytes, dict[str, str]]:
    """``body`` and its headers as the gzip middleware would send it, for a route that
    compresses on its own worker thread: the middleware compresses on the event loop, which
    then serves nobody else for the ~1 ms a prediction's answer takes (zlib lets go of the
    GIL; the loop's thread does not). The middleware passes an encoded body through."""
    if "gzip" not in accept_encoding or len(body) < GZIP_MIN_BYTES:
        return body, {}
    # wbits 31: the gzip container, as gzip.compress writes it, without its extra copies.
    c = _deflate.compressobj(GZIP_LEVEL, _deflate.DEFLATED, 31)
    return c.compress(body) + c.flush(), {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}


class ServerTiming:
    """ASGI middleware: a ``Server-Timing: app;dur=MS`` header on every response.

    Outermost, so the time covers validation, the handler, JSON rendering and gzip: all
    the server does before the first byte leaves. Browsers show it in their dev tools.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - t0) * 1000
                message["headers"] = [
                    *message.get("headers", []),
                    (b"server-timing", f"app;dur={ms:.3f}".encode()),
                ]
            await send(message)

        await self.app(scope, receive, timed_send)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before it is parsed.

    Checks the declared Content-Length first, then reads the body (a chunked upload
    declares none) up to the limit before the app sees any of it, and replays it: an
    error raised from inside the app's own body reading would come out as FastAPI's 400.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._too_big(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._too_big(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: bytes | None = b"".join(chunks)

        async def replay() -> Message:
            nonlocal body
            if body is None:
                return await receive()  # after the body: wait for a disconnect
            message, body = {"type": "http.request", "body": body, "more_body": False}, None
            return message

        await self.app(scope, replay, send)

    async def _too_big(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body over the limit of {self.limit:,} bytes"},
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
# Requests that start work (forward passes, renders, evaluations) or read the model:
# a page from another origin may not start them even though it cannot read the answer.
_GUARDED = ("/api/", "/predict")
_SAFE_SITES = (b"same-origin", b"none")  # Sec-Fetch-Site values of our own page, or typed


def _hostname(host: str) -> str:
    """``host[:port]`` → the host name, lower case; IPv6 literals keep their brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    if host.count(":") > 1:  # a bare IPv6 address (an allow-list entry like ::1)
        return f"[{host}]"
    return host.split(":", 1)[0]


class LocalOnly:
    """ASGI middleware: a local server answers only to its own names and its own pages.

    * **Host allow-list** (against DNS rebinding, where ``evil.example`` resolves to
      127.0.0.1 and its page then reads our answers as same-origin): the ``Host`` header
      must name a loopback host or one of ``allowed_hosts``, else 400. ``"*"`` allows any
      (as Jupyter's ``allow_remote_access``).
    * **Origin check** on ``/api/*`` and ``/predict`` (everything that starts work): a
      request from another site's page (an ``Origin`` that is not ours, or
      ``Sec-Fetch-Site: cross-site``) gets 403. Requests with neither header (curl, the
      CLI, scripts) pass; so does our own page.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.hosts = {_hostname(h) for h in (*LOOPBACK_HOSTS, *allowed_hosts) if h != "*"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan; the app has no websocket routes
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        refusal = self._check_host(host) or self._check_origin(scope, headers, host)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)

    def _check_host(self, host: str) -> tuple[int, str] | None:
        if self.any_host or _hostname(host) in self.hosts:
            return None
        allowed = ", ".join(sorted(self.hosts))
        return 400, (
            f"Host {host!r} is not served here (allowed: {allowed}). To reach cnnscope by "
            "this name, start it with `cnnscope serve --allowed-host NAME`."
        )

    def _check_origin(
        self, scope: Scope, headers: dict[bytes, bytes], host: str
    ) -> tuple[int, str] | None:
        if not str(scope.get("path", "")).startswith(_GUARDED):
            return None  # the page itself, its scripts, /docs: a navigation may come from anywhere
        origin = headers.get(b"origin", b"").decode("latin-1").lower()
        ours = f"{scope.get('scheme', 'http')}://{host}".lower()
        site = headers.get(b"sec-fetch-site")
        if (origin and origin != ours) or (site is not None and site not in _SAFE_SITES):
            who = origin or f"a {site.decode('latin-1') if site else ''} page"
            return 403, (
                f"cross-origin request from {who} refused: cnnscope answers only its own page "
                f"({ours}/) and clients that send no Origin"
            )
        return None
