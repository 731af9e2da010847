"""similarity_overlay: numbers against brute force, payload contents, size budget, outputs."""

from __future__ import annotations

import html
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.core.errors import InputError, LayerNotFoundError
from convscope.viewer.overlay import OverlayOptions, SimilarityOverlay, similarity_overlay
from convscope.viewer.payload import decode_array
from convscope.viewer.transforms import rotation_correspondence, scale_correspondence


@pytest.fixture
def model(two_scale_cnn: nn.Module) -> nn.Module:
    return two_scale_cnn


@pytest.fixture
def pictures() -> torch.Tensor:
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))


def _hooked(model: nn.Module, x: torch.Tensor, name: str) -> np.ndarray:
    """The layer's output by a plain forward hook: an oracle independent of convscope."""
    store: dict[str, torch.Tensor] = {}
    handle = getattr(model, name).register_forward_hook(
        lambda _m, _i, out: store.__setitem__("a", out.detach().clone())
    )
    with torch.no_grad():
        model(x)
    handle.remove()
    return store["a"].double().numpy()


def _eps_cosine(a: np.ndarray, b: np.ndarray, eps: float) -> float:
    return float(a @ b / ((np.linalg.norm(a) + eps) * (np.linalg.norm(b) + eps)))


def test_similarity_equals_brute_force(model: nn.Module, pictures: torch.Tensor) -> None:
    view = similarity_overlay(model, pictures, ["relu1", "relu2"], nmf=None)
    for layer in ("relu1", "relu2"):
        acts = _hooked(model, pictures, layer)
        n, _, h, w = acts.shape
        image, row, col = 1, h // 3, w - 2
        maps = view.similarity(layer, image, row, col)
        assert maps.shape == (n, h, w)
        q = acts[image, :, row, col]
        for m in range(n):
            for u in range(h):
                for v in range(w):
                    expected = _eps_cosine(q, acts[m, :, u, v], 1e-4)
                    assert maps[m, u, v] == pytest.approx(expected, abs=1e-5)
        # the hovered cell is ‖q‖²/(‖q‖+ε)² (1 up to ε) and post-ReLU maps lie in [0, 1]
        norm = np.linalg.norm(q)
        assert maps[image, row, col] == pytest.approx(norm**2 / (norm + 1e-4) ** 2, abs=1e-6)
        assert maps.min() >= -1e-6 and maps.max() <= 1 + 1e-6


def test_payload_holds_the_normalised_vectors(model: nn.Module, pictures: torch.Tensor) -> None:
    view = similarity_overlay(
        model, pictures, ["relu1", "relu2"], names=["a.png", "b.png", "c.png"],
        labels=["x", None, "z"], nmf=2, sweeps=["rotation", "scale"], sweep_image=2,
        sweep_layer="relu2",
    )  # fmt: skip
    payload, files = view.payload()
    assert files == {}
    assert payload["format"] == "convscope-similarity-overlay" and payload["version"] == 1
    assert [im["name"] for im in payload["images"]] == ["a.png", "b.png", "c.png"]
    assert [im["label"] for im in payload["images"]] == ["x", None, "z"]
    assert all(im["src"].startswith("data:image/png;base64,") for im in payload["images"])
    for entry in payload["layers"]:
        acts = _hooked(model, pictures, entry["name"])
        feats = decode_array(entry["features"]).astype(np.float64)
        norms = np.linalg.norm(acts, axis=1)  # n, h, w
        expected = acts.transpose(0, 2, 3, 1) / (norms[..., None] + 1e-4)
        assert feats.shape == expected.shape
        np.testing.assert_allclose(feats, expected, atol=2e-3)
        assert (entry["height"], entry["width"], entry["channels"]) == expected.shape[1:]
    nmf = payload["nmf"]
    assert nmf["layer"] == "relu2" and nmf["k"] == 2
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in nmf["colors"])
    weights = decode_array(nmf["weights"]).astype(np.float32)
    np.testing.assert_allclose(weights, view.nmf.weights, atol=2e-3)  # type: ignore[union-attr]
    assert [s["kind"] for s in payload["sweeps"]] == ["rotation", "scale"]
    for sweep in payload["sweeps"]:
        assert sweep["source"] == 2 and sweep["layer"] == "relu2"
        corr = decode_array(sweep["correspondence"])
        fn = rotation_correspondence if sweep["kind"] == "rotation" else scale_correspondence
        for t, value in enumerate(sweep["values"]):
            np.testing.assert_array_equal(corr[t], fn(8, 8, value))
        assert len(sweep["images"]) == len(sweep["values"])


