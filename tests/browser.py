"""Headless Chromium (Debian's `chromium`) driven by Playwright, with the network cut off: every
request the page makes is recorded, and any that is not the page's own file is refused."""

from __future__ import annotations

import base64
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # without these Chromium phones home at start-up; the machine's closed network refuses it
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("Chromium is missing: .ci/run installs Debian's chromium package")
    pytest.skip("needs Chromium (apt-get install chromium) for the browser tests")


@dataclass
class OpenedPage:
    page: Any
    requests: List[str] = field(default_factory=list)
    refused: List[str] = field(default_factory=list)
    errors: List[str] = field(default_factory=list)


@dataclass
class Browser:
    browser: Any

    def open(self, path: Path, width: int = 1400, height: int = 900) -> OpenedPage:
        page = self.browser.new_page(viewport={"width": width, "height": height})
        opened = OpenedPage(page)
        own = path.resolve().as_uri()

        def route(route: Any) -> None:
            url = route.request.url
            opened.requests.append(url)
            if url == own:
                route.continue_()
            else:
                opened.refused.append(url)
                route.abort()

        page.route("**/*", route)
        page.on("pageerror", lambda error: opened.errors.append(str(error)))
        page.on(
            "console",
            lambda message: opened.errors.append(message.text) if message.type == "error" else None,
        )
        page.goto(own, wait_until="load")
        return opened

    def colour_census(self, png: bytes) -> Dict[str, float]:
        """Distinct colours and the share of pixels that are not the most common colour, of a
        screenshot, counted by the browser itself from the PNG."""
        page = self.browser.new_page()
        try:
            page.set_content(
                f'<img id="shot" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            )
            page.wait_for_function("document.getElementById('shot').complete")
            census: Dict[str, float] = page.evaluate(
                """() => {
                  const img = document.getElementById('shot');
                  const canvas = document.createElement('canvas');
                  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
                  const context = canvas.getContext('2d');
                  context.drawImage(img, 0, 0);
                  const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
                  const counts = new Map();
                  for (let i = 0; i < data.length; i += 4) {
                    const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
                    counts.set(key, (counts.get(key) || 0) + 1);
                  }
                  const most = Math.max(...counts.values());
                  const pixels = data.length / 4;
                  return {colours: counts.size, not_background: (pixels - most) / pixels};
                }"""
            )
            return census
        finally:
            page.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the dev extra (playwright)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield Browser(launched)
        finally:
            launched.close()
