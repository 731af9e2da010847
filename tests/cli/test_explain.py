"""`convscope explain`: figures, reloadable maps and a JSON summary; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from convscope.attribution import grad_cam
from convscope.attribution.extremal import ExtremalResult
from convscope.attribution.methods import AttributionMaps
from convscope.cli.main import main
from convscope.data.io import load_images, save_image
from convscope.datasets import shapes
from convscope.models import load_model


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    world = shapes(2, seed=3)
    paths = []
    for i in range(2):
        path = folder / f"img{i}.png"
        save_image(world.images[i], path)
        paths.append(path)
    return paths


def test_explain_writes_figures_maps_and_summary(
    image_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = [*map(str, image_files), "--method", "gradcam", "extremal", "--max-iter", "5"]
    code = main(["explain", *args, "--areas", "0.1", "0.2", "--out", str(out), "--json", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["methods"] == ["grad_cam", "extremal"]
    assert json.loads((out / "summary.json").read_text()) == summary
    for entry in summary["images"]:
        for name in entry["figures"].values():
            assert (out / name).stat().st_size > 1000
        assert entry["extremal"]["areas"] == [0.1, 0.2]
    # The saved maps are exactly what the library computes for the predicted class.
    maps = AttributionMaps.load(out / "maps")
    model = load_model("shapes-cnn")
    images = load_images(image_files, size=64)
    target = [entry["target"] for entry in summary["images"]]
    assert torch.allclose(maps.maps["grad_cam"], grad_cam(model, images, target), atol=1e-5)
    masks = ExtremalResult.load(out / "extremal")
    assert masks.masks.shape == (2, 2, 1, 64, 64)
    assert torch.allclose(maps.maps["extremal"], masks.saliency(), atol=1e-5)


def test_explain_class_name_target(image_files: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "named"
    args = [str(image_files[0]), "--method", "gradient", "--target", "star", "--out", str(out)]
    assert main(["explain", *args, "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"][0]["class"] == "star"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "extremel"], "'extremal'"),
        (["--target", "sqare"], "'square'"),
        (["--target", "9"], "6 classes"),
        (["--areas", "10"], "fractions"),
    ],
)
def test_explain_bad_input_is_one_clear_error(
    image_files: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    args = [str(image_files[0]), "--out", str(tmp_path / "x"), *extra, "--quiet"]
    assert main(["explain", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convscope: error:") and message in err
