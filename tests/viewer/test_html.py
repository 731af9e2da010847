"""The HTML document of the similarity-overlay viewer, without a browser: escaping and structure."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest

from convscope.viewer.html import json_for_script, render_document, render_iframe
from convscope.viewer.payload import encode_array

HOSTILE = "</script><script>alert(1)</script><!-- \u2028\u2029 & <img src=x onerror=alert(1)>"


def small_payload(name: str = "image") -> dict:
    feats = np.zeros((1, 2, 2, 3), dtype=np.float16)
    return {
        "format": "convscope-similarity-overlay",
        "version": 1,
        "title": name,
        "eps": 1e-4,
        "signed": False,
        "display": {"size": 64},
        "colormaps": {"gray": encode_array(np.zeros((256, 3), np.uint8), "uint8")},
        "images": [{"name": name, "label": name, "src": "a.png", "height": 4, "width": 4}],
        "layers": [{"name": name, "height": 2, "width": 2, "channels": 3,
                    "features": encode_array(feats, "float16")}],
        "nmf": None,
        "sweeps": [],
        "notes": [name],
    }  # fmt: skip


def data_script(document: str) -> str:
    match = re.search(
        r'<script type="application/json" class="convscope-data">(.*?)</script>', document, re.S
    )
    assert match is not None
    return match.group(1)


def test_json_for_script_escapes_everything_that_could_end_the_element() -> None:
    text = json_for_script({"label": HOSTILE, "list": [HOSTILE]})
    for forbidden in ("<", ">", "&", "\u2028", "\u2029"):
        assert forbidden not in text
    # The escapes decode back to the same object: JSON.parse in the browser sees the label.
    assert json.loads(text) == {"label": HOSTILE, "list": [HOSTILE]}


def test_json_for_script_rejects_non_finite_numbers() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        json_for_script({"eps": float("nan")})


def test_hostile_labels_stay_inside_the_data_element() -> None:
    document = render_document(small_payload(HOSTILE))
    # One data element, one viewer script, and nothing else can open a script.
    assert document.lower().count("<script") == 2
    assert json.loads(data_script(document))["images"][0]["label"] == HOSTILE
    title = re.search(r"<title>(.*?)</title>", document, re.S)
    assert title is not None and html.unescape(title.group(1)) == HOSTILE
    assert "<img" not in document


def test_document_is_self_contained() -> None:
    document = render_document(small_payload())
    assert document.startswith("<!doctype html>")
    for external in ("http://", "https://", 'src="//', "src='//", "@import"):
        assert external not in document
    # The viewer script is inlined and allowed by hash in the Content-Security-Policy.
    assert "window.convscopeViewers" in document
    assert "script-src 'sha256-" in html.unescape(document)


def test_exactly_one_data_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        render_document()
    with pytest.raises(ValueError, match="exactly one"):
        render_document(small_payload(), manifest_url="manifest.json")
    external = render_document(manifest_url='data/manifest.json?a=1&b="2"')
    assert 'data-manifest="data/manifest.json?a=1&amp;b=&quot;2&quot;"' in external
    assert 'class="convscope-data"' not in external


def test_iframe_srcdoc_round_trips() -> None:
    document = render_document(small_payload(HOSTILE))
    frame = render_iframe(document, height=480)
    match = re.fullmatch(r'<iframe srcdoc="([^"]*)" (.*)></iframe>', frame, re.S)
    assert match is not None, "the srcdoc attribute must not contain a raw double quote"
    assert html.unescape(match.group(1)) == document
    assert "height: 480px" in match.group(2)
    assert 'sandbox="allow-scripts"' in match.group(2)
    with pytest.raises(ValueError, match="positive"):
        render_iframe(document, height=0)
