"""`convscope demo` writes a self-contained report with the foundation's sections."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from convscope.cli.main import main


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    return out


def test_report_is_self_contained(report_dir: Path) -> None:
    page = (report_dir / "index.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    sources = re.findall(r'<img[^>]+src="([^"]+)"', page)
    assert len(sources) >= 4
    for src in sources:
        assert (report_dir / src).is_file() and (report_dir / src).stat().st_size > 1000


def test_report_sections_and_summary(report_dir: Path) -> None:
    summary = json.loads((report_dir / "summary.json").read_text())
    sections = summary["sections"]
    assert {"the-shapes-world", "embedded-models", "grad-cam-per-class", "run"} <= set(sections)
    models = sections["embedded-models"]
    assert models["shapes-cnn"]["accuracy_independent"] >= 0.95
    assert models["shapes-cnn-spurious"]["drop"] >= 0.15
    cam = sections["grad-cam-per-class"]
    # The clean model's Grad-CAM puts more mass on the object than a blind map would.
    assert cam["shapes-cnn"]["gradcam_mass_on_object"] > cam["object_area_fraction"]
    assert sections["the-shapes-world"]["generator_images_per_second_64px"] > 0


def test_demo_prints_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = torch.random.get_rng_state()
    assert main(["demo", "--out", str(tmp_path), "--quiet", "--only", "world"]) == 0
    assert torch.equal(torch.random.get_rng_state(), rng)
    out = capsys.readouterr().out
    assert str((tmp_path / "index.html").resolve()) in out


def test_attribution_section(report_dir: Path) -> None:
    sections = json.loads((report_dir / "summary.json").read_text())["sections"]
    attribution = sections["attribution-by-perturbation"]
    methods = attribution["methods"]
    assert len(methods) == 13
    # Against the ground-truth masks, extremal perturbations beat the centre baseline clearly.
    assert methods["extremal"]["pointing"] >= attribution["centre"]["pointing"] + 0.05
    assert methods["extremal"]["pointing_difficult"] > attribution["centre"]["pointing_difficult"]
    sweep = attribution["area_sweep"]
    # a* is the smallest area whose mask keeps the full score.
    reached = [a for a, r in zip(sweep["areas"], sweep["ratios"], strict=True) if r >= 1.0]
    assert sweep["a_star"] == min(reached)
    # Randomising every layer decorrelates the gradient map from the trained model's.
    assert attribution["sanity"]["gradient"]["all"] < 0.5


def test_regions_section(report_dir: Path) -> None:
    sections = json.loads((report_dir / "summary.json").read_text())["sections"]
    regions = sections["sobol-region-attribution"]
    grid = regions["grid"]
    # the total index concentrates on the target object beyond its area
    assert grid["total_order_share_on_object"] > 2 * grid["object_area_share"]
    # the model trained on a spurious background relies more on it (planted ground truth)
    fgbg = regions["foreground_background"]
    clean, spurious = fgbg["shapes-cnn"], fgbg["shapes-cnn-spurious"]
    assert clean["total_order_difference"] > spurious["total_order_difference"] + 0.3
    methods = regions["methods"]
    assert set(methods) == {
        "sobol_total", "sobol_first", "kernel_shap", "lime", "integrated_gradients", "random",
    }  # fmt: skip
    # Sobol ranking beats a random one on both metrics
    total, rand = methods["sobol_total"], methods["random"]
    assert total["top20_drop"] - total["bottom20_drop"] > rand["top20_drop"] - rand["bottom20_drop"]
    assert min(total["sensitivity_n"].values()) > max(rand["sensitivity_n"].values())


def test_sensitivity_section(report_dir: Path) -> None:
    sections = json.loads((report_dir / "summary.json").read_text())["sections"]
    sens = sections["sensitivity-to-augmentations"]
    # the class probabilities are explained by the class more than by any augmentation
    clf = sens["classifier_mean_first_order"]
    assert max(clf, key=clf.get) == "class"
    for entry in sens["checkpoints"].values():
        assert entry["colour_channels"] + entry["geometric_channels"] == entry["channels"]
        assert set(entry["mean_total_order"]) == set(sens["variables"])


def test_viewer_section(report_dir: Path) -> None:
    from convscope.viewer.payload import decode_array

    sections = json.loads((report_dir / "summary.json").read_text())["sections"]
    view = sections["similarity-overlays"]
    page = (report_dir / "index.html").read_text()
    assert 'href="overlay.html"' in page
    viewer = (report_dir / view["file"]).read_text()
    assert viewer.lower().startswith("<!doctype html>") and "https://" not in viewer
    assert view["bytes"] == (report_dir / view["file"]).stat().st_size
    assert view["layers"] == {
        "model.features.relu2": [32, 32, 32],
        "model.features.relu3": [64, 16, 16],
        "model.features.relu4": [128, 8, 8],
    }
    # the embedded vectors are unit vectors up to ε and float16: cosine of a cell with itself
    data = re.search(r'class="convscope-data">(.*?)</script>', viewer, re.S)
    assert data is not None
    payload = json.loads(data.group(1))
    feats = decode_array(payload["layers"][0]["features"]).astype("float64")
    norms = (feats**2).sum(-1) ** 0.5
    assert ((norms > 0.99) | (norms == 0)).all() and (norms < 1.001).all()
    for kind, values in (("rotation", 0.0), ("scale", 1.0)):
        sweep = view["sweeps"][kind]
        at_identity = sweep["mean_similarity"][sweep["values"].index(values)]
        assert at_identity == pytest.approx(1.0, abs=1e-3)
        assert max(m for v, m in zip(sweep["values"], sweep["mean_similarity"], strict=True)
                   if v != values) < at_identity  # fmt: skip
