"""Tests of the ground-truth shape world (``convscope.datasets.shapes``).

The geometric checks use an independent rasteriser (polygons through ``matplotlib.path`` and
analytic discs), built from the conventions documented in ``convscope.data.world``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.path import Path as MplPath
from scipy import stats

from convscope.core.errors import InputError, ResultFormatError
from convscope.data import world as world_module
from convscope.datasets import (
    CLASS_NAMES,
    COLOUR_NAMES,
    COLOUR_RGB,
    CONCEPT_CATEGORIES,
    CONCEPT_NAMES,
    SPURIOUS_TEXTURE,
    TEXTURE_NAMES,
    ShapesWorld,
    shapes,
)

N_SHAPE, N_COLOUR = len(CLASS_NAMES), len(COLOUR_NAMES)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Run this module single-threaded (restored afterwards).

    The generator issues many mid-sized kernels; when other processes load the cores, OpenMP
    barriers of a multi-threaded run stall on descheduled threads and can be tens of times
    slower. The results do not depend on the thread count (see
    ``test_independent_of_thread_count``).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@cache
def _world(n: int, seed: int, size: int, spurious: float = 0.0, noise: float = 0.0) -> ShapesWorld:
    """Cached worlds, so tests that only read share the generation cost."""
    return shapes(n, seed=seed, size=size, spurious=spurious, label_noise=noise)


# ---------------------------------------------------------------------------- reference geometry


def _polygon_uv(name: str) -> np.ndarray | None:
    """Vertices (in units of the circumradius, v pointing up) of the polygonal shapes."""
    deg = np.deg2rad
    if name == "triangle":
        a = deg(np.array([90.0, 210.0, 330.0]))
        return np.stack([np.cos(a), np.sin(a)], 1)
    if name == "square":
        a = deg(45.0 + 90.0 * np.arange(4))
        return np.stack([np.cos(a), np.sin(a)], 1)
    if name == "star":
        a = deg(90.0 + 36.0 * np.arange(10))
        rad = np.where(np.arange(10) % 2 == 0, 1.0, world_module.STAR_INNER_RATIO)
        return np.stack([rad * np.cos(a), rad * np.sin(a)], 1)
    if name == "cross":
        w = world_module.CROSS_HALF_WIDTH
        a = math.sqrt(1.0 - w * w)
        quarter = [(a, w), (w, w), (w, a)]
        pts = []
        for turn in range(4):  # rotate the quarter outline by 90° four times
            c, s = math.cos(turn * math.pi / 2), math.sin(turn * math.pi / 2)
            pts += [(x * c - y * s, x * s + y * c) for x, y in quarter]
        return np.array(pts)
    return None


def _shoelace(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _reference_area(name: str) -> float:
    """Area / r² computed independently of the generator."""
    poly = _polygon_uv(name)
    if poly is not None:
        return _shoelace(poly)
    if name == "circle":
        return math.pi
    assert name == "ring"
    return math.pi * (1.0 - world_module.RING_INNER_RATIO**2)


def _reference_mask(name: str, x: float, y: float, r: float, rot: float, size: int) -> np.ndarray:
    """Pixels (centre at x = column, y = row) inside the shape, rasterised independently."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    poly = _polygon_uv(name)
    if poly is None:
        d2 = (cols - x) ** 2 + (rows - y) ** 2
        inside = d2 <= r * r
        if name == "ring":
            inside &= d2 >= (world_module.RING_INNER_RATIO * r) ** 2
        return inside
    t = math.radians(rot)  # counter-clockwise as displayed: rotate in the v-up frame
    u, v = poly[:, 0], poly[:, 1]
    px = x + r * (u * math.cos(t) - v * math.sin(t))
    py = y - r * (u * math.sin(t) + v * math.cos(t))
    path = MplPath(np.stack([px, py], 1))
    pts = np.stack([cols.ravel(), rows.ravel()], 1)
    return path.contains_points(pts).reshape(size, size)


# ---------------------------------------------------------------------------- basic contract


def test_types_shapes_and_ranges() -> None:
    w = _world(40, 3, 48)
    n, s = 40, 48
    assert len(w) == n and w.size == s and w.seed == 3
    assert w.images.dtype == torch.float32 and w.images.shape == (n, 3, s, s)
    assert float(w.images.min()) >= 0.0 and float(w.images.max()) <= 1.0
    assert w.labels.dtype == torch.int64 and w.labels.shape == (n,)
    assert w.masks.dtype == torch.bool and w.masks.shape == (n, s, s)
    assert w.concepts.dtype == torch.int64 and w.concepts.shape == (n, s, s)
    assert w.object_map.dtype == torch.int8
    assert set(w.concept_maps) == {"shape", "colour", "texture"}
    for m in w.concept_maps.values():
        assert m.dtype == torch.int64 and m.shape == (n, s, s)
    assert w.class_names == ("circle", "square", "triangle", "star", "cross", "ring")
    assert len(TEXTURE_NAMES) >= 7 and "flat" in TEXTURE_NAMES
    assert {"brick", "grass", "gravel"} <= set(TEXTURE_NAMES)
    assert w.concept_names == CLASS_NAMES + COLOUR_NAMES + TEXTURE_NAMES == CONCEPT_NAMES
    assert len(w.concept_categories) == len(w.concept_names) == len(CONCEPT_CATEGORIES)
    for name, cat in zip(w.concept_names, w.concept_categories, strict=True):
        expected = "shape" if name in CLASS_NAMES else "colour" if name in COLOUR_NAMES else None
        assert cat == (expected or "texture")
    for key, value in w.factors.items():
        assert isinstance(value, np.ndarray) and value.shape[0] == n, key
    for k in range(3):
        for f in ("shape", "colour", "x", "y", "scale", "rotation", "present"):
            assert f"{f}_{k}" in w.factors
    for f in ("n_objects", "texture", "spurious_used", "label_flipped", "true_labels"):
        assert f in w.factors
    assert "ShapesWorld(n=40" in repr(w)


def test_deterministic_and_seed_dependent() -> None:
    a, b = shapes(30, seed=11, size=40), shapes(30, seed=11, size=40)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.concepts, b.concepts)
    for key in a.factors:
        np.testing.assert_array_equal(a.factors[key], b.factors[key])
    c = shapes(30, seed=12, size=40)
    assert not torch.equal(a.images, c.images)
    assert not np.array_equal(a.factors["x_0"], c.factors["x_0"])


@pytest.mark.parametrize(("n_big", "n_small", "size"), [(300, 37, 32), (300, 260, 32), (70, 5, 96)])
def test_prefix_property(n_big: int, n_small: int, size: int) -> None:
    big, small = shapes(n_big, seed=2, size=size), shapes(n_small, seed=2, size=size)
    assert torch.equal(big.images[:n_small], small.images)
    assert torch.equal(big.concepts[:n_small], small.concepts)
    assert torch.equal(big.labels[:n_small], small.labels)
    for key in small.factors:
        np.testing.assert_array_equal(big.factors[key][:n_small], small.factors[key])


def test_independent_of_thread_count() -> None:
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = shapes(40, seed=13, size=96)
        torch.set_num_threads(2)
        many = shapes(40, seed=13, size=96)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one.images, many.images) and torch.equal(one.concepts, many.concepts)


def test_common_random_numbers_across_options() -> None:
    a = _world(60, 4, 32)
    b = shapes(60, seed=4, size=64, spurious=0.5, label_noise=0.2)
    np.testing.assert_array_equal(a.factors["shape_0"], b.factors["shape_0"])
    np.testing.assert_array_equal(a.factors["n_objects"], b.factors["n_objects"])
    np.testing.assert_allclose(a.factors["x_0"] / 32, b.factors["x_0"] / 64, atol=0.02)


# ---------------------------------------------------------------------------- masks and geometry


def _check_world_invariants(w: ShapesWorld) -> None:
    """Properties that must hold for every world."""
    f, size = w.factors, w.size
    rgb = torch.tensor([COLOUR_RGB[c] for c in COLOUR_NAMES], dtype=torch.float32)
    assert torch.equal(w.masks, w.object_map == 0)
    n_obj = f["n_objects"]
    assert ((n_obj >= 1) & (n_obj <= 3)).all()
    for k in range(3):
        present = f[f"present_{k}"]
        np.testing.assert_array_equal(present, n_obj > k)
        assert (f[f"shape_{k}"][~present] == -1).all() and np.isnan(f[f"x_{k}"][~present]).all()
        if k:  # the target is strictly the largest object
            assert (f[f"scale_{k}"][present] < f["scale_0"][present]).all()
            assert (f[f"scale_{k}"][present] <= 0.7 * f["scale_0"][present] + 1e-4).all()
        # every object lies inside the image
        x, y, r = (f[f"{q}_{k}"][present] for q in ("x", "y", "scale"))
        assert (x - r >= -1e-4).all() and (x + r <= size - 1 + 1e-4).all()
        assert (y - r >= -1e-4).all() and (y + r <= size - 1 + 1e-4).all()
    rel = f["scale_0"] / size
    assert ((rel >= 0.16 - 1e-6) & (rel <= 0.30 + 1e-6)).all()
    for i in range(len(w)):
        img, omap = w.images[i], w.object_map[i]
        assert w.masks[i].any(), "empty target mask"
        for k in range(int(n_obj[i])):
            sel = omap == k
            if sel.any():  # each visible object pixel has exactly its recorded colour
                colour = rgb[int(f[f"colour_{k}"][i])]
                assert torch.equal(img[:, sel], colour[:, None].expand(3, int(sel.sum())))
                concept = N_SHAPE + int(f[f"colour_{k}"][i])
                assert (w.concept_maps["colour"][i][sel] == concept).all()
                assert (w.concepts[i][sel] == int(f[f"shape_{k}"][i])).all()
        # concepts: the shape of the object drawn there, else the background texture
        tex = N_SHAPE + N_COLOUR + int(f["texture"][i])
        assert (w.concepts[i][omap == -1] == tex).all()
        assert (w.concepts[i][w.masks[i]] == int(f["shape_0"][i])).all()
    maps = w.concept_maps
    obj = w.object_map >= 0
    assert torch.equal(maps["shape"][obj], w.concepts[obj]) and (maps["shape"][~obj] == -1).all()
    assert torch.equal(maps["texture"][~obj], w.concepts[~obj])
    assert (maps["texture"][obj] == -1).all() and (maps["colour"][~obj] == -1).all()
    colour_concepts = maps["colour"][obj]
    assert ((colour_concepts >= N_SHAPE) & (colour_concepts < N_SHAPE + N_COLOUR)).all()


def test_world_invariants() -> None:
    _check_world_invariants(_world(64, 0, 64))


@pytest.mark.parametrize(("n", "size"), [(60, 224), (120, 64)])
def test_masks_match_independent_rasteriser(n: int, size: int) -> None:
    w = _world(n, 7, size)
    f = w.factors
    seen = set()
    for i in range(len(w)):
        for k in range(int(f["n_objects"][i])):
            name = CLASS_NAMES[int(f[f"shape_{k}"][i])]
            x, y, r, rot = (float(f[f"{q}_{k}"][i]) for q in ("x", "y", "scale", "rotation"))
            ref = _reference_mask(name, x, y, r, rot, size)
            visible = (w.object_map[i] == k).numpy()
            covered = ((w.object_map[i] >= 0) & (w.object_map[i] < k)).numpy()  # drawn later
            # visible pixels lie in the shape and the shape is visible wherever no later object
            # covers it; pixels on the exact boundary may go either way
            assert (visible & ~ref).sum() + (ref & ~visible & ~covered).sum() <= 2, (i, k, name)
            if k == 0:  # the target is drawn last: its mask is its whole shape
                seen.add(name)
                np.testing.assert_array_equal(visible, w.masks[i].numpy())
                assert not covered.any()
    assert seen == set(CLASS_NAMES)


def test_mask_area_and_centroid() -> None:
    w = _world(60, 7, 224)
    f = w.factors
    for i in range(len(w)):
        name = CLASS_NAMES[int(f["shape_0"][i])]
        x, y, r = (float(f[f"{q}_0"][i]) for q in ("x", "y", "scale"))
        mask = w.masks[i].numpy()
        np.testing.assert_allclose(mask.sum(), _reference_area(name) * r * r, rtol=0.02)
        rows, cols = np.nonzero(mask)
        assert abs(cols.mean() - x) < 0.25 and abs(rows.mean() - y) < 0.25, name


def test_texture_photographs_load_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    world_module._photos.cache_clear()
    photos = world_module._photos(64)
    assert photos.shape == (3, 192, 192) and photos.dtype == torch.float32
    assert float(photos.min()) == 0.0 and float(photos.max()) == 1.0
    assert (photos.flatten(1).std(1) > 0.1).all()


def test_labels_without_noise() -> None:
    w = _world(64, 0, 64)
    np.testing.assert_array_equal(w.labels.numpy(), w.factors["shape_0"])
    np.testing.assert_array_equal(w.factors["true_labels"], w.factors["shape_0"])
    assert not w.factors["label_flipped"].any() and not w.factors["spurious_used"].any()
    assert torch.equal(w.true_labels, w.labels)


def test_backgrounds_are_muted() -> None:
    w = _world(64, 0, 64)
    bg = (w.object_map == -1)[:, None].expand_as(w.images)
    pix = w.images.permute(0, 2, 3, 1)[bg.permute(0, 2, 3, 1)[..., 0]]
    chroma = pix.max(1).values - pix.min(1).values
    assert float(chroma.max()) < 0.3  # weakly saturated
    a, b = w.factors["background_colour_a"], w.factors["background_colour_b"]
    assert np.abs(b - a).max() <= 0.35 + 1e-6  # low contrast


# ---------------------------------------------------------------------------- spurious & noise


def test_spurious_one_uses_mapping() -> None:
    w = _world(200, 1, 32, spurious=1.0)
    expected = [TEXTURE_NAMES.index(SPURIOUS_TEXTURE[CLASS_NAMES[c]]) for c in w.labels.tolist()]
    np.testing.assert_array_equal(w.factors["texture"], expected)
    assert w.factors["spurious_used"].all()
    assert len(set(SPURIOUS_TEXTURE.values())) == len(CLASS_NAMES)
    assert set(SPURIOUS_TEXTURE) == set(CLASS_NAMES)


def test_spurious_zero_is_independent_and_uniform() -> None:
    w = _world(2000, 5, 32)
    tex, lab = w.factors["texture"], w.labels.numpy()
    table = np.zeros((N_SHAPE, len(TEXTURE_NAMES)))
    np.add.at(table, (lab, tex), 1)
    assert stats.chi2_contingency(table).pvalue > 1e-3
    assert stats.chisquare(table.sum(0)).pvalue > 1e-3  # textures uniform
    assert stats.chisquare(table.sum(1)).pvalue > 1e-3  # classes balanced


def test_spurious_half_rate() -> None:
    w = _world(1000, 5, 32, spurious=0.5)
    used = int(w.factors["spurious_used"].sum())
    lo, hi = stats.binom.ppf([1e-6, 1 - 1e-6], 1000, 0.5)
    assert lo <= used <= hi
    mapped = np.array([TEXTURE_NAMES.index(SPURIOUS_TEXTURE[c]) for c in CLASS_NAMES])
    match = w.factors["texture"] == mapped[w.labels.numpy()]
    assert match[w.factors["spurious_used"]].all()
    # without the switch the texture is uniform: it matches the class's texture 1 time in 8
    rest = match[~w.factors["spurious_used"]]
    lo, hi = stats.binom.ppf([1e-6, 1 - 1e-6], rest.size, 1 / len(TEXTURE_NAMES))
    assert lo <= rest.sum() <= hi


def test_label_noise_rate_and_targets() -> None:
    n, q = 1500, 0.3
    w = _world(n, 9, 32, noise=q)
    flipped = w.factors["label_flipped"]
    true = w.factors["true_labels"]
    lab = w.labels.numpy()
    lo, hi = stats.binom.ppf([1e-6, 1 - 1e-6], n, q)
    assert lo <= flipped.sum() <= hi
    assert (lab[flipped] != true[flipped]).all()
    np.testing.assert_array_equal(lab[~flipped], true[~flipped])
    np.testing.assert_array_equal(true, w.factors["shape_0"])
    offsets = (lab[flipped] - true[flipped]) % N_SHAPE
    assert set(offsets.tolist()) == set(range(1, N_SHAPE))


# ---------------------------------------------------------------------------- sizes & arguments


