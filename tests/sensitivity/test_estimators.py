"""Tests of the streaming Sobol' estimators against analytic values, SALib and direct formulas."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.stats import qmc

from convscope.core.errors import InputError
from convscope.sensitivity.estimators import (
    FIRST_ORDER_ESTIMATORS,
    TOTAL_ORDER_ESTIMATORS,
    SobolAccumulator,
    SobolIndices,
    bootstrap_intervals,
    closed_index,
    replicate_intervals,
)

# ---------------------------------------------------------------------------------------------
# Oracles
# ---------------------------------------------------------------------------------------------

A_ISH, B_ISH = 7.0, 0.1


def ishigami(x: np.ndarray) -> np.ndarray:
    """Ishigami on [-pi, pi]^3; ``x`` (..., 3)."""
    x1, x2, x3 = x[..., 0], x[..., 1], x[..., 2]
    return np.sin(x1) + A_ISH * np.sin(x2) ** 2 + B_ISH * x3**4 * np.sin(x1)


def ishigami_truth() -> dict[str, np.ndarray | float]:
    """Analytic Ishigami partial variances (Ishigami & Homma 1990)."""
    pi4, pi8 = math.pi**4, math.pi**8
    v1 = 0.5 * (1 + B_ISH * pi4 / 5) ** 2
    v2 = A_ISH**2 / 8
    v13 = B_ISH**2 * pi8 * (1 / 18 - 1 / 50)
    v = v1 + v2 + v13
    return {
        "S1": np.array([v1, v2, 0.0]) / v,
        "ST": np.array([v1 + v13, v2, v13]) / v,
        "S13": v13 / v,
        "closed13": (v1 + v13) / v,
    }


def g_function(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Sobol' G-function on [0, 1]^d."""
    return np.prod((np.abs(4 * x - 2) + a) / (1 + a), axis=-1)


