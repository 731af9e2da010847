"""Content blocks of a report section.

Every block renders itself to an HTML fragment. All user-provided text (paragraphs, captions,
table cells, keys, link texts) is escaped with :func:`html.escape`; only :class:`Html` inserts
raw markup and is meant for trusted, internal use.
"""

from __future__ import annotations

import html
import io
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from matplotlib.figure import Figure as MplFigure

from convscope.core.errors import InputError
from convscope.core.validation import positive_int
from convscope.report._util import format_value, is_number, slugify

__all__ = [
    "Block",
    "Figure",
    "Html",
    "KeyValues",
    "Link",
    "RenderContext",
    "Table",
    "Text",
    "check_relative_href",
    "flatten_mapping",
    "render_inline",
]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_LIST_ITEM = re.compile(r"^\s*[-*]\s+")


@dataclass
class RenderContext:
    """State shared by the blocks of one section while a report is written.

    Parameters
    ----------
    out_dir : Path
        The report folder (``index.html`` lives there).
    section_slug : str
        Slug of the section being rendered; figure files are named after it.
    figure_names : set of str
        Figure names already used in this section (to keep file names unique).
    written : list of Path
        Files written so far (filled by the blocks).
    used_files : set of str
        Figure file names used by the whole report; shared by all sections' contexts so that
        section "A" with figure "b-c" and section "A b" with figure "c" get distinct files.
    """

    out_dir: Path
    section_slug: str
    figure_names: set[str] = field(default_factory=set)
    written: list[Path] = field(default_factory=list)
    used_files: set[str] = field(default_factory=set)

    @property
    def figures_dir(self) -> Path:
        """Folder holding the figure PNGs, ``<out_dir>/figures``."""
        return self.out_dir / "figures"


class Block(ABC):
    """Base class of report blocks: something that renders to an HTML fragment."""

    @abstractmethod
    def render(self, ctx: RenderContext) -> str:
        """Return the HTML fragment of this block, writing any files it needs.

        Parameters
        ----------
        ctx : RenderContext
            Report folder and section being written.

        Returns
        -------
        str
            HTML markup, safe to insert into the page.
        """


def _check_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{what} must be a str, got {type(value).__name__}.")
    return value


def render_inline(text: str) -> str:
    """Escape ``text`` and apply the inline markup subset: ``**bold**`` and ```code```.

    The text is HTML-escaped *before* markup is applied, and markup only wraps already
    escaped text in ``<strong>`` / ``<code>``, so no user markup can get through.

    Parameters
    ----------
    text : str
        Plain text with optional ``**bold**`` and ```code``` spans.

    Returns
    -------
    str
        Safe HTML.
    """
    parts = text.split("`")
    if len(parts) % 2 == 0:  # unbalanced backtick: treat the last one literally
        parts = [*parts[:-2], parts[-2] + "`" + parts[-1]]
    out: list[str] = []
    for i, part in enumerate(parts):
        escaped = html.escape(part, quote=True)
        if i % 2 == 1:
            out.append(f"<code>{escaped}</code>")
        else:
            out.append(_BOLD.sub(r"<strong>\1</strong>", escaped))
    return "".join(out)


class Text(Block):
    """One or more paragraphs of escaped text with a tiny, safe markup subset.

    Blank lines separate paragraphs; a paragraph whose lines all start with ``- `` or ``* `` is
    a bullet list; ``**bold**`` and ```code``` spans are recognised (see
    :func:`render_inline`). Everything else is shown literally, so ``<b>`` stays ``<b>``.

    Parameters
    ----------
    text : str
        The text.
    markup : bool, default True
        If False, no markup at all is interpreted (pure escaped text).
    """

    def __init__(self, text: str, *, markup: bool = True) -> None:
        self.text = _check_str(text, "Text")
        self.markup = markup

    def _inline(self, text: str) -> str:
        return render_inline(text) if self.markup else html.escape(text, quote=True)

    def render(self, ctx: RenderContext) -> str:
        """Render the paragraphs; see :meth:`Block.render`."""
        chunks: list[str] = []
        for para in re.split(r"\n\s*\n", self.text.strip()):
            lines = [ln for ln in para.splitlines() if ln.strip()]
            if not lines:
                continue
            if self.markup and all(_LIST_ITEM.match(ln) for ln in lines):
                items = "".join(
                    f"<li>{self._inline(_LIST_ITEM.sub('', ln, count=1))}</li>" for ln in lines
                )
                chunks.append(f"<ul>{items}</ul>")
            else:
                body = "<br>\n".join(self._inline(ln.strip()) for ln in lines)
                chunks.append(f"<p>{body}</p>")
        return "\n".join(chunks)


