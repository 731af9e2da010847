from __future__ import annotations

import json
from pathlib import Path

import torch

from convscope.data.normalization import with_normalization
from convscope.models import load_model
from convscope.models.registry import SHAPES_MEAN, SHAPES_STD
from convscope.models.train import TrainConfig, evaluate, save_trained, train_shapes_model

TINY = TrainConfig(
    name="tiny", epochs=2, images_per_epoch=96, batch_size=32, size=32, widths=(4, 4, 8, 8), seed=5
)


def test_training_is_deterministic_and_seed_dependent() -> None:
    a = train_shapes_model(TINY, progress=False)
    b = train_shapes_model(TINY, progress=False)
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    assert a.history == b.history
    c = train_shapes_model(TrainConfig(**{**TINY.__dict__, "seed": 6}), progress=False)
    assert not torch.equal(a.model.features.conv1.weight, c.model.features.conv1.weight)


def test_training_restores_global_torch_settings() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # differs from TINY.threads = 2, so a leak would show
    rng = torch.random.get_rng_state()
    try:
        train_shapes_model(TINY, progress=False)
        assert torch.get_num_threads() == 1
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.equal(torch.random.get_rng_state(), rng)
    finally:
        torch.set_num_threads(threads)


def test_short_training_learns_the_easy_cue() -> None:
    # With spurious=1 the background texture gives the class away: even a tiny run must lower
    # the loss and beat chance (1/6) clearly on fresh images.
    cfg = TrainConfig(
        name="tiny",
        spurious=1.0,
        epochs=4,
        images_per_epoch=512,
        batch_size=64,
        size=32,
        widths=(8, 8, 16, 16),
        seed=1,
        lr=5e-3,
    )
    trained = train_shapes_model(cfg, progress=False)
    assert trained.history[-1] < trained.history[0] - 0.15, trained.history
    model = with_normalization(trained.model, SHAPES_MEAN, SHAPES_STD).eval()
    assert evaluate(model, n=600, spurious=1.0, size=32) > 0.3


def test_saved_model_round_trips_through_load_model(tmp_path: Path) -> None:
    trained = train_shapes_model(TINY, progress=False)
    weights = save_trained(trained, tmp_path, {"independent": 0.5})
    meta = json.loads((tmp_path / "tiny.json").read_text())
    assert meta["train_config"]["seed"] == 5 and meta["class_names"][0] == "circle"
    assert all(isinstance(v, torch.Tensor) for v in torch.load(weights, weights_only=True).values())
    # The custom widths (4, 4, 8, 8) are read back from the file.
    model = load_model(weights, arch="shapes-cnn")
    assert model.model.widths == (4, 4, 8, 8)
    for key, value in trained.model.state_dict().items():
        assert torch.equal(model.model.state_dict()[key], value), key
    x = torch.rand(2, 3, 32, 32)
    reference = with_normalization(trained.model, SHAPES_MEAN, SHAPES_STD).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
