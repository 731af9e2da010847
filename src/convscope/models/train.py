"""Deterministic training of the embedded shapes models.

``python -m convscope.models.train`` (or ``convscope train-models``) retrains
``shapes-cnn`` and ``shapes-cnn-spurious`` from scratch and writes their weights and metadata
into ``convscope/models/weights/``. Every epoch sees fresh images of the shapes world
(:func:`convscope.datasets.shapes`) drawn with a seed derived from the epoch, so there is no
fixed training set to overfit, and the run is a pure function of the settings: the same
settings on the same machine give the same weights (``torch.use_deterministic_algorithms``;
the thread count is fixed because it changes the order of floating-point reductions).

* ``shapes-cnn`` is trained on images whose background is independent of the class.
* ``shapes-cnn-spurious`` is trained with ``spurious=0.95``: 95% of its training images have
  the background texture associated with their class, so the texture is a shortcut; its
  accuracy drops on images where background and class are independent. It is trained for 4
  epochs instead of 12: the shape is always predictive, so a long enough run would learn it
  too and the shortcut would fade; a short budget is where networks take shortcuts.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from convscope.core.progress import progress_bar
from convscope.data.normalization import with_normalization
from convscope.datasets import shapes
from convscope.models.architectures import ShapesCNN
from convscope.models.evaluation import accuracy
from convscope.models.registry import SHAPES_MEAN, SHAPES_STD

__all__ = ["TrainConfig", "TrainedModel", "evaluate", "main", "train_shapes_model"]

#: Seed of the held-out evaluation images (never used for training).
TEST_SEED = 1_000_003


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (all of them end up in the model's metadata)."""

    name: str = "shapes-cnn"
    spurious: float = 0.0
    size: int = 64
    epochs: int = 12
    images_per_epoch: int = 8192
    batch_size: int = 128
    lr: float = 4e-3
    weight_decay: float = 5e-4
    seed: int = 0
    threads: int = 2
    widths: tuple[int, ...] = (16, 32, 64, 128)


@dataclass
class TrainedModel:
    """A trained model and how it was trained."""

    model: ShapesCNN
    config: TrainConfig
    class_names: tuple[str, ...]
    seconds: float
    history: list[float]


def train_shapes_model(config: TrainConfig, *, progress: bool | None = None) -> TrainedModel:
    """Train a :class:`ShapesCNN` on fresh shapes-world images (deterministic given ``config``)."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):  # the caller's random state is left alone
            return _train(config, progress)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _train(config: TrainConfig, progress: bool | None) -> TrainedModel:
    torch.manual_seed(config.seed)
    probe_world = shapes(1, seed=config.seed, size=config.size)
    class_names = tuple(probe_world.class_names)
    net = ShapesCNN(num_classes=len(class_names), widths=config.widths)
    model = with_normalization(net, SHAPES_MEAN, SHAPES_STD)
    steps_per_epoch = -(-config.images_per_epoch // config.batch_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )
    generator = torch.Generator().manual_seed(config.seed)
    history: list[float] = []
    start = time.perf_counter()
    model.train()
    epochs = progress_bar(
        range(config.epochs), total=config.epochs, desc=config.name, show=progress
    )
    for epoch in epochs:
        world = shapes(
            config.images_per_epoch,
            seed=config.seed * 10_007 + epoch + 1,
            size=config.size,
            spurious=config.spurious,
        )
        order = torch.randperm(len(world), generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            loss = F.cross_entropy(model(world.images[idx]), world.labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        history.append(total / len(world))
    seconds = time.perf_counter() - start
    net.eval()
    return TrainedModel(net, config, class_names, seconds, history)


def evaluate(
    model: torch.nn.Module,
    *,
    n: int = 2000,
    spurious: float = 0.0,
    size: int = 64,
    seed: int = TEST_SEED,
    batch_size: int = 256,
) -> float:
    """Accuracy of ``model`` (taking [0, 1] images) on ``n`` fresh shapes-world images."""
    world = shapes(n, seed=seed, size=size, spurious=spurious)
    return accuracy(model, world.images, world.labels, batch_size=batch_size, progress=False)


def save_trained(trained: TrainedModel, out_dir: Path, accuracies: dict[str, float]) -> Path:
    """Write ``<name>.pt`` (tensors only) and ``<name>.json`` (metadata) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{trained.config.name}.pt"
    state = {k: v.detach().clone().contiguous() for k, v in trained.model.state_dict().items()}
    torch.save(state, weights)
    meta = {
        "name": trained.config.name,
        "class_names": list(trained.class_names),
        "input_size": trained.config.size,
        "mean": list(SHAPES_MEAN),
        "std": list(SHAPES_STD),
        "default_layer": "features.relu4",
        "train_config": asdict(trained.config),
        "train_seconds": round(trained.seconds, 1),
        "train_loss": [round(v, 4) for v in trained.history],
        "accuracy": {k: round(v, 4) for k, v in accuracies.items()},
        "torch_version": torch.__version__,
        "command": "python -m convscope.models.train",
    }
    (out_dir / f"{trained.config.name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return weights


#: The two embedded models.
EMBEDDED_CONFIGS = (
    TrainConfig(name="shapes-cnn", spurious=0.0, seed=0),
    TrainConfig(name="shapes-cnn-spurious", spurious=0.95, seed=1, epochs=4),
)


def main(argv: list[str] | None = None) -> int:
    """Retrain the embedded models and print their accuracies."""
    parser = argparse.ArgumentParser(
        prog="convscope train-models",
        description="Retrain the embedded shapes models deterministically.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "weights",
        help="folder for the weights (default: the package's weights folder)",
    )
    parser.add_argument(
        "--only",
        choices=[c.name for c in EMBEDDED_CONFIGS],
        default=None,
        help="train only this model",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    for config in EMBEDDED_CONFIGS:
        if args.only and config.name != args.only:
            continue
        trained = train_shapes_model(config, progress=False if args.quiet else None)
        wrapped = with_normalization(trained.model, SHAPES_MEAN, SHAPES_STD).eval()
        acc = {"independent": evaluate(wrapped, size=config.size)}
        if config.spurious > 0:
            acc["spurious"] = evaluate(wrapped, spurious=config.spurious, size=config.size)
        path = save_trained(trained, args.out, acc)
        print(f"{config.name}: trained in {trained.seconds:.0f} s, accuracy {acc} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
