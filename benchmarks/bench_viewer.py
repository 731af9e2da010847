"""Benchmark of the similarity-overlay viewer in headless Chromium: hover latency and file size.

Fong, Mordvintsev, Vedaldi, Olah, "Interactive Similarity Overlays", VISxAI 2021. Our viewer ships
L2-normalised float16 features and computes the N maps of the hovered cell in JavaScript,
O(N.H.W.D) per hover; the original ships precomputed PNG sprite sheets, O(N^2 H^2 W^2) pixels.
For each configuration this script

* builds a payload of N random post-ReLU images' features (random nonnegative vectors, tiny PNG
  photos), renders it to a temporary HTML file and opens it in headless Chromium;
* performs real mouse moves over random cells of random images, one per frame, and reads the
  viewer's ``stats``: hover -> repaint latency (the mousemove's ``event.timeStamp`` to the end of
  drawing in the next animation frame, so it includes waiting for that frame), the render time
  (similarity + colouring + drawing of every shown map) and the similarity compute time alone;
* reports the HTML size, the feature bytes per image per layer (base64 as embedded, raw as
  served), and what the original's sprite-sheet design would weigh for the same data: the N^2
  grayscale sheets of (H.H) x (W.W) px, fixed [0, 1] mapping, PNG-encoded with Pillow.

Random features are a worst case for PNG compression; real activations compress better. Run from
the repository root (needs /usr/bin/chromium or $CONVSCOPE_CHROMIUM)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_viewer.py [--images 8] [--size 14 28]
        [--channels 512] [--moves 200] [--no-multi] [--json results.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from convscope.viewer.html import render_document
from convscope.viewer.payload import colormap_tables, encode_array, png_data_url

EPS = 1e-4
TILE = 160
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def unit_features(rng: np.random.Generator, n: int, h: int, w: int, d: int) -> np.ndarray:
    """Random post-ReLU activations divided by (norm + eps), as float16 (the shipped vectors)."""
    x = np.maximum(rng.standard_normal((n, h, w, d), dtype=np.float32), 0.0)
    return (x / (np.linalg.norm(x, axis=-1, keepdims=True) + EPS)).astype(np.float16)


def random_photo(rng: np.random.Generator, side: int = 32) -> str:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, format="PNG")
    return png_data_url(buf.getvalue())


def make_payload(layers: list[tuple[str, np.ndarray]], images: list[str]) -> dict[str, Any]:
    return {
        "format": "convscope-similarity-overlay",
        "version": 1,
        "title": "bench",
        "eps": EPS,
        "signed": False,
        "display": {
            "size": TILE, "opacity": 0.7, "colormap": "gray", "normalization": "fixed",
            "upscale": "nearest", "view": "similarity", "multi_layer": len(layers) > 1,
        },
        "colormaps": colormap_tables(),
        "images": [
            {"name": f"image {i}", "label": None, "src": src, "height": 32, "width": 32}
            for i, src in enumerate(images)
        ],
        "layers": [
            {"name": name, "height": f.shape[1], "width": f.shape[2], "channels": f.shape[3],
             "features": encode_array(f, "float16")}
            for name, f in layers
        ],
        "nmf": None,
        "sweeps": [],
        "notes": [],
    }  # fmt: skip


def sprite_sheets(feats: np.ndarray) -> list[list[bytes]]:
    """PNGs of the original's N x N sheets of one layer (tile (i, j): map of cell (i, j))."""
    n, h, w, d = feats.shape
    flat = feats.astype(np.float32).reshape(n, h * w, d)
    sheets: list[list[bytes]] = []
    for src in range(n):
        row = []
        for tgt in range(n):
            grid = (flat[src] @ flat[tgt].T).reshape(h, w, h, w)
            sheet = grid.transpose(0, 2, 1, 3).reshape(h * h, w * w)
            pixels = np.round(np.clip(sheet, 0.0, 1.0) * 255.0).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels, mode="L").save(buf, format="PNG")
            row.append(buf.getvalue())
        sheets.append(row)
    return sheets


