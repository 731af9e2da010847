"""Self-contained HTML reports, and the demo-section extension interface.

A :class:`Report` is a list of :class:`Section` objects, each a title, content blocks
(:class:`Text`, :class:`Figure`, :class:`Table`, :class:`KeyValues`, :class:`Link`,
:class:`Html`) and a ``summary`` dict of key numbers. :meth:`Report.write` produces a folder::

    out_dir/
        index.html      one page, inline CSS, no JavaScript, no remote resources
        figures/        <section-slug>-<name>.png
        summary.json    {"report": {...metadata...}, "sections": {<slug>: <summary>, ...}}

All user-provided text (titles, captions, table cells, keys, link texts) is HTML-escaped, so a
class name such as ``<img src=x onerror=alert(1)>`` is shown as text. Only :class:`Html` is
inserted raw, for trusted internal markup.

Adding a section to ``convscope demo``
--------------------------------------
A method family registers a *builder* ``builder(context) -> Section``; ``context`` is the
demo's object and provides at least ``out_dir: Path``, ``quiet: bool`` and ``seed: int``
(see :class:`DemoContext`). Register at import time of the family's module, e.g. in
``convscope/attribution/demo.py``::

    from convscope.plots import heatmap_overlay
    from convscope.report import DemoContext, Figure, Section, Table, Text, register_demo_section

    def build_occlusion_section(ctx: DemoContext) -> Section:
        images, maps, scores = run_occlusion_demo(seed=ctx.seed)   # the family's own code
        fig = heatmap_overlay(images, maps, titles=[f"{s:.2f}" for s in scores])
        return Section(
            "Occlusion attribution",
            [Text("Occlusion slides a grey patch over the image ..."),
             Figure(fig, caption="Occlusion maps on test images", name="maps"),
             Table(["metric", "value"], [["deletion AUC", 0.21]], float_format=".3f")],
            summary={"deletion_auc": 0.21},
        )

    register_demo_section("attribution.occlusion", build_occlusion_section, order=20)

The demo then does::

    report = Report("convscope demo")
    for entry in demo_sections():          # sorted by order, then registration order
        report.add(entry(ctx))             # entry.name is the registration name
    report.write(ctx.out_dir)

Use :func:`demo_section` as a decorator alternative, and a private
:class:`DemoSectionRegistry` for isolated use (tests).
"""

from __future__ import annotations

from convscope.report._util import format_value, slugify, to_jsonable
from convscope.report.blocks import (
    Block,
    Figure,
    Html,
    KeyValues,
    Link,
    RenderContext,
    Table,
    Text,
    check_relative_href,
)
from convscope.report.document import Report, Section, convscope_version
from convscope.report.registry import (
    DemoBuilder,
    DemoContext,
    DemoSection,
    DemoSectionRegistry,
    demo_section,
    demo_sections,
    register_demo_section,
    unregister_demo_section,
)

__all__ = [
    "Block",
    "DemoBuilder",
    "DemoContext",
    "DemoSection",
    "DemoSectionRegistry",
    "Figure",
    "Html",
    "KeyValues",
    "Link",
    "RenderContext",
    "Report",
    "Section",
    "Table",
    "Text",
    "check_relative_href",
    "convscope_version",
    "demo_section",
    "demo_sections",
    "format_value",
    "register_demo_section",
    "slugify",
    "to_jsonable",
    "unregister_demo_section",
]
