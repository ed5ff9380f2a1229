"""A real local HTTP server for tests: fixed routes, optionally sent slowly in pieces."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "audio/ogg"
    location: str | None = None
    chunk: int = 0  # > 0: send the body in pieces of this size ...
    delay_s: float = 0.0  # ... with this pause before each


@dataclass
class Site:
    server: ThreadingHTTPServer
    routes: dict[str, Route]
    hits: list[str] = field(default_factory=list)  # request paths, in order
    sent: list[int] = field(default_factory=list)  # body bytes sent so far, per request (same order)

    def url(self, path: str) -> str:
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}{path}"


def serve(host: str, routes: dict[str, Route]) -> Site:
    """Serve ``routes`` on ``host`` at a free port in a daemon thread; stop with ``site.server.shutdown()``."""
    site_ref: list[Site] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            site = site_ref[0]
            site.hits.append(self.path)
            site.sent.append(0)
            slot = len(site.sent) - 1
            route = site.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            self.send_response(route.status)
            if route.location:
                self.send_header("Location", route.location)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            step = route.chunk or len(route.body) or 1
            try:
                for start in range(0, len(route.body), step):
                    time.sleep(route.delay_s)
                    self.wfile.write(route.body[start : start + step])
                    self.wfile.flush()
                    site.sent[slot] = start + step
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading (yt-dlp only wants the headers)

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    site = Site(server, routes)
    site_ref.append(site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return site
