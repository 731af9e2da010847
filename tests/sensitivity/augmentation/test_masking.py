"""Guided masking: mask formulas, hooks, the masked-prediction experiment, Fig. 4 statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.cluster.hierarchy import fcluster
from torch import nn

from convscope.core.errors import InputError, LayerNotFoundError
from convscope.sensitivity.augmentation.masking import (
    ALPHAS,
    MASK_CONFIGS,
    QUANTILES,
    MaskConfig,
    MaskedPredictionResult,
    activation_masking,
    mask_activations,
    mask_factor,
    masked_predictions,
    masking_clusters,
    masking_linkage,
    masking_pair_distances,
    masking_spearman_matrix,
    spearman_rows,
)

# --------------------------------------------------------------------------- helpers

CHECKPOINTS = ("1", "3")
SHAPES = {"1": (4, 8, 8), "3": (5, 8, 8)}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(20, 6),
    ).eval()
    with torch.no_grad():  # spread the logits so that predictions differ between images
        net[6].weight.mul_(30.0)
    return net


def _hand_factor(m: torch.Tensor, cfg: MaskConfig) -> torch.Tensor:
    """The paper's masks written out with numpy's quantile (independent of the module)."""
    if cfg.kind == "raw":
        return m.clone()
    if cfg.kind == "inverted":
        return 1.0 - m
    arr = m.double().numpy()
    qv = np.quantile(arr.ravel(), cfg.q)
    return torch.from_numpy(np.where(arr < qv, 1.0, cfg.alpha)).float()


def _manual_forward(
    net: nn.Sequential, x: torch.Tensor, w1: torch.Tensor, w3: torch.Tensor
) -> torch.Tensor:
    """The network split by hand at its two checkpoints, masks applied in between."""
    h = net[1](net[0](x)) * w1
    h = net[3](net[2](h)) * w3
    return net[4:](h)


def _maps(n_vars: int, seed: int = 3) -> dict[str, torch.Tensor]:
    g = _gen(seed)
    return {name: torch.rand(n_vars, *SHAPES[name], generator=g) for name in CHECKPOINTS}


# --------------------------------------------------------------------------- configurations


def test_mask_configs_follow_the_reference_order() -> None:
    assert len(MASK_CONFIGS) == 2 + len(ALPHAS) * len(QUANTILES) == 17
    assert [c.kind for c in MASK_CONFIGS[:2]] == ["raw", "inverted"]
    thr = [(c.alpha, c.q) for c in MASK_CONFIGS[2:]]
    assert thr == [(a, q) for a in (0.0, 0.5, 1.5) for q in (0.5, 0.6, 0.7, 0.8, 0.9)]
    labels = [c.label for c in MASK_CONFIGS]
    assert len(set(labels)) == 17
    assert [MaskConfig.from_label(lab) for lab in labels] == list(MASK_CONFIGS)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "blur"},
        {"kind": "threshold", "alpha": 0.5},
        {"kind": "threshold", "alpha": 0.5, "q": 1.5},
        {"kind": "raw", "alpha": 0.5},
        {"kind": "threshold", "alpha": math.inf, "q": 0.5},
    ],
)
def test_bad_mask_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InputError):
        MaskConfig(**kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- formulas


def test_mask_formulas_by_hand() -> None:
    a = torch.tensor([[[[2.0, -1.0], [4.0, 3.0]]]])  # 1×1×2×2
    m = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])
    torch.testing.assert_close(
        mask_activations(a, m, MaskConfig("raw")), torch.tensor([[[[0.2, -0.9], [2.0, 0.9]]]])
    )
    torch.testing.assert_close(
        mask_activations(a, m, MaskConfig("inverted")),
        torch.tensor([[[[1.8, -0.1], [2.0, 2.1]]]]),
    )
    # sorted 0.1, 0.3, 0.5, 0.9: the 0.5-quantile is 0.4, so the units with 0.5 and 0.9 scale
    torch.testing.assert_close(
        mask_activations(a, m, MaskConfig("threshold", alpha=1.5, q=0.5)),
        torch.tensor([[[[2.0, -1.5], [6.0, 3.0]]]]),
    )
    # 0.9-quantile = 0.5 + 0.7·0.4 = 0.78: only the 0.9 unit is zeroed
    torch.testing.assert_close(
        mask_activations(a, m, MaskConfig("threshold", alpha=0.0, q=0.9)),
        torch.tensor([[[[2.0, 0.0], [4.0, 3.0]]]]),
    )


@pytest.mark.parametrize("cfg", MASK_CONFIGS[2:], ids=lambda c: c.label)
def test_threshold_scales_units_at_or_above_numpy_quantile(cfg: MaskConfig) -> None:
    g = _gen(0)
    m = torch.rand(4, 5, 6, generator=g)
    m[0, 0] = 0.25  # a block of ties
    w = mask_factor(m, cfg)
    scaled = m.double().numpy() >= np.quantile(m.double().numpy().ravel(), cfg.q)
    expected = np.where(scaled, cfg.alpha, 1.0)
    np.testing.assert_array_equal(w.numpy(), expected.astype(np.float32))
    # the scaled share is the top (1 - q) fraction, up to rounding and the 6 tied units
    assert abs((w.numpy() == cfg.alpha).mean() - (1 - cfg.q)) <= 7 / m.numel()


def test_threshold_on_heavily_tied_map_matches_numpy() -> None:
    m = torch.tensor([0.0, 0.5, 0.5, 0.5, 1.0, 0.0, 0.5, 1.0, 0.5, 0.5]).reshape(2, 5)
    for q in QUANTILES:
        w = mask_factor(m, MaskConfig("threshold", alpha=0.0, q=q))
        qv = np.quantile(m.numpy().astype(np.float64), q)
        np.testing.assert_array_equal(w.numpy() == 0.0, m.numpy() >= qv)


def test_threshold_beyond_torch_quantile_size_limit() -> None:
    n = 2**24 + 7  # torch.quantile refuses inputs this large
    m = torch.arange(n, dtype=torch.float32).reshape(1, 1, n) / n
    w = mask_factor(m, MaskConfig("threshold", alpha=0.0, q=0.9))
    pos = 0.9 * (n - 1)  # not an integer: the units above floor(pos) are scaled
    assert int((w == 0).sum()) == n - math.floor(pos) - 1


def test_clip_and_range_check() -> None:
    m = torch.tensor([[-0.2, 0.4], [1.3, 0.7]])
    with pytest.raises(InputError, match="clip=True"):
        mask_factor(m, MaskConfig("raw"))
    torch.testing.assert_close(mask_factor(m, MaskConfig("raw"), clip=True), m.clamp(0, 1))
    with pytest.raises(InputError, match="NaN"):
        mask_factor(torch.tensor([0.1, math.nan]), MaskConfig("raw"))


def test_mask_shape_mismatch_is_an_error() -> None:
    with pytest.raises(InputError, match="shape"):
        mask_activations(torch.ones(2, 3, 4, 4), torch.rand(3, 4, 5), MaskConfig("raw"))


# --------------------------------------------------------------------------- hooks


@pytest.mark.parametrize("cfg", [MASK_CONFIGS[i] for i in (0, 1, 2, 9, 16)], ids=str)
def test_context_manager_equals_network_split_by_hand(cfg: MaskConfig) -> None:
    net = _net()
    x = torch.rand(3, 3, 8, 8, generator=_gen(1))
    maps = {name: m[0] for name, m in _maps(1).items()}
    with torch.no_grad():
        expected = _manual_forward(
            net, x, _hand_factor(maps["1"], cfg), _hand_factor(maps["3"], cfg)
        )
        with activation_masking(net, maps, cfg):
            got = net(x)
    torch.testing.assert_close(got, expected)


def test_all_checkpoints_are_masked_in_one_pass() -> None:
    net = _net()
    x = torch.rand(2, 3, 8, 8, generator=_gen(2))
    maps = {name: m[0] for name, m in _maps(1).items()}
    cfg = MaskConfig("threshold", alpha=0.0, q=0.5)
    ones = {name: torch.ones(SHAPES[name]) for name in CHECKPOINTS}
    with torch.no_grad():
        with activation_masking(net, maps, cfg):
            both = net(x)
        only_first = _manual_forward(net, x, _hand_factor(maps["1"], cfg), ones["3"])
        only_last = _manual_forward(net, x, ones["1"], _hand_factor(maps["3"], cfg))
        both_by_hand = _manual_forward(
            net, x, _hand_factor(maps["1"], cfg), _hand_factor(maps["3"], cfg)
        )
    torch.testing.assert_close(both, both_by_hand)
    assert not torch.allclose(both, only_first)
    assert not torch.allclose(both, only_last)


def test_hooks_are_removed_after_the_block() -> None:
    net = _net()
    x = torch.rand(2, 3, 8, 8, generator=_gen(4))
    maps = {name: m[0] for name, m in _maps(1).items()}
    with torch.no_grad():
        before = net(x)
        with activation_masking(net, maps, MaskConfig("threshold", alpha=0.0, q=0.5)):
            masked = net(x)
        after = net(x)
        with (
            pytest.raises(RuntimeError, match="boom"),
            activation_masking(net, maps, MaskConfig("inverted")),
        ):
            raise RuntimeError("boom")
        after_error = net(x)
    assert not torch.allclose(masked, before)
    assert torch.equal(after, before)
    assert torch.equal(after_error, before)
    assert all(not m._forward_hooks for m in net.modules())


def test_wrong_map_shape_is_reported_at_the_checkpoint() -> None:
    net = _net()
    with (
        activation_masking(net, {"1": torch.rand(4, 7, 7)}, MaskConfig("raw")),
        pytest.raises(InputError, match="'1'"),
    ):
        net(torch.rand(1, 3, 8, 8))


# --------------------------------------------------------------------------- experiment


def _experiment_inputs() -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    g = _gen(5)
    x = torch.rand(7, 3, 8, 8, generator=g)
    inputs = {"original": x, "flipped": x.flip(-1)}
    labels = torch.randint(0, 6, (7,), generator=g)
    return inputs, labels


def test_masked_predictions_equals_brute_force_loop() -> None:
    net = _net()
    inputs, labels = _experiment_inputs()
    maps = _maps(2)
    configs = (MaskConfig("raw"), MaskConfig("inverted"), MaskConfig("threshold", alpha=0, q=0.7))
    net.train()  # must be evaluated in eval mode and restored
    res = masked_predictions(
        net, inputs, maps, ["erasing", "class"], labels=labels, configs=configs, top_k=3
    )
    assert net.training
    net.eval()
    assert res.topk.shape == (2, 2, 3, 7, 3)
    assert res.input_names == ("original", "flipped")
    assert res.variables == ("erasing", "class")
    assert res.checkpoints == CHECKPOINTS
    with torch.no_grad():
        for i, x in enumerate(inputs.values()):
            plain = net(x).topk(3, dim=1).indices
            assert torch.equal(res.unmasked_topk[i], plain)
            assert res.unmasked_accuracy is not None
            assert res.unmasked_accuracy[i].item() == pytest.approx(
                (plain[:, 0] == labels).float().mean().item()
            )
            for j in range(2):
                for k, cfg in enumerate(configs):
                    w1 = _hand_factor(maps["1"][j], cfg)
                    w3 = _hand_factor(maps["3"][j], cfg)
                    top = _manual_forward(net, x, w1, w3).topk(3, dim=1).indices
                    assert torch.equal(res.topk[i, j, k], top), (i, j, cfg.label)
                    assert res.accuracy is not None
                    assert res.accuracy[i, j, k].item() == pytest.approx(
                        (top[:, 0] == labels).float().mean().item()
                    )
    # the masks and inputs do change the predictions (the comparisons above are not vacuous)
    assert not torch.equal(res.topk[0, 1, 0], res.unmasked_topk[0])
    assert not torch.equal(res.topk[0], res.topk[1])
    assert len(res.unmasked_topk[0, :, 0].unique()) > 1


def test_masked_predictions_batch_size_invariance() -> None:
    net = _net()
    inputs, labels = _experiment_inputs()
    maps = _maps(2)
    configs = MASK_CONFIGS[:4]
    kw = {"labels": labels, "configs": configs, "top_k": 2}
    a = masked_predictions(net, inputs, maps, ["u", "v"], batch_size=2, **kw)  # type: ignore[arg-type]
    b = masked_predictions(net, inputs, maps, ["u", "v"], batch_size=64, **kw)  # type: ignore[arg-type]
    assert torch.equal(a.topk, b.topk)
    assert torch.equal(a.unmasked_topk, b.unmasked_topk)


def test_masked_predictions_counts_forward_passes() -> None:
    net = _net()
    inputs, _ = _experiment_inputs()
    calls: list[int] = []
    net.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape[0]))
    masked_predictions(net, inputs, _maps(2), ["u", "v"], configs=MASK_CONFIGS[:3], batch_size=3)
    # (1 unmasked + 2 variables × 3 configs) × 2 inputs × ceil(7 / 3) batches of <= 3 images
    assert len(calls) == 7 * 2 * 3
    assert max(calls) <= 3


def test_masked_predictions_validation() -> None:
    net = _net()
    inputs, labels = _experiment_inputs()
    maps = _maps(2)
    with pytest.raises(InputError, match="same N"):
        masked_predictions(net, {"a": inputs["original"], "b": inputs["flipped"][:3]}, maps, "uv")
    with pytest.raises(InputError, match="V = 3"):
        masked_predictions(net, inputs, maps, ["u", "v", "w"])
    with pytest.raises(InputError, match="top_k"):
        masked_predictions(net, inputs, maps, ["u", "v"], top_k=7, configs=MASK_CONFIGS[:1])
    with pytest.raises(InputError, match="6 classes"):
        masked_predictions(net, inputs, maps, ["u", "v"], labels=labels + 6)
    with pytest.raises(InputError, match="clip=True"):
        masked_predictions(net, inputs, {"1": maps["1"] * 2}, ["u", "v"])
    calls: list[int] = []
    net.register_forward_pre_hook(lambda _m, _a: calls.append(1))
    with pytest.raises(LayerNotFoundError):
        masked_predictions(net, inputs, {"9": maps["1"]}, ["u", "v"])
    assert not calls  # refused before running the model
    res = masked_predictions(net, inputs, maps, ["u", "v"], configs=MASK_CONFIGS[:3])
    assert res.accuracy is None
    with pytest.raises(InputError, match="labels"):
        masking_spearman_matrix(res)


def test_result_round_trip(tmp_path: object) -> None:
    net = _net()
    inputs, labels = _experiment_inputs()
    res = masked_predictions(
        net, inputs, _maps(2), ["u", "v"], labels=labels, configs=MASK_CONFIGS[:3]
    )
    path = res.save(str(tmp_path) + "/masked")
    back = MaskedPredictionResult.load(path)
    assert torch.equal(back.topk, res.topk)
    assert back.accuracy is not None and res.accuracy is not None
    assert torch.equal(back.accuracy, res.accuracy)
    assert back.mask_configs == MASK_CONFIGS[:3]
    assert back.input_names == res.input_names


# --------------------------------------------------------------------------- statistics


def test_spearman_rows_matches_scipy_with_ties_and_constants() -> None:
    g = _gen(6)
    a = torch.randint(0, 4, (20, 17), generator=g).double()  # many ties
    b = torch.randint(0, 4, (20, 17), generator=g).double()
    a[3] = 2.0  # constant row
    rho = spearman_rows(a, b)
    for r in range(20):
        if r == 3:
            assert math.isnan(rho[r].item())
            continue
        expected = stats.spearmanr(a[r].numpy(), b[r].numpy())[0]
        assert rho[r].item() == pytest.approx(expected, abs=1e-12)


def _result_with_accuracy(acc: torch.Tensor, names: tuple[str, ...]) -> MaskedPredictionResult:
    n_in, n_var, n_cfg = acc.shape
    return MaskedPredictionResult(
        topk=torch.zeros(n_in, n_var, n_cfg, 1, 1, dtype=torch.long),
        accuracy=acc,
        unmasked_topk=torch.zeros(n_in, 1, 1, dtype=torch.long),
        unmasked_accuracy=torch.zeros(n_in),
        labels=torch.zeros(1, dtype=torch.long),
        input_names=names,
        variables=tuple(f"v{j}" for j in range(n_var)),
        configs=tuple(c.label for c in MASK_CONFIGS[:n_cfg]),
        checkpoints=("1",),
    )


def test_spearman_matrix_matches_scipy() -> None:
    acc = torch.rand(4, 3, 17, generator=_gen(7)).round(decimals=1)
    res = _result_with_accuracy(acc, ("grayscale", "original", "blur", "erasing"))
    rho = masking_spearman_matrix(res)
    assert rho.shape == (3, 3)
    for r, i in enumerate((0, 2, 3)):  # the rows skip the reference "original"
        for j in range(3):
            expected = stats.spearmanr(acc[i, j].numpy(), acc[1, j].numpy())[0]
            assert rho[r, j].item() == pytest.approx(expected, abs=1e-12)
    # the same with an explicit reference, and from the bare accuracy tensor
    torch.testing.assert_close(masking_spearman_matrix(res, reference="original"), rho)
    torch.testing.assert_close(masking_spearman_matrix(acc, reference=1), rho)
    with pytest.raises(InputError, match="original"):
        masking_spearman_matrix(res, reference="clean")


def test_pair_distances_and_planted_clusters() -> None:
    g = _gen(8)
    base = [torch.randperm(17, generator=g).double() for _ in range(2)]
    # pairs with mask variable 0 follow ranking 0, with variable 1 ranking 1 (monotone maps)
    acc = torch.empty(3, 2, 17, dtype=torch.float64)
    for i in range(3):
        for j in range(2):
            acc[i, j] = (base[j] + 0.5 * i) ** (1 + i) / 1000
    res = _result_with_accuracy(acc, ("original", "a", "b"))
    dist, labels = masking_pair_distances(res)
    assert labels == ["a--v0", "a--v1", "b--v0", "b--v1"]
    feats = acc[1:].reshape(4, 17).numpy()
    for p in range(4):
        for r in range(4):
            rho = stats.spearmanr(feats[p], feats[r])[0]
            assert dist[p, r].item() == pytest.approx(math.sqrt(max(0.0, 1 - abs(rho))), abs=1e-7)
    z = masking_linkage(dist)
    clusters = masking_clusters(z, 0.025)
    assert clusters[0] == clusters[2] != clusters[1] == clusters[3]
    np.testing.assert_array_equal(clusters, fcluster(z, 0.025, criterion="distance"))
