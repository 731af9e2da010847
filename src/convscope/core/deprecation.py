"""Deprecated keyword arguments: renamed ones keep working for a while, with a warning.

Every public function uses one vocabulary (see the glossary in ``docs/architecture.md``):
``resume`` is a file prefix a long run saves its progress to, ``layers`` the modules a method
reads, and so on. A keyword that was renamed to fit it is kept as a deprecated alias::

    def f(x, *, resume=None, checkpoint=None):
        resume = renamed_argument(checkpoint, resume, old="checkpoint", new="resume",
                                  function="f")

``None`` means "not given" for both names (give both keywords a ``None`` default, or pass
``missing=`` for another sentinel).
"""

from __future__ import annotations

import warnings
from typing import Any, TypeVar

from convscope.core.errors import InputError

__all__ = ["removed_argument", "renamed_argument"]

T = TypeVar("T")


def renamed_argument(
    old_value: Any,
    new_value: T,
    *,
    old: str,
    new: str,
    function: str,
    missing: Any = None,
    stacklevel: int = 3,
) -> T:
    """The value to use for the keyword ``new`` whose deprecated old name is ``old``.

    Returns ``new_value`` when ``old`` was not given (``old_value is missing``); otherwise
    warns with a :class:`DeprecationWarning` naming ``new`` and returns ``old_value``. Giving
    both raises :class:`~convscope.core.errors.InputError`. ``stacklevel`` 3 points the
    warning at the caller of ``function`` when this is called from ``function`` itself.
    """
    if old_value is missing:
        return new_value
    if new_value is not missing:
        raise InputError(
            f"{function}() got both {old}= and {new}=; pass only {new}= ({old}= is its "
            "deprecated old name)."
        )
    warnings.warn(
        f"{function}(): {old}= is deprecated and will be removed; use {new}= (same meaning).",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return old_value


def removed_argument(
    value: Any,
    *,
    name: str,
    function: str,
    reason: str,
    missing: Any = None,
    stacklevel: int = 3,
) -> None:
    """Warn (:class:`DeprecationWarning`) that ``name`` has no effect, if it was given.

    ``reason`` says why, e.g. ``"nothing in it is random"``; the value is ignored.
    """
    if value is missing:
        return
    warnings.warn(
        f"{function}(): {name}= is deprecated and has no effect ({reason}); remove it.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
