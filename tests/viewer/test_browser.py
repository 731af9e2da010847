"""The similarity-overlay viewer in a real browser (headless Chromium driven by Playwright).

Every check compares what the page draws with an independent NumPy oracle: the ε-cosine of the
shipped float16 vectors computed in float64, mapped through the colour lookup table.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from convscope.viewer.html import render_document, render_iframe
from convscope.viewer.payload import colormap_tables, decode_array, encode_array

pytestmark = pytest.mark.browser

EPS = 1e-4
SIZE = 120  # tile side in CSS px: 15 px cells at 8x8, 20 px at 6x6, 30 px at 4x4
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
XSS_IMG = "<img src=x onerror=alert(1)>"
XSS_SCRIPT = "</script><script>window.pwned=1</script>"

GRAY = decode_array(colormap_tables(("gray",))["gray"]).astype(np.int64)


# ----------------------------------------------------------------------------------- payloads
def png_data_url(
    height: int = 32, width: int = 32, colour: tuple[int, int, int] = (0, 0, 0)
) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def unit_features(seed: int, *shape: int) -> np.ndarray:
    """Post-ReLU-like vectors divided by (norm + eps), rounded to float16 as shipped."""
    x = np.maximum(np.random.default_rng(seed).normal(size=shape), 0.0)
    return (x / (np.linalg.norm(x, axis=-1, keepdims=True) + EPS)).astype(np.float16)


def make_payload(
    layers: list[tuple[str, np.ndarray]],
    *,
    names: list[str] | None = None,
    labels: list[str | None] | None = None,
    nmf: dict[str, Any] | None = None,
    sweeps: list[dict[str, Any]] | None = None,
    title: str = "test viewer",
    src: str | None = None,
    **display: Any,
) -> dict[str, Any]:
    n = layers[0][1].shape[0]
    src = src or png_data_url()
    return {
        "format": "convscope-similarity-overlay",
        "version": 1,
        "title": title,
        "eps": EPS,
        "signed": False,
        "display": {
            "size": SIZE, "opacity": 0.7, "colormap": "gray", "normalization": "fixed",
            "upscale": "nearest", "view": "similarity", "multi_layer": False, **display,
        },
        "colormaps": colormap_tables(),
        "images": [
            {"name": names[i] if names else f"image {i}", "label": labels[i] if labels else None,
             "src": src, "height": 32, "width": 32}
            for i in range(n)
        ],
        "layers": [
            {"name": name, "height": f.shape[1], "width": f.shape[2], "channels": f.shape[3],
             "features": encode_array(f, "float16")}
            for name, f in layers
        ],
        "nmf": nmf,
        "sweeps": sweeps or [],
        "notes": ["a note"],
    }  # fmt: skip


# ------------------------------------------------------------------------------------ helpers
def open_viewer(page: Any, tmp_path: Path, payload: dict[str, Any]) -> None:
    path = tmp_path / "viewer.html"
    path.write_text(render_document(payload), encoding="utf-8")
    page.goto(path.as_uri())
    assert page.evaluate("() => window.convscopeViewers[0].ready.then(() => true)")


def settle(page: Any) -> None:
    """Wait two animation frames: the coalesced render of the last event has run."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def cell_centre(
    page: Any, row_index: int, image: int, cell: tuple[int, int], grid: tuple[int, int]
) -> tuple[float, float]:
    left, top, width, height = page.evaluate(
        """([k, i]) => { const b = window.convscopeViewers[0].rows[k].tiles[i].frame
               .getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; }""",
        [row_index, image],
    )
    return left + (cell[1] + 0.5) * width / grid[1], top + (cell[0] + 0.5) * height / grid[0]


def hover(
    page: Any, row_index: int, image: int, cell: tuple[int, int], grid: tuple[int, int]
) -> tuple[float, float]:
    x, y = cell_centre(page, row_index, image, cell, grid)
    page.mouse.move(x, y)
    settle(page)
    return x, y


READ_CENTRES = """([k, h, w]) => window.convscopeViewers[0].rows[k].tiles.map(t => {
    const d = t.ctx.getImageData(0, 0, t.tw, t.th).data, out = [];
    for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) {
        const x = Math.floor((c + 0.5) * t.tw / w), y = Math.floor((r + 0.5) * t.th / h);
        const i = 4 * (y * t.tw + x);
        out.push([d[i], d[i + 1], d[i + 2], d[i + 3]]);
    }
    return out;
})"""


