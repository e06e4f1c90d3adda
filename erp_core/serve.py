"""Serving the ERP with a production WSGI server (waitress), in the foreground or a thread."""

from __future__ import annotations

import threading

from waitress import wasyncore
from waitress.server import create_server


class Server:
    """A waitress server bound at construction (port 0 picks a free port)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, threads: int = 16, sockets=None):
        """sockets: listening sockets to serve on (e.g. inherited from a supervisor) instead of host:port."""
        where = {"sockets": list(sockets)} if sockets else {"host": host, "port": port}
        self._server = create_server(app, threads=threads, connection_limit=1000, channel_timeout=60, ident="erp",
                                     **where)
        # one listening socket, or several when the host name resolves to several addresses
        listen = getattr(self._server, "effective_listen", None)
        self.port = int(listen[0][1] if listen else self._server.effective_port)
        self.host = host
        self._map = getattr(self._server, "map", None) or self._server._map
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

    def stop(self, timeout: float = 5) -> None:
        """Close the listener and every connection from inside the loop, then stop the workers."""
        if self._thread and self._thread.is_alive():
            trigger = next((d for d in self._map.values() if hasattr(d, "pull_trigger")), None)
            if trigger is not None:
                try:
                    trigger.pull_trigger(lambda: wasyncore.close_all(self._map))
                except OSError:  # the loop closed its wake-up pipe on its way out already
                    pass
            self._thread.join(timeout=timeout)
        else:
            wasyncore.close_all(self._map)
        self._server.task_dispatcher.shutdown(timeout=timeout)
