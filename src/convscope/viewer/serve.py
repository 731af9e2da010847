"""Serve a viewer folder on 127.0.0.1 with the standard library, nothing outside the folder.

A viewer too large to embed is written as a folder (:meth:`SimilarityOverlay.save_folder`):
``index.html`` fetches ``manifest.json`` and raw ``.bin`` arrays, which browsers refuse to read
from ``file://``. This server exists for that one purpose, so it is deliberately narrow:

* it binds the loopback address ``127.0.0.1`` only (no option to listen elsewhere);
* it answers ``GET`` and ``HEAD`` for regular files inside the folder, after resolving symbolic
  links, and 404 for everything else (no directory listings, no ``..``, no links leading out);
* responses carry ``X-Content-Type-Options: nosniff``, ``Cache-Control: no-store`` and a
  content security policy that lets the page load nothing but its own folder.
"""

from __future__ import annotations

import http.server
import os
import threading
import urllib.parse
import webbrowser
from pathlib import Path
from typing import Any

from convscope.core.errors import InputError

__all__ = ["HOST", "ViewerServer", "make_server", "serve"]

#: The only address the viewer server listens on.
HOST = "127.0.0.1"

_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".bin": "application/octet-stream",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}


class _FolderHandler(http.server.BaseHTTPRequestHandler):
    """GET/HEAD of regular files under ``server.root``; 404 for anything else."""

    server: ViewerServer
    server_version = "convscope-overlay"
    sys_version = ""

    def _resolve(self) -> Path | None:
        path = urllib.parse.urlsplit(self.path).path
        rel = urllib.parse.unquote(path).lstrip("/")
        if rel == "":
            rel = "index.html"
        if "\x00" in rel or "\\" in rel:
            return None
        parts = rel.split("/")
        if any(p in ("", ".", "..") for p in parts):
            return None
        target = (self.server.root / rel).resolve()
        if not target.is_relative_to(self.server.root) or not target.is_file():
            return None
        return target

    def _send(self, head_only: bool) -> None:
        target = self._resolve()
        if target is None:
            self.send_error(404, "Not found")
            return
        data = target.read_bytes()
        self.send_response(200)
        self.send_header(
            "Content-Type", _TYPES.get(target.suffix.lower(), "application/octet-stream")
        )
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", _CSP)
        self.end_headers()
        if not head_only:
            self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(head_only=False)

    def do_HEAD(self) -> None:
        self._send(head_only=True)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class ViewerServer(http.server.ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 that serves one folder."""

    daemon_threads = True

    def __init__(self, root: Path, port: int, *, verbose: bool = False) -> None:
        self.root = root
        self.verbose = verbose
        super().__init__((HOST, port), _FolderHandler)

    @property
    def url(self) -> str:
        """The address of the viewer's page."""
        return f"http://{HOST}:{self.server_address[1]}/"

    def start_background(self) -> threading.Thread:
        """Serve in a daemon thread (for notebooks and tests); stop with ``shutdown()``."""
        thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        return thread


def make_server(
    folder: str | os.PathLike[str], port: int = 8000, *, verbose: bool = False
) -> ViewerServer:
    """A :class:`ViewerServer` for ``folder`` on 127.0.0.1:``port`` (0 picks a free port).

    Raises
    ------
    InputError
        If ``folder`` is not a directory or has no ``index.html``, or the port is invalid or
        taken (the message says which port to try).
    """
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"{folder} is not a folder. Write one with overlay.save_folder(DIR).")
    if not (root / "index.html").is_file():
        raise InputError(
            f"{root} has no index.html: serve a folder written by save_folder() or "
            "`convscope overlay ... --folder`."
        )
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port must be an int in 0..65535, got {port!r}.")
    try:
        return ViewerServer(root, port, verbose=verbose)
    except OSError as exc:
        raise InputError(
            f"Cannot listen on {HOST}:{port} ({exc.strerror or exc}). Pick another port with "
            "--port, or 0 for any free port."
        ) from exc


def serve(
    folder: str | os.PathLike[str], port: int = 8000, *, open_browser: bool = False,
    verbose: bool = True,
) -> None:  # fmt: skip
    """Serve ``folder`` on http://127.0.0.1:``port``/ until interrupted (Ctrl-C)."""
    server = make_server(folder, port, verbose=verbose)
    print(f"Serving {server.root} at {server.url} (127.0.0.1 only; Ctrl-C stops)", flush=True)
    if open_browser:
        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
