r"""Interactive similarity overlays: one object that computes, writes and displays the viewer.

Theory (Fong, Mordvintsev, Vedaldi and Olah, "Interactive Similarity Overlays", VISxAI 2021;
Fong's DPhil thesis, ch. 6). Let :math:`z = f_l(x) \in \mathbb{R}^{D \times H \times W}` be the
activations of layer :math:`l` and :math:`z_{ij} \in \mathbb{R}^D` the vector at location
:math:`(i, j)`. Pointing at :math:`(i, j)` of one image shows, over every location
:math:`(u, v)` of every image :math:`z'`,

.. math::

    s(z_{ij}, z'_{uv}) = \frac{z_{ij} \cdot z'_{uv}}
        {(\lVert z_{ij} \rVert + \varepsilon)(\lVert z'_{uv} \rVert + \varepsilon)},
    \qquad \varepsilon = 10^{-4},

in :math:`[0, 1]` after a ReLU (brighter = more similar, the original's grayscale at opacity
0.7 with nearest-neighbour upscaling). All maps of :math:`N` images cost
:math:`O(N^2 H^2 W^2)`, which is why the original shipped precomputed PNG sprite sheets; the
thesis describes computing the map of the hovered location, :math:`O(N H W D)` per hover, and so
does this viewer: it embeds the vectors :math:`z_{ij} / (\lVert z_{ij} \rVert + \varepsilon)` as
float16 and takes dot products in the browser.

:func:`similarity_overlay` records the layers, optionally computes NMF components (k = 4, the
article's default) and rotation/scale sweeps, and returns a :class:`SimilarityOverlay`:
``.save("view.html")`` writes one self-contained file (no CDN, no server), ``.save_folder(dir)``
writes a folder for ``convscope overlay serve``, and in Jupyter the object displays itself.

Large inputs: the embedded file is estimated before it is written (:meth:`estimate_bytes`);
beyond ``max_bytes`` the layers that weigh most are average-pooled 2×2 at a time (activations
pooled, then normalised) with a warning saying what changed, or a warning only, or an error
(``oversize=``). A folder written for the server keeps full resolution.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from convscope.core.batching import check_batch_size
from convscope.core.errors import InputError
from convscope.core.hooks import default_layer
from convscope.core.layers import resolve_layer
from convscope.core.model_info import model_info
from convscope.core.validation import check_images
from convscope.data.io import to_uint8_hwc
from convscope.models.evaluation import outputs as model_outputs
from convscope.viewer.html import render_document, render_iframe
from convscope.viewer.nmf import NMFComponents, nmf_components
from convscope.viewer.payload import (
    COLORMAPS,
    colormap_tables,
    encode_array,
    linked_array,
    png_data_url,
)
from convscope.viewer.similarity import (
    DEFAULT_EPS,
    layer_activations,
    normalized_features,
    query_maps,
)
from convscope.viewer.transforms import (
    TransformSweep,
    rotation_correspondence,
    scale_correspondence,
    transform_sweep,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "OverlayOptions",
    "SimilarityOverlay",
    "SizeEstimate",
    "similarity_overlay",
]

#: Budget of an embedded viewer file: larger files are slow to open and bloat notebooks.
DEFAULT_MAX_BYTES = 50_000_000
_OVERSIZE = ("downsample", "warn", "error")
_NORMALIZATION = ("fixed", "query")
_UPSCALE = ("nearest", "bilinear")

Oversize = Literal["downsample", "warn", "error"]


@dataclass(frozen=True)
class OverlayOptions:
    """How the viewer opens (every option can be changed in the page).

    Attributes
    ----------
    size : int
        Long side of each image tile in CSS pixels (224, the article's input size).
    opacity : float
        Opacity of the similarity overlay over the photo (0.7, the original's).
    colormap : str or None
        ``"gray"`` (the original's, brighter = more similar), ``"viridis"``, ``"magma"`` or
        ``"coolwarm"``; ``None`` picks gray, or coolwarm when similarities can be negative.
    normalization : {"fixed", "query"}
        ``"fixed"`` maps [0, 1] (or [-1, 1] when signed) to the colour map, the recommended
        reading of the paper; ``"query"`` min–max normalises over the maps of each query.
    upscale : {"nearest", "bilinear"}
        Nearest-neighbour (blocky, the original's ``image-rendering: pixelated``) or bilinear.
    multi_layer : bool or None
        Show every layer as its own row with a synchronised cursor (default: when several
        layers are given).
    """

    size: int = 224
    opacity: float = 0.7
    colormap: str | None = None
    normalization: Literal["fixed", "query"] = "fixed"
    upscale: Literal["nearest", "bilinear"] = "nearest"
    multi_layer: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or not 16 <= self.size <= 2048:
            raise InputError(f"size must be an int between 16 and 2048 pixels, got {self.size!r}.")
        if not 0.0 <= float(self.opacity) <= 1.0:
            raise InputError(f"opacity must be in [0, 1], got {self.opacity!r}.")
        if self.colormap is not None and self.colormap not in COLORMAPS:
            raise InputError(f"colormap must be one of {list(COLORMAPS)}, got {self.colormap!r}.")
        if self.normalization not in _NORMALIZATION:
            raise InputError(
                f"normalization must be one of {list(_NORMALIZATION)}, got {self.normalization!r}."
            )
        if self.upscale not in _UPSCALE:
            raise InputError(f"upscale must be one of {list(_UPSCALE)}, got {self.upscale!r}.")


@dataclass(frozen=True)
class SizeEstimate:
    """Bytes of a viewer, by part (``images``, ``layer <name>``, ``nmf``, ``sweep <i>``, ...).

    ``embedded`` estimates count base64 (4/3 of the raw bytes); a served folder holds raw bytes.
    """

    parts: dict[str, int]
    embedded: bool

    @property
    def total(self) -> int:
        """Total bytes."""
        return sum(self.parts.values())

    def __str__(self) -> str:
        rows = [f"  {name}: {_megabytes(n)}" for name, n in self.parts.items()]
        kind = "embedded file" if self.embedded else "served folder"
        return "\n".join([f"{kind}: {_megabytes(self.total)}", *rows])


@cache
def _static_overhead() -> int:
    """Bytes of a viewer with no data: the inlined JS/CSS, colour maps and markup."""
    empty = {"title": "", "colormaps": colormap_tables(), "images": [], "layers": []}
    return len(render_document(empty).encode("utf-8")) + 1000


def _megabytes(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _b64(n: int) -> int:
    return 4 * math.ceil(n / 3)


def _png(image: Tensor, size: int) -> bytes:
    """PNG of one 3×H×W image, shrunk (never enlarged) so its long side is at most ``size``."""
    arr = to_uint8_hwc(image)
    pil = Image.fromarray(arr)
    scale = size / max(pil.width, pil.height)
    if scale < 1:
        pil = pil.resize(
            (max(1, round(pil.width * scale)), max(1, round(pil.height * scale))),
            Image.Resampling.LANCZOS,
        )
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _pool(acts: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool (n, D, h, w) activations to (ceil(h/f), ceil(w/f)) cells."""
    if factor == 1:
        return acts
    h, w = acts.shape[-2:]
    out = (max(1, math.ceil(h / factor)), max(1, math.ceil(w / factor)))
    return F.adaptive_avg_pool2d(torch.from_numpy(acts), out).numpy()


def _correspondence(kind: str, value: float, h: int, w: int) -> np.ndarray:
    if kind == "rotation":
        return np.asarray(rotation_correspondence(h, w, value))
    return np.asarray(scale_correspondence(h, w, value))


class _Arrays:
    """Encodes arrays for the payload: inline base64, or raw files for a served folder."""

    def __init__(self, external: bool) -> None:
        self.external = external
        self.files: dict[str, bytes] = {}

    def array(self, key: str, arr: np.ndarray, dtype: str) -> dict[str, Any]:
        if not self.external:
            return encode_array(arr, dtype)
        entry, data = linked_array(arr, dtype, f"data/{key}.bin")
        self.files[entry["url"]] = data
        return entry

    def image(self, key: str, png: bytes) -> str:
        if not self.external:
            return png_data_url(png)
        url = f"images/{key}.png"
        self.files[url] = png
        return url


class SimilarityOverlay:
    """Activations of a set of images at some layers, ready to be explored in a browser.

    Build it with :func:`similarity_overlay`. It keeps the raw activations (host float32), so
    it can write a downsampled embedded file and a full-resolution folder from one computation.

    Methods
    -------
    similarity(layer, image, row, col)
        The (N, h, w) maps the viewer shows when pointing at ``(row, col)`` of ``image``.
    save(path), to_html()
        One self-contained HTML file (size budget applied).
    save_folder(folder)
        ``index.html`` + ``manifest.json`` + raw arrays, for ``convscope overlay serve``.
    estimate_bytes(embedded=True)
        The size of what :meth:`save` or :meth:`save_folder` would write.
    plot(layer, image, row, col)
        A static matplotlib figure of one query (for papers).
    """

    def __init__(
        self,
        *,
        images: Tensor,
        names: list[str],
        labels: list[str | None],
        activations: dict[str, np.ndarray],
        eps: float,
        centers: dict[str, np.ndarray] | None,
        nmf: NMFComponents | None,
        sweeps: list[TransformSweep],
        sweep_activations: list[np.ndarray],
        sweep_sources: list[int],
        options: OverlayOptions,
        max_bytes: int | None,
        oversize: Oversize,
        title: str,
        notes: list[str] | None = None,
    ) -> None:
        self.images = images
        self.names = names
        self.labels = labels
        self.activations = activations
        self.eps = eps
        self.centers = centers
        self.nmf = nmf
        self.sweeps = sweeps
        self.sweep_activations = sweep_activations
        self.sweep_sources = sweep_sources
        self.options = options
        self.max_bytes = max_bytes
        self.oversize = oversize
        self.title = title
        self.notes = list(notes or [])
        self.signed = centers is not None or any(float(a.min()) < 0 for a in activations.values())
        self._png_cache: dict[tuple[str, int], bytes] = {}

    # -- numbers -------------------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """Layer names, in the order given."""
        return list(self.activations)

    def features(self, layer: str, pool: int = 1) -> np.ndarray:
        """(N, h, w, D) vectors u/(‖u‖+ε) of ``layer`` (pooled ``pool``×``pool`` first)."""
        acts = _pool(self._acts(layer), pool)
        center = None if self.centers is None else torch.from_numpy(self.centers[layer])
        return normalized_features(torch.from_numpy(acts), eps=self.eps, center=center).numpy()

    def _acts(self, layer: str) -> np.ndarray:
        if layer not in self.activations:
            raise InputError(f"Layer {layer!r} is not in this overlay; its layers: {self.layers}.")
        return self.activations[layer]

    def similarity(self, layer: str, image: int, row: int, col: int) -> np.ndarray:
        """(N, h, w) maps s(z_image[row, col], z_n[u, v]) for every image n (float32).

        These are the values the viewer computes on hover (it uses float16 vectors, so its
        values differ from these by about 1e-3).
        """
        feats = self.features(layer)
        try:
            return query_maps(feats, image, row, col).numpy().astype(np.float32)
        except InputError as exc:
            n, h, w, _ = feats.shape
            raise InputError(
                f"Query (image {image}, row {row}, col {col}) on layer {layer!r} ({n} images of "
                f"{h}×{w} cells): {exc}"
            ) from exc

    # -- size ----------------------------------------------------------------------------------
    def _image_png(self, key: str, image: Tensor) -> bytes:
        k = (key, self.options.size)
        if k not in self._png_cache:
            self._png_cache[k] = _png(image, self.options.size)
        return self._png_cache[k]

    def _estimate(self, pools: Mapping[str, int], embedded: bool) -> SizeEstimate:
        enc = _b64 if embedded else (lambda n: n)
        parts: dict[str, int] = {"viewer (JS, CSS, colour maps)": _static_overhead()}
        parts["images"] = sum(
            enc(len(self._image_png(f"image{i}", img))) for i, img in enumerate(self.images)
        )
        for layer, acts in self.activations.items():
            n, d, h, w = acts.shape
            f = pools.get(layer, 1)
            hp, wp = math.ceil(h / f), math.ceil(w / f)
            parts[f"layer {layer}"] = enc(n * hp * wp * d * 2)
        if self.nmf is not None and self.nmf.layer is not None:
            n, h, w, k = self.nmf.weights.shape
            f = pools.get(self.nmf.layer, 1)
            parts["nmf"] = enc(n * math.ceil(h / f) * math.ceil(w / f) * k * 2)
        for s, (sweep, acts) in enumerate(zip(self.sweeps, self.sweep_activations, strict=True)):
            t, d, h, w = acts.shape
            f = pools.get(sweep.layer, 1)
            cells = t * math.ceil(h / f) * math.ceil(w / f)
            imgs = sum(
                enc(len(self._image_png(f"sweep{s}_{i}", img)))
                for i, img in enumerate(_as_tensor(sweep.images))
            )
            parts[f"sweep {s} ({sweep.kind})"] = enc(cells * d * 2) + enc(cells * 4) + imgs
        return SizeEstimate(parts=parts, embedded=embedded)

    def _part_layers(self) -> dict[str, str]:
        """The layer whose grid sets the size of each part of :meth:`_estimate`."""
        owners = {f"layer {layer}": layer for layer in self.activations}
        if self.nmf is not None and self.nmf.layer is not None:
            owners["nmf"] = self.nmf.layer
        for s, sweep in enumerate(self.sweeps):
            owners[f"sweep {s} ({sweep.kind})"] = sweep.layer
        return owners

    def estimate_bytes(self, embedded: bool = True) -> SizeEstimate:
        """Size of the viewer :meth:`save` (``embedded=True``) or :meth:`save_folder` writes.

        The embedded estimate is for full resolution, before any downsampling.
        """
        return self._estimate({}, embedded)

    def _plan(self) -> tuple[dict[str, int], list[str]]:
        """Pooling factors that fit the embedded file in ``max_bytes``, and what to tell."""
        pools = dict.fromkeys(self.activations, 1)
        full = self._estimate(pools, True)
        if self.max_bytes is None or full.total <= self.max_bytes:
            return pools, []
        over = (
            f"The embedded viewer would be {_megabytes(full.total)}, over the budget of "
            f"{_megabytes(self.max_bytes)} (max_bytes)."
        )
        fix = (
            "To keep full resolution, raise max_bytes (CLI: --max-mb), pass fewer images or "
            "layers, or write a folder with .save_folder(DIR) (CLI: --folder) and open it with "
            "`convscope overlay serve DIR`."
        )
        if self.oversize == "error":
            raise InputError(f"{over} {fix}")
        if self.oversize == "warn":
            message = f"{over} Writing it anyway (oversize='warn'). {fix}"
            warnings.warn(message, UserWarning, stacklevel=3)
            return pools, [message]
        est = full
        while est.total > self.max_bytes:
            shrinkable = [
                layer
                for layer, acts in self.activations.items()
                if math.ceil(acts.shape[-2] / pools[layer]) > 1
                or math.ceil(acts.shape[-1] / pools[layer]) > 1
            ]
            if not shrinkable:
                raise InputError(
                    f"{over} Even with every layer pooled to 1×1 it is "
                    f"{_megabytes(est.total)}; most of it is "
                    f"{max(est.parts, key=lambda k: est.parts[k])}. {fix}"
                )
            owners = self._part_layers()
            weight = {
                layer: sum(v for part, v in est.parts.items() if owners.get(part) == layer)
                for layer in shrinkable
            }
            pools[max(weight, key=lambda k: weight[k])] *= 2
            est = self._estimate(pools, True)
        changes = []
        for layer, f in pools.items():
            if f > 1:
                h, w = self.activations[layer].shape[-2:]
                changes.append(
                    f"{layer} {h}×{w} → {math.ceil(h / f)}×{math.ceil(w / f)} "
                    f"(average-pooled {f}×{f})"
                )
        message = (
            f"{over} Downsampled to {_megabytes(est.total)}: {'; '.join(changes)}. "
            f"Similarities are those of the pooled activations. {fix}"
        )
        warnings.warn(message, UserWarning, stacklevel=3)
        return pools, [message]

    # -- payload -------------------------------------------------------------------------------
    def payload(self, *, external: bool = False) -> tuple[dict[str, Any], dict[str, bytes]]:
        """The viewer's data (format version 1) and, for a served folder, the files it names.

        Embedded payloads apply the size budget; external ones keep full resolution.
        """
        pools, notes = (dict.fromkeys(self.activations, 1), []) if external else self._plan()
        store = _Arrays(external)
        images = []
        for i, img in enumerate(self.images):
            png = self._image_png(f"image{i}", img)
            images.append(
                {
                    "name": self.names[i],
                    "label": self.labels[i],
                    "src": store.image(f"image{i}", png),
                    "height": int(img.shape[-2]),
                    "width": int(img.shape[-1]),
                }
            )
        layers = []
        for index, layer in enumerate(self.activations):
            feats = self.features(layer, pools[layer])
            _, h, w, d = feats.shape
            layers.append(
                {
                    "name": layer,
                    "height": h,
                    "width": w,
                    "channels": d,
                    "features": store.array(f"layer{index}", feats, "float16"),
                }
            )
        nmf = None
        if self.nmf is not None and self.nmf.layer is not None:
            f = pools.get(self.nmf.layer, 1)
            weights = self.nmf.weights.astype(np.float32)
            if f > 1:
                # NMF reconstruction is linear: pooled weights reconstruct pooled activations.
                pooled = _pool(np.ascontiguousarray(weights.transpose(0, 3, 1, 2)), f)
                weights = pooled.transpose(0, 2, 3, 1)
            colors = np.asarray(self.nmf.colors, dtype=np.float64)
            nmf = {
                "layer": self.nmf.layer,
                "k": int(self.nmf.k),
                "colors": [
                    "#{:02x}{:02x}{:02x}".format(*np.round(c * 255).astype(int)) for c in colors
                ],
                "labels": [f"component {c + 1}" for c in range(int(self.nmf.k))],
                "weights": store.array("nmf", weights, "float16"),
            }
        sweeps = []
        for s, (sweep, acts) in enumerate(zip(self.sweeps, self.sweep_activations, strict=True)):
            f = pools.get(sweep.layer, 1)
            pooled = _pool(acts, f)
            center = None if self.centers is None else torch.from_numpy(self.centers[sweep.layer])
            feats = normalized_features(
                torch.from_numpy(pooled), eps=self.eps, center=center
            ).numpy()
            h, w = feats.shape[1:3]
            values = [float(v) for v in np.asarray(sweep.values)]
            corr = np.stack([_correspondence(sweep.kind, v, h, w) for v in values])
            unit = "degrees" if sweep.kind == "rotation" else "zoom factor"
            sweep_images = []
            for i, img in enumerate(_as_tensor(sweep.images)):
                png = self._image_png(f"sweep{s}_{i}", img)
                sweep_images.append(
                    {
                        "name": f"{sweep.kind} {values[i]:.3g}",
                        "label": None,
                        "src": store.image(f"sweep{s}_{i}", png),
                        "height": int(img.shape[-2]),
                        "width": int(img.shape[-1]),
                    }
                )
            sweeps.append(
                {
                    "kind": sweep.kind,
                    "label": f"{sweep.kind} ({unit})",
                    "layer": sweep.layer,
                    "source": self.sweep_sources[s],
                    "values": values,
                    "images": sweep_images,
                    "features": store.array(f"sweep{s}", feats, "float16"),
                    "correspondence": store.array(f"sweep{s}_corr", corr, "int16"),
                }
            )
        opts = self.options
        colormap = opts.colormap or ("coolwarm" if self.signed else "gray")
        multi = opts.multi_layer if opts.multi_layer is not None else len(self.activations) > 1
        payload: dict[str, Any] = {
            "format": "convscope-similarity-overlay",
            "version": 1,
            "title": self.title,
            "eps": self.eps,
            "signed": self.signed,
            "display": {
                "size": opts.size,
                "opacity": float(opts.opacity),
                "colormap": colormap,
                "normalization": opts.normalization,
                "upscale": opts.upscale,
                "view": "similarity",
                "multi_layer": bool(multi),
            },
            "colormaps": colormap_tables(),
            "images": images,
            "layers": layers,
            "nmf": nmf,
            "sweeps": sweeps,
            "notes": [*self.notes, *notes],
        }
        return payload, store.files

    # -- output --------------------------------------------------------------------------------
    def to_html(self) -> str:
        """The self-contained viewer document (size budget applied)."""
        payload, _ = self.payload()
        return render_document(payload, title=self.title)

    def save(self, path: str | Path) -> Path:
        """Write the self-contained viewer to ``path`` (``.html`` added if missing)."""
        out = Path(path)
        if out.suffix.lower() not in (".html", ".htm"):
            out = out.with_name(out.name + ".html")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.to_html(), encoding="utf-8")
        return out

    def save_folder(self, folder: str | Path) -> Path:
        """Write ``index.html``, ``manifest.json``, ``data/*.bin`` and ``images/*.png``.

        Full resolution, no size budget. Browsers do not let a page read files next to it
        from ``file://``, so open it with ``convscope overlay serve FOLDER``.
        """
        root = Path(folder)
        payload, files = self.payload(external=True)
        root.mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (root / "manifest.json").write_text(json.dumps(payload), encoding="utf-8")
        (root / "index.html").write_text(
            render_document(manifest_url="manifest.json", title=self.title), encoding="utf-8"
        )
        return root / "index.html"

    def _frame_height(self) -> int:
        size, n = self.options.size, len(self.images)
        per_row = max(1, min(n, 1000 // (size + 16)))
        rows = math.ceil(n / per_row) * (len(self.activations) if self.activations else 1)
        sweep_rows = sum(
            math.ceil(len(s.values) / max(1, 1000 // (size + 16))) + 1 for s in self.sweeps
        )
        return 260 + (rows + sweep_rows) * (size + 48)

    def _repr_html_(self) -> str:
        return render_iframe(self.to_html(), height=self._frame_height())

    def display(self) -> None:
        """Show the viewer inline in Jupyter (the object also displays itself as a cell's value)."""
        import importlib

        try:
            ipd = importlib.import_module("IPython.display")
        except ImportError as exc:
            raise InputError(
                "display() needs IPython (Jupyter); outside a notebook use .save('view.html')."
            ) from exc
        ipd.display(ipd.HTML(self._repr_html_()))

    def plot(
        self, layer: str | None = None, image: int = 0, row: int | None = None,
        col: int | None = None,
    ) -> Any:  # fmt: skip
        """Static figure of one query: every image with its similarity map (for papers)."""
        from convscope.plots.viewer import similarity_figure

        layer = layer or self.layers[0]
        h, w = self._acts(layer).shape[-2:]
        row = h // 2 if row is None else row
        col = w // 2 if col is None else col
        maps = self.similarity(layer, image, row, col)
        return similarity_figure(
            self.images, maps, (image, row, col), names=self.names,
            opacity=self.options.opacity,
            cmap=self.options.colormap or ("coolwarm" if self.signed else "gray"),
            upscale=self.options.upscale,
        )  # fmt: skip

    def __repr__(self) -> str:
        shapes = {k: tuple(v.shape[1:]) for k, v in self.activations.items()}
        return (
            f"SimilarityOverlay({len(self.images)} images, layers {shapes}, "
            f"nmf={self.nmf is not None}, sweeps={[s.kind for s in self.sweeps]})"
        )


def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))


def _predicted_labels(model: nn.Module, images: Tensor, batch_size: int) -> list[str | None]:
    logits = model_outputs(model, images, batch_size=batch_size)
    if logits.ndim != 2:
        return [None] * images.shape[0]
    probs = logits.float().softmax(dim=1).cpu()
    info = model_info(model)
    names = list(info.class_names) if info is not None and info.class_names else None
    labels: list[str | None] = []
    for p in probs:
        k = int(p.argmax())
        name = names[k] if names is not None and k < len(names) else f"class {k}"
        labels.append(f"{name} ({float(p[k]):.0%})")
    return labels


def _sweep_specs(
    sweeps: Sequence[str] | Mapping[str, Sequence[float] | None] | None,
) -> list[tuple[str, Sequence[float] | None]]:
    if not sweeps:
        return []
    if isinstance(sweeps, str):
        sweeps = [sweeps]
    items: list[tuple[str, Sequence[float] | None]] = (
        list(sweeps.items()) if isinstance(sweeps, Mapping) else [(k, None) for k in sweeps]
    )
    for kind, _ in items:
        if kind not in ("rotation", "scale"):
            raise InputError(
                f"Unknown sweep {kind!r}: sweeps are 'rotation' and 'scale' (a list of kinds, "
                "or a dict kind → values)."
            )
    return items


def similarity_overlay(
    model: nn.Module,
    images: Tensor,
    layers: str | Sequence[str] | None = None,
    *,
    names: Sequence[str] | None = None,
    labels: Sequence[str | None] | Literal["predicted"] | None = "predicted",
    eps: float = DEFAULT_EPS,
    center: bool = False,
    nmf: int | None = 4,
    nmf_layer: str | None = None,
    sweeps: Sequence[str] | Mapping[str, Sequence[float] | None] | None = None,
    sweep_image: int = 0,
    sweep_layer: str | None = None,
    options: OverlayOptions | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    oversize: Oversize = "downsample",
    batch_size: int | None = None,
    seed: int = 0,
    title: str | None = None,
) -> SimilarityOverlay:
    r"""Explore what a CNN's layers find similar, in a self-contained interactive viewer.

    Pointing at a location of one image shows, on every image, the cosine similarity of the
    activation vector there to the vector at every location (Fong et al., VISxAI 2021):

    .. math::

        s(z_{ij}, z'_{uv}) = \frac{z_{ij} \cdot z'_{uv}}
        {(\lVert z_{ij} \rVert + \varepsilon)(\lVert z'_{uv} \rVert + \varepsilon)}.

    Parameters
    ----------
    model : torch.nn.Module
        Takes N×3×H×W images in [0, 1] (carries its own normalisation).
    images : torch.Tensor
        N×3×H×W in [0, 1] (all at one size, so all images share the layers' grids).
    layers : str or sequence of str, optional
        Layers to show (dotted names; post-ReLU layers give similarities in [0, 1]). Default:
        the model's ``convscope_info.default_layer``, else its last spatial layer.
    names, labels
        Captions (file names; class names). ``labels="predicted"`` shows the model's top class
        and its probability; every caption is shown as text, never as HTML.
    eps : float, default 1e-4
        The ε of the paper's cosine (its reference code's value).
    center : bool, default False
        Subtract each layer's mean vector (over all images and locations) first: centred
        cosine, signed similarities in [-1, 1] shown with a diverging map. Not in the paper,
        which lists signed similarities as future work.
    nmf : int or None, default 4
        Number of NMF components (the article's 4) of all locations of all images at
        ``nmf_layer`` (default: the last layer); ``None`` or 0 for none. When the default
        layer has negative activations NMF is skipped with a note; an explicit ``nmf_layer``
        with negative values is an error.
    sweeps : sequence of {"rotation", "scale"} or dict kind → values, optional
        Transform sweeps of image ``sweep_image`` at ``sweep_layer`` (default: the first
        layer): the transformed images, the grid correspondence of every location, and the
        similarity curve of the hovered location across them (missing where it leaves the
        grid). Default values: rotation −90…90° by 15°, scale 2^(−1…1) by 2^0.25.
    options : OverlayOptions, optional
        How the viewer opens: tile size, opacity 0.7, colour map, normalisation, upscaling.
    max_bytes : int or None, default 50 MB
        Budget of the embedded HTML file (``None``: no budget).
    oversize : {"downsample", "warn", "error"}
        Beyond the budget: average-pool the heaviest layers 2×2 at a time until the file fits
        (with a warning naming each change), only warn, or raise.
    batch_size : int, optional
        Bound on the images per forward pass.
    seed : int, default 0
        Seed of the NMF initialisation.
    title : str, optional
        Page title.

    Returns
    -------
    SimilarityOverlay
        ``.save("view.html")``, ``.save_folder(dir)``, ``.similarity(layer, image, row, col)``,
        ``.plot(...)``; displays itself in Jupyter.

    Examples
    --------
    >>> view = similarity_overlay(model, images, ["layer2", "layer3"], sweeps=["rotation"])
    >>> view.save("view.html")  # doctest: +SKIP
    """
    images = check_images(images)
    n = images.shape[0]
    bs = check_batch_size(batch_size)
    options = options or OverlayOptions()
    if oversize not in _OVERSIZE:
        raise InputError(f"oversize must be one of {list(_OVERSIZE)}, got {oversize!r}.")
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes <= 0):
        raise InputError(f"max_bytes must be a positive int or None, got {max_bytes!r}.")
    if layers is None:
        layers = [default_layer(model, (int(images.shape[-2]), int(images.shape[-1])))]
    layer_list = [layers] if isinstance(layers, str) else list(layers)
    if not layer_list:
        raise InputError("layers is empty: pass at least one layer name.")
    if len(set(layer_list)) != len(layer_list):
        raise InputError(f"layers has duplicates: {layer_list}.")
    for layer in layer_list:
        resolve_layer(model, layer)  # a wrong name fails here, with the closest valid names
    if names is None:
        names = [f"image {i}" for i in range(n)]
    if len(names) != n:
        raise InputError(f"names has {len(names)} entries for {n} images.")
    if labels == "predicted":
        label_list = _predicted_labels(model, images, bs)
    elif labels is None:
        label_list = [None] * n
    else:
        label_list = [None if x is None else str(x) for x in labels]
        if len(label_list) != n:
            raise InputError(f"labels has {len(label_list)} entries for {n} images.")
    if not 0 <= sweep_image < n:
        raise InputError(f"sweep_image must index one of the {n} images, got {sweep_image}.")

    recorded = layer_activations(model, images, layer_list, batch_size=bs)
    acts = {layer: recorded[layer].float().numpy() for layer in layer_list}
    centers = None
    if center:
        centers = {layer: a.mean(axis=(0, 2, 3)) for layer, a in acts.items()}

    notes: list[str] = []
    nmf_result = None
    if nmf:
        chosen = nmf_layer or layer_list[-1]
        if chosen not in acts:
            raise InputError(f"nmf_layer {chosen!r} must be one of the layers: {layer_list}.")
        if nmf_layer is None and float(acts[chosen].min()) < 0:
            message = (
                f"NMF skipped: layer {chosen!r} has negative activations and NMF needs "
                "non-negative ones. Pick the layer after its ReLU, or pass nmf_layer= "
                "explicitly (with a post-ReLU layer)."
            )
            warnings.warn(message, UserWarning, stacklevel=2)
            notes.append(message)
        else:
            nmf_result = nmf_components(
                torch.from_numpy(acts[chosen]), k=int(nmf), seed=seed, layer=chosen
            )

    sweep_results: list[TransformSweep] = []
    sweep_acts: list[np.ndarray] = []
    specs = _sweep_specs(sweeps)
    if specs:
        s_layer = sweep_layer or layer_list[0]
        if s_layer not in acts:
            raise InputError(f"sweep_layer {s_layer!r} must be one of the layers: {layer_list}.")
        for kind, values in specs:
            sweep = transform_sweep(
                model, images[sweep_image : sweep_image + 1], s_layer,
                kind="rotation" if kind == "rotation" else "scale",
                values=None if values is None else list(values), eps=eps, batch_size=bs,
                keep_activations=True,
            )  # fmt: skip
            assert sweep.activations is not None
            sweep_results.append(sweep)
            sweep_acts.append(sweep.activations.float().numpy())

    return SimilarityOverlay(
        images=images.detach().cpu(),
        names=[str(x) for x in names],
        labels=label_list,
        activations=acts,
        eps=float(eps),
        centers=centers,
        nmf=nmf_result,
        sweeps=sweep_results,
        sweep_activations=sweep_acts,
        sweep_sources=[sweep_image] * len(sweep_results),
        options=options,
        max_bytes=max_bytes,
        oversize=oversize,
        title=title or "convscope similarity overlay",
        notes=notes,
    )
