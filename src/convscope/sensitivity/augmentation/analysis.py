r"""Analyses of sensitivity maps: CoV, unit-wise correlations, LDA and clustering.

A *sensitivity map* of one checkpoint holds one value per scalar activation and per SA
variable: an array ``(V, C, H, W)`` for a convolutional checkpoint or ``(V, C)`` for a
fully-connected one (V variables, C units). Kharyuk, Matveev & Oseledets compare the
variables through these maps in four ways, all reimplemented here.

**Coefficient of variation.** Activations with zero mean contribute nothing at inference,
so the spread of an activation is read relative to its mean,
:math:`\mathrm{CoV} = \sqrt{\max(\sigma^2, 0)} / (|\mu| + \varepsilon)`, shown as
:math:`\log_{10}(1 + |\mathrm{CoV}|)` (:func:`coefficient_of_variation`).

**Unit-wise correlation** (:func:`unitwise_correlation`). At each spatial position
:math:`p` the observations are the C units; the Spearman correlation between variables
:math:`a, b` is the Pearson correlation of their ranks across units,

.. math::

    \rho_{ab}(p) = \operatorname{corr}_c\big(\operatorname{rank}_c M_a[c, p],\;
    \operatorname{rank}_c M_b[c, p]\big).

Positions are pooled by Fisher's :math:`z`: :math:`\bar\rho_{ab} = \tanh\big(\frac1P
\sum_p \operatorname{artanh}\rho_{ab}(p)\big)`; the interval is the percentile bootstrap of
that mean over resampled positions. A fully-connected checkpoint has one position.

**Spatial correlation maps** (:func:`spatial_correlation_map`): the same per-position
Spearman correlation across units, between a variable's sensitivity and the CoV, gives an
``H×W`` map read as an on/off (excitation/inhibition-like) receptive-field pattern.

**LDA** (:func:`lda_confusion`): observations are the (unit, variable) pairs of one
convolutional checkpoint, features the unit's flattened ``H·W`` map, labels the variable;
repeated K-fold cross-validation of a linear discriminant gives row-normalised validation
confusion matrices, averaged over folds. High diagonal = the variables leave distinct
spatial footprints.

**Hierarchical clustering** (:func:`hierarchical_clustering`): correlations become distances
:math:`d(\rho) = \sqrt{1 - |\rho|}` and are merged by average linkage.

Reference: K. Kharyuk, S. Matveev, I. Oseledets, "Exploring specialization and sensitivity
of convolutional neural networks in the context of simultaneous image augmentations"
(2025), Sections 2.4-2.6, Appendices B and C.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import torch
from scipy import stats
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform

from convscope.core.errors import InputError
from convscope.core.results import Result

__all__ = [
    "ClusteringResult",
    "CorrelationResult",
    "LDAResult",
    "coefficient_of_variation",
    "correlation_distance",
    "hierarchical_clustering",
    "lda_confusion",
    "spatial_correlation_map",
    "spearman_across_units",
    "unitwise_correlation",
]

ArrayLike: TypeAlias = torch.Tensor | np.ndarray[Any, Any]
NanPolicy: TypeAlias = Literal["zero", "omit"]


# --------------------------------------------------------------------------- helpers


def _numpy(x: Any, what: str) -> np.ndarray[Any, Any]:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        arr = x.numpy()
    elif isinstance(x, np.ndarray):
        arr = x
    else:
        raise InputError(f"{what} must be a torch tensor or a numpy array, got {type(x).__name__}.")
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InputError(f"{what} must hold real numbers, got dtype {arr.dtype}.")
    return arr.astype(np.float64, copy=False)


def _maps_vcp(maps: Any, what: str = "maps") -> tuple[np.ndarray[Any, Any], tuple[int, ...]]:
    """``(V, C, H, W)`` or ``(V, C)`` to ``(V, C, P)`` and the spatial shape."""
    arr = _numpy(maps, what)
    if arr.ndim not in (2, 4):
        raise InputError(
            f"{what} must be (V, C, H, W) for a convolutional checkpoint or (V, C) for a "
            f"fully-connected one, got shape {tuple(arr.shape)}."
        )
    v, c = arr.shape[:2]
    if v < 1 or c < 2:
        raise InputError(
            f"{what} has shape {tuple(arr.shape)}: a correlation across units needs at least "
            "one variable and two units (axis 1)."
        )
    spatial = tuple(arr.shape[2:])
    return arr.reshape(v, c, -1), spatial


def _check_names(names: Sequence[str] | None, v: int) -> tuple[str, ...]:
    if names is None:
        return tuple(f"x{j + 1}" for j in range(v))
    if isinstance(names, str):
        raise InputError("names must be a sequence of strings, one per variable, not a str.")
    if len(names) != v:
        raise InputError(f"Got {len(names)} names for {v} variables; pass one per variable.")
    return tuple(str(n) for n in names)


def _check_level(level: float) -> None:
    if not isinstance(level, (int, float)) or isinstance(level, bool) or not 0 < level < 1:
        raise InputError(f"level must be in (0, 1), e.g. 0.95, got {level!r}.")


def _check_int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{what} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def _ranks(x: np.ndarray[Any, Any], axis: int) -> np.ndarray[Any, Any]:
    # Average ranks for ties (as Spearman's rho); a slice with a NaN becomes all NaN.
    return np.asarray(stats.rankdata(x, method="average", axis=axis, nan_policy="propagate"))


def _pearson_across(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Pearson correlation over axis 1 of ``(A, C, P)`` and ``(B, C, P)`` → ``(P, A, B)``.

    A constant (zero-variance) slice gives NaN.
    """
    ac = a - a.mean(axis=1, keepdims=True)
    bc = b - b.mean(axis=1, keepdims=True)
    cov = np.einsum("acp,bcp->pab", ac, bc)
    na = np.sqrt(np.einsum("acp,acp->pa", ac, ac))
    nb = np.sqrt(np.einsum("bcp,bcp->pb", bc, bc))
    denom = na[:, :, None] * nb[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


# --------------------------------------------------------------------------- CoV


def coefficient_of_variation(
    variance: ArrayLike, mean: ArrayLike, eps: float = 1e-5, log: bool = True
) -> torch.Tensor:
    r"""Coefficient of variation of every activation, log-scaled by default.

    .. math::

        \mathrm{CoV} = \frac{\sqrt{\max(\sigma^2, 0)}}{|\mu| + \varepsilon}, \qquad
        \text{returned: } \log_{10}(1 + |\mathrm{CoV}|) \text{ (or CoV if ``log=False``)}.

    Parameters
    ----------
    variance, mean
        Arrays of the same shape: total variance and mean of each activation (estimated
        variances may be slightly negative; they are clipped at 0).
    eps
        Keeps zero-mean activations (dead ReLUs) finite, as in the authors' code.
    log
        Return :math:`\log_{10}(1 + |\mathrm{CoV}|)` (the paper's Fig. 3 d-f) or CoV itself.

    Returns
    -------
    torch.Tensor
        Same shape as the inputs, float64 (float32 inputs give float32).

    References
    ----------
    Kharyuk, Matveev & Oseledets (2025), Section 2.3 and Fig. 3.
    """
    var_t = torch.as_tensor(variance)
    mean_t = torch.as_tensor(mean)
    if var_t.shape != mean_t.shape:
        raise InputError(
            f"variance {tuple(var_t.shape)} and mean {tuple(mean_t.shape)} must have the same "
            "shape (one value per activation)."
        )
    if not (var_t.is_floating_point() and mean_t.is_floating_point()):
        var_t, mean_t = var_t.double(), mean_t.double()
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0:
        raise InputError(f"eps must be a non-negative number, got {eps!r}.")
    cov = var_t.clamp_min(0).sqrt() / (mean_t.abs() + eps)
    return torch.log10(1 + cov.abs()) if log else cov


# --------------------------------------------------------------------------- correlation


def spearman_across_units(maps: ArrayLike) -> torch.Tensor:
    """Spearman correlation between variables across units, at every position.

    Parameters
    ----------
    maps
        ``(V, C, H, W)`` or ``(V, C)`` sensitivity maps.

    Returns
    -------
    torch.Tensor
        ``(P, V, V)`` float64 with ``P = H·W`` (1 for a fully-connected map); NaN where a
        variable is constant across units at that position (or its values hold NaN).
    """
    arr, _ = _maps_vcp(maps)
    ranks = _ranks(arr, axis=1)
    return torch.from_numpy(_pearson_across(ranks, ranks))


@dataclass
class CorrelationResult(Result):
    r"""Unit-wise Spearman correlation between SA variables, pooled over positions.

    Attributes
    ----------
    correlation
        ``(V, V)`` :math:`\tanh` of the mean Fisher :math:`z` over positions.
    interval
        ``(2, V, V)`` lower/upper percentile-bootstrap bounds (positions resampled), or None
        when there is one position (fully-connected checkpoint: nothing to resample).
    nan_fraction
        ``(V, V)`` fraction of positions where the correlation was undefined (a variable
        constant across units there); with ``nan_policy="zero"`` they count as :math:`z = 0`.
    names
        Variable names.
    n_positions
        Number of spatial positions pooled (1 for FC).
    settings
        ``n_boot``, ``level``, ``seed``, ``nan_policy``, ``clip``.
    """

    correlation: torch.Tensor
    interval: torch.Tensor | None
    nan_fraction: torch.Tensor
    names: tuple[str, ...]
    n_positions: int
    settings: dict[str, Any] = field(default_factory=dict)


def _fisher_z(r: np.ndarray[Any, Any], clip: float) -> np.ndarray[Any, Any]:
    return np.arctanh(np.clip(r, -1.0 + clip, 1.0 - clip))


def _pool_z(
    z: np.ndarray[Any, Any], valid: np.ndarray[Any, Any], weights: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Weighted mean of ``z`` (P, K) over valid positions: ``weights`` (B, P) → (B, K)."""
    num = weights @ np.where(valid, z, 0.0)
    den = weights @ valid.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def unitwise_correlation(
    maps: ArrayLike,
    *,
    names: Sequence[str] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    nan_policy: NanPolicy = "zero",
    clip: float = 1e-6,
) -> CorrelationResult:
    r"""Spearman correlation between SA variables across units, Fisher-z averaged over positions.

    At each position :math:`p` (one for a fully-connected checkpoint), the Spearman
    correlation :math:`\rho_{ab}(p)` across the C units between the maps of variables
    :math:`a` and :math:`b`; then

    .. math::

        \bar\rho_{ab} = \tanh\Big(\frac1P\sum_p \operatorname{artanh}\rho_{ab}(p)\Big),

    with :math:`|\rho|` clipped to :math:`1 - \text{clip}` so that :math:`z` stays finite
    (identical maps give :math:`1 - \text{clip}`). The interval is the percentile bootstrap of
    the pooled value over ``n_boot`` resamples of the positions.

    Parameters
    ----------
    maps
        ``(V, C, H, W)`` or ``(V, C)`` sensitivity maps of one checkpoint; concatenate the
        variables of several augmentation sets along axis 0 to analyse them jointly.
    names
        Variable names (default ``x1..xV``).
    n_boot, level, seed
        Bootstrap resamples, interval level and seed (``n_boot=0`` skips the interval).
    nan_policy
        Undefined correlations (a variable constant across units at a position): ``"zero"``
        counts them as :math:`z = 0` (the authors' code), ``"omit"`` averages over the
        defined positions only (NaN if none).
    clip
        Distance kept from :math:`\pm 1` before :math:`\operatorname{artanh}`.

    Returns
    -------
    CorrelationResult

    References
    ----------
    Kharyuk, Matveev & Oseledets (2025), Section 2.5 and Figures S7.2; R. A. Fisher (1915),
    Biometrika 10, for the :math:`z` transform.
    """
    if nan_policy not in ("zero", "omit"):
        raise InputError(f"nan_policy must be 'zero' or 'omit', got {nan_policy!r}.")
    _check_level(level)
    n_boot = _check_int(n_boot, "n_boot", 0)
    if not isinstance(clip, (int, float)) or isinstance(clip, bool) or not 0 < clip < 1:
        raise InputError(f"clip must be in (0, 1), e.g. 1e-6, got {clip!r}.")
    arr, _ = _maps_vcp(maps)
    v, _, p = arr.shape
    labels = _check_names(names, v)
    ranks = _ranks(arr, axis=1)
    r = _pearson_across(ranks, ranks).reshape(p, v * v)
    nan = np.isnan(r)
    z = _fisher_z(np.where(nan, 0.0, r), clip)
    valid = ~nan if nan_policy == "omit" else np.ones_like(nan)
    point = np.tanh(_pool_z(z, valid, np.ones((1, p)))[0]).reshape(v, v)
    interval = None
    if p > 1 and n_boot > 0:
        rng = np.random.default_rng(seed)
        # Resampling counts instead of index arrays keeps memory at n_boot × P.
        counts = rng.multinomial(p, np.full(p, 1.0 / p), size=n_boot).astype(np.float64)
        boot = np.tanh(_pool_z(z, valid, counts))
        alpha = (1 - level) / 2
        lo, hi = np.nanquantile(boot, [alpha, 1 - alpha], axis=0)
        interval = torch.from_numpy(np.stack([lo, hi]).reshape(2, v, v))
    return CorrelationResult(
        correlation=torch.from_numpy(point),
        interval=interval,
        nan_fraction=torch.from_numpy(nan.mean(axis=0).reshape(v, v)),
        names=labels,
        n_positions=p,
        settings={
            "n_boot": n_boot,
            "level": level,
            "seed": seed,
            "nan_policy": nan_policy,
            "clip": clip,
        },
    )


def spatial_correlation_map(sensitivity: ArrayLike, cov: ArrayLike) -> torch.Tensor:
    r"""Spearman correlation across units between sensitivity and CoV at every position.

    .. math::

        R_v(h, w) = \operatorname{corr}_c\big(\operatorname{rank}_c S_v[c, h, w],\;
        \operatorname{rank}_c \mathrm{CoV}[c, h, w]\big).

    Parameters
    ----------
    sensitivity
        ``(C, H, W)`` one variable's map, ``(V, C, H, W)`` several; ``(C,)`` or ``(V, C)`` for
        a fully-connected checkpoint.
    cov
        ``(C, H, W)`` (or ``(C,)``) coefficient of variation (e.g. from
        :func:`coefficient_of_variation`; the log transform does not change ranks).

    Returns
    -------
    torch.Tensor
        ``(H, W)`` / ``(V, H, W)``; a 0-d / ``(V,)`` tensor for fully-connected maps. NaN where
        either side is constant across units.

    References
    ----------
    Kharyuk, Matveev & Oseledets (2025), Section 2.5 and Figures S7.3.
    """
    sens = _numpy(sensitivity, "sensitivity")
    c_arr = _numpy(cov, "cov")
    if c_arr.ndim not in (1, 3):
        raise InputError(f"cov must be (C, H, W) or (C,), got shape {tuple(c_arr.shape)}.")
    single = sens.ndim == c_arr.ndim
    if single:
        sens = sens[None]
    if sens.ndim != c_arr.ndim + 1 or sens.shape[1:] != c_arr.shape:
        raise InputError(
            f"sensitivity {tuple(_numpy(sensitivity, 'sensitivity').shape)} does not match cov "
            f"{tuple(c_arr.shape)}: pass (C, H, W) or (V, C, H, W) with the same C, H, W."
        )
    if c_arr.shape[0] < 2:
        raise InputError("A correlation across units needs at least two units (axis C).")
    spatial = c_arr.shape[1:]
    s_rank = _ranks(sens.reshape(sens.shape[0], c_arr.shape[0], -1), axis=1)
    c_rank = _ranks(c_arr.reshape(1, c_arr.shape[0], -1), axis=1)
    r = _pearson_across(s_rank, c_rank)[:, :, 0].T  # (V, P)
    out = torch.from_numpy(np.ascontiguousarray(r.reshape(r.shape[0], *spatial)))
    return out[0] if single else out


# --------------------------------------------------------------------------- LDA


@dataclass
class LDAResult(Result):
    """Cross-validated LDA predicting the SA variable from a unit's sensitivity map.

    Attributes
    ----------
    confusion
        ``(V, V)`` mean over folds of the row-normalised validation confusion matrices (row =
        true variable, column = predicted); a fold without a variable is skipped for that row.
    confusion_std
        ``(V, V)`` standard deviation over folds.
    train_accuracy, validation_accuracy
        ``(n_splits·n_repeats,)`` accuracy of every fold.
    names
        Variable names.
    settings
        ``n_splits``, ``n_repeats``, ``seed``, ``tol``.
    """

    confusion: torch.Tensor
    confusion_std: torch.Tensor
    train_accuracy: torch.Tensor
    validation_accuracy: torch.Tensor
    names: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def per_variable_accuracy(self) -> torch.Tensor:
        """``(V,)`` diagonal of the mean confusion: recall of each variable."""
        return torch.diagonal(self.confusion)

    @property
    def mean_validation_accuracy(self) -> float:
        """Mean validation accuracy over folds."""
        return float(self.validation_accuracy.mean())

    @property
    def mean_train_accuracy(self) -> float:
        """Mean training accuracy over folds."""
        return float(self.train_accuracy.mean())


def lda_confusion(
    maps: ArrayLike,
    *,
    names: Sequence[str] | None = None,
    n_splits: int = 5,
    n_repeats: int = 100,
    seed: int = 0,
    tol: float = 1e-4,
) -> LDAResult:
    r"""Repeated K-fold LDA of which SA variable a unit's sensitivity map belongs to.

    Observations are the :math:`V \cdot C` (variable, unit) pairs of one checkpoint, features
    the unit's flattened map (``H·W`` values), labels the variable. For every fold of
    ``RepeatedKFold(n_splits, n_repeats)`` a linear discriminant (SVD solver) is fitted on the
    training pairs; the validation confusion matrix is normalised per true variable,

    .. math::

        \hat P_f(\hat y = b \mid y = a) = \frac{\#\{i \in \mathrm{val}_f : y_i = a,
        \hat y_i = b\}}{\#\{i \in \mathrm{val}_f : y_i = a\}},

    and averaged over the :math:`n_\mathrm{splits} \cdot n_\mathrm{repeats}` folds.

    Parameters
    ----------
    maps
        ``(V, C, H, W)`` sensitivity maps of a convolutional checkpoint (``(V, C)`` is taken
        as one feature per unit). Values must be finite.
    names
        Variable names.
    n_splits, n_repeats
        Folds and repetitions (the paper: 5 and 100).
    seed
        ``random_state`` of the splitter.
    tol
        Rank threshold of the SVD solver (the authors' ``1e-4``).

    Returns
    -------
    LDAResult

    Notes
    -----
    The splits are plain (not stratified) K-fold, as in the paper's code; with few units a
    validation fold can miss a variable, whose row is then skipped in that fold's average.
    The number of discriminant components does not change the predictions, so it is not a
    parameter. Collinearity warnings of the solver (constant pixels) are silenced.

    References
    ----------
    Kharyuk, Matveev & Oseledets (2025), Section 2.6 and Appendix B.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.model_selection import RepeatedKFold

    n_splits = _check_int(n_splits, "n_splits", 2)
    n_repeats = _check_int(n_repeats, "n_repeats", 1)
    arr, _ = _maps_vcp(maps)
    v, c, p = arr.shape
    labels = _check_names(names, v)
    if v < 2:
        raise InputError("lda_confusion needs at least two variables to discriminate.")
    if not np.isfinite(arr).all():
        raise InputError(
            "maps contain NaN or infinite values; replace them first, e.g. np.nan_to_num(maps)."
        )
    if v * c < n_splits:
        raise InputError(f"{v * c} (variable, unit) pairs cannot be split into {n_splits} folds.")
    x = arr.reshape(v * c, p)
    y = np.repeat(np.arange(v), c)
    splitter = RepeatedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    confusions, train_acc, val_acc = [], [], []
    for train, val in splitter.split(x):
        lda = LinearDiscriminantAnalysis(solver="svd", tol=tol)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Variables are collinear")
            lda.fit(x[train], y[train])
            pred_train = lda.predict(x[train])
            pred = lda.predict(x[val])
        counts = np.zeros((v, v))
        np.add.at(counts, (y[val], pred), 1.0)
        totals = counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            confusions.append(
                np.where(totals > 0, counts / np.where(totals > 0, totals, 1), np.nan)
            )
        train_acc.append(float(np.mean(pred_train == y[train])))
        val_acc.append(float(np.mean(pred == y[val])))
    stack = np.stack(confusions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a variable absent from every fold
        mean = np.nanmean(stack, axis=0)
        std = np.nanstd(stack, axis=0)
    return LDAResult(
        confusion=torch.from_numpy(mean),
        confusion_std=torch.from_numpy(std),
        train_accuracy=torch.tensor(train_acc, dtype=torch.float64),
        validation_accuracy=torch.tensor(val_acc, dtype=torch.float64),
        names=labels,
        settings={"n_splits": n_splits, "n_repeats": n_repeats, "seed": seed, "tol": tol},
    )


# --------------------------------------------------------------------------- clustering


def correlation_distance(corr: ArrayLike) -> torch.Tensor:
    r"""Distance :math:`d(\rho) = \sqrt{1 - |\rho|}` between items of a correlation matrix.

    Perfectly correlated or anti-correlated items are at distance 0, uncorrelated at 1.
    """
    r = torch.as_tensor(_numpy(corr, "corr"))
    return (1 - r.abs()).clamp_min(0).sqrt()


@dataclass
class ClusteringResult(Result):
    r"""Agglomerative clustering of correlated items.

    Attributes
    ----------
    linkage
        ``(K-1, 4)`` SciPy linkage matrix (merged clusters, distance, size).
    distance
        ``(K, K)`` distance matrix :math:`\sqrt{1 - |\rho|}` (zero diagonal).
    leaves
        Item indices in dendrogram order.
    labels
        Item names.
    clusters
        ``(K,)`` flat cluster ids (1-based) at ``threshold``, or None.
    settings
        ``method`` and ``threshold``.
    """

    linkage: torch.Tensor
    distance: torch.Tensor
    leaves: tuple[int, ...]
    labels: tuple[str, ...]
    clusters: torch.Tensor | None
    settings: dict[str, Any] = field(default_factory=dict)

    def cut(self, threshold: float) -> torch.Tensor:
        """Flat clusters (1-based ids) of items merged below distance ``threshold``."""
        ids = hierarchy.fcluster(self.linkage.numpy(), t=threshold, criterion="distance")
        return torch.from_numpy(np.asarray(ids, dtype=np.int64))


def hierarchical_clustering(
    corr: ArrayLike | CorrelationResult,
    labels: Sequence[str] | None = None,
    method: str = "average",
    threshold: float | None = None,
) -> ClusteringResult:
    r"""Hierarchical clustering with the distance :math:`\sqrt{1 - |\rho|}`.

    Parameters
    ----------
    corr
        ``(K, K)`` symmetric correlation matrix with values in ``[-1, 1]``, or a
        :class:`CorrelationResult` (its names become the labels).
    labels
        Item names (default ``x1..xK`` or the result's names).
    method
        SciPy linkage method; the paper uses ``"average"`` (UPGMA).
    threshold
        If given, also return flat clusters merged below this distance (``fcluster`` with
        ``criterion="distance"``; the authors' code cuts at 0.025).

    Returns
    -------
    ClusteringResult

    References
    ----------
    Kharyuk, Matveev & Oseledets (2025), Appendix C and Figures S7.5.
    """
    if isinstance(corr, CorrelationResult):
        if labels is None:
            labels = corr.names
        corr = corr.correlation
    r = _numpy(corr, "corr")
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] < 2:
        raise InputError(f"corr must be a square K×K matrix with K >= 2, got {tuple(r.shape)}.")
    if not np.isfinite(r).all():
        raise InputError("corr contains NaN or infinite values; replace them (e.g. by 0) first.")
    if np.abs(r).max() > 1 + 1e-9:
        raise InputError("corr has values outside [-1, 1]; pass a correlation matrix.")
    if not np.allclose(r, r.T, atol=1e-9):
        raise InputError("corr must be symmetric; pass (corr + corr.T) / 2 if it is not.")
    names = _check_names(labels, r.shape[0])
    methods = ("single", "complete", "average", "weighted", "centroid", "median", "ward")
    if method not in methods:
        raise InputError(f"Unknown linkage method {method!r}; use one of {methods}.")
    d = np.sqrt(np.clip(1 - np.abs(r), 0.0, None))
    np.fill_diagonal(d, 0.0)
    d = (d + d.T) / 2
    z = hierarchy.linkage(squareform(d, checks=False), method=method)
    leaves = tuple(int(i) for i in hierarchy.leaves_list(z))
    result = ClusteringResult(
        linkage=torch.from_numpy(z),
        distance=torch.from_numpy(d),
        leaves=leaves,
        labels=names,
        clusters=None,
        settings={"method": method, "threshold": threshold},
    )
    if threshold is not None:
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or threshold < 0:
            raise InputError(f"threshold must be a non-negative distance, got {threshold!r}.")
        result.clusters = result.cut(float(threshold))
    return result
