"""Tests of convscope.report: self-contained page, escaping, figures, summary.json, registry."""

from __future__ import annotations

import html
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure as MplFigure

from convscope.core.errors import InputError
from convscope.report import (
    DemoContext,
    DemoSectionRegistry,
    Figure,
    Html,
    KeyValues,
    Link,
    Report,
    Section,
    Table,
    Text,
    demo_sections,
    register_demo_section,
    slugify,
    unregister_demo_section,
)

EVIL = "<img src=x onerror=alert(1)>"


class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _TagCollector()
    parser.feed(page)
    return parser.tags


def _figure(label: str = "line") -> MplFigure:
    fig = MplFigure(figsize=(2, 1.5))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [1, 0, 1], label=label)
    return fig


def _sample_report() -> Report:
    report = Report("Demo report", subtitle="A **small** test")
    report.add(
        Section(
            "Attribution",
            [
                Text("Some `code` and **bold** text.\n\n- item one\n- item two"),
                Figure(_figure(), caption="A line", name="line plot"),
                Table(["model", "accuracy"], [["resnet", 0.91234], ["vgg", np.float32(0.5)]]),
                KeyValues({"seed": 0, "nested": {"a": 1.5}}),
                Link("details/data.json", "raw data"),
            ],
            summary={"accuracy": np.float64(0.91234), "n_images": np.int64(8)},
        )
    )
    report.add(Section("Second section", ["plain string becomes Text"]))
    return report


def test_page_is_self_contained(tmp_path: Path) -> None:
    index = _sample_report().write(tmp_path / "rep")
    assert index == tmp_path / "rep" / "index.html"
    page = index.read_text(encoding="utf-8")
    lowered = page.lower()
    assert "http://" not in lowered
    assert "https://" not in lowered
    assert "<script" not in lowered
    assert "@import" not in lowered and "url(" not in lowered
    assert page.startswith("<!DOCTYPE html>")
    assert "<style>" in page
    # table of contents links to existing section anchors
    tags = _tags(page)
    ids = {attrs.get("id") for _, attrs in tags}
    toc_links = [a["href"] for t, a in tags if t == "a" and (a.get("href") or "").startswith("#")]
    assert "#attribution" in toc_links and "#second-section" in toc_links
    assert all(h[1:] in ids for h in toc_links if h)
    assert "convscope" in page and "Generated" in page


def test_user_text_is_escaped(tmp_path: Path) -> None:
    report = Report(EVIL, subtitle=EVIL)
    report.add(
        Section(
            EVIL,
            [
                Text(EVIL),
                Figure(_figure(), caption=EVIL, name=EVIL),
                Table([EVIL, "score"], [[EVIL, 1.0]], caption=EVIL),
                KeyValues({EVIL: EVIL}, caption=EVIL),
                Link("a.html", text=EVIL, description=EVIL),
            ],
            summary={EVIL: 1.0},
        )
    )
    page = report.write(tmp_path).read_text(encoding="utf-8")
    assert EVIL not in page
    assert page.count(html.escape(EVIL)) >= 10
    for tag, attrs in _tags(page):
        assert "onerror" not in attrs
        if tag == "img":
            assert (attrs.get("src") or "").startswith("figures/")


def test_trusted_html_is_not_escaped(tmp_path: Path) -> None:
    report = Report("raw")
    report.add(Section("s", [Html('<p class="custom">ok</p>')]))
    assert '<p class="custom">ok</p>' in report.write(tmp_path).read_text(encoding="utf-8")


def test_text_markup_subset() -> None:
    from convscope.report.blocks import RenderContext

    ctx = RenderContext(out_dir=Path("."), section_slug="s")
    out = Text("**bold** and `a<b>` and <b>x</b>").render(ctx)
    assert "<strong>bold</strong>" in out
    assert "<code>a&lt;b&gt;</code>" in out
    assert "&lt;b&gt;x&lt;/b&gt;" in out
    plain = Text("**bold**", markup=False).render(ctx)
    assert "<strong>" not in plain and "**bold**" in plain


def test_figures_are_written_and_referenced(tmp_path: Path) -> None:
    png_source = tmp_path / "external.png"
    _figure("external").savefig(png_source, format="png")
    fig = _figure()
    report = Report("Figures")
    report.add(
        Section(
            "Maps & more",
            [
                Figure(fig, caption="first", name="maps"),
                Figure(_figure(), caption="second", name="maps"),  # same name: made unique
                Figure(_figure(), caption="unnamed"),
                Figure(png_source, caption="copied"),
            ],
        )
    )
    assert len(fig.axes) == 0  # rendered then closed (cleared)
    out = tmp_path / "out"
    page = report.write(out).read_text(encoding="utf-8")
    srcs = [str(a["src"]) for t, a in _tags(page) if t == "img"]
    assert len(srcs) == 4 and len(set(srcs)) == 4
    assert srcs[0] == "figures/maps-more-maps.png"
    for src in srcs:
        assert not Path(src).is_absolute()
        target = out / src
        assert target.is_file()
        assert target.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert target.stat().st_size > 1000
    assert (out / "figures" / "maps-more-external.png").read_bytes() == png_source.read_bytes()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert sorted(summary["report"]["figures"]) == sorted(srcs)


