"""The scalar validators of convscope.core.validation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from convscope.core import InputError
from convscope.core.validation import (
    choice,
    fraction,
    integer,
    non_negative_int,
    non_negative_number,
    number,
    positive_int,
    positive_number,
)


def test_number_accepts_reals_and_numpy_scalars_as_float() -> None:
    assert number(3, "x") == 3.0 and isinstance(number(3, "x"), float)
    assert number(-2.5, "x") == -2.5
    out = number(np.float32(0.5), "x")
    assert out == 0.5 and type(out) is float
    assert type(number(np.int64(4), "x")) is float


@pytest.mark.parametrize("bad", [True, np.bool_(True), "1", None, [1.0], 1j])
def test_number_refuses_non_numbers(bad: Any) -> None:
    with pytest.raises(InputError, match="speed must be a number"):
        number(bad, "speed")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, np.float64("nan")])
def test_number_refuses_non_finite_values(bad: Any) -> None:
    with pytest.raises(InputError, match="speed must be finite"):
        number(bad, "speed")


def test_hint_is_appended() -> None:
    with pytest.raises(InputError, match=r"speed must be a number, got 'a'\. Use 1\.0\.$"):
        number("a", "speed", hint="Use 1.0.")


def test_positive_number() -> None:
    assert positive_number(np.float64(1e-9), "lr") == 1e-9
    for bad in (0, 0.0, -1.0):
        with pytest.raises(InputError, match="lr must be positive"):
            positive_number(bad, "lr")
    with pytest.raises(InputError, match="lr must be finite"):
        positive_number(math.nan, "lr")
    with pytest.raises(InputError, match="lr must be a number"):
        positive_number(False, "lr")


def test_non_negative_number() -> None:
    assert non_negative_number(0, "l1") == 0.0
    assert type(non_negative_number(np.int32(2), "l1")) is float
    with pytest.raises(InputError, match="l1 must be 0 or more"):
        non_negative_number(-1e-4, "l1")
    with pytest.raises(InputError, match="l1 must be finite"):
        non_negative_number(math.inf, "l1")
    with pytest.raises(InputError, match="l1 must be a number"):
        non_negative_number(True, "l1")


def test_integer() -> None:
    assert integer(-3, "n") == -3
    out = integer(np.int64(5), "n", minimum=2)
    assert out == 5 and type(out) is int
    for bad in (1.0, True, np.bool_(False), "2", math.nan):
        with pytest.raises(InputError, match="n must be an int"):
            integer(bad, "n")
    with pytest.raises(InputError, match="n must be an int >= 2, got 1"):
        integer(1, "n", minimum=2)


def test_positive_int() -> None:
    assert positive_int(1, "k") == 1
    out = positive_int(np.int16(3), "k")
    assert out == 3 and type(out) is int
    for bad in (0, -1, 2.0, True, math.nan, None):
        with pytest.raises(InputError, match="k must be a positive int"):
            positive_int(bad, "k")


def test_non_negative_int() -> None:
    assert non_negative_int(0, "steps") == 0
    assert type(non_negative_int(np.uint8(7), "steps")) is int
    for bad in (-1, 0.5, False, math.nan):
        with pytest.raises(InputError, match="steps must be an int >= 0"):
            non_negative_int(bad, "steps")


def test_fraction_default_interval_is_half_open() -> None:
    assert fraction(1, "f") == 1.0
    out = fraction(np.float32(0.25), "f")
    assert out == 0.25 and type(out) is float
    for bad in (0.0, 1.5, -0.1, True, math.nan, "0.5"):
        with pytest.raises(InputError, match=r"f must be a number in \(0, 1\]"):
            fraction(bad, "f")


def test_fraction_ends_follow_the_flags() -> None:
    assert fraction(0.0, "f", include_low=True) == 0.0
    with pytest.raises(InputError, match=r"f must be a number in \[0, 1\)"):
        fraction(1.0, "f", include_low=True, include_high=False)


def test_choice() -> None:
    assert choice("blur", "perturbation", ("blur", "fade")) == "blur"
    for bad in ("gauss", None, 1, True):
        with pytest.raises(InputError, match=r"Unknown perturbation .*'blur', 'fade'"):
            choice(bad, "perturbation", ("blur", "fade"))