@pytest.mark.parametrize("size", [32, 64, 224])
def test_sizes(size: int) -> None:
    w = shapes(6, seed=1, size=size)
    assert w.images.shape == (6, 3, size, size)
    assert w.masks.flatten(1).any(1).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n=0"),
        ({"n": -3}, "n=-3"),
        ({"n": 2.5}, "n must be an integer"),
        ({"n": True}, "n must be an integer"),
        ({"n": 4, "seed": -1}, "seed=-1"),
        ({"n": 4, "size": 31}, "size=31 .*between 32 and 224"),
        ({"n": 4, "size": 225}, "size=225"),
        ({"n": 4, "spurious": -0.1}, r"spurious=-0.1 is outside \[0, 1\]"),
        ({"n": 4, "spurious": 1.5}, "spurious"),
        ({"n": 4, "label_noise": float("nan")}, "label_noise"),
        ({"n": 4, "label_noise": "0.1"}, "label_noise must be a probability"),
        ({"n": 4, "min_objects": 0}, "min_objects"),
        ({"n": 4, "max_objects": 4}, "max_objects"),
        ({"n": 4, "min_objects": 3, "max_objects": 2}, "min_objects <= max_objects"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        shapes(**kwargs)  # type: ignore[arg-type]


def test_object_count_options() -> None:
    w = shapes(50, seed=3, size=32, min_objects=2, max_objects=2)
    assert (w.factors["n_objects"] == 2).all()
    w1 = shapes(50, seed=3, size=32, max_objects=1)
    assert (w1.factors["n_objects"] == 1).all() and (w1.object_map <= 0).all()


# ---------------------------------------------------------------------------- subset & files


def test_subset() -> None:
    w = _world(40, 3, 48)
    s = w.subset([5, 1, 5])
    assert len(s) == 3 and torch.equal(s.images[1], w.images[1])
    np.testing.assert_array_equal(s.factors["image_index"], [5, 1, 5])
    assert torch.equal(s.concept_maps["colour"][0], w.concept_maps["colour"][5])
    assert len(w.subset(slice(10, 20))) == 10
    assert len(w.subset(w.labels == 0)) == int((w.labels == 0).sum())
    assert len(w.subset(np.array([-1]))) == 1 and len(w.subset(3)) == 1
    assert s.class_names == w.class_names and s.seed == w.seed
    image, label = w.as_dataset()[7]
    assert torch.equal(image, w.images[7]) and int(label) == int(w.labels[7])
    for bad in ([40], [0.5], torch.ones(3, dtype=torch.bool), "a"):
        with pytest.raises(InputError, match="subset"):
            w.subset(bad)  # type: ignore[arg-type]


def test_save_load_roundtrip(tmp_path: Path) -> None:
    w = shapes(20, seed=8, size=32, spurious=0.3, label_noise=0.2, min_objects=2)
    out = w.save(tmp_path / "world")
    assert out.suffix == ".npz" and out.with_suffix(".json").is_file()
    with np.load(out, allow_pickle=False) as data:
        assert "images" in data.files
    back = ShapesWorld.load(out)
    for name in ("images", "labels", "masks", "concepts", "object_map"):
        assert torch.equal(getattr(back, name), getattr(w, name)), name
    for key in w.factors:
        np.testing.assert_array_equal(back.factors[key], w.factors[key])
    assert (back.seed, back.size, back.spurious, back.label_noise, back.min_objects) == (
        8,
        32,
        0.3,
        0.2,
        2,
    )
    assert back.concept_names == w.concept_names
    assert torch.equal(back.concept_maps["colour"], w.concept_maps["colour"])
    with pytest.raises(ResultFormatError, match="does not exist"):
        ShapesWorld.load(tmp_path / "missing.npz")
    out.with_suffix(".json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ResultFormatError, match="not a readable"):
        ShapesWorld.load(out)
    out.with_suffix(".json").write_text("[]", encoding="utf-8")
    with pytest.raises(ResultFormatError, match="not an object"):
        ShapesWorld.load(out)
    w.save(tmp_path / "again")
    data = (tmp_path / "again.npz").read_bytes()
    (tmp_path / "again.npz").write_bytes(data[: len(data) // 2])  # an interrupted copy
    with pytest.raises(ResultFormatError, match="not a readable"):
        ShapesWorld.load(tmp_path / "again")
    assert not list(tmp_path.glob("*.partial"))


def test_empty_selection_and_bool_index(tmp_path: Path) -> None:
    w = shapes(4, seed=1, size=32)
    empty = w.subset([])
    assert len(empty) == 0 and empty.concept_maps["shape"].shape == (0, 32, 32)
    back = ShapesWorld.load(empty.save(tmp_path / "empty"))
    assert len(back) == 0 and back.concepts.shape == (0, 32, 32)
    for flag in (True, False):
        with pytest.raises(InputError, match="boolean mask"):
            w.subset(flag)


# ---------------------------------------------------------------------------- property test


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 5),
    seed=st.integers(0, 2**40),
    size=st.integers(32, 80),
    max_objects=st.integers(1, 3),
)
def test_property_invariants(n: int, seed: int, size: int, max_objects: int) -> None:
    w = shapes(n, seed=seed, size=size, max_objects=max_objects)
    assert w.images.shape == (n, 3, size, size)
    assert float(w.images.min()) >= 0.0 and float(w.images.max()) <= 1.0
    _check_world_invariants(w)
    again = shapes(n, seed=seed, size=size, max_objects=max_objects)
    assert torch.equal(again.images, w.images)


def test_world_larger_than_memory_is_refused_before_allocating() -> None:
    with pytest.raises(InputError, match="GiB"):
        shapes(10**9, size=224)
