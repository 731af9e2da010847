"""Overhead of the probing core against plain PyTorch and the tools users compare us with.

Run:  .venv/bin/python benchmarks/bench_core.py [--batch 32] [--size 224] [--repeats 5]

On a torchvision ResNet-18 (random weights, eval mode), it times, in one run:

* a plain forward pass (the floor);
* ``convscope.core.record_activations`` of four layers (cloned, detached) and torchvision's
  ``create_feature_extractor`` (FX graph rewriting) returning the same four layers;
* Grad-CAM at ``layer4``: ``convscope.attribution.grad_cam`` against Captum's ``LayerGradCam``
  called directly (convscope wraps it, adding validation and the reuse check).

Median wall-clock seconds per call over ``--repeats`` calls after one warm-up call.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torchvision
from captum.attr import LayerAttribution, LayerGradCam
from torchvision.models.feature_extraction import create_feature_extractor

from convscope.attribution import grad_cam
from convscope.core import record_activations

LAYERS = ["layer1", "layer2", "layer3", "layer4"]


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(
        f"command: python benchmarks/bench_core.py --batch {args.batch} --size {args.size} "
        f"--repeats {args.repeats}"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.rand(args.batch, 3, args.size, args.size)

    def plain() -> object:
        with torch.no_grad():
            return model(x)

    def ours_record() -> object:
        with torch.no_grad(), record_activations(model, LAYERS) as acts:
            model(x)
        return dict(acts)

    extractor = create_feature_extractor(model, return_nodes=LAYERS)

    def torchvision_record() -> object:
        with torch.no_grad():
            return extractor(x)

    # Same numbers first: the comparison is only fair if both return the same tensors.
    ours, theirs = ours_record(), torchvision_record()
    assert isinstance(ours, dict) and isinstance(theirs, dict)
    for name in LAYERS:
        torch.testing.assert_close(ours[name], theirs[name])

    target = torch.arange(args.batch) % 1000

    def ours_cam() -> object:
        return grad_cam(model, x, target, layer="layer4", batch_size=args.batch)

    def captum_cam() -> object:
        attr = LayerGradCam(model, model.layer4).attribute(
            x.requires_grad_(False), target=target.tolist(), relu_attributions=True
        )
        return LayerAttribution.interpolate(attr, (args.size, args.size), "bilinear")

    ours_map, captum_map = ours_cam(), captum_cam()
    assert isinstance(ours_map, torch.Tensor) and isinstance(captum_map, torch.Tensor)
    torch.testing.assert_close(ours_map, captum_map.detach())

    rows = [
        ("forward, plain", timed(plain, args.repeats)),
        ("record 4 layers, convscope", timed(ours_record, args.repeats)),
        ("record 4 layers, torchvision feature extractor", timed(torchvision_record, args.repeats)),
        ("Grad-CAM layer4, convscope", timed(ours_cam, args.repeats)),
        ("Grad-CAM layer4, Captum LayerGradCam", timed(captum_cam, args.repeats)),
    ]
    for label, seconds in rows:
        print(f"{label:48s} {seconds:8.3f} s   {args.batch / seconds:8.1f} img/s")


if __name__ == "__main__":
    main()
