"""similarity_overlay end to end in headless Chromium: file, Jupyter iframe, served folder.

The oracle is :meth:`SimilarityOverlay.similarity` (float32 from the recorded activations),
itself checked against a NumPy loop in test_overlay.py; the browser computes from float16
vectors, hence the 2e-3 tolerance.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from convscope.viewer.overlay import SimilarityOverlay, similarity_overlay
from convscope.viewer.serve import make_server
from convscope.viewer.similarity import synchronized_cell

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def view(two_scale_cnn: nn.Module) -> SimilarityOverlay:
    model = two_scale_cnn
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    return similarity_overlay(
        model, x, ["relu1", "relu2"], names=["a", "b", "c"], nmf=2,
        sweeps={"rotation": [-90, 0, 45, 90]}, sweep_layer="relu2",
    )  # fmt: skip


def _maps(target: Any, layer: str) -> np.ndarray:
    got = target.evaluate(
        f"() => window.convscopeViewers[0].lastMaps[{layer!r}].map((m) => Array.from(m))"
    )
    return np.asarray(got, dtype=np.float64)


def _check_query(target: Any, view: SimilarityOverlay, image: int, row: int, col: int) -> None:
    target.evaluate(
        "(q) => window.convscopeViewers[0].setQuery(q)",
        {"layer": "relu1", "image": image, "row": row, "col": col},
    )
    np.testing.assert_allclose(
        _maps(target, "relu1").reshape(3, 16, 16), view.similarity("relu1", image, row, col),
        atol=2e-3,
    )  # fmt: skip
    # the synchronised cursor of the 8×8 layer: round(8/16 · x), the original's rule
    r2, c2 = synchronized_cell(row, col, (16, 16), (8, 8))
    np.testing.assert_allclose(
        _maps(target, "relu2").reshape(3, 8, 8), view.similarity("relu2", image, r2, c2),
        atol=2e-3,
    )  # fmt: skip


def test_saved_file_matches_python(view: SimilarityOverlay, page: Any, tmp_path: Path) -> None:
    path = view.save(tmp_path / "view.html")
    page.goto(path.as_uri())
    page.evaluate("() => window.convscopeViewers[0].ready")
    _check_query(page, view, 2, 5, 11)
    # the sweep curve of a relu2 location on the swept image equals TransformSweep.curves
    page.evaluate(
        "(q) => window.convscopeViewers[0].setQuery(q)",
        {"layer": "relu2", "image": 0, "row": 2, "col": 6},
    )
    chart = page.evaluate("() => window.convscopeViewers[0].chartData(0)")
    expected = view.sweeps[0].curve(2, 6)
    got = np.array([np.nan if v is None else v for v in chart["similarities"]])
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], atol=3e-3)
    assert page.page_errors == [] and page.dialogs == []


def test_jupyter_iframe_runs_the_viewer(view: SimilarityOverlay, page: Any) -> None:
    page.set_content(f"<html><body>{view._repr_html_()}</body></html>")
    frame = page.frame_locator("iframe")
    frame.locator(".convscope-viewer canvas").first.wait_for()
    inner = next(f for f in page.frames if f != page.main_frame)
    inner.evaluate("() => window.convscopeViewers[0].ready")
    _check_query(inner, view, 0, 0, 15)
    assert page.page_errors == []


def test_served_folder_matches_python(view: SimilarityOverlay, page: Any, tmp_path: Path) -> None:
    view.save_folder(tmp_path / "served")
    server = make_server(tmp_path / "served", 0)
    server.start_background()
    try:
        page.goto(server.url)
        page.evaluate("() => window.convscopeViewers[0].ready")
        _check_query(page, view, 1, 8, 3)
        assert page.page_errors == []
    finally:
        server.shutdown()
        server.server_close()


def test_downsampling_note_is_shown(view: SimilarityOverlay, page: Any, tmp_path: Path) -> None:
    est = view.estimate_bytes()
    # relu2 with its rotation sweep outweighs relu1, so it is the layer pooled
    view.max_bytes = est.total - est.parts["layer relu1"] // 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = view.save(tmp_path / "small.html")
    finally:
        view.max_bytes = None
    page.goto(path.as_uri())
    page.evaluate("() => window.convscopeViewers[0].ready")
    text = page.inner_text("body")
    assert "relu2 8×8 → 4×4" in text


def test_embedded_viewer_cannot_reach_the_network(
    view: SimilarityOverlay, page: Any, tmp_path: Path
) -> None:
    """The embedded file's content security policy blocks every fetch (connect-src 'none')."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("reached")
    server = make_server(tmp_path / "site", 0)
    server.start_background()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(view.save(tmp_path / "view.html").as_uri())
        page.evaluate("() => window.convscopeViewers[0].ready")
        outcome = page.evaluate(
            "(url) => fetch(url).then(() => 'fetched', () => 'blocked')", server.url
        )
    finally:
        server.shutdown()
        server.server_close()
    assert outcome == "blocked"
    assert not any(u.startswith("http") for u in requests)


def test_keys_work_while_hovering_without_a_click(
    view: SimilarityOverlay, page: Any, tmp_path: Path
) -> None:
    page.goto(view.save(tmp_path / "view.html").as_uri())
    page.evaluate("() => window.convscopeViewers[0].ready")
    box = page.locator(".convscope-viewer canvas").first.bounding_box()
    # the centre of cell (4, 4) of image 0 at relu1 (16×16 cells)
    page.mouse.move(box["x"] + 4.5 * box["width"] / 16, box["y"] + 4.5 * box["height"] / 16)
    page.keyboard.press("ArrowRight")
    # the query shown is updated when the next frame renders
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    state = page.evaluate("() => window.convscopeViewers[0].state.query")
    assert state == {"layer": "relu1", "image": 0, "row": 4, "col": 5}
    page.keyboard.press("m")
    assert page.evaluate("() => window.convscopeViewers[0].state.options.view") == "nmf"
    page.mouse.move(0, 0)  # outside the viewer, unfocused: keys are the page's again
    page.keyboard.press("m")
    assert page.evaluate("() => window.convscopeViewers[0].state.options.view") == "nmf"