def test_predicted_labels_follow_the_model(model: nn.Module, pictures: torch.Tensor) -> None:
    view = similarity_overlay(model, pictures, "relu2", nmf=None)
    with torch.no_grad():
        probs = model(pictures).softmax(1)
    for label, p in zip(view.labels, probs, strict=True):
        k = int(p.argmax())
        assert label == f"class {k} ({float(p[k]):.0%})"


def test_centred_similarity_is_signed(model: nn.Module, pictures: torch.Tensor) -> None:
    view = similarity_overlay(model, pictures, "relu2", center=True, nmf=None)
    acts = _hooked(model, pictures, "relu2")
    mean = acts.mean(axis=(0, 2, 3))
    maps = view.similarity("relu2", 0, 3, 4)
    q = acts[0, :, 3, 4] - mean
    assert maps[2, 5, 1] == pytest.approx(_eps_cosine(q, acts[2, :, 5, 1] - mean, 1e-4), abs=1e-5)
    assert maps.min() < 0
    payload, _ = view.payload()
    assert payload["signed"] is True and payload["display"]["colormap"] == "coolwarm"


def test_downsampling_fits_the_budget(model: nn.Module, pictures: torch.Tensor) -> None:
    view = similarity_overlay(model, pictures, ["relu1", "relu2"], nmf=None)
    full = view.estimate_bytes()
    assert full.parts["layer relu1"] == 4 * math.ceil(3 * 16 * 16 * 8 * 2 / 3)
    budget = full.total - full.parts["layer relu1"] // 2
    view.max_bytes = budget
    with pytest.warns(UserWarning, match=r"relu1 16×16 → 8×8 \(average-pooled 2×2\)"):
        payload, _ = view.payload()
    layer = payload["layers"][0]
    assert (layer["height"], layer["width"]) == (8, 8)
    assert (payload["layers"][1]["height"], payload["layers"][1]["width"]) == (8, 8)
    assert "max_bytes" in payload["notes"][-1]
    # the pooled layer holds the normalised average-pooled activations
    pooled = F.avg_pool2d(torch.from_numpy(_hooked(model, pictures, "relu1")), 2).numpy()
    expected = pooled.transpose(0, 2, 3, 1)
    expected = expected / (np.linalg.norm(expected, axis=-1, keepdims=True) + 1e-4)
    np.testing.assert_allclose(decode_array(layer["features"]), expected, atol=2e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        size = len(view.to_html().encode("utf-8"))
    assert size <= budget


def test_oversize_policies(model: nn.Module, pictures: torch.Tensor) -> None:
    view = similarity_overlay(model, pictures, ["relu1"], nmf=None, max_bytes=1000)
    view.oversize = "error"
    with pytest.raises(InputError, match=r"over the budget.*save_folder"):
        view.payload()
    view.oversize = "warn"
    with pytest.warns(UserWarning, match="oversize='warn'"):
        payload, _ = view.payload()
    assert payload["layers"][0]["height"] == 16
    view.oversize = "downsample"
    with pytest.raises(InputError, match="pooled to 1×1"):
        view.payload()


def test_estimate_matches_the_written_files(
    model: nn.Module, pictures: torch.Tensor, tmp_path: Path
) -> None:
    view = similarity_overlay(
        model, pictures, ["relu1", "relu2"], nmf=2, sweeps={"rotation": [0, 90]}
    )
    path = view.save(tmp_path / "view")
    assert path.name == "view.html"
    est = view.estimate_bytes()
    actual = path.stat().st_size
    assert abs(est.total - actual) <= 0.1 * actual
    index = view.save_folder(tmp_path / "served")
    root = index.parent
    manifest = json.loads((root / "manifest.json").read_text())
    raw = sum(f.stat().st_size for f in root.rglob("*") if f.suffix in (".bin", ".png"))
    parts = view.estimate_bytes(embedded=False).parts
    assert raw == sum(v for k, v in parts.items() if not k.startswith("viewer"))
    # the served arrays are the embedded ones
    embedded, _ = view.payload()
    for a, b in zip(manifest["layers"], embedded["layers"], strict=True):
        data = (root / a["features"]["url"]).read_bytes()
        got = np.frombuffer(data, dtype="<f2").reshape(a["features"]["shape"])
        np.testing.assert_array_equal(got, decode_array(b["features"]))
    assert 'data-manifest="manifest.json"' in index.read_text()


def test_labels_never_reach_html_unescaped(
    model: nn.Module, pictures: torch.Tensor, tmp_path: Path
) -> None:
    evil = "<img src=x onerror=alert(1)></script><script>alert(2)</script>"
    view = similarity_overlay(
        model, pictures, "relu2", names=[evil] * 3, labels=[evil] * 3, nmf=None, title=evil
    )
    doc = view.to_html()
    assert "<img src=x" not in doc
    assert "<script>alert(2)" not in doc
    frame = view._repr_html_()
    assert frame.startswith("<iframe") and "<script>alert(2)" not in frame
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame)
    assert srcdoc is not None and html.unescape(srcdoc.group(1)) == doc