class Figure(Block):
    """A PNG figure with a caption.

    A matplotlib :class:`~matplotlib.figure.Figure` is rendered to PNG immediately (so the
    figure can be released right away) and closed; an existing PNG file is read immediately.
    When the report is written the PNG goes to ``figures/<section-slug>-<name>.png``.

    Parameters
    ----------
    figure : matplotlib.figure.Figure or str or Path
        The figure, or the path of an existing PNG file (copied into the report).
    caption : str, default ""
        Caption shown under the image (escaped; ``**bold**``/```code``` allowed).
    name : str, optional
        File name stem (slugified). Defaults to ``figure-<k>`` (k-th figure of the section).
        Names are made unique within a section.
    dpi : int, default 100
        Resolution used to render a matplotlib figure.
    width : int, optional
        Display width in CSS pixels (the image never exceeds the page width).
    close : bool, default True
        Close the matplotlib figure after rendering (pyplot-managed figures are closed with
        ``pyplot.close``; others are cleared). Set to False to keep using the figure.
    """

    def __init__(
        self,
        figure: MplFigure | str | Path,
        caption: str = "",
        name: str | None = None,
        *,
        dpi: int = 100,
        width: int | None = None,
        close: bool = True,
    ) -> None:
        self.caption = _check_str(caption, "Figure caption")
        if name is not None:
            _check_str(name, "Figure name")
        positive_int(dpi, "dpi")
        if width is not None:
            positive_int(width, "width", hint="Pass None for the natural width.")
        self.name = name
        self.width = width
        if isinstance(figure, MplFigure):
            self.png = _render_png(figure, dpi)
            if close:
                _close_figure(figure)
        elif isinstance(figure, (str, Path)):
            path = Path(figure)
            if not path.is_file():
                raise InputError(f"Figure: PNG file {str(path)!r} does not exist.")
            data = path.read_bytes()
            if not data.startswith(_PNG_SIGNATURE):
                raise InputError(
                    f"Figure: {str(path)!r} is not a PNG file. Convert it to PNG or pass a "
                    "matplotlib Figure."
                )
            self.png = data
            if name is None:
                self.name = path.stem
        else:
            raise InputError(
                "Figure expects a matplotlib.figure.Figure or the path of a PNG file, got "
                f"{type(figure).__name__}."
            )

    def render(self, ctx: RenderContext) -> str:
        """Write the PNG and return a ``<figure>`` element; see :meth:`Block.render`."""
        stem = slugify(self.name, fallback="figure") if self.name else None
        if stem is None:
            stem = f"figure-{len(ctx.figure_names) + 1}"
        base, k = stem, 2
        while stem in ctx.figure_names:
            stem, k = f"{base}-{k}", k + 1
        ctx.figure_names.add(stem)
        file_stem = base_file = f"{ctx.section_slug}-{stem}"
        k = 2
        while file_stem in ctx.used_files:
            file_stem, k = f"{base_file}-{k}", k + 1
        ctx.used_files.add(file_stem)
        rel = PurePosixPath("figures") / f"{file_stem}.png"
        target = ctx.out_dir / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.png)
        ctx.written.append(target)
        style = f' style="width:{self.width}px"' if self.width else ""
        alt = html.escape(self.caption or stem, quote=True)
        cap = f"<figcaption>{render_inline(self.caption)}</figcaption>" if self.caption else ""
        src = html.escape(quote(str(rel)), quote=True)
        return f'<figure><img src="{src}" alt="{alt}" loading="lazy"{style}>{cap}</figure>'


