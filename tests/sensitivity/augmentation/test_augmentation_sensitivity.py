"""Activation sensitivity to augmentations: planted dependencies, a store-everything SALib
reference on the same design, resuming, and sharding over two gloo processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from convscope.core.errors import InputError
from convscope.sensitivity.augmentation.augmentation_sensitivity import (
    AugmentationProblem,
    AugmentationSensitivityResult,
    ImageSource,
    _Evaluator,
    augmentation_sensitivity,
)
from convscope.sensitivity.augmentation.augmentations import Augmentation, Parameter
from convscope.sensitivity.designs import pick_freeze_design


class ScaleChannel(Augmentation):
    """Multiplies one channel by a factor in [0.5, 1.5]."""

    def __init__(self, channel: int) -> None:
        self.name = f"scale{channel}"
        self.label = self.name
        self.params = (Parameter("factor", 0.5, 1.5),)
        self.identity = (1.0,)
        self.channel = channel

    def apply(self, x: Tensor, theta: Tensor) -> Tensor:
        out = x.clone()
        out[:, self.channel] = x[:, self.channel] * theta[:, 0].view(-1, 1, 1)
        return out


class ChannelMeans(nn.Module):
    """'probe' outputs the mean of each input channel; 'head' a nonlinear mix of them."""

    def __init__(self) -> None:
        super().__init__()
        self.probe = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()
        self.head = nn.Linear(3, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]]))
            self.head.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.head(self.flat(self.probe(x))))


def _constant_images() -> tuple[Tensor, Tensor]:
    return torch.full((1, 3, 4, 4), 0.5), torch.zeros(1, dtype=torch.long)


def test_unit_depending_on_one_augmentation_gets_all_of_its_variance() -> None:
    model = ChannelMeans().eval()
    x, y = _constant_images()
    res = augmentation_sensitivity(
        model, x, y, ["probe"], augmentations=[ScaleChannel(0), ScaleChannel(1)], n=1024,
        rescale=None, progress=False,
    )  # fmt: skip
    assert res.variables == ["scale0", "scale1", "permutation", "class"]
    s1, st = res.first_order["probe"][..., 0, 0], res.total_order["probe"][..., 0, 0]  # type: ignore[index]
    # unit 0 depends only on scale0, unit 1 only on scale1 (the two commute: no order effect)
    torch.testing.assert_close(s1[:, 0], torch.tensor([1.0, 0, 0, 0]), atol=0.02, rtol=0)
    torch.testing.assert_close(st[:, 1], torch.tensor([0.0, 1, 0, 0]), atol=0.02, rtol=0)
    # unit 2 is invariant to every variable: zero variance, indices 0
    assert float(res.variance["probe"][2, 0, 0]) == pytest.approx(0.0, abs=1e-12)
    assert torch.equal(s1[:, 2], torch.zeros(4))
    # mean of channel 0 is 0.5 * E[factor] = 0.5
    assert float(res.mean["probe"][0, 0, 0]) == pytest.approx(0.5, abs=0.01)
    assert res.n_evaluations == 1024 * (4 + 2)


def test_shapley_scheme_on_planted_dependencies() -> None:
    model = ChannelMeans().eval()
    x, y = _constant_images()
    res = augmentation_sensitivity(
        model, x, y, ["probe"], augmentations=[ScaleChannel(0), ScaleChannel(1)],
        method="shapley", n=256, n_outer=8, n_inner=3, rescale=None, batch_size=512,
        progress=False,
    )  # fmt: skip
    shap = res.shapley["probe"][..., 0, 0]  # type: ignore[index]
    # irrelevant raw variables add Monte-Carlo noise, which clipping turns into small shares
    assert float(shap[0, 0]) > 0.85 and float(shap[1, 1]) > 0.85
    assert float(shap[1, 0]) < 0.05 and float(shap[0, 1]) < 0.05
    torch.testing.assert_close(shap[:, :2].sum(0), torch.ones(2))
    raw = res.settings["raw_variables"]
    assert res.n_evaluations == 256 * raw * 8 * 3


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 3)
    ).eval()


def test_streaming_maps_equal_store_everything_salib_reference() -> None:
    salib = pytest.importorskip("SALib.analyze.sobol")  # a dev dependency: never skipped in CI
    model = _small_cnn()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 4, 4, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    augs = [ScaleChannel(0), ScaleChannel(2)]
    n = 16
    res = augmentation_sensitivity(
        model, x, y, ["0", "4"], augmentations=augs, n=n, batch_size=7, seed=3, progress=False
    )
    # reference: every activation of every row stored, then SALib per activation
    problem = AugmentationProblem(augs)
    source = ImageSource(y)
    ev = _Evaluator(
        model, x, source, problem, ["0", "4"], batch_size=1000, rescale="minmax", softmax=set(),
        image_choice="deterministic", seed=3,
    )  # fmt: skip
    design = pick_freeze_design(
        problem.n_raw, n, groups=problem.groups, seed=3, dtype=torch.float64
    )
    with torch.no_grad():
        stored = ev(design.rows("salib")).numpy()
    k = len(problem.groups)
    groups_names = [problem.names[i] for i, g in enumerate(problem.groups) for _ in g]
    spec = {
        "num_vars": problem.n_raw, "names": [f"x{i}" for i in range(problem.n_raw)],
        "bounds": [[0, 1]] * problem.n_raw, "groups": groups_names,
    }  # fmt: skip
    assert res.first_order is not None and res.total_order is not None
    ours = torch.cat([res.first_order[c].reshape(k, -1) for c in ("0", "4")], 1)
    ours_t = torch.cat([res.total_order[c].reshape(k, -1) for c in ("0", "4")], 1)
    checked = 0
    for col in range(stored.shape[1]):
        if stored[:, col].std() < 1e-9:
            continue
        si = salib.analyze(spec, stored[:, col], calc_second_order=False, num_resamples=2)
        np.testing.assert_allclose(ours[:, col].numpy(), si["S1"], atol=1e-4)
        np.testing.assert_allclose(ours_t[:, col].numpy(), si["ST"], atol=1e-4)
        checked += 1
    assert checked > 20


def test_resume_after_interruption_gives_identical_result(tmp_path: Path) -> None:
    model = _small_cnn()
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 0, 1, 1])
    kw = {"augmentations": [ScaleChannel(0), ScaleChannel(1)], "n": 32, "batch_size": 12,
          "progress": False}  # fmt: skip
    full = augmentation_sensitivity(model, x, y, ["0"], **kw)  # type: ignore[arg-type]

    class InterruptError(Exception):
        pass

    calls = {"n": 0}

    def stop(_m: nn.Module, _i: object, _o: object) -> None:
        calls["n"] += 1
        if calls["n"] > 8:
            raise InterruptError

    handle = model.register_forward_hook(stop)
    with pytest.raises(InterruptError):
        augmentation_sensitivity(model, x, y, ["0"], resume=tmp_path / "state", **kw)  # type: ignore[arg-type]
    handle.remove()
    assert (tmp_path / "state.json").is_file()
    resumed = augmentation_sensitivity(model, x, y, ["0"], resume=tmp_path / "state", **kw)  # type: ignore[arg-type]
    assert torch.equal(resumed.first_order["0"], full.first_order["0"])  # type: ignore[index]
    assert torch.equal(resumed.variance["0"], full.variance["0"])


def _worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        model = _small_cnn()
        x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
        y = torch.tensor([0, 0, 1, 1])
        for method in ("sobol", "shapley"):
            res = augmentation_sensitivity(
                model, x, y, ["0"], augmentations=[ScaleChannel(0), ScaleChannel(1)], n=16,
                method=method, batch_size=8, progress=False,  # type: ignore[arg-type]
            )  # fmt: skip
            if rank == 0:
                res.save(Path(out) / method)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_one(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, f"file://{tmp_path / 'init'}", str(tmp_path)), nprocs=2)
    model = _small_cnn()
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 0, 1, 1])
    for method, field in (("sobol", "first_order"), ("shapley", "shapley")):
        one = augmentation_sensitivity(
            model, x, y, ["0"], augmentations=[ScaleChannel(0), ScaleChannel(1)], n=16,
            method=method, batch_size=8, progress=False,  # type: ignore[arg-type]
        )  # fmt: skip
        two = AugmentationSensitivityResult.load(tmp_path / method)
        torch.testing.assert_close(
            getattr(two, field)["0"], getattr(one, field)["0"], atol=1e-6, rtol=0
        )
        torch.testing.assert_close(two.variance["0"], one.variance["0"], atol=1e-6, rtol=1e-5)
        assert two.n_evaluations == one.n_evaluations


def test_deterministic_image_choice_follows_the_class_group() -> None:
    source = ImageSource(torch.tensor([0, 1, 0, 1, 0]))
    idx = source.select(
        torch.tensor([0.1, 0.1, 0.9, 0.9]), torch.tensor([0.0, 0.99, 0.0, 0.7]), None
    )
    # class 0 holds images 0, 2, 4 and class 1 holds 1, 3 (input order)
    assert idx.tolist() == [0, 4, 1, 3]


def test_bad_input() -> None:
    from convscope.core.errors import InputError

    model = _small_cnn()
    x = torch.rand(2, 3, 4, 4)
    with pytest.raises(InputError, match="has no image in partition"):
        augmentation_sensitivity(
            model, x, [0, 1], ["0"], partition=[0, 1], augmentations=[ScaleChannel(0)], n=4
        )
    with pytest.raises(InputError, match="softmax"):
        augmentation_sensitivity(model, x, [0, 1], ["0"], softmax=["4"], n=4)
    with pytest.raises(InputError, match="labels"):
        augmentation_sensitivity(model, x, [0], ["0"], n=4)


@pytest.mark.parametrize("change", ["last_image", "last_bias", "setting"])
def test_resume_of_a_different_run_is_refused(tmp_path: Path, change: str) -> None:
    # The old fingerprint covered only the first 4 images and parameter tensors: a changed 5th
    # image or a fine-tuned last layer was silently mixed in. Every change must be refused.
    model = _small_cnn()
    x = torch.rand(6, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    kw: dict = {"augmentations": [ScaleChannel(0)], "n": 8, "batch_size": 9, "progress": False}
    augmentation_sensitivity(model, x, y, ["0"], resume=tmp_path / "state", **kw)
    expected = {"last_image": "input 'images'", "last_bias": "the model", "setting": "'seed'"}
    if change == "last_image":
        x = x.clone()
        x[-1, 0, 0, 0] += 0.25
    elif change == "last_bias":
        with torch.no_grad():
            model[-1].bias[-1] += 1e-3  # type: ignore[index]
    else:
        kw["seed"] = 1
    with pytest.raises(InputError, match=expected[change]):
        augmentation_sensitivity(model, x, y, ["0"], resume=tmp_path / "state", **kw)


def test_old_keyword_checkpoints_warns_and_means_layers() -> None:
    model = _small_cnn()
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1])
    kw: dict = {"augmentations": [ScaleChannel(0)], "n": 4, "progress": False}
    new = augmentation_sensitivity(model, x, y, layers=["0"], **kw)
    with pytest.warns(DeprecationWarning, match="layers="):
        old = augmentation_sensitivity(model, x, y, checkpoints=["0"], **kw)
    assert torch.equal(new.first_order["0"], old.first_order["0"])  # type: ignore[index]