def test_nmf_on_signed_layers(model: nn.Module, pictures: torch.Tensor) -> None:
    with pytest.warns(UserWarning, match="NMF skipped"):
        view = similarity_overlay(model, pictures, "conv2")
    assert view.nmf is None and "NMF skipped" in view.notes[0]
    with pytest.raises(InputError, match="negative"):
        similarity_overlay(model, pictures, "conv2", nmf_layer="conv2")


def test_bad_input(model: nn.Module, pictures: torch.Tensor) -> None:
    with pytest.raises(LayerNotFoundError, match="relu2"):
        similarity_overlay(model, pictures, "relu_2", nmf=None)
    with pytest.raises(InputError, match="names"):
        similarity_overlay(model, pictures, "relu2", names=["a"], nmf=None)
    with pytest.raises(InputError, match="sweep"):
        similarity_overlay(model, pictures, "relu2", sweeps=["shear"], nmf=None)
    with pytest.raises(InputError, match="oversize"):
        similarity_overlay(model, pictures, "relu2", oversize="shrink", nmf=None)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="opacity"):
        OverlayOptions(opacity=1.5)
    with pytest.raises(InputError, match="outside"):
        similarity_overlay(model, pictures, "relu2", nmf=None).similarity("relu2", 0, 8, 0)


def test_default_layer_and_repr(pictures: torch.Tensor) -> None:
    from convscope.models import load_model

    shapes = load_model("shapes-cnn")
    x = F.interpolate(pictures, size=64)
    view = similarity_overlay(shapes, x, nmf=None)
    assert isinstance(view, SimilarityOverlay)
    assert view.layers == ["features.relu4"]
    assert (
        view.labels[0] is not None
        and view.labels[0].split(" ")[0] in shapes.convscope_info.class_names
    )
    assert "3 images" in repr(view)


def test_downsampling_counts_sweeps_with_their_layer(
    model: nn.Module, pictures: torch.Tensor
) -> None:
    """A sweep's features weigh with its layer, so a heavy sweep gets its layer pooled first."""
    view = similarity_overlay(
        model, pictures, ["relu1", "relu2"], nmf=None, sweep_layer="relu2",
        sweeps={"rotation": list(range(-90, 91, 10))},
    )  # fmt: skip
    full = view.estimate_bytes()
    assert full.parts["layer relu1"] > full.parts["layer relu2"]
    sweep_features = 4 * math.ceil(19 * 8 * 8 * 16 * 2 / 3)
    assert full.parts["layer relu2"] + sweep_features > full.parts["layer relu1"]
    view.max_bytes = full.total - 100
    with pytest.warns(UserWarning, match=r"relu2 8×8 → 4×4"):
        payload, _ = view.payload()
    assert [(e["height"], e["width"]) for e in payload["layers"]] == [(16, 16), (4, 4)]
    sweep = payload["sweeps"][0]
    assert decode_array(sweep["features"]).shape == (19, 4, 4, 16)
    np.testing.assert_array_equal(
        decode_array(sweep["correspondence"])[-1], rotation_correspondence(4, 4, 90)
    )
