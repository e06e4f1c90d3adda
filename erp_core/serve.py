"""Serving the ERP with a production WSGI server (waitress), in the foreground or a thread."""

from __future__ import annotations

import threading

from waitress.server import create_server


class Server:
    """A waitress server bound at construction (port 0 picks a free port)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, threads: int = 16):
        self._server = create_server(app, host=host, port=port, threads=threads,
                                     connection_limit=1000, channel_timeout=60, ident="erp")
        self.host = host
        self.port = self._server.effective_port
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        self._server.run()

    def start(self) -> "Server":
        self._thread = threading.Thread(target=self.serve_forever, daemon=True, name=f"waitress-{self.port}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.close()
        if self._thread:
            self._thread.join(timeout=5)
