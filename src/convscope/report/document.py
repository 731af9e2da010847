"""Report sections and the report itself: one self-contained ``index.html`` + ``summary.json``."""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from convscope.core.errors import InputError
from convscope.report._util import slugify, to_jsonable
from convscope.report.blocks import Block, KeyValues, RenderContext, Text, render_inline

__all__ = ["Report", "Section", "convscope_version"]

_RESERVED_IDS = frozenset({"top", "contents"})

CSS = """
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#ffffff; --zebra:#f6f8fa;
        --accent:#0969da; --code:#eff2f5; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
             "Noto Sans", "Liberation Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 2rem 1.25rem 4rem; }
header h1 { margin: 0 0 .25rem; font-size: 2rem; line-height: 1.2; }
.subtitle { margin: 0 0 .5rem; font-size: 1.15rem; color: var(--muted); }
.meta { margin: 0; font-size: .85rem; color: var(--muted); }
nav.toc { margin: 1.5rem 0 2rem; padding: .75rem 1.25rem; border: 1px solid var(--line);
          border-radius: 8px; background: var(--zebra); }
nav.toc h2 { margin: 0 0 .25rem; font-size: 1rem; border: 0; padding: 0; }
nav.toc ol { margin: 0; padding-left: 1.5rem; }
nav.toc li { margin: .1rem 0; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
section { margin: 0 0 3rem; }
section > h2 { font-size: 1.5rem; margin: 2.5rem 0 1rem; padding-bottom: .3rem;
               border-bottom: 1px solid var(--line); }
h2 .anchor { visibility: hidden; margin-left: .4rem; font-size: 1rem; color: var(--muted); }
h2:hover .anchor { visibility: visible; }
p { margin: .6rem 0; }
ul { margin: .6rem 0; padding-left: 1.5rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
       font-size: .88em; background: var(--code); padding: .1em .35em; border-radius: 4px; }
figure { margin: 1.25rem 0; text-align: center; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
figcaption { margin-top: .4rem; font-size: .9rem; color: var(--muted); }
.table-wrap { overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-size: .92rem; min-width: 40%; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0 0 .4rem; }
th, td { padding: .35rem .75rem; border: 1px solid var(--line); text-align: left;
         vertical-align: top; }
thead th { background: #eaeef2; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { font-weight: 500; background: transparent; }
table.summary { font-size: .88rem; }
p.link a { font-weight: 500; }
footer { margin-top: 3rem; padding-top: 1rem; border-top: 1px solid var(--line);
         font-size: .85rem; color: var(--muted); }
@media print { nav.toc { display: none; } section { break-inside: avoid-page; } }
"""


