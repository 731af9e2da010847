"""Is "PIR > 1" an effect or estimator noise? Region Sobol' indices against the budget N.

Run:  .venv/bin/python benchmarks/region_pir_noise.py [--images 4] [--grid 4] [--max-log2 9]

The seed (Sobol-SBSA) reports that 22%, 33% and 39% of the regions of 4×4, 8×8 and 14×14
grids have a primary index ratio PIR = S_i / S_Ti above 1, which theory forbids, and blames
correlated inputs. The factors of a pick-freeze design are independent by construction, so
the spec suspects Monte-Carlo error at the seed's N = 50. This script runs
``convscope.attribution.region_sobol`` on the same shapes-world images with N = 32 … 2^max
base rows (the same scrambled Sobol' design family, seed 0) and prints, per N:

* the share of regions with PIR > 1 (among regions with S_Ti > 1e-6);
* the same share among the regions that matter (S_Ti ≥ 0.05);
* the share whose PIR > 1 is significant, i.e. the bootstrap intervals of S_i and S_Ti are
  disjoint with S_i above (100 normal resamples, SALib's default);
* the mean width of the S_Ti and S_i 95% intervals.

If the PIR > 1 share shrinks as N grows and almost none is significant, it is noise.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import convscope
from convscope.attribution.region_sobol import region_sobol
from convscope.data.regions import grid_regions
from convscope.datasets import shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--grid", type=int, default=4)
    parser.add_argument("--min-log2", type=int, default=5)
    parser.add_argument("--max-log2", type=int, default=9)
    parser.add_argument("--model", default="shapes-cnn")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default=None, help="write the rows as JSON")
    args = parser.parse_args()

    model = convscope.load_model(args.model)
    world = shapes(args.images, seed=21)
    size = world.images.shape[-1]
    regions = grid_regions(size, size, args.grid)
    rows = []
    print(f"model {args.model}, {args.images} images, {args.grid}×{args.grid} grid, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    print()
    print("| N | evaluations / image | PIR > 1 | PIR > 1, significant | "
          "PIR > 1 where S_Ti ≥ 0.05 | S_Ti interval width | "
          "S_i interval width | mean PIR, top 20% | seconds |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for log2 in range(args.min_log2, args.max_log2 + 1):
        n = 2**log2
        start = time.perf_counter()
        res = region_sobol(
            model, world.images, world.labels, regions, n=n, batch_size=args.batch_size,
            progress=False,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        assert res.first_order_interval is not None and res.total_order_interval is not None
        finite = torch.isfinite(res.pir)
        above = (res.pir > 1) & finite
        important = finite & (res.total_order >= 0.05)
        significant = above & (res.first_order_interval[..., 0] > res.total_order_interval[..., 1])
        row = {
            "n": n,
            "evaluations": res.n_evaluations,
            "pir_above_one": float(above.sum() / finite.sum()),
            "pir_above_one_significant": float(significant.sum() / finite.sum()),
            "pir_above_one_important": float((above & important).sum() / important.sum()),
            "total_width": float(res.total_order_interval.diff(dim=-1).mean()),
            "first_width": float(res.first_order_interval.diff(dim=-1).mean()),
            "mean_pir_top20": float(res.mean_pir().nanmean()),
            "seconds": seconds,
        }
        rows.append(row)
        cells = [
            str(n), str(row["evaluations"]), f"{100 * row['pir_above_one']:.0f}%",
            f"{100 * row['pir_above_one_significant']:.1f}%",
            f"{100 * row['pir_above_one_important']:.0f}%", f"{row['total_width']:.3f}",
            f"{row['first_width']:.3f}", f"{row['mean_pir_top20']:.2f}", f"{seconds:.0f}",
        ]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