def test_figure_rejects_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        Figure(tmp_path / "missing.png")
    not_png = tmp_path / "x.png"
    not_png.write_text("hello")
    with pytest.raises(InputError):
        Figure(not_png)
    with pytest.raises(InputError):
        Figure(np.zeros((3, 3)))  # type: ignore[arg-type]


def test_summary_json_round_trip(tmp_path: Path) -> None:
    summary = {
        "f32": np.float32(0.5),
        "f64": np.float64(0.125),
        "i64": np.int64(7),
        "tensor": torch.tensor(0.25),
        "nan": float("nan"),
        "np_nan": np.float64("nan"),
        "inf": float("inf"),
        "array": np.array([1.0, np.nan, 3.0]),
        "tensor_vec": torch.tensor([1, 2]),
        "flag": np.bool_(True),
        "nested": {"deep": {"value": np.float32(2.0)}, 3: "int key"},
        "tuple": (1, "a"),
        "none": None,
    }
    report = Report("Summary")
    report.add(Section("Numbers", summary=summary))
    report.add(Section("Empty"))
    report.write(tmp_path)
    text = (tmp_path / "summary.json").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text)
    got = data["sections"]["numbers"]
    assert got["f32"] == 0.5 and isinstance(got["f32"], float)
    assert got["f64"] == 0.125
    assert got["i64"] == 7 and isinstance(got["i64"], int)
    assert got["tensor"] == 0.25
    assert got["nan"] is None and got["np_nan"] is None and got["inf"] is None
    assert got["array"] == [1.0, None, 3.0]
    assert got["tensor_vec"] == [1, 2]
    assert got["flag"] is True
    assert got["nested"] == {"deep": {"value": 2.0}, "3": "int key"}
    assert got["tuple"] == [1, "a"]
    assert got["none"] is None
    assert data["sections"]["empty"] == {}
    meta = data["report"]
    assert meta["title"] == "Summary"
    assert isinstance(meta["convscope_version"], str) and meta["convscope_version"]
    assert meta["generated_at"]
    assert [s["slug"] for s in meta["sections"]] == ["numbers", "empty"]


def test_summary_must_be_serialisable() -> None:
    with pytest.raises(InputError, match="summary"):
        Section("bad", summary={"obj": object()})


def test_duplicate_section_titles_get_unique_slugs(tmp_path: Path) -> None:
    report = Report("dupes")
    report.add(Section("Same", summary={"k": 1}))
    report.add(Section("Same", summary={"k": 2}))
    report.add(Section("!!!"))  # slug falls back to "section"
    report.write(tmp_path)
    data = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert data["sections"] == {"same": {"k": 1}, "same-2": {"k": 2}, "section": {}}


def test_table_formats_and_validates() -> None:
    from convscope.report.blocks import RenderContext

    ctx = RenderContext(out_dir=Path("."), section_slug="s")
    out = Table(["a", "b"], [[0.123456, 3], {"a": float("nan"), "b": None}], float_format=".3f")
    rendered = out.render(ctx)
    assert '<td class="num">0.123</td>' in rendered
    assert '<td class="num">3</td>' in rendered
    assert '<td class="num">nan</td>' in rendered
    kv = KeyValues({"classes": ["circle", "square"], "acc": np.array([0.5, 0.25])}).render(ctx)
    assert "<td>circle, square</td>" in kv and "<td>0.5, 0.25</td>" in kv
    with pytest.raises(InputError):
        Table(["a", "b"], [[1, 2, 3]])
    with pytest.raises(InputError):
        Table([], [])
    with pytest.raises(InputError):
        Table(["a"], [[1.0]], float_format="not a spec")


@pytest.mark.parametrize(
    "href",
    [
        "https://example.com",
        "http://example.com/x.png",
        "//example.com/x",
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "/etc/passwd",
        "../outside.html",
        "a/../../b",
        "C:\\x.html",
        "",
    ],
)
def test_link_rejects_non_relative_targets(href: str) -> None:
    with pytest.raises(InputError):
        Link(href)


