"""Accuracy and inference speed of the embedded models on fresh shapes-world images.

Run:  .venv/bin/python benchmarks/bench_models.py [--n 5000]

Prints, for each embedded model, the accuracy on images whose background is independent of
the class and on images where it follows the class with probability 0.95, the drop between
them, the training time recorded in the model's metadata, and the inference throughput.
"""

from __future__ import annotations

import argparse
import time

import torch

from convscope.datasets import shapes
from convscope.models import EMBEDDED_MODELS, accuracy, load_model

SEED = 31_337


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="test images per condition")
    args = parser.parse_args()
    print(f"command: python benchmarks/bench_models.py --n {args.n}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    independent = shapes(args.n, seed=SEED)
    correlated = shapes(args.n, seed=SEED, spurious=0.95)
    header = "model | trained spurious | acc correlated | acc independent | drop | train s | img/s"
    print(header)
    for name in EMBEDDED_MODELS:
        model = load_model(name)
        meta = model.convscope_info.metadata
        start = time.perf_counter()
        acc_ind = accuracy(model, independent.images, independent.labels, progress=False)
        rate = args.n / (time.perf_counter() - start)
        acc_cor = accuracy(model, correlated.images, correlated.labels, progress=False)
        print(
            f"{name} | {meta['train_config']['spurious']} | {acc_cor:.4f} | {acc_ind:.4f} | "
            f"{acc_cor - acc_ind:+.4f} | {meta['train_seconds']} | {rate:.0f}"
        )


if __name__ == "__main__":
    main()
