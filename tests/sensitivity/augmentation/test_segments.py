"""Segments and single-HSV-channel segments, against hook recordings and colorsys."""

from __future__ import annotations

import colorsys
from typing import Literal

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from convscope.core.errors import InputError, LayerNotFoundError
from convscope.core.hooks import record_activations
from convscope.data.normalization import with_normalization
from convscope.sensitivity.augmentation.augmentation_sensitivity import augmentation_sensitivity
from convscope.sensitivity.augmentation.segments import (
    SingleChannelSegment,
    first_conv_in_channels,
    multiplex_channel,
    segment,
)


def _x(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _sequential() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(4, 5, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    ).eval()


def test_sequential_segment_reproduces_the_hooked_activations() -> None:
    model, x = _sequential(), _x(3, 8)
    seg = segment(model, "2", "3", example=x)
    assert [name for name, _ in seg.named_children()] == ["2", "3"]
    assert seg[0] is model[2]  # shared, not copied
    with record_activations(model, ["1", "3"]) as acts, torch.no_grad():
        out = model(x)
        before, after = acts["1"], acts["3"]
    # outside the block: the segment's own calls must not overwrite the recordings
    with torch.no_grad():
        torch.testing.assert_close(seg(before.clone()), after)
        # head, segment and tail compose back to the model
        torch.testing.assert_close(model[4:](seg(model[:2](x))), out)


def test_resnet_children_segments_match_the_intact_network() -> None:
    torch.manual_seed(0)
    model = resnet18(weights=None, num_classes=7).eval()
    x = _x(2, 32)
    stem = segment(model, "conv1", "layer2", example=x)
    middle = segment(model, "layer1", "layer3", example=x)
    assert [n for n, _ in stem.named_children()] == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2",
    ]  # fmt: skip
    with record_activations(model, ["maxpool", "layer2", "layer3"]) as acts, torch.no_grad():
        model(x)
        rec = {name: acts[name] for name in ("maxpool", "layer2", "layer3")}
    with torch.no_grad():
        torch.testing.assert_close(stem(x), rec["layer2"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(middle(rec["maxpool"]), rec["layer3"], rtol=1e-5, atol=1e-6)
    assert first_conv_in_channels(stem) == 3
    assert first_conv_in_channels(middle) == 64
    # the parent flattens between avgpool and fc: not a chain of its children
    with pytest.raises(InputError, match="do not reproduce"):
        segment(model, "avgpool", "fc", example=x)
    with pytest.raises(InputError, match="not children of the same module"):
        segment(model, "layer1.0", "layer2", example=x)
    with pytest.raises(InputError, match="registered after"):
        segment(model, "layer3", "layer1", example=x)
    with pytest.raises(LayerNotFoundError):
        segment(model, "layer9", "layer3", example=x)
    # a normalising wrapper's "model." prefix may be left out
    wrapped = with_normalization(model).eval()
    torch.testing.assert_close(
        segment(wrapped, "layer1", "layer2", example=x)(rec["maxpool"]), rec["layer2"]
    )


class OutOfOrder(nn.Module):
    """Registers a, b, c but runs a, c, b."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(4, 4, 1)
        self.c = nn.Conv2d(4, 4, 1)
        self.unused = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.c(self.a(x)))


def test_out_of_order_parent_is_refused() -> None:
    model, x = OutOfOrder().eval(), _x(2, 5)
    with pytest.raises(InputError, match="registration order do not reproduce"):
        segment(model, "a", "c", example=x)
    with pytest.raises(InputError, match="did not run"):
        segment(model, "c", "unused", example=x)
    # unchecked, the segment is built as asked (and is then wrong: the check is what catches it)
    seg = segment(model, "a", "c", check=False)
    assert [n for n, _ in seg.named_children()] == ["a", "b", "c"]
    with record_activations(model, ["c"]) as acts, torch.no_grad():
        model(x)
        want = acts["c"]
    with torch.no_grad():
        assert not torch.allclose(seg(x), want)
    with pytest.raises(InputError, match=r"no nn\.Conv2d"):
        first_conv_in_channels(nn.Sequential(nn.ReLU()))


def _colorsys_hsv(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    for n in range(x.shape[0]):
        for i in range(x.shape[2]):
            for j in range(x.shape[3]):
                r, g, b = (float(v) for v in x[n, :, i, j])
                out[n, :, i, j] = torch.tensor(colorsys.rgb_to_hsv(r, g, b))
    return out


def _diagonal_conv(c: int) -> nn.Sequential:
    conv = nn.Conv2d(c, c, 1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        for k in range(c):
            conv.weight[k, k] = k + 1.0  # output k = (k + 1) · input channel k
    return nn.Sequential(conv, nn.ReLU(inplace=True))


@pytest.mark.parametrize("channel", ["H", "S", "V"])
def test_single_channel_segment_feeds_the_repeated_hsv_channel(channel: str) -> None:
    x = _x(2, 4, seed=5)
    hsv = _colorsys_hsv(x)[:, "HSV".index(channel)]
    wrapper = SingleChannelSegment(_diagonal_conv(4), channel)  # type: ignore[arg-type]
    assert wrapper.in_channels == 4
    with torch.no_grad():
        y = wrapper(x)
    expected = torch.stack([(k + 1) * hsv for k in range(4)], dim=1)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6)
    picked = SingleChannelSegment(_diagonal_conv(4), channel, 4, units=[3, 1])  # type: ignore[arg-type]
    with record_activations(picked, ["output"]) as acts, torch.no_grad():
        out = picked(x)
    torch.testing.assert_close(out, expected[:, [3, 1]], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(acts["output"], out)
    repeated = multiplex_channel(x, channel, 2)  # type: ignore[arg-type]
    torch.testing.assert_close(repeated, hsv[:, None].expand(-1, 2, -1, -1), rtol=1e-5, atol=1e-6)


def test_single_channel_segment_errors() -> None:
    seg = _diagonal_conv(3)
    with pytest.raises(InputError, match="channel must be one of"):
        SingleChannelSegment(seg, "R")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="units must be distinct"):
        SingleChannelSegment(seg, "H", units=[1, 1])
    with pytest.raises(InputError, match="units go up to 5"):
        SingleChannelSegment(seg, "H", units=[5])(_x(1, 4))
    with pytest.raises(InputError, match="N×3×H×W"):
        SingleChannelSegment(seg, "H")(torch.rand(1, 4, 4, 4))


def test_augmentation_sensitivity_runs_unchanged_on_a_single_channel_segment() -> None:
    torch.manual_seed(2)
    base = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Tanh())
    # values well inside [0, 1] so brightness (factor <= 2.5) never clips: hue is then
    # invariant to brightness, value is not
    x = 0.05 + 0.3 * _x(6, 6, seed=3)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    kw = {"augmentations": ["brightness", "hflip"], "n": 8, "rescale": None, "seed": 1}
    totals = {}
    channels: tuple[Literal["H"], Literal["V"]] = ("H", "V")
    for channel in channels:
        wrapper = SingleChannelSegment(base, channel, units=[2, 0])
        res = augmentation_sensitivity(wrapper, x, y, ["output", "segment.1"], **kw)  # type: ignore[arg-type]
        assert res.first_order is not None and res.total_order is not None
        assert res.first_order["output"].shape == (len(res.variables), 2, 6, 6)
        # the unit selection picks exactly those channels of the segment's own output
        for measure in (res.first_order, res.total_order):
            torch.testing.assert_close(measure["output"], measure["segment.1"][:, [2, 0]])
        totals[channel] = res.total_order["output"][res.variables.index("brightness")]
    # hue: exactly invariant (rounding only); value: clearly sensitive, besides the dominant
    # image (class) and flip variance
    assert float(totals["H"].abs().max()) < 1e-6
    assert float(totals["V"].mean()) > 0.01
