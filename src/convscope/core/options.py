"""Options dataclasses: every setting of a method in one frozen, documented, JSON-able object.

A method with many keyword arguments (e.g.
:func:`~convscope.attribution.extremal_perturbation`) also accepts ``options=`` with a
frozen dataclass derived from :class:`Options` whose fields are those keywords, with the
same defaults and a help text each (``field(metadata={"help": ...})``)::

    opts = ExtremalOptions(max_iter=300, variant="dual")
    extremal_perturbation(model, x, 3, options=opts)
    extremal_perturbation(model, x, 3, options=opts.replace(lr=0.05))
    ExtremalOptions.help("step")

The rule when both are given (:func:`merge_options`): ``options=`` plus a keyword whose value
differs from its default raises :class:`~convscope.core.errors.InputError` (change the
options with :meth:`Options.replace` instead); keywords left at their defaults are ignored.
The result's ``settings`` are :meth:`Options.to_dict`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from convscope.core.errors import InputError, suggestion

__all__ = ["Options", "merge_options"]

OptionsT = TypeVar("OptionsT", bound="Options")


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of the options dataclasses (subclasses are ``@dataclass(frozen=True)``)."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """``{name: default}`` of every option."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out

    @classmethod
    def help(cls, name: str | None = None) -> str:
        """The help text of option ``name``, or of every option (one ``name: text`` a line)."""
        texts = {f.name: str(f.metadata.get("help", "")) for f in dataclasses.fields(cls)}
        if name is None:
            return "\n".join(f"{key}: {text}" for key, text in texts.items())
        if name not in texts:
            raise InputError(
                f"{cls.__name__} has no option {name!r}." + suggestion(name, texts, "options")
            )
        return texts[name]

    def replace(self: OptionsT, **changes: Any) -> OptionsT:
        """A copy with ``changes`` applied (and validated); unknown names raise InputError."""
        _check_names(type(self), changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """``{name: value}`` of every option (override to make values JSON-able)."""
        return {name: getattr(self, name) for name in self.field_names()}


def _check_names(cls: type[Options], names: Mapping[str, Any]) -> None:
    known = cls.field_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(
            f"{cls.__name__} has no option {unknown[0]!r}."
            + suggestion(unknown[0], known, "options")
        )


def _is_default(value: Any, default: Any) -> bool:
    if value is default:
        return True
    if type(value) is not type(default):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError, RuntimeError):  # e.g. tensors
        return False


def merge_options(
    cls: type[OptionsT], options: OptionsT | None, keywords: Mapping[str, Any], *, function: str
) -> OptionsT:
    """The options of one call given ``options=`` and the keyword arguments ``keywords``.

    Without ``options`` the keywords make a ``cls``. With it, every keyword must be at its
    default: a changed keyword raises :class:`~convscope.core.errors.InputError` naming it
    (use ``options.replace(name=value)``), since silently preferring either would hide a
    setting the caller asked for.
    """
    if options is None:
        _check_names(cls, keywords)
        return cls(**keywords)
    if not isinstance(options, cls):
        raise InputError(
            f"{function}(): options must be a {cls.__name__}, got {type(options).__name__}."
        )
    defaults = cls.defaults()
    changed = [
        name for name, value in keywords.items() if not _is_default(value, defaults.get(name))
    ]
    if changed:
        listed = ", ".join(f"{n}=" for n in changed)
        raise InputError(
            f"{function}() got options= and also {listed}; pass each setting once, e.g. "
            f"options=options.replace({changed[0]}=...)."
        )
    return options