def g_truth(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vi = 1 / (3 * (1 + a) ** 2)
    v = np.prod(1 + vi) - 1
    st = np.array([vi[i] * np.prod(np.delete(1 + vi, i)) for i in range(len(a))]) / v
    return vi / v, st


def pick_freeze(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AB[j] = A with column j from B, BA[j] = B with column j from A; shapes (k, n, d)."""
    k = a.shape[1]
    ab = np.repeat(a[None], k, 0)
    ba = np.repeat(b[None], k, 0)
    for j in range(k):
        ab[j, :, j] = b[:, j]
        ba[j, :, j] = a[:, j]
    return ab, ba


def sobol_design(n: int, d: int, seed: int, lo: float = 0.0, hi: float = 1.0):
    base = qmc.Sobol(d=2 * d, scramble=True, seed=seed).random(n)
    base = lo + (hi - lo) * base
    return base[:, :d], base[:, d:]


def ref_indices(fa, fb, fab, fba, first, total, center):
    """The centred estimators computed directly on stored outputs (numpy, per formula)."""
    if center == "all":
        parts = [fa, fb, *fab] + ([] if fba is None else [*fba])
        mu = np.mean(np.stack(parts), axis=(0, 1))
    elif center == "ab":
        mu = np.mean(np.concatenate([fa, fb]), axis=0)
    else:
        mu = 0.0
    a, b, c = fa - mu, fb - mu, fab - mu
    v = np.var(np.concatenate([a, b]), axis=0)

    def corr(x, y):  # along the row axis (1) of (k, n, *out)
        x = x - x.mean(1, keepdims=True)
        y = y - y.mean(1, keepdims=True)
        return (x * y).mean(1) / np.sqrt((x * x).mean(1) * (y * y).mean(1))

    if first == "saltelli2010":
        s1 = np.mean(b * (c - a), axis=1) / v
    elif first == "janon":
        m = np.mean((b + c) / 2, axis=1)
        s1 = (np.mean(b * c, axis=1) - m**2) / (np.mean((b**2 + c**2) / 2, axis=1) - m**2)
    else:
        s1 = corr(np.broadcast_to(b, c.shape), c)
    if total == "jansen":
        st = 0.5 * np.mean((a - c) ** 2, axis=1) / v
    elif total == "homma":
        f0 = np.mean(np.concatenate([a, b]), axis=0)
        st = 1 - (np.mean(a * c, axis=1) - f0**2) / v
    else:
        st = 1 - corr(np.broadcast_to(a, c.shape), c)
    s2 = None
    if fba is not None:
        dd = fba - mu
        k = fab.shape[0]
        s2 = np.zeros((k, k, *fa.shape[1:]))
        for j, m2 in itertools.combinations(range(k), 2):
            val = np.mean(dd[j] * c[m2] - a * b, axis=0) / v - s1[j] - s1[m2]
            s2[j, m2] = s2[m2, j] = val
    return s1, st, s2


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


# ---------------------------------------------------------------------------------------------
# Parity with SALib
# ---------------------------------------------------------------------------------------------


def test_salib_parity_ishigami() -> None:
    salib_sample = pytest.importorskip("SALib.sample.sobol")
    salib_analyze = pytest.importorskip("SALib.analyze.sobol")
    d = 3
    problem = {"num_vars": d, "names": ["x1", "x2", "x3"], "bounds": [[-math.pi, math.pi]] * d}
    x = salib_sample.sample(problem, 256, calc_second_order=True, seed=3)
    y = ishigami(x)
    si = salib_analyze.analyze(problem, y, calc_second_order=True, num_resamples=10, seed=1)
    step = 2 * d + 2
    fa, fb = y[0::step], y[step - 1 :: step]
    fab = np.stack([y[j + 1 :: step] for j in range(d)])
    fba = np.stack([y[j + 1 + d :: step] for j in range(d)])
    acc = SobolAccumulator(d, (), second_order=True)
    acc.update(t(fa[:100]), t(fb[:100]), t(fab[:, :100]), t(fba[:, :100]))
    acc.update(t(fa[100:]), t(fb[100:]), t(fab[:, 100:]), t(fba[:, 100:]))
    res = acc.indices()
    np.testing.assert_allclose(res.first_order.numpy(), si["S1"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(res.total_order.numpy(), si["ST"], rtol=0, atol=1e-10)
    assert res.second_order is not None
    iu = np.triu_indices(d, 1)
    np.testing.assert_allclose(res.second_order.numpy()[iu], si["S2"][iu], rtol=0, atol=1e-10)
    assert res.n == 256 and res.n_evaluations == 256 * (2 * d + 2) == y.size


# ---------------------------------------------------------------------------------------------
# Analytic oracles
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first", FIRST_ORDER_ESTIMATORS)
@pytest.mark.parametrize("total", TOTAL_ORDER_ESTIMATORS)
def test_ishigami_analytic(first: str, total: str) -> None:
    n = 2**14
    a, b = sobol_design(n, 3, seed=11, lo=-math.pi, hi=math.pi)
    ab, ba = pick_freeze(a, b)
    acc = SobolAccumulator(3, second_order=True)
    for sl in (slice(0, 5000), slice(5000, n)):
        acc.update(t(ishigami(a[sl])), t(ishigami(b[sl])), t(ishigami(ab[:, sl])),
                   t(ishigami(ba[:, sl])))  # fmt: skip
    res = acc.indices(first, total)  # type: ignore[arg-type]
    truth = ishigami_truth()
    np.testing.assert_allclose(res.first_order.numpy(), truth["S1"], atol=0.02)
    np.testing.assert_allclose(res.total_order.numpy(), truth["ST"], atol=0.02)
    assert res.second_order is not None
    assert abs(float(res.second_order[0, 2]) - truth["S13"]) < 0.03
    assert abs(float(res.second_order[0, 1])) < 0.03 and abs(float(res.second_order[1, 2])) < 0.03


@pytest.mark.parametrize("first,total", [("saltelli2010", "jansen"), ("janon", "martinez")])
def test_g_function_analytic(first: str, total: str) -> None:
    coef = np.array([0.0, 1.0, 4.5, 9.0, 99.0])
    n = 2**13
    a, b = sobol_design(n, 5, seed=5)
    ab, _ = pick_freeze(a, b)
    acc = SobolAccumulator(5)
    acc.update(t(g_function(a, coef)), t(g_function(b, coef)), t(g_function(ab, coef)))
    res = acc.indices(first, total)  # type: ignore[arg-type]
    s1, st = g_truth(coef)
    np.testing.assert_allclose(res.first_order.numpy(), s1, atol=0.03)
    np.testing.assert_allclose(res.total_order.numpy(), st, atol=0.03)


def test_closed_index_of_subset() -> None:
    n = 2**14
    a, b = sobol_design(n, 3, seed=2, lo=-math.pi, hi=math.pi)
    u = a.copy()
    u[:, [0, 2]] = b[:, [0, 2]]  # subset {x1, x3} taken from B
    val = closed_index(t(ishigami(a)), t(ishigami(b)), t(ishigami(u)))
    assert abs(float(val) - ishigami_truth()["closed13"]) < 0.02
    # Complement rule: total index of x2 = 1 - closed index of {x1, x3}.
    assert abs(1 - float(val) - ishigami_truth()["ST"][1]) < 0.02


# ---------------------------------------------------------------------------------------------
# Streaming: blocks, merge, save/load equal the estimators on all stored outputs
# ---------------------------------------------------------------------------------------------


def _random_outputs(n: int, k: int, out: tuple[int, ...], seed: int, offset: float = 1000.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, k))
    y = rng.uniform(size=(n, k))
    ab, ba = pick_freeze(x, y)
    w = rng.normal(size=(k, *out))

    def f(z: np.ndarray) -> np.ndarray:
        # a non-additive function with a large mean (tests the conditioning of the sums)
        lin = np.tensordot(np.sin(3 * z), w, axes=([-1], [0]))
        return offset + lin + np.prod(z, axis=-1).reshape(*z.shape[:-1], *[1] * len(out))

    return f(x), f(y), f(ab), f(ba)


@pytest.mark.parametrize("center", ["all", "ab", "none"])
def test_streaming_equals_direct_formulas(center: str) -> None:
    fa, fb, fab, fba = _random_outputs(300, 3, (2, 4), seed=0)
    if center == "none":  # the uncentred estimators need moderate means to be compared
        fa, fb, fab, fba = fa - 1000, fb - 1000, fab - 1000, fba - 1000
    acc = SobolAccumulator(3, (2, 4), second_order=True)
    for lo, hi in ((0, 7), (7, 130), (130, 300)):
        acc.update(t(fa[lo:hi]), t(fb[lo:hi]), t(fab[:, lo:hi]), t(fba[:, lo:hi]))
    for first, total in itertools.product(FIRST_ORDER_ESTIMATORS, TOTAL_ORDER_ESTIMATORS):
        res = acc.indices(first, total, center=center)  # type: ignore[arg-type]
        s1, st, s2 = ref_indices(fa, fb, fab, fba, first, total, center)
        np.testing.assert_allclose(res.first_order.numpy(), s1, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(res.total_order.numpy(), st, rtol=1e-8, atol=1e-9)
        assert res.second_order is not None
        np.testing.assert_allclose(res.second_order.numpy(), s2, rtol=1e-8, atol=1e-9)
    assert res.variance.shape == (2, 4)
    np.testing.assert_allclose(res.variance.numpy(), np.var(np.concatenate([fa, fb]), axis=0))


def test_negative_estimates_are_kept_and_clipped_only_for_display() -> None:
    rng = np.random.default_rng(1)
    fa, fb = rng.normal(size=(64, 50)), rng.normal(size=(64, 50))
    fab = rng.normal(size=(2, 64, 50))  # unrelated outputs: all true indices are 0 / 1
    res = SobolAccumulator(2, (50,)).update(t(fa), t(fb), t(fab)).indices()
    s1, _, _ = ref_indices(fa, fb, fab, None, "saltelli2010", "jansen", "all")
    np.testing.assert_allclose(res.first_order.numpy(), s1, rtol=1e-9, atol=1e-12)
    assert (res.first_order < 0).any()
    shown = res.clipped()
    assert float(shown.first_order.min()) >= 0.0 and float(shown.total_order.max()) <= 1.0


def test_vector_outputs_equal_scalar_runs() -> None:
    n = 512
    a, b = sobol_design(n, 3, seed=7, lo=-math.pi, hi=math.pi)
    ab, ba = pick_freeze(a, b)
    funcs = [ishigami, lambda x: x[..., 0] * x[..., 1] + x[..., 2], lambda x: np.cos(x).sum(-1)]

    def outs(f):
        return f(a), f(b), f(ab), f(ba)

    stacked = [np.stack(o, axis=-1) for o in zip(*(outs(f) for f in funcs), strict=True)]
    vec = SobolAccumulator(3, (3,), second_order=True).update(*map(t, stacked)).indices("janon")
    for i, f in enumerate(funcs):
        one = SobolAccumulator(3, second_order=True).update(*map(t, outs(f))).indices("janon")
        torch.testing.assert_close(vec.first_order[:, i], one.first_order, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(vec.total_order[:, i], one.total_order, rtol=1e-10, atol=1e-12)
        assert vec.second_order is not None and one.second_order is not None
        torch.testing.assert_close(
            vec.second_order[..., i], one.second_order, rtol=1e-10, atol=1e-12
        )


def test_merge_of_halves_equals_whole() -> None:
    fa, fb, fab, fba = _random_outputs(200, 4, (5,), seed=3)
    whole = SobolAccumulator(4, (5,), second_order=True).update(*map(t, (fa, fb, fab, fba)))
    # different first blocks give the two halves different provisional shifts
    h1 = SobolAccumulator(4, (5,), second_order=True).update(
        t(fa[:60]), t(fb[:60]), t(fab[:, :60]), t(fba[:, :60])
    )
    h2 = SobolAccumulator(4, (5,), second_order=True).update(
        t(fa[60:]), t(fb[60:]), t(fab[:, 60:]), t(fba[:, 60:])
    )
    assert not torch.equal(h1.shift, h2.shift)  # type: ignore[arg-type]
    merged = SobolAccumulator(4, (5,), second_order=True).merge(h1).merge(h2)
    assert merged.n == whole.n == 200
    for first, total in (("saltelli2010", "homma"), ("martinez", "jansen")):
        r1 = merged.indices(first, total)  # type: ignore[arg-type]
        r2 = whole.indices(first, total)  # type: ignore[arg-type]
        torch.testing.assert_close(r1.first_order, r2.first_order, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(r1.total_order, r2.total_order, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(r1.second_order, r2.second_order, rtol=1e-9, atol=1e-10)


def test_save_load_round_trip_and_resume(tmp_path) -> None:
    fa, fb, fab, fba = _random_outputs(120, 2, (3,), seed=4)
    acc = SobolAccumulator(2, (3,), second_order=True).update(
        t(fa[:50]), t(fb[:50]), t(fab[:, :50]), t(fba[:, :50])
    )
    path = acc.save(tmp_path / "acc")
    assert path.suffix == ".npz" and (tmp_path / "acc.json").is_file()
    back = SobolAccumulator.load(tmp_path / "acc")
    assert back.n == 50 and back.k == 2 and back.output_shape == (3,) and back.second_order
    torch.testing.assert_close(back.indices().first_order, acc.indices().first_order)
    back.update(t(fa[50:]), t(fb[50:]), t(fab[:, 50:]), t(fba[:, 50:]))
    whole = SobolAccumulator(2, (3,), second_order=True).update(*map(t, (fa, fb, fab, fba)))
    torch.testing.assert_close(back.indices().total_order, whole.indices().total_order)
    # state_dict round trip into a fresh accumulator
    fresh = SobolAccumulator(2, (3,), second_order=True).load_state_dict(whole.state_dict())
    torch.testing.assert_close(fresh.indices().second_order, whole.indices().second_order)
    with pytest.raises(InputError, match="output_shape"):
        SobolAccumulator(2, (4,), second_order=True).load_state_dict(whole.state_dict())
    # the SobolIndices result itself round-trips through Result.save/load
    res = whole.indices("janon", "homma")
    res.save(tmp_path / "res")
    again = SobolIndices.load(tmp_path / "res")
    torch.testing.assert_close(again.first_order, res.first_order)
    assert again.first_order_estimator == "janon" and again.second_order is not None


def test_memory_does_not_grow_with_rows() -> None:
    k, out = 3, (4, 5)
    acc = SobolAccumulator(k, out, second_order=True)
    sizes = []
    for seed in range(3):
        fa, fb, fab, fba = _random_outputs(40, k, out, seed=seed)
        acc.update(*map(t, (fa, fb, fab, fba)))
        sizes.append(sum(v.numel() for v in acc.sums.values()))
    p = 20
    assert sizes == [sizes[0]] * 3
    assert sizes[0] == 5 * p + 4 * k * p + k * p + k * k * p


@pytest.mark.parametrize("first", FIRST_ORDER_ESTIMATORS)
@pytest.mark.parametrize("total", TOTAL_ORDER_ESTIMATORS)
def test_zero_variance_output_gives_zero_and_flag(first: str, total: str) -> None:
    fa, fb, fab, fba = _random_outputs(50, 2, (3,), seed=5, offset=0.0)
    for arr in (fa, fb):
        arr[:, 1] = 0.0  # a dead unit
    fab[..., 1] = 0.0
    fba[..., 1] = 0.0
    fa[:, 2] = fb[:, 2] = 3.7  # constant on A and B
    fab[..., 2] = fba[..., 2] = 3.7
    res = SobolAccumulator(2, (3,), second_order=True).update(*map(t, (fa, fb, fab, fba)))
    r = res.indices(first, total)  # type: ignore[arg-type]
    assert r.zero_variance.tolist() == [False, True, True]
    for x in (r.first_order, r.total_order, r.second_order):
        assert x is not None and torch.isfinite(x).all()
        assert (x[..., 1:] == 0).all()
    assert (r.variance[1:] == 0).all() and r.variance[0] > 0


# ---------------------------------------------------------------------------------------------
# Confidence intervals
# ---------------------------------------------------------------------------------------------


def test_replicate_intervals_match_student_t() -> None:
    reps = []
    for seed in range(5):
        a, b = sobol_design(256, 3, seed=100 + seed, lo=-math.pi, hi=math.pi)
        ab, ba = pick_freeze(a, b)
        acc = SobolAccumulator(3, second_order=True)
        acc.update(*map(t, (ishigami(a), ishigami(b), ishigami(ab), ishigami(ba))))
        reps.append(acc.indices())
    ci = replicate_intervals(reps, level=0.9)
    vals = np.stack([r.total_order.numpy() for r in reps])
    lo, hi = stats.t.interval(0.9, 4, loc=vals.mean(0), scale=stats.sem(vals, axis=0))
    np.testing.assert_allclose(ci.total_order_low.numpy(), lo, rtol=1e-10)
    np.testing.assert_allclose(ci.total_order_high.numpy(), hi, rtol=1e-10)
    np.testing.assert_allclose(ci.total_order.numpy(), vals.mean(0), rtol=1e-12)
    assert ci.second_order_low is not None and ci.method == "replicates" and ci.n_resamples == 5
    with pytest.raises(InputError, match="at least two"):
        replicate_intervals(reps[:1])


def _mc_ishigami(n: int, seed: int):
    rng = np.random.default_rng(seed)
    a = rng.uniform(-math.pi, math.pi, size=(n, 3))
    b = rng.uniform(-math.pi, math.pi, size=(n, 3))
    ab, ba = pick_freeze(a, b)
    return ishigami(a), ishigami(b), ishigami(ab), ishigami(ba)


@pytest.mark.parametrize("method", ["bca", "percentile", "normal"])
def test_bootstrap_matches_scipy(method: str) -> None:
    fa, fb, fab, fba = _mc_ishigami(400, seed=0)
    ours = bootstrap_intervals(t(fa), t(fb), t(fab), t(fba), n_boot=3000, method=method,
                               seed=0)  # fmt: skip
    s1, st, s2 = ref_indices(fa, fb, fab, fba, "saltelli2010", "jansen", "all")
    np.testing.assert_allclose(ours.first_order.numpy(), s1, rtol=1e-9)
    np.testing.assert_allclose(ours.total_order.numpy(), st, rtol=1e-9)
    assert ours.second_order is not None
    np.testing.assert_allclose(ours.second_order.numpy(), s2, rtol=1e-9, atol=1e-12)
    scipy_method = {"bca": "BCa", "percentile": "percentile", "normal": "basic"}[method]
    for j in range(3):

        def s1_stat(a, b, c, d0, d1, d2, c0, c1, c2, axis=-1, j=j):
            fab_ = np.stack([c0, c1, c2])
            fba_ = np.stack([d0, d1, d2])
            s, _, _ = ref_indices(
                np.moveaxis(a, axis, 0), np.moveaxis(b, axis, 0),
                np.moveaxis(fab_, axis, 1), np.moveaxis(fba_, axis, 1),
                "saltelli2010", "jansen", "all",
            )  # fmt: skip
            return s[j]

        data = (fa, fb, fab[0], fba[0], fba[1], fba[2], fab[0], fab[1], fab[2])
        ref = stats.bootstrap(
            data, s1_stat, paired=True, vectorized=True, n_resamples=3000,
            method=scipy_method, rng=np.random.default_rng(1),
        )  # fmt: skip
        width = ref.confidence_interval.high - ref.confidence_interval.low
        low, high = float(ours.first_order_low[j]), float(ours.first_order_high[j])
        if method == "normal":
            z = stats.norm.ppf(0.975)
            assert abs((high - low) / 2 - z * ref.standard_error) < 0.1 * z * ref.standard_error
        else:
            assert abs(low - ref.confidence_interval.low) < 0.12 * width
            assert abs(high - ref.confidence_interval.high) < 0.12 * width


def test_bca_corrects_percentile_like_scipy_on_a_small_sample() -> None:
    # n = 80 rows: the total indices' bootstrap distributions are skewed and biased, so BCa
    # moves away from the percentile interval; it must move the way scipy's BCa does.
    fa, fb, fab, _ = _mc_ishigami(80, seed=0)
    kw = {"n_boot": 20000, "seed": 0}
    bca = bootstrap_intervals(t(fa), t(fb), t(fab), method="bca", **kw)  # type: ignore[arg-type]
    pct = bootstrap_intervals(t(fa), t(fb), t(fab), method="percentile", **kw)  # type: ignore[arg-type]
    err_bca = err_pct = 0.0
    for j in range(3):

        def st_stat(a, b, c0, c1, c2, axis=-1, j=j):
            c = np.stack([c0, c1, c2])
            _, st, _ = ref_indices(
                np.moveaxis(a, axis, 0), np.moveaxis(b, axis, 0), np.moveaxis(c, axis, 1),
                None, "saltelli2010", "jansen", "all",
            )  # fmt: skip
            return st[j]

        ref = stats.bootstrap(
            (fa, fb, *fab), st_stat, paired=True, vectorized=True, n_resamples=20000,
            method="BCa", rng=np.random.default_rng(1),
        ).confidence_interval  # fmt: skip
        width = ref.high - ref.low
        for ours, other, theirs in (
            (bca.total_order_low[j], pct.total_order_low[j], ref.low),
            (bca.total_order_high[j], pct.total_order_high[j], ref.high),
        ):
            assert abs(float(ours) - theirs) < 0.025 * width
            err_bca += abs(float(ours) - theirs)
            err_pct += abs(float(other) - theirs)
    assert err_bca < 0.5 * err_pct


def test_bootstrap_vector_outputs_and_zero_variance() -> None:
    fa, fb, fab, _ = _mc_ishigami(200, seed=1)
    const = np.full_like(fa, 2.0)
    res = bootstrap_intervals(
        t(np.stack([fa, const], -1)), t(np.stack([fb, const], -1)),
        t(np.stack([fab, np.full_like(fab, 2.0)], -1)), n_boot=200, seed=0,
    )  # fmt: skip
    assert res.first_order.shape == (3, 2) and res.second_order is None
    for x in (res.first_order_low, res.first_order_high, res.total_order_low):
        assert torch.isfinite(x).all() and (x[:, 1] == 0).all()
    assert (res.first_order_low[:, 0] <= res.first_order[:, 0]).all()
    assert (res.first_order[:, 0] <= res.first_order_high[:, 0]).all()
    # reproducible with a seed
    again = bootstrap_intervals(
        t(np.stack([fa, const], -1)), t(np.stack([fb, const], -1)),
        t(np.stack([fab, np.full_like(fab, 2.0)], -1)), n_boot=200, seed=0,
    )  # fmt: skip
    torch.testing.assert_close(again.total_order_high, res.total_order_high)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def test_bad_input_errors() -> None:
    acc = SobolAccumulator(2, (3,))
    good_a = torch.zeros(4, 3)
    with pytest.raises(InputError, match="f_ab"):
        acc.update(good_a, good_a, torch.zeros(4, 3))
    with pytest.raises(InputError, match="k=2"):
        acc.update(good_a, good_a, torch.zeros(3, 4, 3))
    with pytest.raises(InputError, match="output shape"):
        acc.update(torch.zeros(4, 2), torch.zeros(4, 2), torch.zeros(2, 4, 2))
    with pytest.raises(InputError, match="f_ba"):
        SobolAccumulator(2, (3,), second_order=True).update(good_a, good_a, torch.zeros(2, 4, 3))
    with pytest.raises(InputError, match="No rows"):
        acc.indices()
    acc.update(good_a + torch.rand(4, 3), good_a, torch.rand(2, 4, 3))
    with pytest.raises(InputError, match="first_order="):
        acc.indices("sobol")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="merge"):
        acc.merge(SobolAccumulator(3, (3,)))
    with pytest.raises(InputError, match="k must"):
        SobolAccumulator(0)
    with pytest.raises(InputError, match="method="):
        bootstrap_intervals(good_a, good_a, torch.zeros(2, 4, 3), method="student")  # type: ignore[arg-type]
    nan = SobolAccumulator(1).update(torch.tensor([1.0, float("nan")]), torch.rand(2),
                                     torch.rand(1, 2))  # fmt: skip
    with pytest.raises(InputError, match="NaN"):
        nan.indices()


@pytest.mark.parametrize("second_order", [False, True])
def test_row_loop_update_equals_vectorised_update(
    monkeypatch: pytest.MonkeyPatch, second_order: bool
) -> None:
    # many outputs take the in-place row loop; it must give the vectorised sums
    from convscope.sensitivity import estimators

    g = torch.Generator().manual_seed(0)
    k, n, p = 3, 7, estimators._ROW_LOOP_OUTPUTS + 5
    f_a, f_b = torch.randn(n, p, generator=g) + 3, torch.randn(n, p, generator=g) + 3
    f_ab, f_ba = torch.randn(k, n, p, generator=g) + 3, torch.randn(k, n, p, generator=g) + 3
    loop = SobolAccumulator(k, p, second_order=second_order)
    loop.update(f_a, f_b, f_ab, f_ba if second_order else None)
    loop.update(f_a[:3] * 2, f_b[:3], f_ab[:, :3], f_ba[:, :3] if second_order else None)
    monkeypatch.setattr(estimators, "_ROW_LOOP_OUTPUTS", 10**9)
    vec = SobolAccumulator(k, p, second_order=second_order)
    vec.update(f_a, f_b, f_ab, f_ba if second_order else None)
    vec.update(f_a[:3] * 2, f_b[:3], f_ab[:, :3], f_ba[:, :3] if second_order else None)
    for key in vec.sums:
        torch.testing.assert_close(loop.sums[key], vec.sums[key], rtol=1e-12, atol=1e-9)
    a, b = loop.indices(), vec.indices()
    torch.testing.assert_close(a.total_order, b.total_order, rtol=0, atol=1e-12)