def test_link_accepts_relative_paths(tmp_path: Path) -> None:
    report = Report("links")
    report.add(Section("s", [Link("sub/data file.json"), Link("#contents", "top"), Link("a.csv")]))
    page = report.write(tmp_path).read_text(encoding="utf-8")
    hrefs = [a["href"] for t, a in _tags(page) if t == "a"]
    assert "sub/data%20file.json" in hrefs and "#contents" in hrefs and "a.csv" in hrefs


def test_writing_twice_overwrites(tmp_path: Path) -> None:
    report = _sample_report()
    report.write(tmp_path)
    first = (tmp_path / "summary.json").read_text(encoding="utf-8")
    report.add(Section("Late addition", [Figure(_figure(), name="late")], summary={"x": 1}))
    index = report.write(tmp_path)
    page = index.read_text(encoding="utf-8")
    assert "Late addition" in page
    data = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert data["sections"]["late-addition"] == {"x": 1}
    assert first != (tmp_path / "summary.json").read_text(encoding="utf-8")
    assert (tmp_path / "figures" / "attribution-line-plot.png").is_file()
    assert (tmp_path / "figures" / "late-addition-late.png").is_file()
    # no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "index.html", "summary.json"]


def test_write_into_a_file_fails(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(InputError):
        Report("r").write(target)


def test_registry_orders_builders() -> None:
    registry = DemoSectionRegistry()
    calls: list[str] = []

    def make(name: str) -> Any:
        def build(ctx: Any) -> Section:
            calls.append(name)
            return Section(name, summary={"seed": ctx.seed})

        return build

    registry.register("late", make("late"), order=30)
    registry.register("first", make("first"), order=10)
    registry.register("second", make("second"), order=10)  # tie: registration order
    registry.register("middle", make("middle"), order=20.5)
    assert registry.names() == ["first", "second", "middle", "late"]

    ctx = SimpleNamespace(out_dir=Path("."), quiet=True, seed=3)
    assert isinstance(ctx, DemoContext)
    sections = [entry(ctx) for entry in registry.sections()]
    assert [s.title for s in sections] == ["first", "second", "middle", "late"]
    assert calls == ["first", "second", "middle", "late"]
    assert sections[0].summary == {"seed": 3}

    with pytest.raises(InputError):
        registry.register("late", make("again"))
    registry.register("first", make("first again"), order=10, replace=True)
    assert registry.names() == ["first", "second", "middle", "late"]  # same order, same place
    registry.register("late", make("replaced"), order=0, replace=True)
    assert registry.names()[0] == "late"
    registry.unregister("late")
    assert "late" not in registry and len(registry) == 3

    registry.register("broken", lambda ctx: "not a section", order=99)  # type: ignore[arg-type,return-value]
    with pytest.raises(InputError, match="broken"):
        registry.sections()[-1](ctx)
    with pytest.raises(InputError):
        registry.register("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        registry.register("", make("empty"))


def test_default_registry_functions() -> None:
    name_a, name_b = "tests.report.zz_a", "tests.report.zz_b"
    try:
        register_demo_section(name_b, lambda ctx: Section("B"), order=1e9 + 1)
        register_demo_section(name_a, lambda ctx: Section("A"), order=1e9)
        names = [entry.name for entry in demo_sections()]
        assert names.index(name_a) < names.index(name_b)
    finally:
        unregister_demo_section(name_a)
        unregister_demo_section(name_b)
    assert name_a not in [entry.name for entry in demo_sections()]


def test_slugify() -> None:
    assert slugify("Occlusion & RISE (ResNet-18)") == "occlusion-rise-resnet-18"
    assert slugify("Ünïcödé") == "unicode"
    assert slugify("***") == "section"
    assert math.isclose(len(slugify("x" * 500)), 80)


def test_figures_of_different_sections_never_share_a_file(tmp_path: Path) -> None:
    def fig(value: float) -> MplFigure:
        f = MplFigure(figsize=(1, 1))
        f.add_subplot().bar([0], [value])
        return f

    report = Report("collisions")
    report.add(Section("A", [Figure(fig(1.0), name="b-c")]))
    report.add(Section("A b", [Figure(fig(2.0), name="c")]))
    index = report.write(tmp_path)
    sources = re.findall(r'<img src="([^"]+)"', index.read_text())
    assert len(sources) == 2 and len(set(sources)) == 2
    assert (tmp_path / sources[0]).read_bytes() != (tmp_path / sources[1]).read_bytes()


@pytest.mark.parametrize("href", ["%2e%2e/%2e%2e/etc/passwd", ".%2E/x", "a%2Fb", "%2Fetc"])
def test_percent_encoded_escapes_are_rejected(href: str) -> None:
    with pytest.raises(InputError):
        Link(href)
