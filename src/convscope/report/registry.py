"""Registry of demo-report sections contributed by method families.

Each method family (attribution, sensitivity, influence, ...) registers a *builder*: a callable
that receives the demo's context object and returns a :class:`~convscope.report.Section`.
``convscope demo`` imports the families, calls :func:`demo_sections` and adds the built
sections to its report in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from convscope.core.errors import InputError
from convscope.report.document import Section

__all__ = [
    "DemoBuilder",
    "DemoContext",
    "DemoSection",
    "DemoSectionRegistry",
    "demo_section",
    "demo_sections",
    "register_demo_section",
    "unregister_demo_section",
]


@runtime_checkable
class DemoContext(Protocol):
    """What a demo builder can rely on in the context it receives.

    The demo may pass a richer object (models, data, ...); builders that only need these three
    attributes can annotate their argument with this protocol.
    """

    @property
    def out_dir(self) -> Path:
        """Report folder; builders may write extra files there (and :class:`Link` to them)."""
        ...

    @property
    def quiet(self) -> bool:
        """True when the builder should not print progress."""
        ...

    @property
    def seed(self) -> int:
        """Random seed every builder should use, for a reproducible report."""
        ...


DemoBuilder = Callable[[Any], Section]
"""A demo section builder: ``builder(context) -> Section``."""

_B = TypeVar("_B", bound=Callable[[Any], Section])


@dataclass(frozen=True)
class DemoSection:
    """A registered demo section: calling it calls the builder.

    Attributes
    ----------
    name : str
        Unique registration name (e.g. ``"attribution.occlusion"``).
    builder : DemoBuilder
        ``builder(context) -> Section``.
    order : float
        Sort key; smaller comes first in the report. Ties keep registration order.
    """

    name: str
    builder: DemoBuilder
    order: float

    def __call__(self, context: Any) -> Section:
        """Build the section, checking that the builder returned a :class:`Section`.

        Parameters
        ----------
        context : Any
            The demo context (see :class:`DemoContext`).

        Returns
        -------
        Section
            The built section.

        Raises
        ------
        ConvscopeError
            Whatever the builder raises; :class:`InputError` if it returns a non-Section.
        """
        section = self.builder(context)
        if not isinstance(section, Section):
            raise InputError(
                f"Demo section builder {self.name!r} returned {type(section).__name__}; "
                "it must return a convscope.report.Section."
            )
        return section


class DemoSectionRegistry:
    """An ordered collection of demo section builders.

    The module-level functions (:func:`register_demo_section`, :func:`demo_sections` ...) use
    one shared default registry; create your own instance for isolated use (e.g. in tests).
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[DemoSection, int]] = {}
        self._counter = 0

    def register(
        self, name: str, builder: DemoBuilder, order: float = 100.0, *, replace: bool = False
    ) -> DemoSection:
        """Register ``builder`` under ``name``.

        Parameters
        ----------
        name : str
            Unique, non-empty name, conventionally ``"<family>"`` or ``"<family>.<method>"``.
        builder : callable
            ``builder(context) -> Section``.
        order : float, default 100.0
            Position in the report; smaller first.
        replace : bool, default False
            Allow replacing an existing registration of ``name`` (it keeps its old position
            among equal ``order`` values only if re-registered with the same order).

        Returns
        -------
        DemoSection
            The registration.

        Raises
        ------
        InputError
            For an empty name, a non-callable builder, a non-numeric order, or a duplicate
            name without ``replace=True``.
        """
        if not isinstance(name, str) or not name.strip():
            raise InputError("Demo section name must be a non-empty str.")
        if not callable(builder):
            raise InputError(f"Demo section builder for {name!r} is not callable.")
        if isinstance(order, bool) or not isinstance(order, (int, float)) or order != order:
            raise InputError(f"Demo section order must be a number, got {order!r}.")
        if name in self._entries and not replace:
            raise InputError(
                f"A demo section named {name!r} is already registered. Pick another name or "
                "pass replace=True."
            )
        entry = DemoSection(name=name, builder=builder, order=float(order))
        previous = self._entries.get(name)
        if previous is not None and previous[0].order == entry.order:
            self._entries[name] = (entry, previous[1])  # same order: keep its position
        else:
            self._entries[name] = (entry, self._counter)
            self._counter += 1
        return entry

    def unregister(self, name: str) -> None:
        """Remove the registration ``name`` (no error if it does not exist).

        Parameters
        ----------
        name : str
            Registration name.
        """
        self._entries.pop(name, None)

    def sections(self) -> list[DemoSection]:
        """Return the registrations sorted by ``(order, registration order)``.

        Returns
        -------
        list of DemoSection
            Callables ``section(context) -> Section``.
        """
        ranked = sorted(self._entries.values(), key=lambda item: (item[0].order, item[1]))
        return [entry for entry, _ in ranked]

    def names(self) -> list[str]:
        """Return the registered names in report order."""
        return [entry.name for entry in self.sections()]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


_DEFAULT = DemoSectionRegistry()


def register_demo_section(
    name: str, builder: DemoBuilder, order: float = 100.0, *, replace: bool = False
) -> DemoSection:
    """Register a demo section builder in the default registry.

    See :meth:`DemoSectionRegistry.register` for the parameters.

    Returns
    -------
    DemoSection
        The registration.
    """
    return _DEFAULT.register(name, builder, order, replace=replace)


def unregister_demo_section(name: str) -> None:
    """Remove a registration from the default registry (no error if absent).

    Parameters
    ----------
    name : str
        Registration name.
    """
    _DEFAULT.unregister(name)


def demo_sections() -> list[DemoSection]:
    """Return the default registry's builders in report order.

    Returns
    -------
    list of DemoSection
        Each is callable: ``section = entry(context)``; ``entry.name`` names it.
    """
    return _DEFAULT.sections()


def demo_section(name: str, order: float = 100.0, *, replace: bool = False) -> Callable[[_B], _B]:
    """Decorator form of :func:`register_demo_section`; returns the builder unchanged.

    Parameters
    ----------
    name : str
        Registration name.
    order : float, default 100.0
        Position in the report; smaller first.
    replace : bool, default False
        Allow replacing an existing registration.

    Returns
    -------
    callable
        The decorator.
    """

    def decorate(builder: _B) -> _B:
        _DEFAULT.register(name, builder, order, replace=replace)
        return builder

    return decorate
