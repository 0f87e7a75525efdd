"""Shared browser-test fixtures: SQLite is enough, a live server, one chromium per module."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def db_url(sqlite_url):
    """The browser tests look at screens, not databases: SQLite is enough."""
    return sqlite_url


@contextmanager
def live_server(app, name: str = "e2e"):
    """The app on a real local HTTP server (127.0.0.1, a free port); yields its base URL."""
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def server(app):
    with live_server(app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield chromium
        chromium.close()
