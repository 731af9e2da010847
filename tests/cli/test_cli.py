from __future__ import annotations

import json
from pathlib import Path

import pytest

from convscope.cli.main import build_parser, main
from convscope.data.io import save_image
from convscope.datasets import shapes


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)  # type: ignore[arg-type]


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as top:
        main(["--help"])
    assert top.value.code == 0
    out = capsys.readouterr().out
    commands = _subcommands()
    assert {"demo", "layers", "models", "predict", "world", "train-models"} <= set(commands)
    # `overlay serve` is parsed as its own hidden subcommand (see cli.main.main)
    spelled = {"overlay-serve": "overlay serve"}
    for command in commands:
        public = spelled.get(command, command)
        assert public in out
        with pytest.raises(SystemExit) as sub:
            main([*public.split(), "--help"])
        assert sub.value.code == 0
        assert "usage: convscope " + public in capsys.readouterr().out


def test_predict_classifies_world_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = shapes(6, seed=77)
    paths = []
    for i in range(6):
        paths.append(str(save_image(world.images[i], tmp_path / f"img{i}.png")))
    assert main(["predict", *paths, "--json", "--top", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    predicted = [row["top"][0]["class"] for row in rows]
    truth = [world.class_names[int(c)] for c in world.labels]
    # PNG quantisation aside these are the model's own images: allow at most one error.
    assert sum(p == t for p, t in zip(predicted, truth, strict=True)) >= 5
    assert all(len(row["top"]) == 2 for row in rows)


def test_layers_lists_names_and_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["layers", "shapes-cnn"]) == 0
    out = capsys.readouterr().out
    assert "features.conv1" in out and "16x64x64" in out and "classifier" in out


def test_models_lists_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "shapes-cnn-spurious" in out and "torchvision:" in out


def test_world_writes_npz_and_pngs(tmp_path: Path) -> None:
    assert main(["world", "--n", "3", "--size", "32", "--out", str(tmp_path), "--png"]) == 0
    assert (tmp_path / "world.npz").is_file()
    assert len(list(tmp_path.glob("*.png"))) == 3


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["predict", "missing.png"], "missing.png"),
        (["layers", "shapes-cn"], "shapes-cnn"),
        (["predict", "x.png", "--model", "resnet-nope"], "Unknown model"),
        (["world", "--n", "0", "--out", "unused"], "n=0 must be at least 1"),
        (["layers", "shapes-cnn", "--size", "1"], "larger --size"),
        (["world", "--n", "2", "--out", "afile.txt"], "is a file"),
        (["demo", "--only", "wrld", "--out", "unused"], "'world'"),
        (["layers", "shapes-cnn", "--weights", "absent.pt"], "does not exist"),
    ],
)
def test_errors_are_one_line_without_traceback(
    argv: list[str],
    fragment: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile.txt").write_text("not a folder")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("convscope: error: ") and fragment in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv", [["layers", "shapes-cnn", "--size", "0"], ["predict", "x.png", "--top", "-1"]]
)
def test_argument_types_are_checked(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "positive integer" in capsys.readouterr().err
