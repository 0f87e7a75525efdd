"""Shared browser-test fixtures: SQLite is enough, a live server, one chromium per module."""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
# Screenshots for people to look at. `make test` writes them to an ignored folder, so a test run
# never changes tracked files; `make screens` points this at docs/screens/ (docs/SCREENS.md).
SCREENS = Path(os.environ.get("BUSANPAY_SCREENS_DIR") or ROOT / "tests" / "e2e" / "artifacts" / "screens")
AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
#: Every browser test module's `pytestmark`.
BROWSER_TEST = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"browser tests need Debian chromium at {CHROMIUM} "
                              "(apt-get install chromium)"),
]


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


def screenshot(page, name: str, full_page: bool = False) -> None:
    """Save SCREENS/<name>.png. For the committed copies (`make screens`) the picture is cut
    to a 256-colour palette: a third of the bytes, the same to the eye for flat UI colours."""
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if os.environ.get("BUSANPAY_SCREENS_DIR"):
        from PIL import Image

        with Image.open(path) as picture:
            small = picture.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                                                    dither=Image.Dither.NONE)
        small.save(path, optimize=True)


def axe_violations(page, impacts=("serious", "critical")) -> list[dict]:
    """Run axe-core on the page; the violations of the given impacts, summarised."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.slice(0, 4).map(n => n.target.join(' '))}));
    }""")
    return [v for v in result if v["impact"] in impacts]
