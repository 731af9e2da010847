"""Self-contained HTML documents for the interactive similarity-overlay viewer.

Fong, Mordvintsev, Vedaldi, Olah, "Interactive Similarity Overlays", VISxAI 2021; Fong, DPhil
thesis, ch. 6. Pointing at location :math:`(i, j)` of an image shows, over every location
:math:`(u, v)` of every image, the cosine similarity

.. math:: s = \\frac{z_{ij} \\cdot z'_{uv}}{(\\lVert z_{ij} \\rVert + \\epsilon)
          (\\lVert z'_{uv} \\rVert + \\epsilon)}.

The original precomputed every map as PNG sprite sheets, :math:`O(N^2 H^2 W^2)` pixels for
:math:`N` images at an :math:`H \\times W` layer. Here the document carries the vectors
:math:`z/(\\lVert z \\rVert + \\epsilon)` in float16 and ``viewer.js`` computes the
:math:`N` maps of the hovered location on the fly, :math:`O(N H W D)` multiply-adds per hover,
the thesis's own description of the tool.

The document is one file: the viewer's CSS and JavaScript are inlined, the data are embedded as
JSON (or, when served, fetched from a ``manifest.json`` next to raw ``.bin`` arrays), images are
``data:`` URLs or relative URLs. It loads nothing from the network, works from ``file://``,
inside a Jupyter ``<iframe srcdoc>`` and over HTTP. A Content-Security-Policy allows only the
viewer's own script (by hash), so even a label that escaped the escaping could not run script.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["json_for_script", "render_document", "render_iframe"]

_DEFAULT_TITLE = "convscope similarity overlay"

# Characters that could end a <script> element or open an HTML comment inside it, and the two
# line terminators that are valid in JSON strings but not in older JavaScript string literals.
_SCRIPT_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


@cache
def _static(name: str) -> str:
    return resources.files("convscope.viewer").joinpath("static", name).read_text(encoding="utf-8")


def json_for_script(obj: Any) -> str:
    """Serialise ``obj`` as JSON that is safe as the text of a ``<script>`` element.

    ``<``, ``>``, ``&``, U+2028 and U+2029 become ``\\uXXXX`` escapes. They can only occur
    inside JSON strings, where the escape decodes to the same character, so ``JSON.parse`` of
    the result equals ``obj``, while ``</script>`` or ``<!--`` in a label can no longer close
    or confuse the element.

    Parameters
    ----------
    obj
        A JSON-able object (dicts, lists, strings, finite numbers, booleans, None).

    Returns
    -------
    str
        The JSON text.

    Raises
    ------
    ValueError
        If ``obj`` holds NaN or infinity, which JSON cannot represent.
    """
    try:
        text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError as err:
        raise ValueError(
            f"The viewer data holds a non-finite number ({err}); replace NaN/inf by null "
            "or a finite value before rendering."
        ) from None
    return "".join(_SCRIPT_ESCAPES.get(ch, ch) for ch in text) if _needs_escape(text) else text


def _needs_escape(text: str) -> bool:
    return any(ch in text for ch in _SCRIPT_ESCAPES)


def _script_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "sha256-" + base64.b64encode(digest).decode("ascii")


def render_document(
    payload: dict[str, Any] | None = None,
    *,
    manifest_url: str | None = None,
    title: str | None = None,
) -> str:
    """A complete HTML document showing the interactive similarity-overlay viewer.

    Parameters
    ----------
    payload
        The viewer data (format ``"convscope-similarity-overlay"``, version 1), embedded as JSON
        in a ``<script type="application/json" class="convscope-data">`` element.
    manifest_url
        Instead of ``payload``: URL (relative to the document) of a ``manifest.json`` holding the
        payload with external arrays (``{"dtype", "shape", "url"}``, URLs relative to the
        manifest); the viewer fetches it, so the document must be served over HTTP.
    title
        The document's ``<title>``; default ``payload["title"]`` or a generic title.

    Returns
    -------
    str
        The document, starting with ``<!doctype html>``.

    Raises
    ------
    ValueError
        If not exactly one of ``payload`` and ``manifest_url`` is given.

    Notes
    -----
    Fong, Mordvintsev, Vedaldi, Olah, "Interactive Similarity Overlays", VISxAI 2021; Fong,
    DPhil thesis, ch. 6.
    """
    if (payload is None) == (manifest_url is None):
        raise ValueError(
            "render_document needs exactly one of payload (embedded data) and manifest_url "
            "(data fetched when served); pass one of them."
        )
    if title is None:
        title = str(payload.get("title") or _DEFAULT_TITLE) if payload else _DEFAULT_TITLE
    css = _static("viewer.css")
    script = _static("viewer.js")
    # The inlined sources are ours; a closing tag in them would truncate the document.
    if "</script" in script.lower() or "</style" in css.lower():
        raise RuntimeError("viewer.js / viewer.css must not contain a closing script/style tag.")
    # Embedded: nothing may be loaded at all. Served: only files of the viewer's own folder.
    embedded = payload is not None
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src '{_script_hash(script)}'",
            "style-src 'unsafe-inline'",
            "img-src data: blob:" if embedded else "img-src 'self' data: blob:",
            "connect-src 'none'" if embedded else "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    if payload is not None:
        root = (
            '<div class="convscope-viewer" tabindex="0">\n'
            '<script type="application/json" class="convscope-data">'
            f"{json_for_script(payload)}</script>\n</div>"
        )
    else:
        assert manifest_url is not None
        root = (
            '<div class="convscope-viewer" tabindex="0" '
            f'data-manifest="{html.escape(manifest_url, quote=True)}"></div>'
        )
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{html.escape(csp, quote=True)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>\n{css}</style>\n</head>\n<body>\n{root}\n"
        f"<script>{script}</script>\n</body>\n</html>\n"
    )


def render_iframe(document: str, *, height: int) -> str:
    """An ``<iframe srcdoc>`` holding ``document``, for Jupyter's ``_repr_html_``.

    The iframe isolates the viewer's CSS and JavaScript from the notebook; ``sandbox`` allows
    scripts but gives the frame an opaque origin, so the viewer cannot touch the notebook.

    Parameters
    ----------
    document
        A complete HTML document, e.g. from :func:`render_document` (embedded payload: a
        sandboxed ``srcdoc`` frame cannot fetch a manifest).
    height
        Frame height in CSS pixels (the width is 100 % of the output area).

    Returns
    -------
    str
        The ``<iframe>`` element, with ``document`` attribute-escaped.
    """
    if int(height) <= 0:
        raise ValueError(f"height must be a positive number of pixels, got {height!r}.")
    return (
        f'<iframe srcdoc="{html.escape(document, quote=True)}" '
        f'style="width: 100%; height: {int(height)}px; border: 0;" '
        'sandbox="allow-scripts" title="convscope similarity overlay"></iframe>'
    )
