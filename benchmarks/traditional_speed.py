"""Speed of the traditional metrics (PSNR, SSIM, MS-SSIM, FSIM) against piq and pytorch-msssim.

Times this project and its peers in the same run, interleaved (so load from other processes
hits all alike), on CPU, for two workloads: 256 patches of 64x64 (BAPPS-sized) and 16 images
of 256x256. Prints images per second (median of ``--repeats`` runs), the ratio to the
fastest peer (>= 1.0 means at least as fast) at the median and in every repeat (this
project's time against the fastest peer's time in the same round, since a loaded machine
slows whole rounds), their minimum, and the largest difference of the values, computed with
the same convention on both sides:

* PSNR: ``psnr`` vs ``piq.psnr``.
* SSIM: ``ssim(color="rgb", downsample=False)`` (ssim.m's window and constants on each RGB
  channel, mean over channels) vs ``pytorch_msssim.ssim`` and ``piq.ssim(downsample=False)``.
* MS-SSIM: ``ms_ssim(color="rgb")`` vs ``pytorch_msssim.ms_ssim`` and ``piq.multi_scale_ssim``
  (same for sides divisible by 16; both peers refuse images under 161 pixels, where
  percepmetric uses fewer scales, so the 64x64 row has no peer).
* FSIM: ``fsim`` vs ``piq.fsim(chromatic=False)``.

Each implementation runs right after the others in every round, so each call also meets the
memory state the previous library left behind (freed blocks handed back to the system, for
one): the per-repeat ratios show whether a call is steady under that, not only on average.

Usage: ``python benchmarks/traditional_speed.py [--repeats 5] [--threads N] [--metrics fsim,ssim]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

WORKLOADS = (("256 x 64x64", 256, 64), ("16 x 256x256", 16, 256))


def make_pair(n: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    # Smooth-ish content plus noise, so SSIM-type values are far from 0 and 1.
    base = torch.rand(n, 3, side // 4, side // 4, generator=gen)
    x = torch.nn.functional.interpolate(base, size=(side, side), mode="bilinear", align_corners=False)
    y = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return x.contiguous(), y.contiguous()


def our_metric(name: str, **options):
    from percepmetric import create_metric
    from percepmetric.errors import InputError

    try:
        return create_metric(name, **options)
    except (InputError, NotImplementedError, AttributeError, ImportError):
        return None


def candidates(side: int) -> dict[str, dict[str, object]]:
    """metric -> {implementation label: callable(x, y) -> (N,)}; ours first."""
    import piq
    import pytorch_msssim

    table: dict[str, dict[str, object]] = {}
    table["psnr"] = {
        "percepmetric": our_metric("psnr"),
        "piq": lambda x, y: piq.psnr(x, y, data_range=1.0, reduction="none"),
    }
    table["ssim"] = {
        "percepmetric": our_metric("ssim", color="rgb", downsample=False),
        "pytorch_msssim": lambda x, y: pytorch_msssim.ssim(x, y, data_range=1.0, size_average=False),
        "piq": lambda x, y: piq.ssim(x, y, data_range=1.0, downsample=False, reduction="none"),
    }
    ms = {"percepmetric": our_metric("ms_ssim", color="rgb")}
    if side > 160:  # the peers' own size limit for 5 scales of an 11x11 window
        ms["pytorch_msssim"] = lambda x, y: pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False)
        ms["piq"] = lambda x, y: piq.multi_scale_ssim(x, y, data_range=1.0, reduction="none")
    table["ms_ssim"] = ms
    fsim = our_metric("fsim")
    table["fsim"] = {
        "percepmetric": fsim,
        "piq": lambda x, y: piq.fsim(x, y, data_range=1.0, reduction="none", chromatic=False),
    }
    return table


def time_once(fn, x, y) -> tuple[float, torch.Tensor]:
    with torch.inference_mode():
        start = time.perf_counter()
        value = fn(x, y)
        return time.perf_counter() - start, value


def run(repeats: int, metrics: set[str] | None = None) -> list[dict[str, object]]:
    rows = []
    for label, n, side in WORKLOADS:
        x, y = make_pair(n, side)
        for metric, impls in candidates(side).items():
            if metrics is not None and metric not in metrics:
                continue
            impls = {k: v for k, v in impls.items() if v is not None}
            if "percepmetric" not in impls:
                print(f"{label:>13}  {metric:<8} percepmetric's {metric} is not available yet: skipped")
                continue
            values = {name: time_once(fn, x, y)[1].flatten().double() for name, fn in impls.items()}  # warm-up
            times: dict[str, list[float]] = {name: [] for name in impls}
            for _ in range(repeats):
                for name, fn in impls.items():  # interleaved: shared-machine noise hits all alike
                    times[name].append(time_once(fn, x, y)[0])
            speed = {name: n / statistics.median(t) for name, t in times.items()}
            peers = {k: v for k, v in speed.items() if k != "percepmetric"}
            best = max(peers, key=peers.get) if peers else None
            ours = values["percepmetric"]
            diff = {k: float((values[k] - ours).abs().max()) for k in peers}
            # Per round: our time against the fastest peer's time in that same round.
            per_repeat = ([min(times[k][r] for k in peers) / times["percepmetric"][r] for r in range(repeats)]
                          if peers else [])
            rows.append({"workload": label, "metric": metric, "speed": speed, "best_peer": best,
                         "ratio": speed["percepmetric"] / peers[best] if best else None,
                         "ratios": per_repeat, "max_diff": diff})
            print_row(rows[-1])
    return rows


def print_row(row) -> None:
    speed = row["speed"]
    parts = [f"{name} {ips:9.1f} img/s" for name, ips in speed.items()]
    ratio = f"ratio {row['ratio']:.2f} vs {row['best_peer']}" if row["ratio"] else "no peer runs this size"
    diffs = ", ".join(f"|d| {k} {v:.1e}" for k, v in row["max_diff"].items())
    print(f"{row['workload']:>13}  {row['metric']:<8} {' | '.join(parts)}  -> {ratio}  {diffs}", flush=True)
    if row["ratios"]:
        each = " ".join(f"{r:.2f}" for r in row["ratios"])
        print(f"{'':>13}  {'':<8} ratio per repeat: {each}  (min {min(row['ratios']):.2f})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per implementation (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--metrics", default=None,
                        help="comma-separated subset of psnr,ssim,ms_ssim,fsim (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, median of {args.repeats}; "
          f"load average {load:.1f} on {os.cpu_count()} cores")
    run(args.repeats, set(args.metrics.split(",")) if args.metrics else None)


if __name__ == "__main__":
    main()
