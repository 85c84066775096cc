"""Speed and peak memory of the classic full-reference metrics against piq and pyiqa, in the same run.

The metrics of the classic suite (GMSD, MS-GMSD, HaarPSI, MDSI, SR-SIM, VSI, ... as they land
in the registry) on CPU, float32, for the two workloads of the issue that asked for them: 64
images of 64x64 and 8 images of 512x384. Timing is interleaved with piq and pyiqa in every
round (load from other processes hits all alike; ``traditional_speed.py``'s loop and printout),
median of ``--repeats``; the ratio is the peer's time over ours (>= 1.0: at least as fast), at
the median and per round, against piq where piq has the metric, else against pyiqa. Peak memory
is measured apart: each (implementation, workload) runs in a fresh interpreter, which samples
its resident set (``/proc/self/statm``, every 0.5 ms) during a call after a warm-up call and
reports the peak above the RSS before it (Linux only).

Values: each side computes in its own convention (piq converts RGB to the Y of YIQ where the
authors' code uses MATLAB's ``rgb2gray``, and differs in details docs/metrics.md lists), so the
printed ``|d|`` is the gap between the libraries, not an error of either.

Usage: ``python benchmarks/classic_speed.py [--repeats 5] [--threads N] [--metrics gmsd,vsi] [--no-memory]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap

import torch
from traditional_speed import print_row, time_once

WORKLOADS = (("64 x 64x64", 64, 64, 64), ("8 x 512x384", 8, 384, 512))

#: Registry name -> (options of ours, {peer: (its name for the metric, its keyword arguments)}).
#: The ratio is against piq where piq has the metric, else against pyiqa (the issue's rule).
PEERS = {
    "gmsd": ({}, {"piq": ("gmsd", {}), "pyiqa": ("gmsd", {})}),
    "ms_gmsd": ({}, {"piq": ("multi_scale_gmsd", {"chromatic": False})}),
    "haarpsi": ({}, {"piq": ("haarpsi", {})}),
    "mdsi": ({}, {"piq": ("mdsi", {})}),
    "srsim": ({}, {"piq": ("srsim", {"chromatic": False})}),
    "vsi": ({}, {"piq": ("vsi", {}), "pyiqa": ("vsi", {})}),
    "vif": ({}, {"pyiqa": ("vif", {})}),
    "vifp": ({}, {"piq": ("vif_p", {})}),
    "nlpd": ({}, {"pyiqa": ("nlpd", {})}),
    "mad": ({}, {"pyiqa": ("mad", {})}),
    "cw_ssim": ({}, {"pyiqa": ("cw_ssim", {})}),
    "dss": ({}, {"piq": ("dss", {})}),
    "iw_ssim": ({}, {"piq": ("information_weighted_ssim", {})}),
}


def make_pair(n: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth content plus noise (values far from a metric's extremes), the same for every side."""
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(n, 3, height // 4, width // 4, generator=gen)
    x = torch.nn.functional.interpolate(base, size=(height, width), mode="bilinear", align_corners=False)
    y = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return x.contiguous(), y.contiguous()


def implementations(name: str):
    """{label: callable(x, y) -> (N,)} for ``name``: ours, then piq's and pyiqa's where they have
    the metric and are installed (pyiqa 0.1.16 installs with ``pip install --no-deps pyiqa`` plus
    pyyaml, opencv-python-headless, requests and huggingface_hub; its formula metrics need no
    download)."""
    import percepmetric

    options, peers = PEERS[name]
    impls = {"percepmetric": percepmetric.create_metric(name, **options)}
    if "piq" in peers:
        try:
            import piq
        except ImportError:
            piq = None
        if piq is not None and hasattr(piq, peers["piq"][0]):
            function, kwargs = getattr(piq, peers["piq"][0]), peers["piq"][1]
            impls["piq"] = lambda x, y: function(x, y, data_range=1.0, reduction="none", **kwargs)
    if "pyiqa" in peers:
        try:
            import pyiqa
        except ImportError:
            pyiqa = None
        if pyiqa is not None:
            metric = pyiqa.create_metric(peers["pyiqa"][0], device="cpu", as_loss=False, **peers["pyiqa"][1])
            impls["pyiqa"] = lambda x, y: metric(x, y).reshape(-1)
    return impls


def time_metric(name: str, label: str, n: int, height: int, width: int, repeats: int) -> dict[str, object]:
    x, y = make_pair(n, height, width)
    impls = implementations(name)
    values = {k: time_once(fn, x, y)[1].flatten().double() for k, fn in impls.items()}  # warm-up
    times: dict[str, list[float]] = {k: [] for k in impls}
    for _ in range(repeats):
        for k, fn in impls.items():
            times[k].append(time_once(fn, x, y)[0])
    speed = {k: n / statistics.median(t) for k, t in times.items()}
    peers = [k for k in speed if k != "percepmetric"]  # piq first when it runs
    ratios = [times[peers[0]][r] / times["percepmetric"][r] for r in range(repeats)] if peers else []
    return {"workload": label, "metric": name, "speed": speed, "best_peer": peers[0] if peers else None,
            "ratio": speed["percepmetric"] / speed[peers[0]] if peers else None, "ratios": ratios,
            "max_diff": {k: float((values[k] - values["percepmetric"]).abs().max()) for k in peers}}


MEMORY_PROBE = textwrap.dedent("""
    import json, os, sys, threading, torch
    sys.path.insert(0, {folder!r})
    from classic_speed import implementations, make_pair

    def rss():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    x, y = make_pair({n}, {height}, {width})
    fn = implementations({name!r})[{impl!r}]
    with torch.inference_mode():
        fn(x, y)  # warm-up: caches and lazily built tables are not the call's memory
    base, peak, done = rss(), [0], threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            done.wait(0.0005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with torch.inference_mode():
        fn(x, y)
    done.set()
    watcher.join()
    print(json.dumps(max(peak[0] - base, 0) / 2**20))
""")


def peak_memory_mb(name: str, impl: str, n: int, height: int, width: int) -> float | None:
    """Peak RSS growth (MB) during one call of ``impl``'s ``name`` in a fresh interpreter."""
    code = MEMORY_PROBE.format(folder=os.path.dirname(os.path.abspath(__file__)), n=n, height=height, width=width,
                               name=name, impl=impl)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    import percepmetric

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--metrics", default=None, help="comma-separated subset (default: every one registered)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    registered = set(percepmetric.list_metrics())
    wanted = args.metrics.split(",") if args.metrics else list(PEERS)
    names = [m for m in wanted if m in registered]
    for missing in sorted(set(wanted) - set(names)):
        print(f"{missing}: not in percepmetric's registry here: skipped")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, median of {args.repeats}; "
          f"load average {load:.1f} on {os.cpu_count()} cores")
    for workload, n, rows, cols in WORKLOADS:
        for name in names:
            side = percepmetric.create_metric(name).min_size
            height, width, label = max(rows, side), max(cols, side), workload
            if min(rows, cols) < side:  # IW-SSIM's 176: the same count of its smallest images
                label = f"{n} x {width}x{height}"
            row = time_metric(name, label, n, height, width, args.repeats)
            print_row(row)
            if not args.no_memory:
                memory = {impl: peak_memory_mb(name, impl, n, height, width) for impl in row["speed"]}
                shown = ", ".join(f"{impl} {mb:.0f} MB" if mb is not None else f"{impl} failed"
                                  for impl, mb in memory.items())
                print(f"{'':>13}  {'':<8} peak RSS growth during a call: {shown}", flush=True)


if __name__ == "__main__":
    main()
