"""Serving the ERP with a production WSGI server (waitress), in the foreground or a thread."""

from __future__ import annotations

import threading

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from . import limits


class _ProblemErrorTask(ErrorTask):
    """waitress' refusal of a too large body (decided from the headers, the body unread) as problem+json."""

    def execute(self):
        if not isinstance(self.request.error, RequestEntityTooLarge):
            return super().execute()
        length = self.request.content_length or None
        body = limits.problem_json(length, self.channel.server.adj.max_request_body_size)
        self.status = "413 Request Entity Too Large"
        self.response_headers.append(("Content-Type", "application/problem+json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    error_task_class = _ProblemErrorTask


class Server:
    """A waitress server bound at construction (port 0 picks a free port)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, threads: int = 16, sockets=None,
                 max_body: int = limits.MAX_BODY_BYTES):
        """sockets: listening sockets to serve on (e.g. inherited from a supervisor) instead of host:port.
        max_body: a request whose body is larger is refused (413) from its headers, its body unread."""
        where = {"sockets": list(sockets)} if sockets else {"host": host, "port": port}
        self._server = create_server(app, threads=threads, connection_limit=1000, channel_timeout=60, ident="erp",
                                     max_request_body_size=max_body + 1, **where)
        # one listening socket, or several when the host name resolves to several addresses
        listen = getattr(self._server, "effective_listen", None)
        self.port = int(listen[0][1] if listen else self._server.effective_port)
        self.host = host
        self._map = getattr(self._server, "map", None) or self._server._map
        for server in (self._server, *self._map.values()):  # several when listening on several addresses
            if hasattr(server, "channel_class"):
                server.channel_class = _Channel
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
