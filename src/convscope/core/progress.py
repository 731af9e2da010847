"""Progress bars on long loops, silenced globally or per call."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

__all__ = ["progress_bar", "progress_enabled", "set_progress"]

T = TypeVar("T")

#: Loops with fewer steps than this never show a bar unless asked to.
AUTO_MIN_STEPS = 8

_enabled: bool = os.environ.get("CONVSCOPE_QUIET", "") in ("", "0")


def set_progress(enabled: bool) -> None:
    """Turn progress bars on or off for the whole process (``--quiet`` turns them off)."""
    global _enabled
    _enabled = bool(enabled)


def progress_enabled() -> bool:
    """Whether progress bars are globally enabled."""
    return _enabled


def progress_bar(
    iterable: Iterable[T], *, total: int | None = None, desc: str = "", show: bool | None = None
) -> Iterator[T]:
    """Wrap ``iterable`` in a progress bar.

    ``show=None`` shows the bar when bars are enabled and the loop has at least
    :data:`AUTO_MIN_STEPS` steps; ``True``/``False`` force it on or off.
    """
    if show is None:
        show = _enabled and (total is None or total >= AUTO_MIN_STEPS)
    if not show:
        yield from iterable
        return
    yield from tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True)
