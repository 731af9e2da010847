"""``convscope demo``: run every family's demo section and write the HTML report.

The demo works offline on the embedded default: the shapes world and the models trained on
it. Each method family contributes a section through
:func:`convscope.report.register_demo_section`; the modules that register them are listed in
:data:`DEMO_MODULES` and imported here, so adding a family's section is one line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convscope.core.errors import InputError, suggestion
from convscope.core.progress import set_progress
from convscope.report import Report, Section, Text, demo_sections

__all__ = ["DEMO_MODULES", "DemoRun", "add_parser", "demo_section_names", "run_demo"]

#: Modules whose import registers demo sections, in no particular order (sections carry one).
DEMO_MODULES: tuple[str, ...] = (
    "convscope.report.foundation",
    "convscope.report.attribution",
    "convscope.report.regions",
    "convscope.report.sensitivity",
    "convscope.report.viewer",
)


@dataclass
class DemoRun:
    """The context every demo section builder receives.

    Attributes
    ----------
    out_dir
        The report folder (builders may write extra files there).
    quiet
        No progress output.
    seed
        Seed for every random draw of the demo.
    """

    out_dir: Path
    quiet: bool = False
    seed: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    _models: dict[str, nn.Module] = field(default_factory=dict, repr=False)
    _worlds: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def model(self, name: str) -> nn.Module:
        """Load (once) and return a model by name."""
        from convscope.models import load_model

        if name not in self._models:
            self._models[name] = load_model(name)
        return self._models[name]

    def world(self, n: int, *, seed_offset: int = 0, **options: Any) -> Any:
        """Shapes-world images (cached), seeded from the demo seed plus ``seed_offset``."""
        from convscope.datasets import shapes

        key = (n, seed_offset, tuple(sorted(options.items())))
        if key not in self._worlds:
            self._worlds[key] = shapes(n, seed=self.seed + seed_offset, **options)
        return self._worlds[key]

    def log(self, message: str) -> None:
        """Print a progress line unless quiet."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)


def _register_sections() -> None:
    for module in DEMO_MODULES:
        importlib.import_module(module)


def run_demo(
    out_dir: Path, *, seed: int = 0, quiet: bool = False, only: list[str] | None = None
) -> Path:
    """Build every registered demo section and write the report; return ``index.html``.

    ``only`` restricts the report to the named sections (see :func:`demo_section_names`).
    The global torch random state is left as it was.
    """
    _register_sections()
    entries = demo_sections()
    if only:
        names = [e.name for e in entries]
        unknown = [name for name in only if name not in names]
        if unknown:
            raise InputError(
                f"Unknown demo section {unknown[0]!r}."
                + suggestion(unknown[0], names, "sections")
                + f" Sections: {', '.join(names)}."
            )
        entries = [e for e in entries if e.name in only]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(entries, Path(out_dir), seed, quiet)


def demo_section_names() -> list[str]:
    """Names of the registered demo sections, in report order."""
    _register_sections()
    return [e.name for e in demo_sections()]


def _build(entries: list[Any], out_dir: Path, seed: int, quiet: bool) -> Path:
    run = DemoRun(out_dir=out_dir, quiet=quiet, seed=seed)
    run.out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(
        "convscope demo",
        subtitle="Every method family on the embedded ground-truth shapes world, offline.",
    )
    start = time.perf_counter()
    for i, entry in enumerate(entries, start=1):
        run.log(f"[{i}/{len(entries)}] {entry.name} ...")
        t0 = time.perf_counter()
        report.add(entry(run))
        run.timings[entry.name] = round(time.perf_counter() - t0, 2)
        run.log(f"[{i}/{len(entries)}] {entry.name} done in {run.timings[entry.name]:.1f} s")
    total = round(time.perf_counter() - start, 2)
    report.add(
        Section(
            "Run",
            [
                Text(
                    f"Seed {seed}; total {total:.1f} s on {torch.get_num_threads()} threads. "
                    "Reproduce with `make demo` or `convscope demo --out DIR`."
                )
            ],
            summary={
                "seconds_total": total,
                "seconds_per_section": dict(run.timings),
                "seed": seed,
                "torch_threads": torch.get_num_threads(),
            },
        )
    )
    return report.write(run.out_dir)


def add_parser(sub: Any) -> None:
    """Register ``convscope demo``."""
    p = sub.add_parser(
        "demo",
        help="run the tour on the embedded default and write the HTML report",
        description="Run every method family on the embedded shapes world and models, and "
        "write a self-contained HTML report (index.html, figures/, summary.json) into --out.",
    )
    p.add_argument(
        "--out", type=Path, default=Path("demo-report"), help="report folder (default: demo-report)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    p.add_argument(
        "--only", default=None, help="comma-separated section names to build (default: all)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.quiet:
        set_progress(False)
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    index = run_demo(args.out, seed=args.seed, quiet=args.quiet, only=only)
    summary = json.loads((index.parent / "summary.json").read_text())
    seconds = summary.get("sections", {}).get("run", {}).get("seconds_total")
    print(f"Report written to {index.resolve()} ({seconds} s)")
    print(f"Summary: {(index.parent / 'summary.json').resolve()}")
    return 0
