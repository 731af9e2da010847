"""Tests of convscope.data.io: reading, resizing and writing images."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from convscope.core.errors import ConvscopeError, ImageReadError, InputError
from convscope.data.io import load_image, load_images, save_image, to_uint8_hwc


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _write(arr: np.ndarray, path: Path, mode: str | None = None) -> Path:
    img = Image.fromarray(arr) if mode is None else Image.fromarray(arr).convert(mode)
    img.save(path)
    return path


# ------------------------------------------------------------------------------------ round trip


def test_save_load_round_trip_equals_uint8_quantised(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 17, 23)
    out = save_image(x, tmp_path / "sub" / "img.png")  # parent dir is created
    assert out == tmp_path / "sub" / "img.png"
    y = load_image(out)
    assert y.dtype == torch.float32 and y.shape == (3, 17, 23)
    expected = torch.round(x * 255) / 255
    assert torch.equal(y, expected)


def test_save_accepts_batch_of_one_and_uint8_oracle(tmp_path: Path) -> None:
    x = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(1))
    save_image(x, tmp_path / "a.png")
    raw = np.asarray(Image.open(tmp_path / "a.png"))
    assert raw.shape == (5, 6, 3) and raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, np.rint(x[0].permute(1, 2, 0).numpy() * 255))


def test_to_uint8_hwc_values_and_shapes() -> None:
    x = torch.tensor([0.0, 0.5, 1.0, 1.0004, -0.0004, 0.2]).reshape(1, 1, 2, 3).expand(1, 3, 2, 3)
    arr = to_uint8_hwc(x)
    assert arr.shape == (2, 3, 3) and arr.dtype == np.uint8
    np.testing.assert_array_equal(arr[..., 0], [[0, 128, 255], [255, 0, 51]])
    gray = to_uint8_hwc(torch.full((1, 4, 5), 0.25))
    assert gray.shape == (4, 5)
    assert (gray == 64).all()
    u8 = torch.randint(0, 256, (3, 2, 2), dtype=torch.uint8)
    np.testing.assert_array_equal(to_uint8_hwc(u8), u8.permute(1, 2, 0).numpy())


@pytest.mark.parametrize(
    ("tensor", "fix"),
    [
        (torch.rand(2, 3, 4, 4), "images[0]"),
        (torch.rand(4, 4, 3), "permute(2, 0, 1)"),
        (torch.full((3, 4, 4), 2.0), "clamp(0, 1)"),
        (torch.full((3, 4, 4), float("nan")), "nan_to_num"),
        (torch.ones(3, 4, 4, dtype=torch.int32), "/ 255"),
    ],
)
def test_to_uint8_hwc_rejects_bad_images(tensor: torch.Tensor, fix: str) -> None:
    with pytest.raises(InputError) as info:
        to_uint8_hwc(tensor)
    assert fix in str(info.value)


def test_save_image_rejects_non_png_and_bad_tensor(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.png"):
        save_image(torch.rand(3, 4, 4), tmp_path / "a.jpg")
    with pytest.raises(InputError, match="normalis"):
        save_image(torch.randn(3, 4, 4) * 3, tmp_path / "a.png")
    assert not (tmp_path / "a.png").exists()


# ---------------------------------------------------------------------------------- file modes


def test_grayscale_loads_as_three_equal_channels(tmp_path: Path) -> None:
    a = _rng().integers(0, 256, (6, 7), dtype=np.uint8)
    x = load_image(_write(a, tmp_path / "g.png"))
    assert x.shape == (3, 6, 7)
    for c in range(3):
        np.testing.assert_array_equal(x[c].numpy(), a.astype(np.float32) / 255)


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    a = _rng(1).integers(0, 256, (5, 4, 4), dtype=np.uint8)
    a[0, 0, 3] = 0  # a fully transparent pixel keeps its stored colour
    x = load_image(_write(a, tmp_path / "rgba.png"))
    assert x.shape == (3, 5, 4)
    np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), a[..., :3].astype(np.float32) / 255)


def test_palette_image_uses_palette_colours(tmp_path: Path) -> None:
    rng = _rng(2)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    idx = rng.integers(0, 256, (8, 9), dtype=np.uint8)
    img = Image.frombytes("P", (idx.shape[1], idx.shape[0]), idx.tobytes())
    img.putpalette(palette.reshape(-1).tolist())
    img.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    x = load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), palette[idx].astype(np.float32) / 255)


def test_palette_with_transparency_loads_without_warning(tmp_path: Path) -> None:
    img = Image.new("P", (4, 3))
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    img.putpixel((1, 1), 1)
    img.save(tmp_path / "pt.png", transparency=0)
    assert "transparency" in Image.open(tmp_path / "pt.png").info
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = load_image(tmp_path / "pt.png")
    assert torch.allclose(x[:, 0, 0], torch.tensor([10, 20, 30]) / 255)
    assert torch.allclose(x[:, 1, 1], torch.tensor([200, 100, 50]) / 255)


def test_sixteen_bit_grayscale_keeps_precision(tmp_path: Path) -> None:
    a = _rng(3).integers(0, 65536, (5, 6), dtype=np.uint16)
    a[0, 0], a[0, 1] = 0, 65535
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    x = load_image(tmp_path / "g16.png")
    np.testing.assert_allclose(x[1].numpy(), a / 65535.0, atol=1e-7)
    assert x[0, 0, 0] == 0 and x[0, 0, 1] == 1


def test_cmyk_without_black_is_inverted_cmy(tmp_path: Path) -> None:
    cmy = _rng(4).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    cmyk = np.concatenate([cmy, np.zeros((4, 5, 1), np.uint8)], axis=2)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.tif")
    x = load_image(tmp_path / "c.tif")
    np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), (255 - cmy).astype(np.float32) / 255)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    a = _rng(5).integers(0, 256, (2, 3, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(a).save(tmp_path / "o.png", exif=exif)
    x = load_image(tmp_path / "o.png")
    expected = np.rot90(a, k=-1)
    np.testing.assert_array_equal(x.permute(1, 2, 0).numpy(), expected.astype(np.float32) / 255)


# ---------------------------------------------------------------------------------- bad files


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match="does not exist") as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, OSError) and isinstance(info.value, ConvscopeError)


def test_directory_is_rejected_with_glob_hint(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="directory") as info:
        load_image(tmp_path)
    assert str(tmp_path) in str(info.value) and "glob" in str(info.value)
    with pytest.raises(ImageReadError, match="directory"):
        load_images([tmp_path])


def test_garbage_bytes_raise_image_read_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(_rng(6).integers(0, 256, 500, dtype=np.uint8)))
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_truncated_png_raises_image_read_error(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(_rng(7).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated") as info:
        load_image(bad)
    assert str(bad) in str(info.value)


# ------------------------------------------------------------------------------ sizes, batches


def _files(tmp_path: Path, shapes: list[tuple[int, int]]) -> list[Path]:
    rng = _rng(8)
    paths = []
    for i, (h, w) in enumerate(shapes):
        paths.append(_write(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), tmp_path / f"{i}.png"))
    return paths


def test_load_images_stacks_in_order(tmp_path: Path) -> None:
    paths = _files(tmp_path, [(6, 5), (6, 5), (6, 5)])
    batch = load_images([str(p) for p in paths])
    assert batch.shape == (3, 3, 6, 5) and batch.dtype == torch.float32
    for i, p in enumerate(paths):
        assert torch.equal(batch[i], load_image(p))


def test_different_sizes_need_size(tmp_path: Path) -> None:
    paths = _files(tmp_path, [(6, 5), (9, 12)])
    with pytest.raises(InputError, match="size=") as info:
        load_images(paths)
    assert str(paths[1]) in str(info.value)
    assert load_images(paths, size=4).shape == (2, 3, 4, 4)
    assert load_images(paths, size=(3, 7)).shape == (2, 3, 3, 7)
    with pytest.raises(InputError, match="center_crop"):
        load_images(paths, size=4, center_crop=False)


def test_int_size_matches_torchvision_resize_then_center_crop(tmp_path: Path) -> None:
    (path,) = _files(tmp_path, [(30, 47)])
    full = load_image(path)
    for size in (8, 13, 30):
        ours = load_image(path, size=size)
        ref = TF.center_crop(TF.resize(full, [size], antialias=True), [size, size])
        assert ours.shape == (3, size, size)
        torch.testing.assert_close(ours, ref.clamp(0, 1), atol=1e-6, rtol=0)
    no_crop = load_image(path, size=10, center_crop=False)
    assert no_crop.shape == (3, 10, 15)  # int(10 * 47 / 30) like torchvision


def test_exact_and_cover_resizes(tmp_path: Path) -> None:
    (path,) = _files(tmp_path, [(20, 10)])
    full = load_image(path)
    exact = load_image(path, size=(7, 9))
    ref = TF.resize(full, [7, 9], antialias=True).clamp(0, 1)
    torch.testing.assert_close(exact, ref, atol=1e-6, rtol=0)
    # "shorter" with (H, W): keep the aspect ratio, cover, crop the centre
    cover = load_image(path, size=(4, 6), resize="shorter")
    assert cover.shape == (3, 4, 6)
    assert load_image(path, size=5, resize="exact").shape == (3, 5, 5)
    # resizing a constant image keeps it constant
    const = _write(np.full((11, 13, 3), 77, np.uint8), tmp_path / "c.png")
    torch.testing.assert_close(load_image(const, size=(5, 4)), torch.full((3, 5, 4), 77 / 255))


@pytest.mark.parametrize("size", [0, -3, (2, 0), (2,), 2.5, True, "224"])
def test_bad_size_raises(tmp_path: Path, size: object) -> None:
    (path,) = _files(tmp_path, [(4, 4)])
    with pytest.raises(InputError, match="size"):
        load_image(path, size=size)  # type: ignore[arg-type]


def test_bad_resize_raises(tmp_path: Path) -> None:
    (path,) = _files(tmp_path, [(4, 4)])
    with pytest.raises(InputError, match="shorter"):
        load_image(path, size=2, resize="stretch")  # type: ignore[arg-type]


def test_load_images_rejects_single_path_and_empty(tmp_path: Path) -> None:
    (path,) = _files(tmp_path, [(4, 4)])
    with pytest.raises(InputError, match="load_image"):
        load_images(path)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="glob"):
        load_images(str(tmp_path))
    with pytest.raises(InputError, match="no paths"):
        load_images([])
    with pytest.raises(InputError, match=r"str or pathlib\.Path"):
        load_images([3])  # type: ignore[list-item]


def test_more_bad_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="list of image paths"):
        load_images(5)  # type: ignore[arg-type]
    (tmp_path / "x.png").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        save_image(torch.rand(3, 4, 4), tmp_path / "x.png")
    from PIL import Image

    nan_tiff = tmp_path / "nan.tif"
    Image.fromarray(np.full((4, 4), np.nan, dtype=np.float32), mode="F").save(nan_tiff)
    with pytest.raises(ImageReadError, match="NaN"):
        load_image(nan_tiff)
