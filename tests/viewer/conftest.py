"""Fixtures of the viewer tests: one headless Chromium per session, driven by Playwright.

The browser is the system Chromium (``/usr/bin/chromium`` or ``$CONVSCOPE_CHROMIUM``). When it or
Playwright is missing the browser tests are skipped with the way to install them, unless
``CONVSCOPE_REQUIRE_BROWSER=1`` (CI), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """The Chromium executable to drive, or None when there is none."""
    path = os.environ.get("CONVSCOPE_CHROMIUM", "/usr/bin/chromium")
    return path if Path(path).is_file() else shutil.which("chromium")


def _unavailable(reason: str) -> None:
    if os.environ.get("CONVSCOPE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (CONVSCOPE_REQUIRE_BROWSER=1 makes this an error).")
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: a test that drives headless Chromium with Playwright"
    )


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium shared by the session's browser tests."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed: pip install -e '.[dev]'")
    executable = chromium_path()
    if executable is None:
        _unavailable(
            "No Chromium found at /usr/bin/chromium or $CONVSCOPE_CHROMIUM: "
            "apt-get install chromium (or set CONVSCOPE_CHROMIUM)"
        )
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (device scale 1, so canvas pixels are CSS pixels) recording dialogs."""
    context = browser.new_context(viewport={"width": 1200, "height": 900}, device_scale_factor=1)
    pg = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    pg.on("pageerror", lambda err: errors.append(str(err)))
    pg.dialogs = dialogs
    pg.page_errors = errors
    try:
        yield pg
    finally:
        context.close()


class TwoScaleCNN(nn.Module):
    """16×16 then 8×8 post-ReLU grids on 16×16 inputs; ``conv2`` is a signed layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(self.conv1(x)))
        return self.head(self.relu2(self.conv2(x)))


@pytest.fixture(scope="module")
def two_scale_cnn() -> TwoScaleCNN:
    """A seeded :class:`TwoScaleCNN` in eval mode (not modified by the tests)."""
    torch.manual_seed(0)
    return TwoScaleCNN().eval()
