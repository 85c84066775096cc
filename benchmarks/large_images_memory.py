"""Peak memory of every metric on one large RGB image pair (4000x4000 and 10000x10000 by default).

Each measurement runs in its own subprocess under an address-space cap (``--limit-gb``, 14 by
default, set with ``RLIMIT_AS`` as ``ulimit -v`` does), so that a metric that would need more
fails with an allocation error instead of taking the machine down; the peak is that process's
maximum resident set size (``ru_maxrss`` from ``wait4``). A row reads::

    metric          size    peak GB   inputs GB   estimate GB   seconds   result

``inputs GB`` is the process's resident size once the interpreter, torch, the metric (its
weights) and the two float32 images are in memory: what any computation starts from; the peak
minus it is what the metric itself took. ``result`` is the value, or the first line of the error
(an ``InputError`` saying the pair needs more memory than is available, or, on code without the
memory checks, the allocator's error). The images are on the 8-bit grid (as decoded files are),
smooth content plus noise, ``y`` a noisy copy of ``x``; made in row bands so that making them
costs no more than the images themselves. ``estimate GB`` is what the metric's memory check
estimates the call needs beyond the inputs (LPIPS, DISTS, ST-LPIPS, FSIM; ``nan`` for the
banded metrics and for code without the check).

To measure another copy of the package (e.g. the code before a change)::

    git -C /work/main archive HEAD percepmetric | tar -x -C /tmp/pm-before
    PYTHONPATH=/tmp/pm-before python benchmarks/large_images_memory.py

(run it from outside the repository's root, or as here by path: ``python -c`` would put the
working directory first on ``sys.path``). This takes minutes (the deep metrics at 10000x10000
most of them); it is not a test.

Usage: ``python benchmarks/large_images_memory.py [--sizes 4000,10000] [--metrics psnr,ssim]
[--limit-gb 14] [--timeout 1800] [--threads N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

# (label, registry name, options): the defaults, plus SSIM's conventions that skip the downsampling.
METRICS: tuple[tuple[str, str, dict], ...] = (
    ("psnr", "psnr", {}),
    ("l2", "l2", {}),
    ("l1", "l1", {}),
    ("ssim", "ssim", {}),
    ("ssim lpips", "ssim", {"convention": "lpips"}),
    ("ssim y", "ssim", {"color": "y"}),
    ("ms_ssim", "ms_ssim", {}),
    ("fsim", "fsim", {}),
    ("lpips alex", "lpips", {}),
    ("lpips vgg", "lpips", {"net": "vgg"}),
    ("dists", "dists", {}),
    ("stlpips", "stlpips", {}),
    ("stlpips vgg", "stlpips", {"net": "vgg"}),
)


def _rss_gb() -> float:
    """This process's current resident set size in GB (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9
    except OSError:
        return 0.0


def make_pair(side: int, band: int = 500):
    """Two ``(1,3,side,side)`` float32 images on the 8-bit grid, built ``band`` rows at a time."""
    import torch

    x = torch.empty(1, 3, side, side)
    y = torch.empty(1, 3, side, side)
    cols = torch.arange(side, dtype=torch.float32)
    for start in range(0, side, band):
        stop = min(side, start + band)
        gen = torch.Generator().manual_seed(start)
        rows = torch.arange(start, stop, dtype=torch.float32)[:, None]
        smooth = torch.stack([0.5 + 0.25 * torch.sin((rows * (c + 1) + cols * (3 - c)) / 97.0) for c in range(3)])
        xb = (smooth + 0.1 * torch.randn(3, stop - start, side, generator=gen)).clamp_(0, 1)
        yb = (xb + 0.05 * torch.randn(3, stop - start, side, generator=gen)).clamp_(0, 1)
        x[0, :, start:stop] = torch.round(xb * 255) / 255
        y[0, :, start:stop] = torch.round(yb * 255) / 255
    return x, y


def child(label: str, side: int, threads: int | None) -> None:
    """Measure one metric in this (capped) process; print one JSON line."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from percepmetric import create_metric

    name, options = next((n, o) for lab, n, o in METRICS if lab == label)
    metric = create_metric(name, **options)
    x, y = make_pair(side)
    record: dict = {"inputs_gb": _rss_gb(), "estimate_gb": _estimate(metric, x) / 1e9}
    start = time.perf_counter()
    try:
        record["value"] = float(metric(x, y)[0])
    except Exception as exc:  # any failure: its first line is the result
        first = (str(exc).strip().splitlines() or [""])[0]
        record["error"] = f"{type(exc).__name__}: {first[:160]}"
    record["seconds"] = time.perf_counter() - start
    print(json.dumps(record), flush=True)


def _estimate(metric, x) -> float:
    """What the metric estimates a call on the pair needs (the memory check's number), or NaN
    (no estimate: a banded metric, or code without the checks)."""
    import torch

    try:
        if hasattr(metric, "memory_needed"):
            return float(metric.memory_needed(2 * x.shape[0], x.shape[-2], x.shape[-1], x.dtype))
        if metric.name == "fsim":
            from percepmetric.metrics.fsim import fsim_memory_needed

            work = torch.float64 if metric.precision == "float64" else x.dtype
            return float(fsim_memory_needed(x.shape, x.dtype, work, metric.chromatic))
    except ImportError:
        pass
    return float("nan")


def measure(label: str, side: int, limit_gb: float, timeout: float, threads: int | None) -> dict:
    """Run :func:`child` in a subprocess under the cap; its record plus ``peak_gb`` (max RSS)."""
    limit = int(limit_gb * 1e9)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    cmd = [sys.executable, os.path.abspath(__file__), "--child", label, str(side)]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=cap)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.communicate()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    record = json.loads(lines[-1]) if lines else {}
    if not lines:
        last = (err.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        record["error"] = "timed out" if time.monotonic() > deadline else f"crashed: {last[:160]}"
    record["peak_gb"] = usage.ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4000,10000", help="image sides, comma-separated")
    parser.add_argument("--metrics", default=",".join(lab.replace(" ", "_") for lab, _, _ in METRICS),
                        help="rows to measure (labels with _ for spaces), comma-separated")
    parser.add_argument("--limit-gb", type=float, default=14.0, help="address-space cap of each measurement")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before a measurement is stopped")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in each measurement")
    parser.add_argument("--child", nargs=2, metavar=("METRIC", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.threads)
        return
    labels = [m.replace("_", " ") if m.replace("_", " ") in {lab for lab, _, _ in METRICS} else m
              for m in args.metrics.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    code = os.environ.get("PYTHONPATH") or "the installed percepmetric"
    print(f"# cap {args.limit_gb:g} GB address space per measurement; python {sys.version.split()[0]}; code: {code}")
    print(f"{'metric':<12} {'size':>11} {'peak GB':>8} {'inputs GB':>9} {'estimate GB':>11} {'seconds':>8}  result")
    for side in sizes:
        for label in labels:
            r = measure(label, side, args.limit_gb, args.timeout, args.threads)
            result = r.get("error") or f"{r['value']:.6g}"
            nan = float("nan")
            print(f"{label:<12} {f'{side}x{side}':>11} {r['peak_gb']:8.2f} {r.get('inputs_gb', nan):9.2f} "
                  f"{r.get('estimate_gb', nan):11.2f} {r.get('seconds', nan):8.1f}  {result}", flush=True)


if __name__ == "__main__":
    main()
