"""A tiny threaded HTTP server on 127.0.0.1 that records every request and answers as a test tells it.

with recording_server(lambda h: h.send_error(503)) as (base_url, seen):
    ...   # seen: [{"method", "path", "headers", "body"}, ...] in arrival order
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Reply = Callable[[http.server.BaseHTTPRequestHandler], None]


@contextmanager
def recording_server(reply: Reply, host: str = "127.0.0.1") -> Iterator[tuple[str, list[dict]]]:
    """Serve on a free port until the block ends; `reply(handler)` answers each request after it is recorded."""
    seen: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen.append(
                {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
            )
            reply(self)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True  # a handler a test left hanging must not block teardown
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
