"""Distance matrix speed and peak memory: ``percepmetric.pairwise`` against the ``lpips`` package
over all pairs, in the same run (issue 13: at least 30x faster, same values within 1e-6).

N random 64x64 images (seeded; 300 by default), LPIPS-alex v0.1 (the pretrained trunk from
``$TORCH_HOME``, the calibration shipped with ``lpips``):

* ``percepmetric``: ``pairwise(x)``: one trunk pass per image, then the upper triangle from the
  features' Gram matrix, mirrored;
* ``lpips``: ``lpips.LPIPS(net='alex')`` on every unordered pair ``i < j`` (N(N-1)/2 pairs,
  what a user of that package computes for a symmetric matrix), in batches of 256 pairs,
  ``normalize=True`` (inputs in [0, 1]) under ``torch.no_grad()``.

Each side runs in its own subprocess, so its memory figures are its own: ``ru_maxrss`` (the
process's peak resident set; tracemalloc does not see torch's allocations) at the end, and the
growth of that peak above the resident set measured just before the timed part (after the
model and the images are in memory). Times are wall-clock of the timed part only (model
building excluded on both sides). Both sides use the same number of torch threads.

    python benchmarks/matrix_speed.py                  # 300 images (the lpips side takes minutes)
    python benchmarks/matrix_speed.py --images 100 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

BATCH_PAIRS = 256
SIZE = 64


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _images(n: int):
    import torch

    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def run_side(side: str, n: int, threads: int | None, out: str) -> None:
    """One side in this process: build, time, write ``{seconds, rss_before, peak}`` and the matrix."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    if threads:
        torch.set_num_threads(threads)
    x = _images(n)
    if side == "percepmetric":
        import percepmetric

        # build outside the timing
        percepmetric.functional.private_metric("lpips", {"net": "alex"}, torch.device("cpu"))

        def compute():
            return percepmetric.pairwise(x, metric="lpips", net="alex")
    else:
        import lpips

        model = lpips.LPIPS(net="alex", verbose=False).eval()

        def compute():
            i, j = torch.triu_indices(n, n, offset=1)
            matrix = torch.zeros(n, n)
            with torch.no_grad():
                for start in range(0, len(i), BATCH_PAIRS):
                    a, b = i[start:start + BATCH_PAIRS], j[start:start + BATCH_PAIRS]
                    matrix[a, b] = model(x[a], x[b], normalize=True).flatten()
            return matrix + matrix.T

    rss_before = _rss_mb()
    start = time.perf_counter()
    matrix = compute()
    seconds = time.perf_counter() - start
    torch.save({"matrix": matrix, "seconds": seconds, "rss_before": rss_before, "peak": _peak_mb(),
                "threads": torch.get_num_threads()}, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="torch threads on each side (default: torch's)")
    parser.add_argument("--side", choices=("percepmetric", "lpips"), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="Also print the figures as JSON.")
    args = parser.parse_args()
    if args.side:
        run_side(args.side, args.images, args.threads, args.result)
        return

    import torch

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for side in ("percepmetric", "lpips"):
            path = os.path.join(folder, f"{side}.pt")
            command = [sys.executable, __file__, "--side", side, "--images", str(args.images), "--result", path]
            if args.threads:
                command += ["--threads", str(args.threads)]
            subprocess.run(command, check=True)
            results[side] = torch.load(path, weights_only=True)
    ours, theirs = results["percepmetric"], results["lpips"]
    n = args.images
    i, j = torch.triu_indices(n, n, offset=1)
    difference = float((ours["matrix"][i, j].double() - theirs["matrix"][i, j].double()).abs().max())
    ratio = theirs["seconds"] / ours["seconds"]
    print(f"{n} images of {SIZE}x{SIZE}, {len(i)} pairs, LPIPS alex v0.1, CPU, "
          f"{ours['threads']} torch threads per side")
    for name, r in (("percepmetric", ours), ("lpips", theirs)):
        growth = max(0.0, r["peak"] - r["rss_before"])
        print(f"  {name:<13} {r['seconds']:9.2f} s   {len(i) / r['seconds']:10.0f} pairs/s   "
              f"peak RSS {r['peak']:7.0f} MB (+{growth:.0f} MB during the matrix)")
    print(f"  speed-up: {ratio:.1f}x (target >= 30x)   max |difference|: {difference:.2e} (target <= 1e-6)")
    if args.json:
        print(json.dumps({"images": n, "pairs": len(i), "ratio": ratio, "max_abs_difference": difference,
                          **{f"{k}_seconds": r["seconds"] for k, r in results.items()},
                          **{f"{k}_peak_mb": r["peak"] for k, r in results.items()}}))


if __name__ == "__main__":
    main()
