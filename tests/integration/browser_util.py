"""Helpers for the browser tests: Debian's chromium driven by Playwright, the node's web
files served alone on 127.0.0.1 (a secure context, so WebCrypto is there), screenshots."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
"""The browser: Debian's package (deploy/install-tools.sh installs it), never a download."""
WEB_DIR = Path(__file__).resolve().parents[2] / "node" / "api" / "web"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
"""Where every view's screenshot goes (gitignored)."""


@contextmanager
def browser() -> Iterator[Any]:
    """A headless chromium; its pages log console errors into ``page.errors`` (see ``new_page``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def new_page(b: Any) -> Any:
    """A page in a fresh context whose console errors and page errors are collected in ``.errors``."""
    page = b.new_context(viewport={"width": 1280, "height": 900}).new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.type}: {m.text} @ {m.location}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.errors = errors
    return page


class _WebFiles(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/favicon.ico":  # the browser asks; a 404 would be a console error
            self.send_response(204)
            self.end_headers()
            return
        super().do_GET()

    def translate_path(self, path: str) -> str:
        name = path.split("?", 1)[0].rpartition("/")[2] or "index.html"
        return str(WEB_DIR / name)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


@contextmanager
def serve_web_files() -> Iterator[str]:
    """The web directory on an ephemeral 127.0.0.1 port (no node behind it); yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_WebFiles))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
