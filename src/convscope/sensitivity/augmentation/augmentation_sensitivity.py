r"""Sensitivity of every internal activation to simultaneous image augmentations.

Kharyuk, Matveev & Oseledets treat every scalar activation :math:`a_{c,h,w}` of chosen
*checkpoints* (module outputs) as a function of *SA variables*: one grouped variable per
augmentation (its inner parameters), plus the **class** the image is drawn from, the
**partition** (e.g. train or validation) and the **permutation**, the order in which the
augmentations are applied. The variance of each activation is decomposed per variable, which
gives *sensitivity maps* shaped like the checkpoint's output, one per variable.

Two input models (Kharyuk et al., Sec. 2.4.1):

* **Sobol scheme** (``method="sobol"``): all variables independent; every parameterised
  augmentation is always applied, a parameter-free one (sharpness, grayscale, flip) is switched
  on with probability ½ by a uniform switch (applied iff :math:`u \le 0.5`, as the authors'
  code). First-order :math:`S_i` and total :math:`S^T_i` indices per group (Saltelli 2010,
  Jansen; optionally second order, Saltelli 2002) from a grouped pick-freeze design with
  :math:`N(G+2)` evaluations (:math:`N(2G+2)` with second order).
* **Shapley scheme** (``method="shapley"``, spike and slab): every augmentation has a switch,
  on with probability ``p_apply`` (iff :math:`u \ge 1 - p`), its parameters drawn from their
  marginals. Shapley effects by the Song-Nelson-Staum random-permutation estimator with the
  total-variance cost :math:`c_T(J) = \mathbb E[\operatorname{Var}(f \mid x_{-J})]` over the
  **raw** variables, summed per group, clipped at 0 and normalised by their sum, as the authors'
  code does (Sec. 2.3 of the paper leaves grouping and normalisation open). Cost:
  ``n_perm · d_raw · n_outer · n_inner`` evaluations.

**The image of a design row is a deterministic function of the row** (our choice): the class
group holds two columns, the class :math:`c = \lfloor u_c C \rfloor` and a within-class
position :math:`u_i`, and the image is the :math:`\lfloor u_i n_{c,p} \rfloor`-th image of
class :math:`c` in partition :math:`p` (in input order). Rows that share the class group
therefore share the image. ``image_choice="random"`` reproduces the authors' behaviour instead:
a fresh random image of the class at every evaluation, which adds within-class variance to
every difference :math:`f(A) - f(A_B^{(j)})`.

Images are augmented (in the row's order), rescaled per image and channel to [0, 1] by
min-max (``rescale="minmax"``, the authors' code; the paper is silent) and fed to the model, which
carries its own normalisation. Activations are recorded with forward hooks in one pass for all
checkpoints and streamed into accumulators: memory O(activations × variables), never the
activations of all samples. Runs resume from ``resume=`` after an interruption and shard over
``torch.distributed`` processes (blocks of design rows or permutations split by rank, states
merged at the end).

Reference: P. Kharyuk, S. Matveev, I. Oseledets, "Exploring specialization and sensitivity of
convolutional neural networks in the context of simultaneous image augmentations";
E. Song, B. L. Nelson, J. Staum, SIAM/ASA JUQ 4 (2016); A. Saltelli et al., CPC 181 (2010).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from convscope.core.batching import check_batch_size
from convscope.core.deprecation import renamed_argument
from convscope.core.device import model_device, model_dtype
from convscope.core.errors import InputError
from convscope.core.fingerprint import RunFingerprint, run_fingerprint
from convscope.core.hooks import record_activations
from convscope.core.layers import resolve_layers
from convscope.core.results import Result
from convscope.core.state import inference_state
from convscope.core.streaming import distributed_rank, stream
from convscope.core.validation import check_images
from convscope.sensitivity.augmentation.augmentations import (
    Augmentation,
    augmentation_set,
    compose,
    minmax_rescale,
    permutation_from_index,
)
from convscope.sensitivity.designs import pick_freeze_design
from convscope.sensitivity.estimators import SobolAccumulator
from convscope.sensitivity.evaluation import pick_freeze_stream

__all__ = [
    "AugmentationProblem",
    "AugmentationSensitivityResult",
    "ImageSource",
    "augmentation_sensitivity",
]

Method = Literal["sobol", "shapley"]


# --------------------------------------------------------------------------------------------
# the problem: variables, raw columns, decoding of a design row
# --------------------------------------------------------------------------------------------


class ImageSource:
    """Images grouped by (partition, class); maps design values to image indices.

    Parameters
    ----------
    labels
        ``(N,)`` class of each image.
    partition
        ``(N,)`` partition of each image (e.g. 0 = train, 1 = validation) or None (one).
    """

    def __init__(self, labels: Tensor, partition: Tensor | None = None) -> None:
        labels = torch.as_tensor(labels).long().cpu().reshape(-1)
        parts = (
            torch.zeros_like(labels)
            if partition is None
            else torch.as_tensor(partition).long().cpu().reshape(-1)
        )
        if parts.shape != labels.shape:
            raise InputError(
                f"partition has {parts.numel()} entries but there are {labels.numel()} labels; "
                "pass one partition value per image."
            )
        self.classes = torch.unique(labels)
        self.partitions = torch.unique(parts)
        n_c, n_p = len(self.classes), len(self.partitions)
        c_idx = torch.searchsorted(self.classes, labels)
        p_idx = torch.searchsorted(self.partitions, parts)
        key = p_idx * n_c + c_idx
        order = torch.sort(key, stable=True).indices  # input order within each pool
        counts = torch.bincount(key, minlength=n_p * n_c)
        empty = (counts == 0).nonzero().reshape(-1).tolist()
        if empty:
            p, c = divmod(empty[0], n_c)
            raise InputError(
                f"Class {int(self.classes[c])} has no image in partition "
                f"{int(self.partitions[p])}; every class needs images in every partition (the "
                "class and partition variables are independent). Add images or drop the class."
            )
        self.order = order
        self.counts = counts
        self.starts = torch.cumsum(counts, 0) - counts

    @property
    def n_classes(self) -> int:
        """Number of classes C."""
        return len(self.classes)

    @property
    def n_partitions(self) -> int:
        """Number of partitions."""
        return len(self.partitions)

    def select(self, class_u: Tensor, instance_u: Tensor, partition_u: Tensor | None) -> Tensor:
        """Image indices for unit values of the class, within-class and partition columns."""
        c = (class_u * self.n_classes).floor().long().clamp(0, self.n_classes - 1).cpu()
        p = (
            torch.zeros_like(c)
            if partition_u is None
            else (partition_u * self.n_partitions).floor().long().clamp(0, self.n_partitions - 1)
        ).cpu()
        pool = p * self.n_classes + c
        count = self.counts[pool]
        pos = (instance_u.cpu() * count).floor().long()
        pos = torch.minimum(pos, count - 1)
        return self.order[self.starts[pool] + pos]


@dataclass(frozen=True)
class _Column:
    augmentation: int | None  # index of the augmentation, None for auxiliaries
    role: str  # "switch", "param", "permutation", "class", "instance", "partition"
    index: int = 0  # parameter index for "param"


class AugmentationProblem:
    """SA variables, their raw design columns and the decoding of a design row.

    Raw columns per augmentation: the Sobol scheme has its parameters (or one switch if it
    has none); the Shapley scheme has ``[switch, parameters...]``. Then the auxiliary
    variables: permutation (if there are at least two augmentations), class (two columns:
    class and within-class position) and partition (if there are at least two partitions).
    """

    def __init__(
        self,
        augmentations: Sequence[Augmentation],
        *,
        n_partitions: int = 1,
        scheme: Method = "sobol",
        p_apply: float = 0.5,
    ) -> None:
        if scheme not in ("sobol", "shapley"):
            raise InputError(f"method must be 'sobol' or 'shapley', got {scheme!r}.")
        if not 0 < p_apply < 1:
            raise InputError(f"p_apply must lie in (0, 1), got {p_apply!r}.")
        self.augmentations = list(augmentations)
        self.scheme = scheme
        self.p_apply = float(p_apply)
        columns: list[_Column] = []
        groups: list[list[int]] = []
        names: list[str] = []
        labels: list[str] = []
        for a, aug in enumerate(self.augmentations):
            cols: list[_Column] = []
            if scheme == "shapley" or not aug.params:
                cols.append(_Column(a, "switch"))
            cols += [_Column(a, "param", i) for i in range(len(aug.params))]
            groups.append(list(range(len(columns), len(columns) + len(cols))))
            columns += cols
            names.append(aug.name)
            labels.append(getattr(aug, "label", aug.name))
        self.use_permutation = len(self.augmentations) >= 2
        if self.use_permutation:
            groups.append([len(columns)])
            columns.append(_Column(None, "permutation"))
            names.append("permutation")
            labels.append("permut.")
        groups.append([len(columns), len(columns) + 1])
        columns += [_Column(None, "class"), _Column(None, "instance")]
        names.append("class")
        labels.append("class")
        self.use_partition = n_partitions >= 2
        if self.use_partition:
            groups.append([len(columns)])
            columns.append(_Column(None, "partition"))
            names.append("partition")
            labels.append("part.")
        self.columns = columns
        self.groups = groups
        self.names = names
        self.labels = labels

    @property
    def n_raw(self) -> int:
        """Number of raw design columns."""
        return len(self.columns)

    def _col(self, role: str) -> int | None:
        for j, col in enumerate(self.columns):
            if col.role == role:
                return j
        return None

    def decode(
        self, u: Tensor, height: int, width: int
    ) -> tuple[list[Tensor], Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """Map unit rows ``(m, n_raw)`` to parameters, switches, orders and image columns.

        Returns
        -------
        thetas, active, order, class_u, instance_u, partition_u
        """
        m, d = u.shape[0], len(self.augmentations)
        thetas: list[Tensor] = []
        active = torch.ones(m, d, dtype=torch.bool, device=u.device)
        for a, aug in enumerate(self.augmentations):
            mine = [(j, c) for j, c in enumerate(self.columns) if c.augmentation == a]
            pcols = [j for j, c in mine if c.role == "param"]
            theta = aug.sample(u[:, pcols], height, width) if pcols else u.new_zeros(m, 0)
            thetas.append(theta)
            sw = [j for j, c in mine if c.role == "switch"]
            if sw:
                s = u[:, sw[0]]
                # Sobol scheme (parameter-free only): applied iff u <= 0.5; Shapley: iff u >= 1-p
                active[:, a] = s <= 0.5 if self.scheme == "sobol" else s >= 1 - self.p_apply
        jp = self._col("permutation")
        if jp is not None:
            n_orders = math.factorial(d)
            index = (u[:, jp] * n_orders).floor().long().clamp(0, n_orders - 1)
            order = permutation_from_index(index, d).to(u.device)
        else:
            order = torch.zeros(m, d, dtype=torch.long, device=u.device)
        jc, ji, jpart = self._col("class"), self._col("instance"), self._col("partition")
        assert jc is not None and ji is not None
        return (
            thetas, active, order, u[:, jc], u[:, ji], None if jpart is None else u[:, jpart],
        )  # fmt: skip


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------


@dataclass
class AugmentationSensitivityResult(Result):
    """Sensitivity maps of every checkpoint's activations.

    Attributes
    ----------
    first_order, total_order : dict[str, Tensor] or None
        Per checkpoint, ``(V, *activation shape)`` Sobol' indices (Sobol scheme), unclipped.
    second_order : dict[str, Tensor] or None
        Per checkpoint ``(V, V, *shape)`` (Sobol scheme with ``second_order=True``).
    shapley : dict[str, Tensor] or None
        Per checkpoint ``(V, *shape)`` group Shapley effects, clipped at 0 and normalised to
        sum to 1 (Shapley scheme); ``shapley_raw`` holds the unnormalised raw-variable values
        ``(d_raw, *shape)`` in variance units.
    mean, variance : dict[str, Tensor]
        Per checkpoint ``(*shape)`` mean and variance of each activation under the scheme.
    variables, labels : list of str
        SA variable names and short display labels (V).
    checkpoints : list of str
        Module names, in the order given.
    method : str
        ``"sobol"`` or ``"shapley"``.
    n_evaluations : int
        Model evaluations (forward passes of one image).
    settings : dict
        The arguments that produced the result.
    """

    first_order: dict[str, Tensor] | None
    total_order: dict[str, Tensor] | None
    second_order: dict[str, Tensor] | None
    shapley: dict[str, Tensor] | None
    shapley_raw: dict[str, Tensor] | None
    mean: dict[str, Tensor]
    variance: dict[str, Tensor]
    variables: list[str]
    labels: list[str]
    checkpoints: list[str]
    method: str
    n_evaluations: int
    settings: dict[str, Any] = field(default_factory=dict)

    def maps(self, measure: str = "auto", *, clip: bool = True) -> dict[str, Tensor]:
        """Sensitivity maps of one measure: ``"first_order"``, ``"total_order"``,
        ``"shapley"`` or ``"auto"`` (Shapley or first order); clipped to [0, 1] by default, as
        the authors plot and mask them."""
        if measure == "auto":
            measure = "shapley" if self.shapley is not None else "first_order"
        value = getattr(self, measure, None) if measure in (
            "first_order", "total_order", "shapley",
        ) else None  # fmt: skip
        if value is None:
            raise InputError(
                f"No {measure!r} maps in this result (method={self.method!r}); use "
                + ("'first_order' or 'total_order'." if self.method == "sobol" else "'shapley'.")
            )
        return {k: v.clamp(0, 1) if clip else v for k, v in value.items()}

    def coefficient_of_variation(self, checkpoint: str, *, log: bool = True) -> Tensor:
        """``log10(1 + CoV)`` (or CoV) with CoV = sqrt(var) / (|mean| + 1e-5) (paper Sec. 3.1.1)."""
        from convscope.sensitivity.augmentation.analysis import coefficient_of_variation

        if checkpoint not in self.checkpoints:
            raise InputError(
                f"Unknown checkpoint {checkpoint!r}; this result has {self.checkpoints}."
            )
        return coefficient_of_variation(self.variance[checkpoint], self.mean[checkpoint], log=log)

    def plot(self, checkpoint: str | None = None, measure: str = "auto", **kwargs: Any) -> Any:
        """Per-channel sensitivity maps of one checkpoint, one block per variable."""
        from convscope.plots.sensitivity import sensitivity_map_grid

        name = checkpoint or self.checkpoints[0]
        if name not in self.checkpoints:
            raise InputError(f"Unknown checkpoint {name!r}; this result has {self.checkpoints}.")
        return sensitivity_map_grid(self.maps(measure)[name], self.labels, title=name, **kwargs)


# --------------------------------------------------------------------------------------------
# evaluation and state
# --------------------------------------------------------------------------------------------


class _Evaluator:
    """Design rows (unit cube) → augmented images → flattened activations of all checkpoints."""

    def __init__(
        self,
        model: nn.Module,
        images: Tensor,
        source: ImageSource,
        problem: AugmentationProblem,
        checkpoints: list[str],
        *,
        batch_size: int,
        rescale: str | None,
        softmax: set[str],
        image_choice: str,
        seed: int,
    ) -> None:
        self.model = model
        self.images = images
        self.source = source
        self.problem = problem
        self.checkpoints = checkpoints
        self.batch_size = batch_size
        self.rescale = rescale
        self.softmax = softmax
        self.image_choice = image_choice
        self.seed = seed
        self.device = model_device(model)
        self.dtype = model_dtype(model)
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.count = 0

    def images_for(self, u: Tensor, salt: int) -> Tensor:
        h, w = self.images.shape[-2:]
        thetas, active, order, cu, iu, pu = self.problem.decode(u, h, w)
        if self.image_choice == "random":
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + salt)
            iu = torch.rand(u.shape[0], generator=gen, dtype=u.dtype).to(u.device)
        idx = self.source.select(cu, iu, pu)
        x = self.images[idx.to(self.images.device)].to(self.device, self.dtype)
        x = compose(x, self.problem.augmentations, thetas, order, active)
        if self.rescale == "minmax":
            x = minmax_rescale(x)
        return x

    def __call__(self, u: Tensor, salt: int = 0) -> Tensor:
        """``(m, n_raw)`` unit rows → ``(m, P)`` float64 activations of all checkpoints."""
        outs = []
        for start in range(0, u.shape[0], self.batch_size):
            chunk = u[start : start + self.batch_size]
            x = self.images_for(chunk, salt + start)
            with record_activations(self.model, self.checkpoints) as acts:
                self.model(x)
            parts = []
            for name in self.checkpoints:
                a = acts[name]
                if name in self.softmax:
                    a = a.softmax(dim=1)
                self.shapes.setdefault(name, tuple(a.shape[1:]))
                parts.append(a.reshape(a.shape[0], -1))
            outs.append(torch.cat(parts, dim=1).to(torch.float64))
            self.count += chunk.shape[0]
        return torch.cat(outs)

    def split(self, flat: Tensor, lead: tuple[int, ...]) -> dict[str, Tensor]:
        """Cut a ``(*lead, P)`` tensor into per-checkpoint ``(*lead, *shape)`` tensors."""
        out, start = {}, 0
        for name in self.checkpoints:
            shape = self.shapes[name]
            size = math.prod(shape)
            out[name] = flat[..., start : start + size].reshape(*lead, *shape)
            start += size
        return out


class _ShapleySums:
    """Additive sums of the Song-Nelson-Staum permutation estimator (an accumulator)."""

    def __init__(self, d: int, p: int, device: torch.device) -> None:
        kw: dict[str, Any] = {"dtype": torch.float64, "device": device}
        self.state = {
            "shap": torch.zeros(d, p, **kw), "total": torch.zeros(p, **kw),
            "s1": torch.zeros(p, **kw), "s2": torch.zeros(p, **kw), "count": torch.zeros((), **kw),
        }  # fmt: skip

    def update(self, **parts: Tensor) -> None:
        for key, value in parts.items():
            self.state[key] += value

    def merge(self, other: _ShapleySums) -> _ShapleySums:
        self.update(**other.state)
        return self

    def state_dict(self) -> dict[str, Any]:
        return dict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> _ShapleySums:
        self.state = {k: state[k].to(self.state[k]).clone() for k in self.state}
        return self

    def compute(self) -> dict[str, Tensor]:
        return self.state


# --------------------------------------------------------------------------------------------
# the two schemes
# --------------------------------------------------------------------------------------------


def _run_sobol(
    ev: _Evaluator, problem: AugmentationProblem, n: int, *, second_order: bool, seed: int,
    resume: str | Path | None, run: RunFingerprint | None, progress: bool | None,
) -> tuple[SobolAccumulator, int]:  # fmt: skip
    design = pick_freeze_design(
        problem.n_raw, n, groups=problem.groups, second_order=second_order, method="sobol",
        seed=seed, dtype=torch.float64,
    )  # fmt: skip
    # the accumulator's shape is known after the first evaluation
    probe_rows = ev(design.a[:1].to(ev.device))
    ev.count -= 1  # the probe is bookkeeping, not part of the design
    acc = SobolAccumulator(
        design.k, (probe_rows.shape[1],), second_order=second_order, device=ev.device
    )
    acc = pick_freeze_stream(
        design, lambda rows, i: ev(rows.to(ev.device), salt=i * 1_000_000), acc,
        batch_size=ev.batch_size, resume=resume, run=run, progress=progress,
        desc="augmentation sobol",
    )  # fmt: skip
    return acc, design.n_evaluations


def _run_shapley(
    ev: _Evaluator, problem: AugmentationProblem, n_perm: int, n_outer: int, n_inner: int, *,
    seed: int, resume: str | Path | None, run: RunFingerprint | None, progress: bool | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:  # fmt: skip
    d = problem.n_raw
    probe_rows = ev(torch.full((1, d), 0.5, dtype=torch.float64, device=ev.device))
    ev.count -= 1
    p = probe_rows.shape[1]
    shift = probe_rows[0]
    sums = _ShapleySums(d, p, ev.device)

    def permutation(t: int, _: int) -> None:
        # each permutation has its own generator: the result does not depend on sharding
        gen = torch.Generator().manual_seed(seed * 1_000_003 + t)
        perm = torch.randperm(d, generator=gen)
        shap = torch.zeros(d, p, dtype=torch.float64, device=ev.device)
        prev = torch.zeros(p, dtype=torch.float64, device=ev.device)
        s1 = s2 = prev
        for j in range(1, d + 1):
            inner = perm[:j]
            outer_draw = torch.rand(n_outer, 1, d, generator=gen, dtype=torch.float64)
            inner_draw = torch.rand(n_outer, n_inner, d, generator=gen, dtype=torch.float64)
            rows = outer_draw.expand(n_outer, n_inner, d).clone()
            rows[:, :, inner] = inner_draw[:, :, inner]
            y = ev(rows.reshape(-1, d).to(ev.device), salt=(t * (d + 1) + j) * 1_000)
            y = y.reshape(n_outer, n_inner, p)
            c = y.var(dim=1, correction=1).mean(0)
            shap[perm[j - 1]] += c - prev
            prev = c
            if j == 1:  # outer draws of j = 1 are independent full rows (mean, variance maps)
                z = y[:, 0] - shift
                s1, s2 = z.sum(0), (z * z).sum(0)
        count = torch.tensor(float(n_outer), dtype=torch.float64, device=ev.device)
        sums.update(shap=shap, total=prev, s1=s1, s2=s2, count=count)

    blocks = list(range(n_perm))
    sums = stream(
        blocks, permutation, sums, resume=resume, run=run, progress=progress,
        desc="augmentation shapley",
    )  # fmt: skip
    st = sums.compute()
    evaluations = n_perm * d * n_outer * n_inner
    mean = shift + st["s1"] / st["count"]
    variance = (st["s2"] - st["s1"] * st["s1"] / st["count"]) / (st["count"] - 1)
    return st["shap"] / n_perm, st["total"] / n_perm, mean, variance, evaluations


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def augmentation_sensitivity(
    model: nn.Module,
    images: Tensor,
    labels: Tensor | Sequence[int],
    layers: Sequence[str] | str | None = None,
    *,
    augmentations: str | Sequence[Augmentation | str] = "A1",
    method: Method = "sobol",
    n: int = 256,
    partition: Tensor | Sequence[int] | None = None,
    second_order: bool = False,
    n_perm: int | None = None,
    n_outer: int = 4,
    n_inner: int = 3,
    p_apply: float = 0.5,
    image_choice: Literal["deterministic", "random"] = "deterministic",
    rescale: Literal["minmax"] | None = "minmax",
    softmax: Sequence[str] | str = (),
    seed: int = 0,
    batch_size: int | None = None,
    resume: str | Path | None = None,
    progress: bool | None = None,
    checkpoints: Sequence[str] | str | None = None,
) -> AugmentationSensitivityResult:
    r"""Sobol' indices or Shapley effects of every activation of ``checkpoints`` with respect to
    simultaneous augmentations, class, partition and augmentation order (Kharyuk et al.).

    Parameters
    ----------
    model
        The network (takes [0, 1] images, carries its normalisation), run in eval mode.
    images, labels
        ``N×3×H×W`` images in [0, 1] and their classes; the class variable ranges over the
        distinct labels, the images of a class are its instances.
    checkpoints
        Module names whose outputs are analysed (all in one pass).
    augmentations
        ``"A1"``, ``"A2"`` or a list of augmentations / names
        (:mod:`~convscope.sensitivity.augmentation.augmentations`).
    method
        ``"sobol"`` (first order and total per variable, N(G+2) evaluations) or
        ``"shapley"`` (spike-and-slab scheme, Song-Nelson-Staum permutations).
    n
        Sobol: base rows N (a power of two). Shapley: permutations when ``n_perm`` is None.
    partition
        ``(N,)`` partition of each image (e.g. 0 train, 1 validation): adds the partition
        variable. None: one partition, no variable.
    second_order
        Sobol: also the second-order indices (N(2G+2) evaluations).
    n_perm, n_outer, n_inner
        Shapley budget: ``n_perm · d_raw · n_outer · n_inner`` evaluations.
    p_apply
        Shapley scheme: probability that an augmentation is switched on (the authors' 0.5).
    image_choice
        ``"deterministic"`` (the image is a function of the design row, see the module
        docstring) or ``"random"`` (the authors' fresh random image of the class per row).
    rescale
        ``"minmax"``: per-image, per-channel min-max rescaling after the augmentations (the
        authors' code); None: no rescaling.
    softmax
        Checkpoints whose recorded outputs go through a softmax over dim 1 (the authors
        analyse the classifier's probabilities).
    seed
        Seed of the design, the permutations and the random image choice.
    batch_size
        Images per forward pass (default 64).
    resume
        File prefix of the resumable state; a killed run continues from its last saved block
        and ends with the same result.
    progress
        Progress bar.

    Returns
    -------
    AugmentationSensitivityResult

    Notes
    -----
    Under ``torch.distributed`` (e.g. ``torchrun``), each process evaluates every
    ``world_size``-th block (Sobol) or permutation (Shapley) and the states are merged at the
    end, so every process returns the same result as one process (to float rounding).
    """
    layers = renamed_argument(
        checkpoints, layers, old="checkpoints", new="layers", function="augmentation_sensitivity"
    )
    if layers is None:
        raise InputError("Pass layers=[...]: the module names whose outputs are analysed.")
    checkpoints = layers
    x = check_images(images)
    lab = torch.as_tensor(labels).reshape(-1)
    if lab.numel() != x.shape[0]:
        raise InputError(
            f"labels has {lab.numel()} entries but there are {x.shape[0]} images; pass one "
            "label per image."
        )
    names = [checkpoints] if isinstance(checkpoints, str) else list(checkpoints)
    if not names:
        raise InputError("checkpoints is empty; pass module names, e.g. ['layer1', 'fc'].")
    resolve_layers(model, names)  # one clear error with suggestions for a wrong name
    soft = {softmax} if isinstance(softmax, str) else set(softmax)
    unknown = soft - set(names)
    if unknown:
        raise InputError(
            f"softmax names {sorted(unknown)} are not among the checkpoints {names}; list "
            "checkpoints whose outputs should become probabilities."
        )
    if image_choice not in ("deterministic", "random"):
        raise InputError(f"image_choice must be 'deterministic' or 'random', got {image_choice!r}.")
    if rescale not in ("minmax", None):
        raise InputError(f"rescale must be 'minmax' or None, got {rescale!r}.")
    augs = augmentation_set(augmentations)
    source = ImageSource(lab, None if partition is None else torch.as_tensor(partition))
    problem = AugmentationProblem(
        augs, n_partitions=source.n_partitions, scheme=method, p_apply=p_apply
    )
    per_call = check_batch_size(batch_size)
    _, world = distributed_rank()
    settings: dict[str, Any] = {
        "augmentations": [a.name for a in augs], "method": method, "n": n,
        "second_order": second_order, "n_perm": n_perm, "n_outer": n_outer, "n_inner": n_inner,
        "p_apply": p_apply, "image_choice": image_choice, "rescale": rescale,
        "softmax": sorted(soft), "seed": seed, "batch_size": per_call,
        "raw_variables": problem.n_raw, "groups": problem.groups, "world_size": world,
        "n_images": int(x.shape[0]), "n_classes": source.n_classes,
        "n_partitions": source.n_partitions,
    }  # fmt: skip
    # the whole state_dict, every image and label, every setting (a resume cannot mix runs);
    # hashed only when there is a resume file to check
    run = None if resume is None else run_fingerprint(
        model, {"images": x, "labels": lab, "partition": None if partition is None
                else torch.as_tensor(partition)}, {**settings, "layers": names},
    )  # fmt: skip
    ev = _Evaluator(
        model, x, source, problem, names, batch_size=per_call, rescale=rescale, softmax=soft,
        image_choice=image_choice, seed=seed,
    )  # fmt: skip
    first = total = second = shap_groups = shap_raw = None
    with inference_state(model), torch.no_grad():
        if method == "sobol":
            acc, evaluations = _run_sobol(
                ev, problem, n, second_order=second_order, seed=seed, resume=resume, run=run,
                progress=progress,
            )  # fmt: skip
            est = acc.indices()
            first = ev.split(est.first_order, (len(problem.groups),))
            total = ev.split(est.total_order, (len(problem.groups),))
            if est.second_order is not None:
                k = len(problem.groups)
                second = ev.split(est.second_order, (k, k))
            mean_flat, var_flat = acc.mean, acc.variance
        else:
            perms = n if n_perm is None else n_perm
            raw, _total, mean_flat, var_flat, evaluations = _run_shapley(
                ev, problem, perms, n_outer, n_inner, seed=seed, resume=resume, run=run,
                progress=progress,
            )  # fmt: skip
            groups = torch.stack([raw[g].sum(0) for g in problem.groups]).clamp_min(0)
            norm = groups.sum(0)
            fractions = torch.where(norm > 0, groups / torch.where(norm > 0, norm, 1.0), 0.0)
            shap_groups = ev.split(fractions, (len(problem.groups),))
            shap_raw = ev.split(raw, (problem.n_raw,))
    cpu = lambda m: None if m is None else {k: v.float().cpu() for k, v in m.items()}  # noqa: E731
    return AugmentationSensitivityResult(
        first_order=cpu(first),
        total_order=cpu(total),
        second_order=cpu(second),
        shapley=cpu(shap_groups),
        shapley_raw=cpu(shap_raw),
        mean=cpu(ev.split(mean_flat, ())) or {},
        variance=cpu(ev.split(var_flat, ())) or {},
        variables=list(problem.names),
        labels=list(problem.labels),
        checkpoints=names,
        method=method,
        n_evaluations=evaluations,
        settings=settings,
    )