def _render_png(figure: MplFigure, dpi: int) -> bytes:
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _close_figure(figure: MplFigure) -> None:
    manager = getattr(figure.canvas, "manager", None)
    if manager is not None:  # created through pyplot: drop it from pyplot's registry
        import matplotlib.pyplot as plt

        plt.close(figure)
    else:
        figure.clear()


def _cell(value: Any, float_format: str) -> str:
    text = html.escape(format_value(value, float_format), quote=True)
    if is_number(value):
        return f'<td class="num">{text}</td>'
    return f"<td>{text}</td>"


def _caption(caption: str) -> str:
    return f"<caption>{render_inline(caption)}</caption>" if caption else ""


class Table(Block):
    """A table of values; numbers are formatted and right-aligned, everything is escaped.

    Parameters
    ----------
    columns : sequence of str
        Column headers.
    rows : sequence of sequences or of mappings
        One entry per row: a sequence with one value per column, or a mapping from column
        name to value (missing keys give empty cells).
    caption : str, default ""
        Caption shown above the table.
    float_format : str, default ".4g"
        :func:`format` spec for floats, e.g. ``".3f"``; ints are printed exactly.
    """

    def __init__(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any] | Mapping[str, Any]],
        caption: str = "",
        float_format: str = ".4g",
    ) -> None:
        if isinstance(columns, str) or not isinstance(columns, Sequence) or not columns:
            raise InputError("Table columns must be a non-empty sequence of column names.")
        self.columns = [str(c) for c in columns]
        self.rows: list[list[Any]] = []
        for i, row in enumerate(rows):
            if isinstance(row, Mapping):
                self.rows.append([row.get(c) for c in self.columns])
            elif isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
                raise InputError(f"Table row {i} must be a sequence or a mapping, got {row!r}.")
            elif len(row) != len(self.columns):
                raise InputError(
                    f"Table row {i} has {len(row)} values but there are {len(self.columns)} "
                    "columns."
                )
            else:
                self.rows.append(list(row))
        self.caption = _check_str(caption, "Table caption")
        format_value(0.5, float_format)  # validate the spec early
        self.float_format = float_format

    def render(self, ctx: RenderContext) -> str:
        """Render a ``<table>``; see :meth:`Block.render`."""
        head = "".join(f"<th>{html.escape(c, quote=True)}</th>" for c in self.columns)
        body = "\n".join(
            "<tr>" + "".join(_cell(v, self.float_format) for v in row) + "</tr>"
            for row in self.rows
        )
        return (
            f'<div class="table-wrap"><table>{_caption(self.caption)}'
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>"
        )


