"""Guided masking and prediction bias glued from a sensitivity result."""

from __future__ import annotations

import torch
from torch import nn

from convscope.sensitivity.augmentation.augmentation_sensitivity import augmentation_sensitivity
from convscope.sensitivity.augmentation.augmentations import minmax_rescale
from convscope.sensitivity.augmentation.experiments import guided_masking, prediction_bias
from convscope.sensitivity.augmentation.masking import MASK_CONFIGS
from convscope.sensitivity.augmentation.single_class import jaccard_null


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 12),
    ).eval()  # fmt: skip


def test_guided_masking_and_prediction_bias() -> None:
    model = _model()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 8, 8, generator=g)
    y = torch.arange(12) % 6
    res = augmentation_sensitivity(
        model, x, y, ["1", "3", "6"], augmentations=["brightness", "hflip"], n=8,
        softmax=["6"], progress=False,
    )  # fmt: skip
    configs = MASK_CONFIGS[:3]
    masked = guided_masking(model, x, y, res, n_draws=2, configs=configs, top_k=5)
    assert masked.input_names == ("original", "brightness", "hflip")
    assert masked.variables == tuple(res.variables)
    assert masked.checkpoints == ("1", "3")  # convolutional checkpoints only
    assert masked.topk.shape == (3, len(res.variables), 3, 24, 5)
    # unmasked predictions of the original entry are the model's on the rescaled images
    with torch.no_grad():
        direct = model(minmax_rescale(x)).topk(5, dim=1).indices
    assert torch.equal(masked.unmasked_topk[0, :12].cpu(), direct)
    bias = prediction_bias(res, masked, "6", k=5)
    assert bias.augmentations == ["brightness", "hflip"]
    assert bias.jaccard.shape == (2, 3)
    # one cell by hand with Python sets
    sensitive = set(res.maps("first_order")["6"][1].argsort(descending=True)[:5].tolist())
    i, j = masked.input_index("hflip"), list(masked.variables).index("hflip")
    preds = masked.topk[i, j, 2].tolist()
    by_hand = sum(len(sensitive & set(p)) / len(sensitive | set(p)) for p in preds) / len(preds)
    assert abs(float(bias.jaccard[1, 2]) - by_hand) < 1e-12
    null = jaccard_null(12, 2, n=5)
    assert bias.tau == null.tau
    assert torch.equal(bias.outliers, bias.jaccard > null.tau)