def centre_pixels(page: Any, row_index: int, grid: tuple[int, int]) -> np.ndarray:
    """RGBA at every cell centre of every tile of a layer row: [n_images, h*w, 4]."""
    return np.array(page.evaluate(READ_CENTRES, [row_index, *grid]), dtype=np.int64)


def similarity(feats: np.ndarray, image: int, row: int, col: int) -> np.ndarray:
    """NumPy float64 oracle: the maps [n, h, w] of query (image, row, col)."""
    f = feats.astype(np.float64)
    return np.einsum("nhwd,d->nhw", f, f[image, row, col])


def lut_index(values: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> np.ndarray:
    return np.clip(np.round((values - lo) / (hi - lo) * 255.0), 0, 255).astype(np.int64)


def assert_lut_colours(pixels: np.ndarray, index: np.ndarray, lut: np.ndarray = GRAY) -> None:
    """Each pixel is opaque and is the LUT colour of its index, up to one step (float32 vs 64)."""
    index = index.reshape(pixels.shape[0], -1)
    assert (pixels[..., 3] == 255).all()
    match = np.zeros(index.shape, dtype=bool)
    for step in (-1, 0, 1):
        colour = lut[np.clip(index + step, 0, 255)]
        match |= (pixels[..., :3] == colour).all(axis=-1)
    assert match.all(), f"{(~match).sum()} cells differ from the LUT colour of the similarity"


# -------------------------------------------------------------------------------------- tests
def test_hover_draws_the_cosine_maps_of_the_hovered_cell(page: Any, tmp_path: Path) -> None:
    feats = unit_features(0, 3, 8, 8, 16)
    open_viewer(page, tmp_path, make_payload([("conv", feats)]))
    hover(page, 0, 1, (2, 5), (8, 8))
    state = page.evaluate("() => window.convscopeViewers[0].state.query")
    assert state == {"layer": "conv", "image": 1, "row": 2, "col": 5}
    expected = similarity(feats, 1, 2, 5)
    assert expected[1, 2, 5] == pytest.approx(1.0, abs=2e-3)  # self-similarity of a unit vector
    maps = np.array(
        page.evaluate("() => window.convscopeViewers[0].lastMaps.conv.map(m => Array.from(m))")
    )
    np.testing.assert_allclose(maps.reshape(expected.shape), expected, atol=1e-5)
    first = centre_pixels(page, 0, (8, 8))
    assert_lut_colours(first, lut_index(expected))

    hover(page, 0, 2, (6, 1), (8, 8))
    second_expected = similarity(feats, 2, 6, 1)
    second = centre_pixels(page, 0, (8, 8))
    assert_lut_colours(second, lut_index(second_expected))
    changed = lut_index(second_expected) != lut_index(expected)
    assert changed.sum() > 100  # the new query really repainted the cells whose value moved
    assert (second[..., 0] != first[..., 0])[changed.reshape(3, -1)].mean() > 0.9

    # The composited page: overlay at opacity 0.7 over a black photo is 0.7 * LUT colour.
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "viewer-hover.png"
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")
    screen = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    left, top = cell_centre(page, 0, 0, (3, 4), (8, 8))  # image 0, away from the query marker
    pixel = screen[int(top), int(left)]
    np.testing.assert_allclose(pixel, 0.7 * GRAY[lut_index(second_expected[0, 3, 4])], atol=3)


def test_labels_cannot_inject_html_or_script(page: Any, tmp_path: Path) -> None:
    feats = unit_features(1, 2, 4, 4, 8)
    payload = make_payload(
        [(XSS_SCRIPT, feats)],
        names=[XSS_IMG, "plain"],
        labels=[XSS_IMG, XSS_SCRIPT],
        title=XSS_SCRIPT,
    )
    payload["notes"] = [XSS_IMG]
    open_viewer(page, tmp_path, payload)
    hover(page, 0, 0, (1, 1), (4, 4))
    page.wait_for_timeout(100)  # an injected onerror would fire on the failed load of "x"
    assert page.dialogs == []
    assert page.page_errors == []
    assert page.evaluate("() => window.pwned") is None
    assert page.evaluate("() => document.querySelectorAll('img[src=\"x\"]').length") == 0
    texts = page.evaluate(
        """() => ({
            names: [...document.querySelectorAll('.cs-name')].map(e => e.textContent),
            labels: [...document.querySelectorAll('.cs-label')].map(e => e.textContent),
            options: [...document.querySelectorAll('option')].map(e => e.textContent),
            note: document.querySelector('.cs-notes p').textContent,
            title: document.title,
            row: document.querySelector('.cs-row-title').textContent,
            status: document.querySelector('.cs-status').textContent,
        })"""
    )
    assert texts["names"] == [XSS_IMG, "plain"]
    assert texts["labels"] == [XSS_IMG, XSS_SCRIPT]
    assert XSS_SCRIPT in texts["options"]
    assert texts["note"] == XSS_IMG
    assert texts["title"] == XSS_SCRIPT
    assert texts["row"].startswith(XSS_SCRIPT)
    assert texts["status"].startswith(XSS_IMG)


def test_per_query_normalisation_and_bilinear_upscaling(page: Any, tmp_path: Path) -> None:
    feats = unit_features(2, 3, 8, 8, 16)
    open_viewer(page, tmp_path, make_payload([("conv", feats)], normalization="query"))
    hover(page, 0, 0, (4, 3), (8, 8))
    s = similarity(feats, 0, 4, 3)
    pixels = centre_pixels(page, 0, (8, 8))
    assert_lut_colours(pixels, lut_index(s, s.min(), s.max()))
    lo, hi = np.unravel_index(s.argmin(), s.shape), np.unravel_index(s.argmax(), s.shape)
    flat = pixels[..., 0].reshape(s.shape)
    assert flat[lo] == 0 and flat[hi] == 255  # min -> first LUT entry, max -> last

    # Bilinear (through the control): every pixel lies between the 2x2 cell centres around it
    # (gray LUT, so pixel = index), and between two unequal neighbours it takes values nearest
    # never shows.
    page.select_option(".cs-controls label:has-text('upscaling') select", "bilinear")
    settle(page)
    assert page.evaluate("() => window.convscopeViewers[0].state.options.upscale") == "bilinear"
    canvas = np.array(
        page.evaluate(
            """() => { const t = window.convscopeViewers[0].rows[0].tiles[0];
                       return Array.from(t.ctx.getImageData(0, 0, t.tw, t.th).data); }"""
        )
    ).reshape(SIZE, SIZE, 4)[..., 0]
    index = lut_index(s[0], s.min(), s.max())
    pos = (np.arange(SIZE) + 0.5) * 8 / SIZE - 0.5  # source coordinate of each pixel centre
    i0 = np.clip(np.floor(pos).astype(int), 0, 7)
    i1 = np.clip(i0 + 1, 0, 7)
    corners = np.stack([index[np.ix_(a, b)] for a in (i0, i1) for b in (i0, i1)])
    inner = slice(8, SIZE - 8)  # the query marker is on image 0; keep to rows/cols inside
    query_rows = slice(4 * 15 - 2, 5 * 15 + 2)
    mask = np.ones((SIZE, SIZE), dtype=bool)
    mask[query_rows, 3 * 15 - 2 : 4 * 15 + 2] = False
    between = (canvas >= corners.min(0) - 1) & (canvas <= corners.max(0) + 1)
    assert between[inner, inner][mask[inner, inner]].all()
    nearest = index[np.ix_(np.arange(SIZE) * 8 // SIZE, np.arange(SIZE) * 8 // SIZE)]
    new_values = ~np.isin(canvas, np.unique(index))
    assert new_values.mean() > 0.3 and (canvas != nearest).mean() > 0.3


def test_click_pins_escape_unpins_and_arrows_move_the_query(page: Any, tmp_path: Path) -> None:
    feats = unit_features(3, 2, 8, 8, 16)
    open_viewer(page, tmp_path, make_payload([("conv", feats)]))
    x, y = hover(page, 0, 1, (3, 3), (8, 8))
    page.mouse.click(x, y)
    page.mouse.move(5, 5)  # leave the tile
    settle(page)
    state = page.evaluate("() => window.convscopeViewers[0].state")
    assert state["hover"] is None and state["pinned"] == state["query"]
    assert state["pinned"] == {"layer": "conv", "image": 1, "row": 3, "col": 3}
    assert_lut_colours(centre_pixels(page, 0, (8, 8)), lut_index(similarity(feats, 1, 3, 3)))

    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowDown")
    settle(page)
    query = page.evaluate("() => window.convscopeViewers[0].state.query")
    assert query == {"layer": "conv", "image": 1, "row": 4, "col": 4}
    assert_lut_colours(centre_pixels(page, 0, (8, 8)), lut_index(similarity(feats, 1, 4, 4)))
    page.keyboard.press("n")  # next image, same cell
    settle(page)
    assert page.evaluate("() => window.convscopeViewers[0].state.query.image") == 0

    page.keyboard.press("Escape")
    settle(page)
    assert page.evaluate("() => window.convscopeViewers[0].state.query") is None
    assert (centre_pixels(page, 0, (8, 8))[..., 3] == 0).all()  # overlay cleared


def test_multi_layer_cursor_follows_the_rounding_rule(page: Any, tmp_path: Path) -> None:
    layers = [
        ("big", unit_features(4, 2, 8, 8, 12)),
        ("small", unit_features(5, 2, 4, 4, 12)),
        ("odd", unit_features(6, 2, 6, 6, 12)),
    ]
    open_viewer(page, tmp_path, make_payload(layers))
    page.check(".cs-controls input[type=checkbox]")
    settle(page)

    def rule(index: int, source: int, target: int) -> int:  # round half up, as Math.round
        return min((2 * index * target + source) // (2 * source), target - 1)

    for row_index, cell in ((0, (2, 6)), (1, (3, 1)), (0, (7, 5))):
        source_layer = layers[row_index][1]
        hover(page, row_index, 0, cell, source_layer.shape[1:3])
        maps = page.evaluate(
            "() => Object.fromEntries(Object.entries(window.convscopeViewers[0].lastMaps)"
            ".map(([k, v]) => [k, v.map(m => Array.from(m))]))"
        )
        assert sorted(maps) == ["big", "odd", "small"]
        for k, (name, feats) in enumerate(layers):
            h = feats.shape[1]
            mapped = (
                rule(cell[0], source_layer.shape[1], h),
                rule(cell[1], source_layer.shape[2], h),
            )
            expected = similarity(feats, 0, *mapped)
            np.testing.assert_allclose(
                np.array(maps[name]).reshape(expected.shape), expected, atol=1e-5
            )
            assert_lut_colours(centre_pixels(page, k, (h, h)), lut_index(expected))
            # The yellow marker sits on the mapped cell of image 0 (left edge, mid-height).
            px = page.evaluate(
                """([k, x, y]) => Array.from(window.convscopeViewers[0].rows[k].tiles[0].ctx
                       .getImageData(x, y, 1, 1).data)""",
                [k, mapped[1] * SIZE // h, (2 * mapped[0] + 1) * SIZE // (2 * h)],
            )
            assert px == [255, 255, 0, 255]
    # Hovering (2, 6) of the 8x8 layer puts the 6x6 cursor at round(1.5), round(4.5) = (2, 5):
    assert rule(2, 8, 6) == 2 and rule(6, 8, 6) == 5


def test_sweep_chart_matches_the_numpy_curve(page: Any, tmp_path: Path) -> None:
    feats = unit_features(7, 2, 8, 8, 16)
    values = [-30.0, -15.0, 0.0, 15.0, 30.0]
    sweep_feats = unit_features(8, len(values), 8, 8, 16)
    rng = np.random.default_rng(9)
    corr = rng.integers(0, 8, size=(len(values), 8, 8, 2)).astype(np.int16)
    corr[rng.random((len(values), 8, 8)) < 0.3] = -1  # locations that fall outside
    corr[2, 5, 2] = (5, 2)
    corr[1, 5, 2] = -1
    sweep = {
        "kind": "rotation", "label": "rotation (degrees)", "layer": "conv", "source": 1,
        "values": values,
        "images": [{"name": f"rot {v}", "label": None, "src": png_data_url(), "height": 32,
                    "width": 32} for v in values],
        "features": encode_array(sweep_feats, "float16"),
        "correspondence": encode_array(corr, "int16"),
    }  # fmt: skip
    open_viewer(page, tmp_path, make_payload([("conv", feats)], sweeps=[sweep]))
    hover(page, 0, 0, (5, 2), (8, 8))  # not the sweep's source: no curve
    assert page.evaluate("() => window.convscopeViewers[0].chartData(0).similarities") is None
    hover(page, 0, 1, (5, 2), (8, 8))
    data = page.evaluate("() => window.convscopeViewers[0].chartData(0)")
    q = feats[1, 5, 2].astype(np.float64)
    for t, got in enumerate(data["similarities"]):
        r, c = corr[t, 5, 2]
        if r < 0:
            assert got is None
        else:
            assert got == pytest.approx(
                float(sweep_feats[t, r, c].astype(np.float64) @ q), abs=1e-5
            )
    assert data["similarities"][1] is None and data["values"] == values
    # Drawn where reported: each point is the point colour, x follows the values, y the curve.
    chart = np.array(
        page.evaluate(
            """() => { const c = document.querySelector('.cs-chart');
                       const d = c.getContext('2d').getImageData(0, 0, c.width, c.height);
                       return Array.from(d.data); }"""
        )
    ).reshape(240, 480, 4)
    points = [(t, p) for t, p in enumerate(data["points"]) if p is not None]
    assert len(points) == sum(s is not None for s in data["similarities"]) >= 2
    for _, (px, py) in points:
        np.testing.assert_allclose(chart[round(py), round(px), :3], [214, 39, 40], atol=20)
    xs = np.array([p[0] for _, p in points])
    ys = np.array([p[1] for _, p in points])
    sims = np.array([data["similarities"][t] for t, _ in points])
    vals = np.array([values[t] for t, _ in points])
    np.testing.assert_allclose(np.diff(xs) / np.diff(vals), (xs[1] - xs[0]) / (vals[1] - vals[0]))
    slope = np.polyfit(sims, ys, 1)
    assert slope[0] < 0 and np.abs(np.polyval(slope, sims) - ys).max() < 1e-6  # y linear, up
    # The transformed images carry their own maps: tile t at its corresponding cell.
    tile = page.evaluate(
        """() => { const t = window.convscopeViewers[0].sweeps[0].tiles[2];
                   return Array.from(t.ctx.getImageData(37, 82, 1, 1).data); }"""
    )  # centre of cell (5, 2) at 15 px cells is (37.5, 82.5); t = 2 maps the cell to itself
    assert abs(tile[0] - lut_index(np.array(data["similarities"][2]))) <= 1 and tile[3] == 255


def test_nmf_view_draws_the_mix_of_planted_weights(page: Any, tmp_path: Path) -> None:
    feats = unit_features(10, 2, 8, 8, 16)
    weights = np.random.default_rng(11).random((2, 8, 8, 3))
    weights /= weights.max(axis=(0, 1, 2))  # each component scaled to max 1
    weights = weights.astype(np.float16)
    colours = ["#e41a1c", "#377eb8", "#4daf4a"]
    rgb = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=np.float64)
    nmf = {"layer": "conv", "k": 3, "colors": colours, "labels": ["c0", XSS_IMG, "c2"],
           "weights": encode_array(weights, "float16")}  # fmt: skip
    open_viewer(page, tmp_path, make_payload([("conv", feats)], nmf=nmf))
    page.select_option(".cs-controls label:has-text('view') select", "nmf")
    settle(page)
    mix = np.clip(np.round(weights.astype(np.float64) @ rgb), 0, 255).astype(np.int64)
    pixels = centre_pixels(page, 0, (8, 8))
    assert (pixels[..., 3] == 255).all()
    assert np.abs(pixels[..., :3] - mix.reshape(2, 64, 3)).max() <= 1
    legend = page.evaluate(
        "() => [...document.querySelectorAll('.cs-legend-item')].map(e => e.textContent)"
    )
    assert legend == ["c0", XSS_IMG, "c2"]

    page.select_option(".cs-controls label:has-text('NMF colours') select", "argmax")
    hover(page, 0, 1, (6, 2), (8, 8))
    argmax = rgb[weights.astype(np.float64).argmax(-1)].astype(np.int64)
    pixels = centre_pixels(page, 0, (8, 8))
    not_marker = np.ones((2, 64), dtype=bool)
    not_marker[1, 6 * 8 + 2] = False
    assert (pixels[..., :3] == argmax.reshape(2, 64, 3))[not_marker].all()
    status = page.evaluate("() => document.querySelector('.cs-status').textContent")
    for label, w in zip(["c0", XSS_IMG, "c2"], weights[1, 6, 2], strict=True):
        assert f"{label}: {float(w):.3f}" in status


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_external_manifest_served_over_http(page: Any, tmp_path: Path) -> None:
    feats = unit_features(12, 2, 6, 6, 8)
    payload = make_payload([("conv", feats)], src="img.png")
    Image.new("RGB", (32, 32)).save(tmp_path / "img.png")
    data = tmp_path / "data"
    data.mkdir()
    # Raw arrays next to the manifest: the "url" form of ARRAY.
    for name, array in [("conv.bin", payload["layers"][0]["features"])] + [
        (f"cmap-{k}.bin", v) for k, v in payload["colormaps"].items()
    ]:
        (data / name).write_bytes(base64.b64decode(array.pop("data")))
        array["url"] = name
    payload["images"] = [dict(im, src="../img.png") for im in payload["images"]]
    (data / "manifest.json").write_text(json.dumps(payload), encoding="utf-8")
    (tmp_path / "index.html").write_text(
        render_document(manifest_url="data/manifest.json"), encoding="utf-8"
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        assert page.evaluate("() => window.convscopeViewers[0].ready.then(() => true)")
        hover(page, 0, 1, (4, 1), (6, 6))
        assert_lut_colours(centre_pixels(page, 0, (6, 6)), lut_index(similarity(feats, 1, 4, 1)))
        assert page.evaluate("() => document.querySelector('.cs-frame img').naturalWidth") == 32
    finally:
        server.shutdown()
        server.server_close()


def test_viewer_runs_inside_a_sandboxed_srcdoc_iframe(page: Any) -> None:
    feats = unit_features(13, 2, 4, 4, 8)
    page.set_content(render_iframe(render_document(make_payload([("conv", feats)])), height=600))
    frame = page.frames[1]
    assert frame.evaluate("() => window.convscopeViewers[0].ready.then(() => true)")
    frame.evaluate(
        "() => window.convscopeViewers[0].setQuery({layer: 'conv', image: 0, row: 1, col: 2})"
    )
    maps = np.array(
        frame.evaluate("() => window.convscopeViewers[0].lastMaps.conv.map(m => Array.from(m))")
    )
    np.testing.assert_allclose(maps.reshape(2, 4, 4), similarity(feats, 0, 1, 2), atol=1e-5)


def test_signed_similarities_use_the_fixed_range_minus_one_to_one(
    page: Any, tmp_path: Path
) -> None:
    x = np.random.default_rng(14).normal(size=(2, 6, 6, 8))  # pre-ReLU: negative cosines occur
    feats = (x / (np.linalg.norm(x, axis=-1, keepdims=True) + EPS)).astype(np.float16)
    payload = make_payload([("conv", feats)], colormap="coolwarm")
    payload["signed"] = True
    open_viewer(page, tmp_path, payload)
    hover(page, 0, 1, (2, 3), (6, 6))
    s = similarity(feats, 1, 2, 3)
    assert s.min() < -0.3
    coolwarm = decode_array(colormap_tables(("coolwarm",))["coolwarm"]).astype(np.int64)
    assert_lut_colours(centre_pixels(page, 0, (6, 6)), lut_index(s, -1.0, 1.0), coolwarm)


def test_keyboard_starts_a_query_and_l_carries_it_to_the_next_layer(
    page: Any, tmp_path: Path
) -> None:
    layers = [("big", unit_features(15, 2, 8, 8, 9)), ("small", unit_features(16, 2, 4, 4, 7))]
    open_viewer(page, tmp_path, make_payload(layers))
    page.focus(".convscope-viewer")
    page.keyboard.press("ArrowDown")  # no query yet: starts at image 0, cell (0, 0)
    for key in ("ArrowDown", "ArrowDown", "ArrowRight", "ArrowRight", "ArrowRight", "p"):
        page.keyboard.press(key)
    settle(page)
    q = page.evaluate("() => window.convscopeViewers[0].state.query")
    assert q == {"layer": "big", "image": 1, "row": 2, "col": 3}
    page.keyboard.press("l")
    settle(page)
    state = page.evaluate("() => window.convscopeViewers[0].state")
    assert state["options"]["layer"] == "small"
    assert state["query"] == {
        "layer": "small",
        "image": 1,
        "row": 1,
        "col": 2,
    }  # round(1), round(1.5)
    assert page.evaluate("() => document.querySelectorAll('.cs-row')[0].hidden")
    assert_lut_colours(centre_pixels(page, 1, (4, 4)), lut_index(similarity(layers[1][1], 1, 1, 2)))


def test_a_malformed_payload_is_reported_in_the_page(page: Any, tmp_path: Path) -> None:
    payload = make_payload([("conv", unit_features(17, 2, 4, 4, 8))])
    payload["layers"][0]["height"] = 5  # the array is 4 rows high
    path = tmp_path / "bad.html"
    path.write_text(render_document(payload), encoding="utf-8")
    page.goto(path.as_uri())
    error = page.evaluate(
        "() => window.convscopeViewers[0].ready.then(() => 'resolved', e => String(e.message))"
    )
    assert "layer conv has shape [2, 4, 4, 8], expected [2, 5, 4, 8]" in error
    assert page.text_content(".cs-error") == "convscope viewer: " + error
