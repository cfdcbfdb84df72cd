"""How ``cnnscope serve`` runs the app: uvicorn with limits uvicorn does not set itself.

uvicorn times out idle keep-alive connections but not a client that opens a connection
and sends its request headers slowly, or never (slowloris): each such connection is held
forever. :class:`HeaderTimeout` closes a connection whose request line and headers have
not all arrived within ``HEADER_TIMEOUT_S`` of its first byte (or of the connection).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HEADER_TIMEOUT_S", "HeaderTimeout", "uvicorn_options"]

HEADER_TIMEOUT_S = 10.0  # as Apache's RequestReadTimeout (header=20-40) and Go's ReadHeaderTimeout
GRACEFUL_SHUTDOWN_S = 2
MAX_CONNECTIONS = 64  # uvicorn answers 503 beyond this many open connections and tasks


class HeaderTimeout(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose headers take too long."""

    header_timeout_s = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run(app, host=..., port=..., **uvicorn_options())``."""
    return {
        "http": HeaderTimeout,
        "timeout_keep_alive": 5,
        "limit_concurrency": MAX_CONNECTIONS,
        # Ctrl-C waits this long for open requests, then cancels them: an event stream (the
        # Train tab's) never ends by itself, and must not hold the server up.
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }
