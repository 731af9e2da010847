"""Augmentations of the sensitivity analysis: torchvision parity, identities, parameters, order."""

from __future__ import annotations

import colorsys
import itertools
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from convscope.core.errors import InputError
from convscope.sensitivity.augmentation.augmentations import (
    A1,
    A2,
    AUGMENTATIONS,
    Augmentation,
    Brightness,
    Contrast,
    EllipticLocalBlur,
    Erasing,
    FunctionAugmentation,
    GaussianBlur,
    Grayscale,
    HorizontalFlip,
    Hue,
    Parameter,
    Rolling,
    Rotation,
    Saturation,
    SharpnessConst,
    augmentation_set,
    compose,
    hsv_to_rgb,
    minmax_rescale,
    permutation_from_index,
    rgb_to_hsv,
)

H = W = 32


def _images(m: int = 4, seed: int = 0) -> Tensor:
    return torch.rand(m, 3, H, W, generator=torch.Generator().manual_seed(seed))


def _thetas(aug: Augmentation, m: int, seed: int = 1) -> Tensor:
    u = torch.rand(m, aug.n_params, generator=torch.Generator().manual_seed(seed))
    return aug.sample(u, H, W)


def _exact(a: Tensor, b: Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("aug", [a for a in A1 + A2 if a.params], ids=lambda a: a.name)
def test_identity_parameters_leave_images_unchanged(aug: Augmentation) -> None:
    x = _images()
    _exact(aug(x, aug.identity_theta(4)), x)
    _exact(aug.apply(x, aug.identity_theta(4, dtype=torch.float32)), x)


def test_sets_follow_the_paper() -> None:
    assert [a.name for a in A1] == [
        "erasing",
        "sharpness_const",
        "rolling",
        "grayscale",
        "gaussian_blur",
    ]
    assert [a.name for a in A2] == [
        "brightness",
        "contrast",
        "saturation",
        "hue",
        "hflip",
        "rotation",
        "elliptic_local_blur",
    ]
    # raw-variable counts of spec §1.2: 12 (A1) and 17 (A2) with one switch per augmentation
    assert sum(a.n_params + 1 for a in A1) == 12
    assert sum(a.n_params + 1 for a in A2) == 17
    for aug in A1 + A2:
        assert aug.check() is aug and len(aug.identity) == aug.n_params


# --- torchvision parity, image by image --------------------------------------------------


@pytest.mark.parametrize(
    ("aug", "reference"),
    [
        (Brightness(), TF.adjust_brightness),
        (Contrast(), TF.adjust_contrast),
        (Saturation(), TF.adjust_saturation),
        (Hue(), TF.adjust_hue),
    ],
    ids=["brightness", "contrast", "saturation", "hue"],
)
def test_colour_factors_match_torchvision_per_image(aug: Augmentation, reference: object) -> None:
    x = _images(6)
    theta = _thetas(aug, 6)
    out = aug(x, theta)
    assert callable(reference)
    expected = torch.cat([reference(x[i : i + 1], float(theta[i, 0])) for i in range(6)])
    torch.testing.assert_close(out, expected, rtol=0, atol=2e-6)
    assert len({float(v) for v in theta[:, 0]}) == 6  # really different factors per image


def test_gaussian_blur_matches_torchvision_per_image() -> None:
    aug, x = GaussianBlur(), _images(5)
    theta = _thetas(aug, 5)
    expected = torch.cat(
        [TF.gaussian_blur(x[i : i + 1], [7, 7], [float(theta[i, 0])]) for i in range(5)]
    )
    torch.testing.assert_close(aug(x, theta), expected, rtol=0, atol=1e-6)


def test_sharpness_and_grayscale_match_torchvision_and_luma() -> None:
    x = _images(3)
    none = torch.zeros(3, 0)
    _exact(SharpnessConst()(x, none), TF.adjust_sharpness(x, 1.5))
    luma = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(Grayscale()(x, none), luma[:, None].expand(-1, 3, -1, -1))


def test_rolling_matches_torch_roll_per_image() -> None:
    aug, x = Rolling(), _images(5)
    theta = torch.tensor([[0, 0], [3, -2], [-6, 6], [1, 5], [-4, -1]], dtype=torch.float64)
    expected = torch.cat(
        [x[i : i + 1].roll((int(theta[i, 0]), int(theta[i, 1])), dims=(-2, -1)) for i in range(5)]
    )
    _exact(aug(x, theta), expected)


def test_erasing_matches_torchvision_erase_and_skips_rectangles_that_do_not_fit() -> None:
    aug, x = Erasing(), _images(3)
    # (cy, cx, scale, ratio): hh = round(sqrt(1024*s*r)), ww = round(sqrt(1024*s/r))
    theta = torch.tensor(
        [
            [10.0, 20.0, 0.125, 2.0],  # hh=16, ww=8 -> rows 2..17, cols 16..23
            [16.0, 16.0, 0.0625, 1.0],  # 8x8 at (12, 12)
            [28.0, 16.0, 0.25, 1.0],  # 16x16 at (20, 8): 20 + 16 >= 32 -> unchanged
        ]
    )
    out = aug(x, theta)
    zero = torch.tensor(0.0)
    _exact(out[0], TF.erase(x[0], 2, 16, 16, 8, zero))
    _exact(out[1], TF.erase(x[1], 12, 12, 8, 8, zero))
    _exact(out[2], x[2])
    assert int((out[0] == 0).all(0).sum()) == 16 * 8


def test_erasing_rectangle_touching_the_border_is_rejected_like_the_reference() -> None:
    # top + hh == H is already "does not fit" (strict < in the reference)
    x = _images(1)
    theta = torch.tensor([[24.0, 10.0, 0.0625, 1.0]])  # 8x8 at top 20 -> 28 < 32 fits
    assert bool((Erasing()(x, theta) == 0).any())
    theta = torch.tensor([[28.0, 10.0, 0.0625, 1.0]])  # top 24, 24 + 8 == 32 -> unchanged
    _exact(Erasing()(x, theta), x)


def test_hflip_twice_is_identity_and_mirrors_columns() -> None:
    x, none = _images(2), torch.zeros(2, 0)
    flipped = HorizontalFlip()(x, none)
    _exact(flipped[..., 0], x[..., W - 1])
    _exact(HorizontalFlip()(flipped, none), x)


def test_rotation_margins_and_no_black_border() -> None:
    # hand-computed: t = tan 10° = 0.17633, k = t/(1-t²) = 0.18198, 0.18198·(224-224t) = 33.6
    assert Rotation.margins(10.0, 224, 224) == (34, 34)
    assert Rotation.margins(-10.0, 224, 224) == (34, 34)
    assert Rotation.margins(0.0, 224, 224) == (0, 0)
    white = torch.ones(3, 3, H, W)
    theta = torch.tensor([[10.0], [-10.0], [4.0]])
    # the crop removes every black corner left by the rotation (also on non-square images)
    _exact(Rotation()(white, theta), white)
    for shape in [(24, 40), (40, 24), (17, 31)]:
        out = Rotation()(torch.ones(3, 3, *shape), theta)
        torch.testing.assert_close(out, torch.ones_like(out))
    with pytest.raises(InputError, match="leaves nothing"):
        Rotation()(torch.ones(1, 3, 20, 60), torch.tensor([[10.0]]))
    x = _images(2)
    out = Rotation()(x, torch.tensor([[8.0], [-8.0]]))
    assert not torch.allclose(out[0], x[0]) and not torch.allclose(out[1], x[1])
    # opposite angles are mirror images of each other: flip ∘ rot(φ) = rot(-φ) ∘ flip
    img = _images(1)
    flip = TF.horizontal_flip
    lhs = flip(Rotation(interpolation="bilinear")(img, torch.tensor([[7.0]])))
    rhs = Rotation(interpolation="bilinear")(flip(img), torch.tensor([[-7.0]]))
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-4)


def test_elliptic_mask_geometry_and_local_blur() -> None:
    aug = EllipticLocalBlur()
    size = 64
    # a along columns, b along rows, centre (col 32 + 2, row 32 - 3)
    flat = aug.masks(torch.tensor([[12.0, 6.0, 2.0, -3.0, 0.0]]), size, size)[0]
    rows, cols = flat.nonzero().unbind(1)
    assert (int(cols.min()), int(cols.max())) == (34 - 12, 34 + 12)
    assert (int(rows.min()), int(rows.max())) == (29 - 6, 29 + 6)
    assert abs(int(flat.sum()) - math.pi * 12 * 6) < 0.05 * math.pi * 12 * 6
    upright = aug.masks(torch.tensor([[12.0, 6.0, 0.0, 0.0, 90.0]]), size, size)[0]
    rows, cols = upright.nonzero().unbind(1)
    assert int(rows.max() - rows.min()) == 24 and int(cols.max() - cols.min()) == 12
    # positive angle turns the major axis counter-clockwise on screen (cv2 angle -phi)
    tilted = aug.masks(torch.tensor([[14.0, 3.0, 0.0, 0.0, 30.0]]), size, size)[0]
    dr, dc = round(10 * math.sin(math.radians(30))), round(10 * math.cos(math.radians(30)))
    assert bool(tilted[32 - dr, 32 + dc]) and not bool(tilted[32 + dr, 32 + dc])
    # inside: blurred; outside: untouched
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    theta = torch.tensor([[12.0, 6.0, 2.0, -3.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    out = aug(x, theta)
    blurred = TF.gaussian_blur(x[:1], [17, 17], [2.0])  # half-width ceil(4σ) = 8
    _exact(out[0][:, ~flat], x[0][:, ~flat])
    torch.testing.assert_close(out[0][:, 29, 34], blurred[0][:, 29, 34], rtol=0, atol=1e-5)
    _exact(out[1], x[1])


def test_elliptic_local_blur_sigma_option() -> None:
    x = _images(1)
    theta = torch.tensor([[8.0, 8.0, 0.0, 0.0, 0.0]])
    assert not torch.equal(EllipticLocalBlur(sigma=3.0)(x, theta), EllipticLocalBlur()(x, theta))


# --- parameters --------------------------------------------------------------------------


def test_parameter_bounds_rounding_and_log_median() -> None:
    u = torch.tensor([0.0, 1.0, 0.5])
    cont = Parameter("f", 0.1, 2.5)
    torch.testing.assert_close(cont.value(u, H, W), torch.tensor([0.1, 2.5, 1.3]))
    integer = Parameter("n", 10.0, 32.0, "integer")
    values = integer.value(torch.rand(100, generator=torch.Generator().manual_seed(0)), H, W)
    _exact(values, values.round())
    _exact(integer.value(torch.tensor([0.0, 1.0, 0.52]), H, W), torch.tensor([10.0, 32.0, 21.0]))
    log = Parameter("r", 0.3, 3.3, "log")
    torch.testing.assert_close(
        log.value(u, H, W), torch.tensor([0.3, 3.3, math.sqrt(0.3 * 3.3)]), rtol=1e-6, atol=0
    )
    # log-uniform: the empirical median of many draws is near sqrt(lo * hi)
    draws = log.value(torch.rand(20000, generator=torch.Generator().manual_seed(1)), H, W)
    assert abs(float(draws.median()) - math.sqrt(0.99)) < 0.03


def test_relative_bounds_follow_the_side_like_the_reference() -> None:
    # reference: off = side // 5 -> centres U_D(off, side - off), roll U_D(-off, off)
    erasing, rolling, elb = Erasing(), Rolling(), EllipticLocalBlur()
    for height, width in [(224, 224), (64, 48), (37, 101)]:
        assert erasing.params[0].bounds(height, width) == (height // 5, height - height // 5)
        assert erasing.params[1].bounds(height, width) == (width // 5, width - width // 5)
        assert rolling.params[0].bounds(height, width) == (-(height // 5), height // 5)
        assert rolling.params[1].bounds(height, width) == (-(width // 5), width // 5)
    # the ellipse ranges are the paper's at 224 pixels and shrink with the image
    assert [p.bounds(224, 224) for p in elb.params[:4]] == [(10, 32)] * 2 + [(-32, 32)] * 2
    assert elb.params[0].bounds(64, 64) == (2, 9) and elb.params[2].bounds(64, 64) == (-9, 9)
    theta = erasing.sample(torch.tensor([[0.0, 1.0, 0.0, 1.0]]), 64, 48)
    torch.testing.assert_close(theta, torch.tensor([[12.0, 39.0, 0.02, 3.3]]))


def test_parameter_and_sample_validation() -> None:
    with pytest.raises(InputError, match="low > 0"):
        Parameter("r", 0.0, 1.0, "log")
    with pytest.raises(InputError, match="kind"):
        Parameter("r", 0.0, 1.0, "discrete")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="low <= high"):
        Parameter("r", 2.0, 1.0)
    with pytest.raises(InputError, match=r"\(m, 4\)"):
        Erasing().sample(torch.rand(3, 2), H, W)
    with pytest.raises(InputError, match=r"theta must have shape \(2, 1\)"):
        Brightness()(_images(2), torch.ones(3, 1))


# --- permutations and composition -----------------------------------------------------------


def test_permutation_from_index_is_lexicographic() -> None:
    orders = permutation_from_index(torch.arange(24), 4)
    assert [tuple(r) for r in orders.tolist()] == list(itertools.permutations(range(4)))
    assert permutation_from_index(torch.tensor([0]), 7).tolist() == [list(range(7))]
    assert permutation_from_index(torch.tensor([5039.0]), 7).tolist() == [list(range(6, -1, -1))]
    with pytest.raises(InputError, match=r"\[0, 24\)"):
        permutation_from_index(torch.tensor([24]), 4)


def test_compose_respects_per_image_order() -> None:
    x = _images(2)
    roll, erase = Rolling(), Erasing()
    theta_roll = torch.tensor([[0.0, 8.0]] * 2)
    theta_erase = torch.tensor([[16.0, 16.0, 0.0625, 1.0]] * 2)
    order = torch.tensor([[0, 1], [1, 0]])  # image 0: roll then erase; image 1: erase then roll
    out = compose(x, [roll, erase], [theta_roll, theta_erase], order)
    roll_first = erase(roll(x, theta_roll), theta_erase)
    erase_first = roll(erase(x, theta_erase), theta_roll)
    assert not torch.equal(roll_first, erase_first)
    _exact(out[0], roll_first[0])
    _exact(out[1], erase_first[1])


def test_compose_matches_sequential_application_with_switches() -> None:
    augs = augmentation_set("A2")
    m, d = 6, len(augs)
    x = _images(m)
    thetas = [_thetas(a, m, seed=10 + j) for j, a in enumerate(augs)]
    order = permutation_from_index(torch.tensor([0, 17, 300, 1234, 5039, 4000]), d)
    active = torch.rand(m, d, generator=torch.Generator().manual_seed(4)) > 0.4
    active[0] = False
    out = compose(x, augs, thetas, order, active)
    for i in range(m):
        img = x[i : i + 1]
        for j in order[i].tolist():
            if active[i, j]:
                img = augs[j](img, thetas[j][i : i + 1])
        torch.testing.assert_close(out[i : i + 1], img, rtol=0, atol=1e-6)
    _exact(out[0], x[0])  # all switches off: unchanged
    assert x.data_ptr() != out.data_ptr()


def test_compose_validates_its_inputs() -> None:
    x, augs = _images(2), [Brightness(), HorizontalFlip()]
    thetas = [torch.ones(2, 1), torch.zeros(2, 0)]
    with pytest.raises(InputError, match="permutation"):
        compose(x, augs, thetas, torch.tensor([[0, 0], [1, 0]]))
    with pytest.raises(InputError, match="active"):
        compose(x, augs, thetas, torch.tensor([[0, 1], [1, 0]]), torch.ones(2, 2))
    with pytest.raises(InputError, match="one theta per augmentation"):
        compose(x, augs, thetas[:1], torch.tensor([[0, 1], [1, 0]]))


def test_user_defined_augmentations() -> None:
    invert = FunctionAugmentation(
        "mix",
        lambda x, t: x * (1 - t[:, :1, None, None]) + (1 - x) * t[:, :1, None, None],
        [Parameter("w", 0.0, 1.0)],
        [0.0],
    )
    shift = FunctionAugmentation(
        "offset",
        lambda img, t: (img + t[0]).clamp(0, 1),
        [Parameter("t", -0.1, 0.1)],
        [0.0],
        batched=False,
    )
    x = _images(3)
    theta = torch.tensor([[0.0], [1.0], [0.5]])
    out = invert(x, theta)
    _exact(out[0], x[0])
    torch.testing.assert_close(out[1], 1 - x[1])
    torch.testing.assert_close(out[2], torch.full_like(x[2], 0.5))
    augs = augmentation_set([invert, "hflip", shift])
    assert [a.name for a in augs] == ["mix", "hflip", "offset"]
    out = compose(x, augs, [theta, None, torch.zeros(3, 1)], torch.tensor([[2, 1, 0]] * 3))
    torch.testing.assert_close(out, TF.horizontal_flip(invert(x, theta)))

    class Bad(Augmentation):
        name = "bad"
        params = (Parameter("p", 0.0, 1.0),)

    with pytest.raises(InputError, match="identity"):
        augmentation_set([Bad()])


def test_augmentation_set_errors_list_valid_names() -> None:
    assert augmentation_set("A1") == A1 and augmentation_set("A1") is not A1
    assert augmentation_set("hue") == [AUGMENTATIONS["hue"]]
    with pytest.raises(InputError, match="gaussian_blur") as err:
        augmentation_set(["gausian_blur"])
    assert "'A1'" in str(err.value) and "elliptic_local_blur" in str(err.value)
    with pytest.raises(InputError, match="A3"):
        augmentation_set("A3")
    with pytest.raises(InputError, match="repeated"):
        augmentation_set(["hue", "hue"])
    with pytest.raises(InputError, match="non-empty"):
        augmentation_set([])


# --- pipeline helpers -------------------------------------------------------------------------


def test_minmax_rescale_on_a_known_tensor() -> None:
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = torch.tensor([[0.2, 0.4], [0.6, 1.0]])
    x[0, 1] = 0.7  # constant channel: shifted to 0 (reference img_normalize)
    x[0, 2] = torch.tensor([[0.5, 0.5], [0.5, 0.5 + 1e-7]])  # range below eps: only shifted
    out = minmax_rescale(x)
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    _exact(out[0, 1], torch.zeros(2, 2))
    torch.testing.assert_close(out[0, 2], x[0, 2] - 0.5)


def test_rgb_to_hsv_matches_colorsys_and_round_trips() -> None:
    pixels = [
        (1.0, 0.0, 0.0),
        (0.2, 0.8, 0.4),
        (0.1, 0.3, 0.9),
        (0.9, 0.1, 0.7),
        (0.5, 0.5, 0.5),
        (0.0, 0.0, 0.0),
        (0.8, 0.8, 0.1),
        (0.3, 0.05, 0.2),
    ]
    x = torch.tensor(pixels, dtype=torch.float64).T.reshape(1, 3, 1, len(pixels))
    hsv = rgb_to_hsv(x)
    expected = torch.tensor([colorsys.rgb_to_hsv(*p) for p in pixels], dtype=torch.float64)
    torch.testing.assert_close(hsv[0, :, 0].T, expected)
    torch.testing.assert_close(hsv_to_rgb(hsv), x)
    y = _images(2)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(y)), y, rtol=0, atol=1e-6)
    with pytest.raises(InputError, match="N×3×H×W"):
        rgb_to_hsv(y[:, :2])
