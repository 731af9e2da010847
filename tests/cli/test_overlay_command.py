"""`convscope overlay` and `convscope overlay serve`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convscope.cli.main import main
from convscope.data.io import load_images, save_image
from convscope.datasets import shapes
from convscope.viewer.payload import decode_array


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("imgs")
    world = shapes(2, seed=3)
    return [save_image(img, folder / f"shape{i}.png") for i, img in enumerate(world.images)]


def test_writes_a_self_contained_viewer(
    image_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "view.html"
    code = main(
        [
            "overlay", *map(str, image_files), "--model", "shapes-cnn",
            "--layers", "model.features.relu3,model.features.relu4", "--out", str(out),
            "--sweep", "rotation", "--nmf", "3", "--json", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == str(out) and summary["bytes"] == out.stat().st_size
    assert summary["layers"] == {
        "model.features.relu3": [64, 16, 16],
        "model.features.relu4": [128, 8, 8],
    }
    assert summary["nmf"] is True and summary["sweeps"] == ["rotation"]
    doc = out.read_text()
    assert doc.lower().startswith("<!doctype html>")
    for name in ("shape0.png", "shape1.png"):
        assert name in doc
    assert "https://" not in doc and "http://" not in doc


def test_folder_mode_and_its_arrays(image_files: list[Path], tmp_path: Path) -> None:
    from convscope.models import load_model
    from convscope.viewer.overlay import similarity_overlay

    out = tmp_path / "served"
    code = main(
        [
            "overlay", *map(str, image_files), "--model", "shapes-cnn",
            "--layers", "model.features.relu4", "--out", str(out), "--folder", "--nmf", "0",
            "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / "index.html").is_file()
    # the CLI's arrays are the Python API's on the same files
    images = load_images(image_files, size=64)
    view = similarity_overlay(
        load_model("shapes-cnn"), images, "model.features.relu4", nmf=None, labels=None
    )
    payload, _ = view.payload()
    entry = manifest["layers"][0]
    got = np.frombuffer((out / entry["features"]["url"]).read_bytes(), dtype="<f2")
    np.testing.assert_array_equal(
        got.reshape(entry["features"]["shape"]), decode_array(payload["layers"][0]["features"])
    )


def test_bad_layer_is_one_line(
    image_files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["overlay", str(image_files[0]), "--layers", "features.relu9", "--out",
         str(tmp_path / "v.html"), "--quiet"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("convscope: error:") and "relu4" in err


def test_serve_is_dispatched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import convscope.viewer.serve as serve_module

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        serve_module, "serve", lambda folder, port, **kw: calls.append((folder, port, kw))
    )
    assert main(["overlay", "serve", str(tmp_path), "--port", "0", "--quiet"]) == 0
    assert calls == [(tmp_path, 0, {"open_browser": False, "verbose": False})]


def test_serve_rejects_a_folder_without_viewer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["overlay", "serve", str(tmp_path), "--port", "0"]) == 2
    assert "no index.html" in capsys.readouterr().err