def sprite_sheet_bytes(feats: np.ndarray) -> int:
    """Total PNG bytes of :func:`sprite_sheets`."""
    return sum(len(png) for row in sprite_sheets(feats) for png in row)


# After a frame, wait a random part of the next one: a real mouse is not in phase with the
# display, so its events wait 0-16.7 ms for the frame that dispatches them.
NEXT_FRAME = """(delay) => new Promise(r =>
    requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, delay))))"""
WARMUP = 10  # moves before the timed ones (JIT), not counted


def hover_randomly(
    page: Any,
    rng: np.random.Generator,
    grids: list[list[tuple[list[float], int]]],
    moves: int,
    reset: str,
) -> None:
    """Real mouse moves to the centres of random cells, one per frame.

    ``grids[k][i]`` is the box ``[left, top, width, height]`` of image ``i`` in row ``k`` and its
    grid side; ``reset`` is JavaScript that clears the page's timings after the warm-up.
    """
    for i in range(moves + WARMUP):
        if i == WARMUP:
            page.evaluate(reset)
        row_tiles = grids[int(rng.integers(len(grids)))]
        (left, top, width, height), side = row_tiles[int(rng.integers(len(row_tiles)))]
        row, col = rng.integers(side, size=2)
        page.mouse.move(left + (col + 0.5) * width / side, top + (row + 0.5) * height / side)
        page.evaluate(NEXT_FRAME, float(rng.uniform(0.0, 16.0)))


