"""The plugin's HTTP server on a Unix socket (Docker's plugin protocol: POST, JSON in and out,
``Content-Type: application/vnd.docker.plugins.v1+json``).

The standard library's ``http.server`` over a ``UnixStreamServer`` is all the protocol needs
(one short request per call, HTTP/1.1 keep-alive), so no web framework. A request that is
not HTTP or not JSON is a 400, an unknown call a 404 (Docker reads that as "not
implemented"); no request can end the process.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import stat
from http.server import BaseHTTPRequestHandler
from typing import Any

from .driver import Plugin

log = logging.getLogger("pymacvlan.docker")
CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"
MAX_BODY = 1 << 20
PLUGIN_DIR = "/run/docker/plugins"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.0"  # a garbled request line still gets a status line
    server: Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("http: " + format, *args)

    def _send(self, code: int, obj: dict[str, Any]) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # a malformed request line or header: JSON like every other answer, then close
        self.close_connection = True
        try:
            self._send(code, {"Err": message or "bad request"})
        except OSError:
            pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.close_connection = True
        self._send(405, {"Err": "the plugin API is POST only"})

    def do_POST(self) -> None:  # noqa: N802
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if n < 0 or n > MAX_BODY:
            self.close_connection = True
            self._send(400, {"Err": f"bad Content-Length (0 to {MAX_BODY})"})
            return
        raw = self.rfile.read(n) if n else b""
        try:
            req = json.loads(raw) if raw.strip() else {}
        except ValueError as e:
            self._send(400, {"Err": f"the body is not JSON: {e}"})
            return
        if not isinstance(req, dict):
            self._send(400, {"Err": "the body must be a JSON object"})
            return
        method = self.path.lstrip("/")
        reply = self.server.plugin.dispatch(method, req)
        if reply is None:
            self._send(404, {"Err": f"{method}: not implemented by pymacvlan"})
            return
        log.debug("%s %s -> %s", method, json.dumps(req)[:400], json.dumps(reply)[:400])
        self._send(200, reply)


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, path: str, plugin: Plugin) -> None:
        self.plugin = plugin
        _clear_stale(path)
        d = os.path.dirname(path)
        if d:
            os.makedirs(d, mode=0o755, exist_ok=True)
        old = os.umask(0o077)  # root only, like dockerd's own socket
        try:
            super().__init__(path, _Handler)
        finally:
            os.umask(old)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("connection error")


def _clear_stale(path: str) -> None:
    """A socket file nobody listens on (a previous run's) goes; a live one or a non-socket
    stays, and binding then fails with EADDRINUSE."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        return
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
    except OSError:
        os.unlink(path)
    finally:
        s.close()


def socket_for(name: str, plugin_dir: str = PLUGIN_DIR) -> str:
    """Where dockerd looks for a plugin called ``name``: ``/run/docker/plugins/NAME.sock``."""
    return os.path.join(plugin_dir, f"{name}.sock")
