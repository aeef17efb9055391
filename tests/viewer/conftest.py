"""The viewer's fixtures: a small registry and model store, a live server, a headless browser."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import resources  # noqa: E402
from viewer_fixtures import build_models, build_registry  # noqa: E402

SCREENSHOTS_ENV = "ASSAY_UI_SCREENSHOTS"
"""A folder to save the browser tests' screenshots in (docs/ui is where the docs take them from)."""


@dataclass(frozen=True)
class Site:
    """A running viewer: its base URL and the folders it serves."""

    url: str
    registry_root: Path
    model_root: Path


@pytest.fixture(scope="session")
def site_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("viewer")
    build_registry(root / "registry")
    build_models(root / "models")
    return root / "registry", root / "models"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def site(site_data: tuple[Path, Path]) -> Iterator[Site]:
    """The viewer served by uvicorn on a free loopback port, in a thread of this process."""
    import uvicorn

    from viewer.app import ViewerSettings, create_app

    registry_root, model_root = site_data
    app = create_app(ViewerSettings(str(registry_root), model_root))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the viewer did not start")
        time.sleep(0.05)
    yield Site(f"http://127.0.0.1:{port}", registry_root, model_root)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright, or a loud skip (a failure under
    ASSAY_REQUIRE=browser)."""
    reason = resources.browser_missing()
    if reason:
        resources.unavailable("browser", reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(resources.CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: object, site: Site) -> Iterator[object]:
    """A fresh browser page that fails the test on any page error or dialog."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    tab.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    tab.problems = problems
    yield tab
    context.close()
    assert not problems, problems


@pytest.fixture
def shoot() -> object:
    """Save a screenshot of a page under $ASSAY_UI_SCREENSHOTS (when set) as NAME.png."""
    folder = os.environ.get(SCREENSHOTS_ENV)

    def save(tab: object, name: str) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(Path(folder) / f"{name}.png"))  # type: ignore[attr-defined]

    return save
