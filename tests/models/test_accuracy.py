"""The shipped models reach their stated accuracy on fresh images of the world."""

from __future__ import annotations

import pytest

from convscope.datasets import shapes
from convscope.models import accuracy, load_model

# Seeds far from any used in training (training uses seeds derived from 0 and 1 below 10^5).
FRESH_SEED = 424_242


@pytest.fixture(scope="module")
def fresh_independent():  # type: ignore[no-untyped-def]
    return shapes(1000, seed=FRESH_SEED)


def test_shapes_cnn_reaches_95_percent(fresh_independent) -> None:  # type: ignore[no-untyped-def]
    model = load_model("shapes-cnn")
    acc = accuracy(model, fresh_independent.images, fresh_independent.labels)
    assert acc >= 0.95, acc


def test_spurious_model_drops_when_background_is_independent(fresh_independent) -> None:  # type: ignore[no-untyped-def]
    model = load_model("shapes-cnn-spurious")
    correlated = shapes(1000, seed=FRESH_SEED, spurious=0.95)
    acc_cor = accuracy(model, correlated.images, correlated.labels)
    acc_ind = accuracy(model, fresh_independent.images, fresh_independent.labels)
    # Binomial standard error at n=1000 is at most 0.016; demand a drop of 0.15 or more.
    assert acc_cor - acc_ind >= 0.15, (acc_cor, acc_ind)
    # and the clean model does not show that drop
    clean = load_model("shapes-cnn")
    drop_clean = accuracy(clean, correlated.images, correlated.labels) - accuracy(
        clean, fresh_independent.images, fresh_independent.labels
    )
    assert drop_clean < 0.05
