"""Benchmark of the ground-truth shape world generator (``convscope.datasets.shapes``).

Measures images per second for ``shapes(n=10000, size=64)`` (the default options) and prints one
result line per run plus the median. Run from the repository root::

    .venv/bin/python benchmarks/bench_world.py [--n 10000] [--size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from convscope.datasets import shapes


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the throughput."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images per run")
    parser.add_argument("--size", type=int, default=64, help="image side")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs")
    parser.add_argument("--spurious", type=float, default=0.0)
    parser.add_argument("--label-noise", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cmd = " ".join([os.path.relpath(sys.executable), *sys.argv])
    print(f"command: {cmd}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cpus, {platform.processor() or platform.machine()}"
    )
    shapes(256, size=args.size)  # warm-up: photographs cache, allocator, kernels
    rates = []
    for run in range(args.repeats):
        start = time.perf_counter()
        world = shapes(
            args.n,
            seed=run,
            size=args.size,
            spurious=args.spurious,
            label_noise=args.label_noise,
        )
        elapsed = time.perf_counter() - start
        rates.append(args.n / elapsed)
        print(f"run {run}: {args.n} images {args.size}x{args.size} in {elapsed:.3f} s")
        del world
    print(
        f"RESULT shapes(n={args.n}, size={args.size}): {statistics.median(rates):,.0f} images/s "
        f"(median of {args.repeats}; best {max(rates):,.0f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
