"""`convscope sensitivity`: reloadable maps, figures, a JSON summary; errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from convscope.cli.main import main
from convscope.datasets import shapes
from convscope.models import load_model
from convscope.sensitivity.augmentation.augmentation_sensitivity import (
    AugmentationSensitivityResult,
    augmentation_sensitivity,
)


def test_sensitivity_on_the_world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["--world", "6", "--checkpoints", "model.features.relu1,model.classifier",
            "--set", "A1", "-n", "4", "--softmax", "model.classifier"]  # fmt: skip
    assert main(["sensitivity", *args, "--out", str(out), "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["variables"][:2] == ["erasing", "sharpness_const"]
    assert summary["n_evaluations"] == 4 * (len(summary["variables"]) + 2)
    for entry in summary["checkpoints"].values():
        assert (out / entry["figure"]).stat().st_size > 1000
    saved = AugmentationSensitivityResult.load(out / "sensitivity")
    world = shapes(6, seed=0)
    direct = augmentation_sensitivity(
        load_model("shapes-cnn"), world.images, world.labels,
        ["model.features.relu1", "model.classifier"], augmentations="A1", n=4,
        softmax=["model.classifier"], progress=False,
    )  # fmt: skip
    assert saved.first_order is not None and direct.first_order is not None
    torch.testing.assert_close(
        saved.first_order["model.classifier"], direct.first_order["model.classifier"]
    )


def test_sensitivity_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--world", "4", "--checkpoints", "model.features.relu9", "--out", str(tmp_path)]
    assert main(["sensitivity", *args, "--quiet"]) == 2
    assert "relu9" in capsys.readouterr().err
    args = ["--world", "4", "--checkpoints", "model.classifier", "--set", "A3"]
    assert main(["sensitivity", *args, "--out", str(tmp_path), "--quiet"]) == 2
    assert "A3" in capsys.readouterr().err


def test_layers_option_and_deprecated_checkpoints_alias(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--world", "4", "--out", str(tmp_path), "--quiet"]
    assert main(["sensitivity", "--layers", "model.features.relu9", *args]) == 2
    err = capsys.readouterr().err
    assert "relu9" in err and "deprecated" not in err
    assert main(["sensitivity", "--checkpoints", "model.features.relu9", *args]) == 2
    err = capsys.readouterr().err
    assert "--checkpoints is deprecated; use --layers" in err and "relu9" in err
