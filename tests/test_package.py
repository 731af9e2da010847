from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import convscope


def test_version_matches_metadata() -> None:
    assert convscope.__version__ == importlib.metadata.version("convscope")


def test_top_level_load_model_is_the_registry_function() -> None:
    from convscope.models import load_model

    assert convscope.load_model is load_model
    with pytest.raises(AttributeError):
        convscope.no_such_name  # noqa: B018


def test_console_script_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "convscope.cli.main", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"convscope {convscope.__version__}"
