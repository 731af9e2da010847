"""Read and write images as convscope tensors.

Images are float32 tensors with values in ``[0, 1]``: a single image is ``3×H×W`` and a batch
is ``N×3×H×W``. Files are decoded with Pillow; every mode is converted to RGB:

* grayscale (``L``, ``1``, ``I;16``, ``I``, ``F``) is repeated over the three channels; 16-bit
  images (``I;16*`` and ``I``) are scaled by ``1 / 65535`` so no precision is clipped away,
  ``F`` images are taken as already in ``[0, 1]`` and clipped;
* the alpha channel of ``RGBA``/``LA``/``PA`` images and the transparency of palette images is
  **dropped** (the stored colours are kept, as ``PIL.Image.convert("RGB")`` and
  ``torchvision.datasets.ImageFolder`` do), not composited over a background;
* ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` are converted with Pillow;
* the EXIF orientation tag is applied, so photographs come out upright.

Resizing uses bilinear interpolation with antialiasing (``torch.nn.functional.interpolate``), the
same as ``torchvision.transforms.Resize`` on tensors.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from convscope.core.errors import ImageReadError, InputError
from convscope.core.validation import RANGE_TOLERANCE

__all__ = ["load_image", "load_images", "save_image", "to_uint8_hwc"]

PathLike = str | os.PathLike[str]
"""A file path: a string or a :class:`pathlib.Path`."""

Size = int | tuple[int, int]
"""An image size: an int (shorter side or square side) or ``(height, width)``."""

ResizeMode = Literal["shorter", "exact"]

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def _as_path(path: object) -> Path:
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(
            f"An image path must be a str or pathlib.Path, got {type(path).__name__}: {path!r}. "
            "Pass the file name, e.g. load_image('cat.png')."
        )
    return Path(path)


def _decode(path: Path) -> Tensor:
    """Decode the file at ``path`` into a ``3×H×W`` float32 tensor in ``[0, 1]``."""
    if not path.exists():
        raise ImageReadError(
            f"Cannot read image '{path}': the file does not exist. Check the path "
            f"(current directory: '{Path.cwd()}')."
        )
    if path.is_dir():
        raise ImageReadError(
            f"Cannot read image '{path}': it is a directory, not an image file. Pass image "
            f"files, e.g. load_images(sorted(Path('{path}').glob('*.png')))."
        )
    try:
        with Image.open(path) as opened:
            opened.load()
            img = ImageOps.exif_transpose(opened)
            if img is None:  # pragma: no cover - only with in_place=True
                img = opened
            arr = _to_rgb_array(img, path)
    except ImageReadError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ImageReadError(
            f"Cannot read image '{path}': {_reason(exc)}. The file is not an image Pillow can "
            "decode or it is corrupted; re-export it as PNG or JPEG."
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(
            f"Cannot read image '{path}': {_reason(exc)}. The file is truncated, corrupted or "
            "unreadable; re-download or re-export it."
        ) from exc
    tensor = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    return tensor.contiguous()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    return text or type(exc).__name__


def _to_rgb_array(img: Image.Image, path: Path) -> npt.NDArray[np.float32]:
    """Convert a Pillow image of any mode into an ``H×W×3`` float32 array in ``[0, 1]``."""
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(img).astype(np.float32) / 65535.0
        gray = np.clip(gray, 0.0, 1.0)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        raw = np.asarray(img, dtype=np.float32)
        if not np.isfinite(raw).all():
            raise ImageReadError(
                f"Image {str(path)!r} is a floating-point image with NaN or infinite pixels; "
                "fix or re-export it as an 8- or 16-bit image."
            )
        gray = np.clip(raw, 0.0, 1.0)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P":
        # via RGBA: Pillow warns when a palette image with transparency goes straight to RGB
        img = img.convert("RGBA")
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except ValueError as exc:
            raise ImageReadError(
                f"Cannot read image '{path}': Pillow cannot convert mode {mode!r} to RGB "
                f"({_reason(exc)}). Re-save the image as an RGB or grayscale PNG."
            ) from exc
    arr = np.asarray(img, dtype=np.uint8)
    return arr.astype(np.float32) / np.float32(255.0)


def _check_size(size: object) -> tuple[int, int] | int | None:
    if size is None:
        return None
    if isinstance(size, bool):
        raise InputError(f"size must be an int or (height, width), got {size!r}.")
    if isinstance(size, (int, np.integer)):
        if size <= 0:
            raise InputError(f"size must be positive, got {size}. Pass e.g. size=224.")
        return int(size)
    if isinstance(size, (tuple, list)) and len(size) == 2:
        if all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size):
            h, w = int(size[0]), int(size[1])
            if h > 0 and w > 0:
                return (h, w)
        raise InputError(
            f"size=(height, width) needs two positive ints, got {size!r}. Pass e.g. "
            "size=(224, 224)."
        )
    raise InputError(
        f"size must be an int (shorter side, then centre crop) or a (height, width) pair, got "
        f"{size!r}. Pass e.g. size=224 or size=(224, 224)."
    )


def _check_resize(resize: object, center_crop: object) -> None:
    if resize not in (None, "shorter", "exact"):
        raise InputError(
            f"resize must be 'shorter' (keep the aspect ratio, then crop) or 'exact' (stretch to "
            f"the size), got {resize!r}."
        )
    if not isinstance(center_crop, bool):
        raise InputError(f"center_crop must be True or False, got {center_crop!r}.")


def _interpolate(x: Tensor, height: int, width: int) -> Tensor:
    if (x.shape[-2], x.shape[-1]) == (height, width):
        return x
    out = F.interpolate(
        x[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )[0]
    return out.clamp_(0.0, 1.0)


def _center_crop(x: Tensor, height: int, width: int) -> Tensor:
    h, w = x.shape[-2], x.shape[-1]
    top = round((h - height) / 2.0)
    left = round((w - width) / 2.0)
    return x[:, top : top + height, left : left + width]


def _transform(
    x: Tensor, size: int | tuple[int, int] | None, resize: ResizeMode | None, center_crop: bool
) -> Tensor:
    if size is None:
        return x
    h, w = x.shape[-2], x.shape[-1]
    target = (size, size) if isinstance(size, int) else size
    mode = resize if resize is not None else ("shorter" if isinstance(size, int) else "exact")
    if mode == "exact":
        return _interpolate(x, *target)
    if isinstance(size, int):
        # torchvision's Resize(size): shorter side to `size`, longer side truncated
        if h <= w:
            new_h, new_w = size, max(size, int(size * w / h))
        else:
            new_h, new_w = max(size, int(size * h / w)), size
        resized = _interpolate(x, new_h, new_w)
        return _center_crop(resized, size, size) if center_crop else resized
    # scale so the image covers the target, then crop the centre
    scale = max(target[0] / h, target[1] / w)
    new_h = max(target[0], round(h * scale))
    new_w = max(target[1], round(w * scale))
    return _center_crop(_interpolate(x, new_h, new_w), *target)


def load_image(
    path: PathLike,
    size: Size | None = None,
    *,
    resize: ResizeMode | None = None,
    center_crop: bool = True,
) -> Tensor:
    """Load one image file as a ``3×H×W`` float32 tensor in ``[0, 1]``.

    Parameters
    ----------
    path : str or pathlib.Path
        Image file (anything Pillow decodes: PNG, JPEG, BMP, GIF, TIFF, WebP, ...).
    size : int or tuple of int, optional
        ``None`` keeps the file's size. An int resizes the shorter side to ``size`` (keeping the
        aspect ratio) and crops the centre ``size×size``, exactly like torchvision's
        ``Resize(size, antialias=True)`` then ``CenterCrop(size)`` on a float tensor.
        ``(height, width)`` resizes exactly to that size (the aspect ratio may change).
    resize : {"shorter", "exact"}, optional
        Overrides the default implied by ``size``: ``"exact"`` stretches to ``size`` (an int means
        ``size×size``); ``"shorter"`` keeps the aspect ratio, scaling so the image covers ``size``
        and cropping the centre (with an int size and ``center_crop=False`` the shorter side is
        resized and nothing is cropped).
    center_crop : bool, default True
        Only used with an int ``size`` and ``resize="shorter"``: ``False`` skips the crop.

    Returns
    -------
    torch.Tensor
        ``3×H×W`` float32 tensor with values in ``[0, 1]``.

    Raises
    ------
    ImageReadError
        The file does not exist, is a directory, or cannot be decoded (the message names the path
        and the reason).
    InputError
        ``size``/``resize``/``center_crop`` are invalid.

    See Also
    --------
    load_images : load several files into one batch.
    """
    checked = _check_size(size)
    _check_resize(resize, center_crop)
    return _transform(_decode(_as_path(path)), checked, resize, center_crop)


def load_images(
    paths: Iterable[PathLike],
    size: Size | None = None,
    *,
    resize: ResizeMode | None = None,
    center_crop: bool = True,
) -> Tensor:
    """Load image files into an ``N×3×H×W`` float32 batch in ``[0, 1]``.

    Parameters
    ----------
    paths : iterable of str or pathlib.Path
        Image files, in batch order. A directory is not accepted: pass its files, e.g.
        ``sorted(Path("imgs").glob("*.jpg"))``.
    size : int or tuple of int, optional
        As in :func:`load_image`. Without ``size`` all images must already have the same size.
    resize : {"shorter", "exact"}, optional
        As in :func:`load_image`.
    center_crop : bool, default True
        As in :func:`load_image`.

    Returns
    -------
    torch.Tensor
        ``N×3×H×W`` float32 tensor with values in ``[0, 1]``.

    Raises
    ------
    ImageReadError
        A file is missing, a directory or unreadable (the message names it).
    InputError
        ``paths`` is a single path or empty, or the images end up with different sizes (pass
        ``size=``).
    """
    if isinstance(paths, (str, bytes, os.PathLike)):
        p = Path(os.fsdecode(paths))
        hint = (
            f"for a directory pass its files, e.g. load_images(sorted(Path('{p}').glob('*.png')))"
            if p.is_dir()
            else f"for one file use load_image('{p}') or load_images(['{p}'])"
        )
        raise InputError(
            f"load_images expects a list of image paths, got the single path '{p}'; {hint}."
        )
    checked = _check_size(size)
    _check_resize(resize, center_crop)
    if not isinstance(paths, Iterable):
        raise InputError(
            f"load_images expects a list of image paths, got {type(paths).__name__}; pass e.g. "
            "load_images(['a.png', 'b.jpg'])."
        )
    path_list = [_as_path(p) for p in paths]
    if not path_list:
        raise InputError("load_images got no paths. Pass a non-empty list of image files.")
    images = [_transform(_decode(p), checked, resize, center_crop) for p in path_list]
    first = images[0].shape[-2:]
    for p, img in zip(path_list, images, strict=True):
        if img.shape[-2:] != first:
            suggestion = (
                "pass size=224 (shorter side + centre crop) or size=(H, W) to resize them"
                if checked is None
                else "use center_crop=True or size=(H, W) so they all get one size"
            )
            raise InputError(
                f"Images have different sizes: '{path_list[0]}' is {first[0]}×{first[1]} but "
                f"'{p}' is {img.shape[-2]}×{img.shape[-1]}; {suggestion}."
            )
    return torch.stack(images)


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def to_uint8_hwc(tensor: Tensor) -> npt.NDArray[np.uint8]:
    """Convert an image tensor to a ``H×W×3`` uint8 array for plotting or saving.

    Parameters
    ----------
    tensor : torch.Tensor
        ``3×H×W`` or ``1×3×H×W`` float image in ``[0, 1]`` (values within ``1e-3`` outside the
        range are clipped). ``1×H×W``, ``1×1×H×W`` and ``H×W`` grayscale images are accepted too
        and give ``H×W`` arrays (what ``matplotlib.pyplot.imshow`` expects); a uint8 tensor is
        passed through unscaled.

    Returns
    -------
    numpy.ndarray
        ``H×W×3`` (or ``H×W`` for grayscale) uint8 array, ``round(255 * x)``.

    Raises
    ------
    InputError
        Wrong rank or channel count, a batch of more than one image, NaN/inf values, or values
        outside ``[0, 1]`` (e.g. a normalised image).
    """
    if not isinstance(tensor, Tensor):
        raise InputError(
            f"Expected an image tensor, got {type(tensor).__name__}. Convert it with "
            "torch.as_tensor(...)."
        )
    x = tensor.detach()
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise InputError(
                f"Expected one image, got a batch of {x.shape[0]} (shape {tuple(x.shape)}). Pass "
                "one image, e.g. images[0]."
            )
        x = x[0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        hint = (
            " It looks channels-last: use tensor.permute(2, 0, 1)."
            if x.ndim == 3 and x.shape[-1] in (1, 3)
            else ""
        )
        raise InputError(
            f"Expected an image of shape 3×H×W or 1×3×H×W, got {tuple(tensor.shape)}.{hint}"
        )
    if x.dtype == torch.uint8:
        arr = x.cpu().permute(1, 2, 0).numpy()
    else:
        if not (x.is_floating_point()):
            raise InputError(
                f"Expected a float image in [0, 1], got dtype {x.dtype}. Convert it, e.g. "
                "x.float() / 255 for 0-255 values."
            )
        x = x.float()
        finite = torch.isfinite(x)
        if not bool(finite.all()):
            bad = int((~finite).sum())
            raise InputError(
                f"The image has {bad} NaN/inf values; fix the computation that produced it "
                "(or use torch.nan_to_num) before saving or plotting."
            )
        lo, hi = float(x.min()), float(x.max())
        if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
            raise InputError(
                f"Image values must be in [0, 1], got range [{lo:.4g}, {hi:.4g}]. If it is a "
                "normalised image, undo the normalisation (x * std + mean); otherwise use "
                "x.clamp(0, 1)."
            )
        arr = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu().permute(1, 2, 0).numpy()
    arr = np.ascontiguousarray(arr)
    if arr.shape[2] == 1:
        return arr[:, :, 0]
    return arr


def save_image(tensor: Tensor, path: PathLike) -> Path:
    """Save an image tensor as a PNG file (lossless, 8 bits per channel).

    Parameters
    ----------
    tensor : torch.Tensor
        ``3×H×W`` or ``1×3×H×W`` float image in ``[0, 1]`` (grayscale ``1×H×W`` works too).
        Values are quantised to ``round(255 * x)``, so :func:`load_image` gives back
        ``round(255 * x) / 255``.
    path : str or pathlib.Path
        Destination; must end in ``.png``. Missing parent directories are created.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    InputError
        The tensor is not an image in ``[0, 1]`` (see :func:`to_uint8_hwc`) or the path does
        not end in ``.png``.
    """
    out = _as_path(path)
    if out.suffix.lower() != ".png":
        raise InputError(
            f"save_image writes PNG files, got the path '{out}'. Use a path ending in '.png', "
            f"e.g. '{out.with_suffix('.png')}'."
        )
    if out.is_dir():
        raise InputError(f"save_image: '{out}' is a directory; pass the path of a .png file.")
    arr = to_uint8_hwc(tensor)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(out, format="PNG")
    return out