def flatten_mapping(values: Mapping[Any, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Flatten nested mappings into ``(dotted.key, value)`` pairs, keeping order."""
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(flatten_mapping(value, full + "."))
        else:
            out.append((full, value))
    return out


class KeyValues(Block):
    """A two-column key / value table (nested mappings are flattened to dotted keys).

    Parameters
    ----------
    values : mapping
        Keys and values; keys are shown with ``str`` and escaped.
    caption : str, default ""
        Caption shown above the table.
    float_format : str, default ".4g"
        :func:`format` spec for float values.
    missing : str, default ""
        Text shown for ``None`` values (``summary.json`` stores NaN as ``None``).
    """

    def __init__(
        self,
        values: Mapping[Any, Any],
        caption: str = "",
        float_format: str = ".4g",
        *,
        missing: str = "",
    ) -> None:
        if not isinstance(values, Mapping):
            raise InputError(f"KeyValues expects a mapping, got {type(values).__name__}.")
        self.items = [(k, missing if v is None else v) for k, v in flatten_mapping(values)]
        self.caption = _check_str(caption, "KeyValues caption")
        format_value(0.5, float_format)
        self.float_format = float_format

    def render(self, ctx: RenderContext) -> str:
        """Render a ``<table class="kv">``; see :meth:`Block.render`."""
        body = "\n".join(
            f"<tr><th>{html.escape(k, quote=True)}</th>{_cell(v, self.float_format)}</tr>"
            for k, v in self.items
        )
        return (
            f'<div class="table-wrap"><table class="kv">{_caption(self.caption)}'
            f"<tbody>\n{body}\n</tbody></table></div>"
        )


def check_relative_href(href: str) -> str:
    """Validate a link target: a relative path inside the report folder (or a ``#fragment``).

    Parameters
    ----------
    href : str
        The link target, e.g. ``"attribution/results.json"`` or ``"#summary"``.

    Returns
    -------
    str
        ``href`` unchanged.

    Raises
    ------
    InputError
        For URLs with a scheme (``https:``, ``file:``, ``javascript:``, ``data:`` ...), host
        references (``//host/...``), absolute paths, ``..`` components or empty targets.
    """
    _check_str(href, "Link href")
    stripped = href.strip()
    if not stripped:
        raise InputError("Link href is empty.")
    decoded = unquote(stripped)  # browsers resolve %2e%2e as ..
    if re.search(r"%2f|%5c", stripped, flags=re.IGNORECASE):
        raise InputError(
            f"Link href {href!r} contains an encoded path separator; write the path plainly, "
            "relative to the report folder."
        )
    parts = urlsplit(decoded)
    if parts.scheme or parts.netloc or stripped.startswith(("//", "\\\\")):
        raise InputError(
            f"Link href {href!r} is an absolute URL. Reports work offline and may only link to "
            "files inside the report folder: use a relative path such as 'details/table.csv'."
        )
    if decoded.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", decoded):
        raise InputError(
            f"Link href {href!r} is an absolute path. Use a path relative to the report folder."
        )
    if ".." in re.split(r"[/\\]", parts.path):
        raise InputError(
            f"Link href {href!r} leaves the report folder ('..'). Copy the file into the report "
            "folder and link to it with a relative path."
        )
    return href


class Link(Block):
    """A link to another file of the report folder (relative paths only, no network).

    Parameters
    ----------
    href : str
        Relative path (``"attribution/maps.npz"``) or in-page fragment (``"#contents"``).
    text : str, optional
        Link text; defaults to ``href``.
    description : str, default ""
        Optional text shown after the link.

    Raises
    ------
    InputError
        If ``href`` is an absolute URL or path, or leaves the report folder.
    """

    def __init__(self, href: str, text: str | None = None, description: str = "") -> None:
        self.href = check_relative_href(href)
        self.text = _check_str(text, "Link text") if text is not None else href
        self.description = _check_str(description, "Link description")

    def render(self, ctx: RenderContext) -> str:
        """Render ``<p><a href=...>text</a></p>``; see :meth:`Block.render`."""
        href = html.escape(quote(self.href.strip(), safe="/#?&=%~+-._"), quote=True)
        desc = f" — {render_inline(self.description)}" if self.description else ""
        text = html.escape(self.text, quote=True)
        return f'<p class="link"><a href="{href}">{text}</a>{desc}</p>'


class Html(Block):
    """Raw HTML inserted **as is** — NOT escaped.

    Only for trusted markup generated by convscope itself; never pass user-provided text
    (class names, file names, captions ...) here: use :class:`Text` instead.

    Parameters
    ----------
    raw : str
        The HTML fragment.
    """

    def __init__(self, raw: str) -> None:
        self.raw = _check_str(raw, "Html")

    def render(self, ctx: RenderContext) -> str:
        """Return the raw markup; see :meth:`Block.render`."""
        return self.raw
