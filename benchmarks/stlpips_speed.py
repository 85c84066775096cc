"""ST-LPIPS speed and peak memory: percepmetric against the ``stlpips-pytorch`` package, in the same run.

Every (implementation, net, configuration, repeat) runs in its own subprocess, so each peak
memory (``ru_maxrss``) is that configuration's alone. Both load the authors' weights from the
installed wheel; the reference gets inputs in [0, 1] with ``normalize=True`` under
``torch.no_grad()`` (eager mode, CPU). Reported per configuration: images per second of wall
time and of process CPU time (pairs compared per second; medians over repeats), the ratios
percepmetric / stlpips-pytorch, the peak RSS growth during inference ("infer MB", above the RSS
after building the model and the inputs) and the whole process's peak RSS, and the largest
difference between the two implementations' distances on the same inputs.

    python benchmarks/stlpips_speed.py                         # alex and vgg, 32 x 64x64 and 4 x 256x256
    python benchmarks/stlpips_speed.py --nets alex --repeats 5 --threads 1

The reference package imports IPython and torchsummary without using them on the metric's path;
where they are not installed, the worker puts stand-ins in ``sys.modules`` for the import.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import types

CONFIGS = {"32x64": (32, 64), "4x256": (4, 256)}
IMPLS = ("percepmetric", "stlpips")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _import_reference():
    for name, attribute in (("IPython", "embed"), ("torchsummary", "summary")):
        try:
            __import__(name)
        except ImportError:
            stub = types.ModuleType(name)
            setattr(stub, attribute, lambda *args, **kwargs: None)
            sys.modules[name] = stub
    from stlpips_pytorch import stlpips

    return stlpips


def _build(impl: str, net: str):
    """Return ``f(x, y)`` computing ST-LPIPS distances ``(N,)`` of ``[0, 1]`` inputs."""
    import torch

    if impl == "percepmetric":
        from percepmetric import create_metric

        metric = create_metric("stlpips", net=net)
        return lambda x, y: metric(x, y)
    if impl == "stlpips":
        reference = _import_reference().LPIPS(net=net, variant="shift_tolerant", verbose=False).eval()

        def run(x, y):
            with torch.no_grad():
                return reference(x, y, normalize=True).reshape(-1)

        return run
    raise ValueError(impl)


def worker(impl: str, net: str, batch: int, size: int, iters: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    try:
        f = _build(impl, net)
    except Exception as exc:  # the reference not installed, or the weights missing
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g)
    y = (x + 0.2 * torch.randn(batch, 3, size, size, generator=g)).clamp(0, 1)
    base = _rss_mb()
    values = f(x, y)  # warm-up: oneDNN picks and caches its kernels on the first call
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(iters):
        f(x, y)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"images_per_s": batch * iters / seconds, "images_per_cpu_s": batch * iters / cpu_seconds,
            "peak_mb": peak, "inference_mb": peak - base, "values": [float(v) for v in values]}


def run_config(impl, net, cfg, args) -> dict:
    batch, size = CONFIGS[cfg]
    cmd = [sys.executable, __file__, "--worker", impl, net, str(batch), str(size), str(args.iters),
           str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        impl, net, batch, size, iters, threads = sys.argv[2:8]
        print(json.dumps(worker(impl, net, int(batch), int(size), int(iters), int(threads))))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", default="alex,vgg", type=lambda s: s.split(","))
    p.add_argument("--configs", default=",".join(CONFIGS), type=lambda s: s.split(","))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--iters", type=int, default=2, help="timed calls per subprocess (after one warm-up call)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    print(f"CPU, eager, {args.threads} threads, median of {args.repeats} runs x {args.iters} calls")
    print(f"{'net':<5} {'config':<6} {'impl':<13} {'img/s':>7} {'ratio':>6} {'img/cpu-s':>9} {'ratio':>6} "
          f"{'infer MB':>9} {'peak MB':>8} {'max |diff|':>10}")
    for net in args.nets:
        for cfg in args.configs:
            results: dict[str, list[dict]] = {impl: [] for impl in IMPLS}
            for _ in range(args.repeats):
                for impl in IMPLS:  # interleaved, so load changes hit both implementations
                    if results[impl] and "error" in results[impl][-1]:
                        continue
                    results[impl].append(run_config(impl, net, cfg, args))
            summary: dict[str, dict] = {}
            for impl, runs in results.items():
                ok = [r for r in runs if "error" not in r]
                if not ok:
                    summary[impl] = {"error": runs[-1]["error"] if runs else "not run"}
                    continue
                summary[impl] = {k: statistics.median(r[k] for r in ok)
                                 for k in ("images_per_s", "images_per_cpu_s", "peak_mb", "inference_mb")}
                summary[impl]["values"] = ok[0]["values"]
            reference = summary.get("stlpips", {})
            for impl, s in summary.items():
                if "error" in s:
                    print(f"{net:<5} {cfg:<6} {impl:<13} unavailable: {s['error']}")
                    continue
                ratio = f"{s['images_per_s'] / reference['images_per_s']:.2f}" if "values" in reference else "-"
                ratio_cpu = (f"{s['images_per_cpu_s'] / reference['images_per_cpu_s']:.2f}"
                             if "values" in reference else "-")
                diff = (f"{max(abs(a - b) for a, b in zip(s['values'], reference['values'])):.1e}"
                        if "values" in reference else "-")
                print(f"{net:<5} {cfg:<6} {impl:<13} {s['images_per_s']:>7.1f} {ratio:>6} "
                      f"{s['images_per_cpu_s']:>9.1f} {ratio_cpu:>6} {s['inference_mb']:>9.0f} {s['peak_mb']:>8.0f} "
                      f"{diff:>10}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
