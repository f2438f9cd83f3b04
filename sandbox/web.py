"""A tiny JSON-over-HTTP server on the standard library, run in a thread.

The stdlib `ThreadingHTTPServer` starts in milliseconds and needs nothing
installed; routes are (method, regex) pairs mapped to plain functions, so a
service is a class with a `routes()` method and no framework to learn.
Connections close after each response, so stopping a server leaves no
keep-alive connection still being served by a stray thread.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON; an empty body is an empty object."""
        if not self.body.strip():
            return {}
        return json.loads(self.body)


@dataclass
class Response:
    status: int
    body: Any = None
    content_type: str = "application/json"

    def encode(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if self.content_type == "application/json":
            return json.dumps(self.body, ensure_ascii=False).encode()
        return str(self.body).encode()


class HttpError(Exception):
    """Raised by a handler to answer with a JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[[Request], Response]
Route = tuple[str, str, Handler]


class Router:
    def __init__(
        self, routes: list[Route], hook: Callable[[Request, Response], None] | None = None
    ):
        self._routes = [(m, re.compile(f"^{p}$"), h) for m, p, h in routes]
        self._hook = hook

    def dispatch(self, request: Request) -> Response:
        allowed = False
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if not match:
                continue
            allowed = True
            if method != request.method:
                continue
            request.params = {k: unquote(v) for k, v in match.groupdict().items()}
            response = self._call(handler, request)
            break
        else:
            status, what = (405, "method not allowed") if allowed else (404, "not found")
            response = Response(status, {"error": f"{what}: {request.method} {request.path}"})
        if self._hook:
            self._hook(request, response)
        return response

    @staticmethod
    def _call(handler: Handler, request: Request) -> Response:
        try:
            return handler(request)
        except HttpError as exc:
            return Response(exc.status, {"error": exc.message})
        except (ValueError, KeyError, TypeError) as exc:
            # Bad JSON or a missing field: the caller's mistake, not the server's.
            return Response(400, {"error": f"bad request: {exc}"})
        except Exception as exc:  # noqa: BLE001 - a test server answers 500, never hangs up
            return Response(500, {"error": f"{type(exc).__name__}: {exc}"})


def _handler_class(router: Router, server_name: str) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        server_version = server_name
        timeout = 30

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(self.command, url.path, parse_qs(url.query), body)
            response = router.dispatch(request)
            payload = response.encode()
            self.send_response(response.status)
            self.send_header("Content-Type", f"{response.content_type}; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet: request lines would drown the test and CLI output."""

    return _Handler


class BackgroundServer:
    """One HTTP server on 127.0.0.1 served by a daemon thread until `stop()`."""

    def __init__(self, name: str, router: Router, port: int = 0) -> None:
        self.name = name
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_class(router, name))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{name}",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
