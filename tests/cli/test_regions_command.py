"""`convscope regions`: reloadable Sobol' region indices, figures, a JSON summary; errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from convscope.attribution.region_sobol import RegionSobolResult, region_sobol
from convscope.cli.main import main
from convscope.cli.regions import parse_grids
from convscope.data.io import load_images, save_image
from convscope.data.regions import grid_regions
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


def test_regions_writes_results_figures_and_summary(
    image_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = [*map(str, image_files), "--grid", "2,3x4", "--n", "8", "--n-boot", "0"]
    assert main(["regions", *args, "--out", str(out), "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["grids"] == ["2", "3x4"]
    assert summary["evaluations_per_image"] == {"2": 8 * 6, "3x4": 8 * 14}
    for entry in summary["images"]:
        assert (out / entry["figure"]).stat().st_size > 1000
        assert len(entry["grids"]["3x4"]["total_order"]) == 12
    # the saved indices are what the library computes for the predicted class
    model = load_model("shapes-cnn")
    images = load_images(image_files, size=64)
    target = [entry["target"] for entry in summary["images"]]
    saved = RegionSobolResult.load(out / "grid3x4")
    direct = region_sobol(model, images, target, grid_regions(64, 64, (3, 4)), n=8, n_boot=0)
    torch.testing.assert_close(saved.total_order, direct.total_order, atol=1e-5, rtol=0)
    ranking = summary["images"][1]["grids"]["3x4"]["ranking"]
    assert ranking == direct.rank()[1].tolist()


def test_parse_grids() -> None:
    assert parse_grids("4,8") == [(4, 4), (8, 8)]
    assert parse_grids("4x6") == [(4, 6)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--grid", "0"], "--grid takes grid sizes"),
        (["--grid", "a,b"], "--grid takes grid sizes"),
        (["--grid", "65"], "more cells than"),
        (["--n", "50"], "power of two"),
        (["--target", "banana"], "Unknown target"),
    ],
)
def test_regions_errors(
    image_files: list[Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    args = [str(image_files[0]), "--out", str(tmp_path / "o"), "--quiet", *extra]
    assert main(["regions", *args]) == 2
    assert message in capsys.readouterr().err
