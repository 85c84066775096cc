"""Eager against ``torch.compile`` (inductor, default mode) for SSIM, MS-SSIM, PSNR, LPIPS and DISTS.

Each metric is built with ``validate_args=False`` (the per-call value checks are a host sync; a
compiled training loop switches them off) and timed on CPU, float32, for two workloads: 256
patches of 64x64 (BAPPS-sized) and 16 images of 256x256. Printed per (workload, metric): images
per second eager and compiled (median of ``--repeats`` timed calls, the two interleaved so that
load from other processes hits both alike), their ratio (compiled / eager; > 1 means compiled is
faster), the compile time (the first compiled call: dynamo's trace plus inductor's code
generation and C++ build; cold, since the run compiles into a fresh inductor cache directory
unless ``--warm-cache`` keeps torch's default one, where a second run finds its code), the
graph breaks ``torch._dynamo.explain`` counts, and the largest absolute difference of the values.

The point of compile-clean metrics is users on GPUs, where a whole metric fused into one graph
saves kernel launches; on a CPU the eager path is already vectorised, so compiled need not be
faster here. LPIPS and DISTS need the pretrained trunks (``$TORCH_HOME``); a metric that cannot
be built is reported and skipped.

Usage: ``python benchmarks/compile_speed.py [--repeats 5] [--threads N] [--metrics ssim,lpips]
[--workloads 64,256] [--warm-cache]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

WORKLOADS = {"64": ("256 x 64x64", 256, 64), "256": ("16 x 256x256", 16, 256)}
METRICS = ("ssim", "ms_ssim", "psnr", "lpips", "dists")


def make_pair(n: int, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth content plus noise (SSIM-type values far from 0 and 1), in [0, 1]."""
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(n, 3, side // 4, side // 4, generator=gen)
    x = torch.nn.functional.interpolate(base, size=(side, side), mode="bilinear", align_corners=False)
    y = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return x.contiguous(), y.contiguous()


def build(name: str):
    from percepmetric import create_metric

    try:
        return create_metric(name, validate_args=False)
    except Exception as exc:  # a missing weight file or extra: reported, the others still run
        print(f"{name}: cannot be built here ({type(exc).__name__}: {str(exc).splitlines()[0]}): skipped", flush=True)
        return None


def timed(fn, x, y) -> tuple[float, torch.Tensor]:
    with torch.no_grad():
        start = time.perf_counter()
        value = fn(x, y)
        return time.perf_counter() - start, value


def measure(name: str, n: int, side: int, repeats: int) -> dict[str, object] | None:
    metric = build(name)
    if metric is None:
        return None
    x, y = make_pair(n, side)
    torch._dynamo.reset()  # a cold cache: the compile time below is the whole of it
    breaks = torch._dynamo.explain(metric)(x[:2], y[:2]).graph_break_count
    torch._dynamo.reset()
    compiled = torch.compile(metric)
    compile_time, compiled_value = timed(compiled, x, y)
    _, eager_value = timed(metric, x, y)  # warm-up
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(repeats):
        times["eager"].append(timed(metric, x, y)[0])
        times["compiled"].append(timed(compiled, x, y)[0])
    speed = {k: n / statistics.median(v) for k, v in times.items()}
    return {"metric": name, "eager": speed["eager"], "compiled": speed["compiled"],
            "ratio": speed["compiled"] / speed["eager"], "compile_s": compile_time, "breaks": breaks,
            "max_diff": float((compiled_value.double() - eager_value.double()).abs().max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per mode (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--metrics", default=",".join(METRICS), help=f"comma-separated subset of {','.join(METRICS)}")
    parser.add_argument("--workloads", default="64,256", help="comma-separated subset of 64 (256 x 64x64), "
                                                              "256 (16 x 256x256)")
    parser.add_argument("--warm-cache", action="store_true",
                        help="keep inductor's default on-disk cache (compile times then depend on earlier runs)")
    args = parser.parse_args()
    if args.warm_cache:
        run(args)
        return
    with tempfile.TemporaryDirectory(prefix="compile_speed_") as cache:
        # Read by inductor when it first compiles: this run's code goes to a fresh directory,
        # so the compile times are those of a first run.
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        run(args)


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, median of {args.repeats}; "
          f"load average {load:.1f} on {os.cpu_count()} cores")
    print(f"{'workload':>13}  {'metric':<8} {'eager img/s':>11} {'compiled img/s':>14} {'ratio':>6} "
          f"{'compile s':>9} {'breaks':>6} {'max |d|':>8}", flush=True)
    for key in args.workloads.split(","):
        label, n, side = WORKLOADS[key]
        for name in args.metrics.split(","):
            row = measure(name, n, side, args.repeats)
            if row is not None:
                print(f"{label:>13}  {name:<8} {row['eager']:11.1f} {row['compiled']:14.1f} {row['ratio']:6.2f} "
                      f"{row['compile_s']:9.1f} {row['breaks']:6d} {row['max_diff']:8.1e}", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end {load:.1f}")


if __name__ == "__main__":
    main()
