"""The generic Options base, merge_options and the deprecated-keyword helpers."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import pytest

from convscope.core.deprecation import removed_argument, renamed_argument
from convscope.core.errors import InputError
from convscope.core.options import Options, merge_options


@dataclass(frozen=True)
class _Demo(Options):
    steps: int = field(default=10, metadata={"help": "How many steps."})
    name: str = field(default="a", metadata={"help": "A name."})


def test_options_base() -> None:
    opts = _Demo()
    assert opts.to_dict() == {"steps": 10, "name": "a"}
    assert _Demo.field_names() == ("steps", "name")
    assert _Demo.defaults() == {"steps": 10, "name": "a"}
    assert _Demo.help("steps") == "How many steps."
    assert _Demo.help() == "steps: How many steps.\nname: A name."
    assert opts.replace(steps=3) == _Demo(steps=3)
    with pytest.raises(InputError, match=r"no option 'stpes'.*'steps'"):
        opts.replace(stpes=3)
    with pytest.raises(InputError, match="no option"):
        _Demo.help("nope")


def test_merge_options() -> None:
    assert merge_options(_Demo, None, {"steps": 4}, function="f") == _Demo(steps=4)
    given = _Demo(steps=4)
    # Keywords at their defaults are ignored beside options=.
    assert merge_options(_Demo, given, {"steps": 10, "name": "a"}, function="f") is given
    with pytest.raises(InputError, match=r"f\(\) got options= and also name="):
        merge_options(_Demo, given, {"steps": 10, "name": "b"}, function="f")
    with pytest.raises(InputError, match="must be a _Demo"):
        merge_options(_Demo, {"steps": 4}, {}, function="f")  # type: ignore[arg-type]


def test_renamed_argument() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert renamed_argument(None, "new", old="o", new="n", function="f") == "new"
        assert renamed_argument(None, None, old="o", new="n", function="f") is None
    with pytest.warns(DeprecationWarning, match=r"f\(\): o= is deprecated.*use n="):
        assert renamed_argument("old", None, old="o", new="n", function="f") == "old"
    with pytest.raises(InputError, match="both o= and n="):
        renamed_argument("old", "new", old="o", new="n", function="f")


def test_removed_argument() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        removed_argument(None, name="seed", function="f", reason="nothing is random")
    with pytest.warns(DeprecationWarning, match="seed= is deprecated and has no effect"):
        removed_argument(3, name="seed", function="f", reason="nothing is random")