def convscope_version() -> str:
    """Return the installed convscope version, or ``"unknown"`` if it cannot be determined."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("convscope")
        except PackageNotFoundError:
            pass
    except ImportError:  # pragma: no cover - stdlib always has it on 3.10+
        pass
    try:
        import convscope

        value = getattr(convscope, "__version__", None)
        if isinstance(value, str):
            return value
    except ImportError:  # pragma: no cover
        pass
    return "unknown"


class Section:
    """One section of a report: a title, content blocks and a machine-readable summary.

    Parameters
    ----------
    title : str
        Section title (escaped).
    blocks : iterable of Block, optional
        Content, rendered in order. Plain strings are wrapped in :class:`Text`.
    summary : mapping, optional
        Key numbers of the section, written to ``summary.json`` under the section's slug
        (numpy / torch scalars are converted; NaN becomes ``null``). Must be JSON-convertible;
        this is checked immediately.
    slug : str, optional
        Anchor and key of the section; defaults to ``slugify(title)``. Made unique by the
        report if several sections share it.
    show_summary : bool, default True
        Also show the summary as a small key/value table at the top of the section.

    Raises
    ------
    InputError
        For a non-string title, a non-block item, or a summary that is not JSON-convertible.
    """

    def __init__(
        self,
        title: str,
        blocks: Iterable[Block | str] | None = None,
        summary: Mapping[str, Any] | None = None,
        *,
        slug: str | None = None,
        show_summary: bool = True,
    ) -> None:
        if not isinstance(title, str):
            raise InputError(f"Section title must be a str, got {type(title).__name__}.")
        self.title = title
        self.slug = slugify(slug if slug is not None else title)
        self.blocks: list[Block] = []
        if summary is not None and not isinstance(summary, Mapping):
            raise InputError(f"Section summary must be a mapping, got {type(summary).__name__}.")
        self.summary: dict[str, Any] = to_jsonable(dict(summary or {}), f"summary of {title!r}")
        self.show_summary = show_summary
        if blocks is not None:
            self.add(*blocks)

    def add(self, *blocks: Block | str) -> Section:
        """Append blocks (strings become :class:`Text`) and return the section (chainable).

        Parameters
        ----------
        *blocks : Block or str
            Blocks to append.

        Returns
        -------
        Section
            ``self``.
        """
        for block in blocks:
            if isinstance(block, str):
                block = Text(block)
            if not isinstance(block, Block):
                raise InputError(
                    f"Section {self.title!r}: {type(block).__name__} is not a report block. "
                    "Use Text, Figure, Table, KeyValues, Link or Html."
                )
            self.blocks.append(block)
        return self

    def render(self, ctx: RenderContext) -> str:
        """Render the section's ``<section>`` element, writing its figure files.

        Parameters
        ----------
        ctx : RenderContext
            Report folder and the (unique) slug this section is written under.

        Returns
        -------
        str
            HTML markup.
        """
        slug = ctx.section_slug
        parts = [
            f'<section id="{slug}">',
            f'<h2>{html.escape(self.title, quote=True)}<a class="anchor" href="#{slug}" '
            'aria-label="Link to this section">#</a></h2>',
        ]
        if self.show_summary and self.summary:
            summary_html = KeyValues(self.summary, caption="Key numbers", missing="n/a").render(ctx)
            parts.append(summary_html.replace('class="kv"', 'class="kv summary"', 1))
        parts.extend(block.render(ctx) for block in self.blocks)
        parts.append("</section>")
        return "\n".join(parts)


def _unique(slug: str, used: set[str]) -> str:
    candidate, k = slug, 2
    while candidate in used or candidate in _RESERVED_IDS:
        candidate, k = f"{slug}-{k}", k + 1
    used.add(candidate)
    return candidate


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Report:
    """An HTML report made of sections, written as a folder.

    The folder holds ``index.html`` (one self-contained page: inline CSS, no JavaScript, no
    remote resources), ``figures/*.png`` and ``summary.json``.

    Parameters
    ----------
    title : str
        Page title (escaped).
    subtitle : str, default ""
        Line shown under the title (escaped; ``**bold**``/```code``` allowed).

    Examples
    --------
    >>> from convscope.report import Report, Section, Table
    >>> report = Report("My model", subtitle="ResNet-18 on shapes")
    >>> _ = report.add(Section("Accuracy", [Table(["split", "acc"], [["test", 0.91]])],
    ...                        summary={"test_accuracy": 0.91}))
    >>> index = report.write("out/report")  # doctest: +SKIP
    """

    def __init__(self, title: str, subtitle: str = "") -> None:
        if not isinstance(title, str) or not isinstance(subtitle, str):
            raise InputError("Report title and subtitle must be strings.")
        self.title = title
        self.subtitle = subtitle
        self.sections: list[Section] = []

    def add(self, section: Section) -> Section:
        """Append a section and return it.

        Parameters
        ----------
        section : Section
            The section.

        Returns
        -------
        Section
            ``section``, so blocks can still be added to it.
        """
        if not isinstance(section, Section):
            raise InputError(f"Report.add expects a Section, got {type(section).__name__}.")
        self.sections.append(section)
        return section

    def write(self, out_dir: str | Path) -> Path:
        """Write ``index.html``, ``figures/`` and ``summary.json`` into ``out_dir``.

        The folder is created if needed; writing again into the same folder overwrites the
        previous report's files (other files in the folder are left alone).

        Parameters
        ----------
        out_dir : str or Path
            Report folder.

        Returns
        -------
        Path
            Path of the written ``index.html``.

        Raises
        ------
        InputError
            If ``out_dir`` exists and is not a folder.
        """
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise InputError(f"Report folder {str(out)!r} exists and is not a directory.")
        out.mkdir(parents=True, exist_ok=True)
        now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
        version = convscope_version()

        used: set[str] = set()
        used_files: set[str] = set()
        rendered: list[tuple[str, Section, str]] = []
        figures: list[str] = []
        for section in self.sections:
            slug = _unique(section.slug, used)
            ctx = RenderContext(out_dir=out, section_slug=slug, used_files=used_files)
            rendered.append((slug, section, section.render(ctx)))
            figures.extend(p.relative_to(out).as_posix() for p in ctx.written)

        page = self._page(rendered, now, version)
        _atomic_write(out / "index.html", page)

        summary = {
            "report": {
                "title": self.title,
                "subtitle": self.subtitle,
                "generated_at": now.isoformat(),
                "convscope_version": version,
                "sections": [{"slug": slug, "title": sec.title} for slug, sec, _ in rendered],
                "figures": figures,
            },
            "sections": {
                slug: to_jsonable(sec.summary, f"summary of {sec.title!r}")
                for slug, sec, _ in rendered
            },
        }
        text = json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False)
        _atomic_write(out / "summary.json", text + "\n")
        return out / "index.html"

    def _page(
        self, rendered: list[tuple[str, Section, str]], now: _dt.datetime, version: str
    ) -> str:
        esc_title = html.escape(self.title, quote=True)
        stamp = now.strftime("%Y-%m-%d %H:%M:%S UTC")
        header = [f"<header>\n<h1>{esc_title}</h1>"]
        if self.subtitle:
            header.append(f'<p class="subtitle">{render_inline(self.subtitle)}</p>')
        header.append(
            f'<p class="meta">Generated {html.escape(stamp)} · convscope '
            f"{html.escape(version)}</p>\n</header>"
        )
        toc = ""
        if rendered:
            items = "\n".join(
                f'<li><a href="#{slug}">{html.escape(sec.title, quote=True)}</a></li>'
                for slug, sec, _ in rendered
            )
            toc = (
                f'<nav class="toc" id="contents">\n<h2>Contents</h2>\n<ol>\n{items}\n</ol>\n</nav>'
            )
        body = "\n".join(markup for _, _, markup in rendered)
        header_html = "\n".join(header)
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            '<meta name="generator" content="convscope">\n'
            f"<title>{esc_title}</title>\n<style>{CSS}</style>\n</head>\n"
            f'<body>\n<main id="top">\n{header_html}\n{toc}\n{body}\n'
            f"<footer>Generated by convscope {html.escape(version)} on {html.escape(stamp)}. "
            "This page is self-contained: it loads no scripts or remote resources. "
            'Machine-readable numbers: <a href="summary.json">summary.json</a>. '
            '<a href="#top">Back to top</a></footer>\n'
            "</main>\n</body>\n</html>\n"
        )
