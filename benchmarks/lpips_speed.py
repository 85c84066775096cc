"""LPIPS speed and peak memory: percepmetric against the ``lpips`` package (and torchmetrics'
and piq's LPIPS where they install and have their weights), in the same run.

Every (implementation, net, configuration, repeat) runs in its own subprocess, so each peak
memory (``ru_maxrss``) is that configuration's alone. Reported per configuration: images
per second (pairs compared per second; median over repeats), the ratio percepmetric / lpips,
and the peak RSS growth during inference (MB above the RSS after building the model and the
inputs) plus the total peak RSS. Speed does not depend on the weight values, so every
implementation uses random trunks (no download, same work); ``lpips`` gets inputs in [0, 1]
with ``normalize=True`` under ``torch.no_grad()``.

    python benchmarks/lpips_speed.py                       # CPU, alex/vgg/squeeze, both configs
    python benchmarks/lpips_speed.py --nets alex --repeats 5 --threads 2
    python benchmarks/lpips_speed.py --accuracy            # fp16/bf16 error against fp32

``--accuracy`` measures the precision option's error against float32 (pretrained trunks when
present in ``$TORCH_HOME``, else seeded random trunks; the official v0.1 weights).
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

CONFIGS = {"256x64": (256, 64), "16x256": (16, 256)}
IMPLS = ("percepmetric", "lpips", "torchmetrics", "piq")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _build(impl: str, net: str, precision: str):
    """Return ``f(x, y)`` computing LPIPS distances of ``[0, 1]`` inputs, or raise."""
    import torch

    if impl == "percepmetric":
        from percepmetric.metrics.lpips import LPIPS

        m = LPIPS.untrained(net, "scratch", seed=0, calibration="v0.1", precision=precision)
        return lambda x, y: m(x, y)
    if impl == "lpips":
        import warnings

        import lpips

        warnings.filterwarnings("ignore")
        ref = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()

        def run(x, y):
            with torch.no_grad():
                return ref(x, y, normalize=True)

        return run
    if impl == "torchmetrics":
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        tm = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True, reduction="sum").eval()

        def run(x, y):
            with torch.no_grad():
                return tm(x, y)

        return run
    if impl == "piq":
        import piq

        if net != "vgg":
            raise RuntimeError("piq's LPIPS has only the VGG16 trunk")
        metric = piq.LPIPS(reduction="none")

        def run(x, y):
            with torch.no_grad():
                return metric(x, y)

        return run
    raise ValueError(impl)


def worker(impl: str, net: str, batch: int, size: int, iters: int, threads: int, precision: str) -> dict:
    import torch

    torch.set_num_threads(threads)
    try:
        f = _build(impl, net, precision)
    except Exception as exc:  # a peer that cannot load its weights offline, or is not installed
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g)
    y = torch.rand(batch, 3, size, size, generator=g)
    base = _rss_mb()
    f(x, y)  # warm-up: oneDNN picks and caches its kernels on the first call
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(iters):
        f(x, y)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"images_per_s": batch * iters / seconds, "images_per_cpu_s": batch * iters / cpu_seconds,
            "peak_mb": peak, "inference_mb": peak - base}


def run_config(impl, net, cfg, args) -> dict:
    batch, size = CONFIGS[cfg]
    cmd = [sys.executable, __file__, "--worker", impl, net, str(batch), str(size), str(args.iters),
           str(args.threads), args.precision]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def accuracy(args) -> None:
    """Error of float16 / bfloat16 trunks against float32, on random image pairs."""
    import torch

    from percepmetric import WeightsNotFoundError
    from percepmetric.metrics.lpips import LPIPS

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 64, 64, generator=g)
    y = (x + 0.1 * torch.randn(8, 3, 64, 64, generator=g)).clamp(0, 1)
    z = torch.rand(8, 3, 64, 64, generator=g)
    x, y = torch.cat([x, x]), torch.cat([y, z])  # close pairs and unrelated pairs
    print(f"{'net':<8} {'trunk':<10} {'precision':<9} {'max |err|':>10} {'max rel err':>12} {'mean d32':>9}")
    for net in args.nets:
        try:
            ref = LPIPS(net=net)
            trunk = "imagenet"
        except WeightsNotFoundError:
            ref = LPIPS.untrained(net, "scratch", seed=0, calibration="v0.1")
            trunk = "random"
        d32 = ref(x, y)
        for precision in ("float16", "bfloat16"):
            low = LPIPS.untrained(net, "scratch", seed=0, calibration="v0.1", precision=precision)
            low.load_state_dict(ref.state_dict())
            d = low(x, y)
            err = (d - d32).abs()
            print(f"{net:<8} {trunk:<10} {precision:<9} {err.max().item():>10.2e} {(err / d32).max().item():>12.2e} "
                  f"{d32.mean().item():>9.4f}")


def main() -> None:
    # Peers that insist on ImageNet weights (torchmetrics) find them in the shared cache here.
    shared = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "torch_home")
    if "TORCH_HOME" not in os.environ and os.path.isdir(shared):
        os.environ["TORCH_HOME"] = os.path.normpath(shared)
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        impl, net, batch, size, iters, threads, precision = sys.argv[2:9]
        print(json.dumps(worker(impl, net, int(batch), int(size), int(iters), int(threads), precision)))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", default="alex,squeeze,vgg", type=lambda s: s.split(","))
    p.add_argument("--configs", default=",".join(CONFIGS), type=lambda s: s.split(","))
    p.add_argument("--impls", default=",".join(IMPLS), type=lambda s: s.split(","))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--iters", type=int, default=2, help="timed calls per subprocess (after one warm-up call)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="float32", help="percepmetric's trunk precision (float32, bfloat16, float16)")
    p.add_argument("--accuracy", action="store_true", help="measure fp16/bf16 error against fp32 instead")
    args = p.parse_args()
    if args.accuracy:
        accuracy(args)
        return
    print(f"CPU, {args.threads} threads, median of {args.repeats} runs x {args.iters} calls; "
          f"percepmetric precision {args.precision}")
    header = (f"{'net':<8} {'config':<7} {'impl':<13} {'img/s':>8} {'ratio':>6} {'img/cpu-s':>9} {'ratio':>6} "
              f"{'infer MB':>9} {'peak MB':>8}")
    print(header)
    for net in args.nets:
        for cfg in args.configs:
            results: dict[str, list[dict]] = {impl: [] for impl in args.impls}
            for _ in range(args.repeats):
                for impl in args.impls:  # interleaved, so load changes hit every implementation
                    if results[impl] and "error" in results[impl][-1]:
                        continue
                    results[impl].append(run_config(impl, net, cfg, args))
            summary = {}
            for impl, runs in results.items():
                ok = [r for r in runs if "error" not in r]
                if not ok:
                    summary[impl] = {"error": runs[-1]["error"] if runs else "not run"}
                    continue
                summary[impl] = {k: statistics.median(r[k] for r in ok)
                                 for k in ("images_per_s", "images_per_cpu_s", "peak_mb", "inference_mb")}
            base = summary.get("lpips", {}).get("images_per_s")
            base_cpu = summary.get("lpips", {}).get("images_per_cpu_s")
            for impl, s in summary.items():
                if "error" in s:
                    print(f"{net:<8} {cfg:<7} {impl:<13} unavailable: {s['error']}")
                    continue
                ratio = f"{s['images_per_s'] / base:.2f}" if base else "-"
                ratio_cpu = f"{s['images_per_cpu_s'] / base_cpu:.2f}" if base_cpu else "-"
                print(f"{net:<8} {cfg:<7} {impl:<13} {s['images_per_s']:>8.1f} {ratio:>6} "
                      f"{s['images_per_cpu_s']:>9.1f} {ratio_cpu:>6} {s['inference_mb']:>9.0f} {s['peak_mb']:>8.0f}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
