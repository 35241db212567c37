"""Run the viewer in a background thread (notebooks, scripts, browser tests): ``with BackgroundServer(app) as url``."""

from __future__ import annotations

import socket
import threading
import time

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """uvicorn serving ``app`` on a loopback port from a daemon thread; stopped on leaving the ``with`` block.

    Args:
        app: an ASGI app, usually :func:`s2vnet.serve.create_app`'s.
        port: 0 = a free port.
        start_timeout_s: how long to wait for the server to accept connections.
    """

    def __init__(self, app, port: int = 0, start_timeout_s: float = 30.0) -> None:
        self.app, self.port, self.start_timeout_s = app, port or _free_port(), start_timeout_s
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> str:
        """Start serving; returns the page's URL."""
        import uvicorn

        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, name="s2vnet-serve", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the viewer did not start on 127.0.0.1:{self.port}")
            time.sleep(0.05)
        return self.url

    def stop(self) -> None:
        """Shut down (sessions closed, uploads deleted) and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