# The original's design rebuilt for timing (our code, same mechanism): every (source, target)
# sheet is a PNG; hovering sets the overlay's background-image to the hovered image's sheets and
# its background-position to the hovered tile, so the browser computes nothing.
SPRITE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body { margin: 10px; } .tile { position: relative; display: inline-block; margin: 2px;
  width: %(tile)dpx; height: %(tile)dpx; background: #333; }
.ov { position: absolute; inset: 0; opacity: 0.7; image-rendering: pixelated;
  background-repeat: no-repeat; background-size: %(bg)dpx %(bg)dpx; }
</style></head><body><div id="tiles"></div><script>
const SHEETS = %(sheets)s, N = %(n)d, H = %(h)d, TILE = %(tile)d;
const stats = { latencies: [], dispatch: [] }; window.spriteStats = stats;
const tiles = []; let pending = null, hover = null, frame = 0, shownSrc = -1;
for (let i = 0; i < N; i++) {
  const t = document.createElement("div"); t.className = "tile";
  const ov = document.createElement("div"); ov.className = "ov"; t.appendChild(ov);
  document.getElementById("tiles").appendChild(t); tiles.push({ t, ov });
  t.addEventListener("mousemove", (ev) => {
    const r = t.getBoundingClientRect();
    hover = { src: i, row: Math.floor(H * (ev.clientY - r.top) / r.height),
              col: Math.floor(H * (ev.clientX - r.left) / r.width) };
    if (pending === null) pending = ev.timeStamp;
    stats.dispatch.push(performance.now() - ev.timeStamp);
    if (!frame) frame = requestAnimationFrame(paint);
  });
}
function paint() {
  frame = 0;
  if (hover.src !== shownSrc) {
    tiles.forEach((x, j) => { x.ov.style.backgroundImage = "url(" + SHEETS[hover.src][j] + ")"; });
    shownSrc = hover.src;
  }
  const pos = (-hover.col * TILE) + "px " + (-hover.row * TILE) + "px";
  tiles.forEach((x) => { x.ov.style.backgroundPosition = pos; });
  if (pending !== null) { stats.latencies.push(performance.now() - pending); pending = null; }
}
</script></body></html>"""


def sprite_document(feats: np.ndarray, sheets: list[list[bytes]]) -> str:
    n, h = feats.shape[0], feats.shape[1]
    urls = [[png_data_url(png) for png in row] for row in sheets]
    return SPRITE_PAGE % {
        "tile": TILE, "bg": h * TILE, "sheets": json.dumps(urls), "n": n, "h": h,
    }  # fmt: skip


def run_sprite_config(browser: Any, feats: np.ndarray, moves: int, seed: int) -> dict[str, Any]:
    """Hover latency of the original's sprite-sheet design on the same features."""
    rng = np.random.default_rng(seed + 1)
    h = feats.shape[1]
    document = sprite_document(feats, sprite_sheets(feats))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sprites.html"
        path.write_text(document, encoding="utf-8")
        context = browser.new_context(
            viewport={"width": 8 * (TILE + 5) + 60, "height": 1000}, device_scale_factor=1
        )
        page = context.new_page()
        page.goto(path.as_uri())
        boxes = page.evaluate(
            "() => Array.from(document.querySelectorAll('.tile')).map(t => {"
            " const b = t.getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; })"
        )
        grid = [[(box, h) for box in boxes]]
        reset = "() => { spriteStats.latencies.length = 0; spriteStats.dispatch.length = 0; }"
        hover_randomly(page, rng, grid, moves, reset)
        stats = page.evaluate("() => window.spriteStats")
        context.close()
    return {
        "html_bytes": len(document.encode("utf-8")),
        "latency_ms": summary(stats["latencies"]),
        "after_dispatch_ms": summary(
            [a - b for a, b in zip(stats["latencies"], stats["dispatch"], strict=False)]
        ),
    }


def summary(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {
        "median": float(np.median(arr)),
        "p95": float(np.percentile(arr, 95)),
        "max": float(arr.max()),
    }


def run_config(
    browser: Any, name: str, sizes: list[int], n: int, d: int, moves: int, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    layers = [(f"layer{k}_{s}x{s}", unit_features(rng, n, s, s, d)) for k, s in enumerate(sizes)]
    images = [random_photo(rng) for _ in range(n)]
    document = render_document(make_payload(layers, images))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "viewer.html"
        path.write_text(document, encoding="utf-8")
        context = browser.new_context(
            viewport={"width": 8 * (TILE + 5) + 60, "height": 1000}, device_scale_factor=1
        )
        page = context.new_page()
        start = time.perf_counter()
        page.goto(path.as_uri())
        page.evaluate("() => window.convscopeViewers[0].ready.then(() => true)")
        load_s = time.perf_counter() - start
        boxes = page.evaluate(
            """() => window.convscopeViewers[0].rows.map(r => r.tiles.map(t => {
                   const b = t.frame.getBoundingClientRect();
                   return [b.left, b.top, b.width, b.height]; }))"""
        )
        grids = [[(box, s) for box in row] for row, s in zip(boxes, sizes, strict=True)]
        reset = (
            "() => { const s = window.convscopeViewers[0].stats;"
            " for (const k of ['latencies', 'compute', 'render', 'dispatch']) s[k].length = 0; }"
        )
        hover_randomly(page, rng, grids, moves, reset)
        stats = page.evaluate("() => window.convscopeViewers[0].stats")
        context.close()
    html_bytes = len(document.encode("utf-8"))
    sprite = run_sprite_config(browser, layers[0][1], moves, seed) if len(layers) == 1 else None
    per_layer = []
    for lname, feats in layers:
        raw = feats[0].nbytes
        per_layer.append(
            {
                "layer": lname,
                "raw_bytes_per_image": raw,
                "base64_bytes_per_image": len(encode_array(feats, "float16")["data"]) / n,
                "sprite_png_bytes": sprite_sheet_bytes(feats),
            }
        )
    return {
        "config": name,
        "images": n,
        "layers": [f"{s}x{s}x{d}" for s in sizes],
        "moves": len(stats["latencies"]),
        "load_s": load_s,
        "html_bytes": html_bytes,
        "per_layer": per_layer,
        "sprite_png_bytes": sum(p["sprite_png_bytes"] for p in per_layer),
        "sprite": sprite,
        "latency_ms": summary(stats["latencies"]),
        "render_ms": summary(stats["render"]),
        "compute_ms": summary(stats["compute"]),
        "dispatch_ms": summary(stats["dispatch"]),
        # One hover per frame, so sample k of both lists is the same event: what the page adds
        # after Chromium dispatches the (frame-aligned) mousemove.
        "after_dispatch_ms": summary(
            [a - b for a, b in zip(stats["latencies"], stats["dispatch"], strict=False)]
        ),
    }


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def kb(n: float) -> str:
    return f"{n / 1e3:.0f} kB"


def markdown(results: list[dict[str, Any]]) -> str:
    head = (
        "| configuration | HTML file | features / image / layer (base64; raw) "
        "| sprite sheets (PNG, original design) | hover→repaint median / p95 / max "
        "| of which frame wait (median) | dispatch→repaint median / p95 | render median / p95 "
        "| compute median |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in results:
        per = "; ".join(
            f"{p['layer'].split('_')[-1]}: {kb(p['base64_bytes_per_image'])} "
            f"({kb(p['raw_bytes_per_image'])})"
            for p in r["per_layer"]
        )
        lat, ren, com = r["latency_ms"], r["render_ms"], r["compute_ms"]
        wait, page = r["dispatch_ms"], r["after_dispatch_ms"]
        lines.append(
            f"| {r['images']} images, {' + '.join(r['layers'])} | {mb(r['html_bytes'])} | {per} "
            f"| {mb(r['sprite_png_bytes'])} "
            f"| {lat['median']:.1f} / {lat['p95']:.1f} / {lat['max']:.1f} ms "
            f"| {wait['median']:.1f} ms | {page['median']:.1f} / {page['p95']:.1f} ms "
            f"| {ren['median']:.1f} / {ren['p95']:.1f} ms | {com['median']:.1f} ms |"
        )
    lines += [
        "",
        "| configuration | design | HTML file | hover→repaint median / p95 / max "
        "| dispatch→repaint median / p95 |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        if r["sprite"] is None:
            continue
        for design, d in (
            ("convscope (vectors, JS dot products)", r),
            ("original (sprites)", r["sprite"]),
        ):
            lat, page = d["latency_ms"], d["after_dispatch_ms"]
            lines.append(
                f"| {r['images']} images, {' + '.join(r['layers'])} | {design} "
                f"| {mb(d['html_bytes'])} "
                f"| {lat['median']:.1f} / {lat['p95']:.1f} / {lat['max']:.1f} ms "
                f"| {page['median']:.1f} / {page['p95']:.1f} ms |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the configurations and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="images per viewer")
    parser.add_argument("--size", type=int, nargs="+", default=[14, 28], help="layer sides")
    parser.add_argument("--channels", type=int, default=512, help="channels per layer")
    parser.add_argument("--moves", type=int, default=200, help="timed mouse moves per run")
    parser.add_argument("--no-multi", action="store_true", help="skip the 3-layer run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    executable = os.environ.get("CONVSCOPE_CHROMIUM", "/usr/bin/chromium")
    cmd = " ".join([os.path.relpath(sys.executable), *sys.argv])
    print(f"command: {cmd}")
    configs = [(f"{s}x{s}", [s]) for s in args.size]
    if not args.no_multi:
        configs.append(("3 layers", [28, 14, 7]))
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        print(
            f"Chromium {browser.version}, {os.cpu_count()} cpus, "
            f"{platform.processor() or platform.machine()}"
        )
        try:
            for name, sizes in configs:
                result = run_config(
                    browser, name, sizes, args.images, args.channels, args.moves, args.seed
                )
                lat = result["latency_ms"]
                print(
                    f"{name}: hover->repaint median {lat['median']:.1f} ms, p95 {lat['p95']:.1f} ms"
                    f" ({result['moves']} moves), HTML {mb(result['html_bytes'])}, "
                    f"load {result['load_s']:.2f} s",
                    flush=True,
                )
                results.append(result)
        finally:
            browser.close()
    print()
    print(markdown(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    for key, what in (("latency_ms", "hover->repaint"), ("after_dispatch_ms", "dispatch->repaint")):
        met = all(r[key]["p95"] <= 16.0 for r in results)
        print(f"target p95 {what} <= 16 ms: {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
