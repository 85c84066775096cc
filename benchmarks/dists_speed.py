"""DISTS speed and peak memory: percepmetric against the authors' ``DISTS_pytorch`` 0.1, in the
same run; and the distance matrix of a set of images, feature-statistics path against the
per-pair one.

Every (implementation, configuration, repeat) runs in its own subprocess, so each peak memory
(``ru_maxrss``) is that configuration's alone. Reported per configuration: images per second
(pairs compared per second; median over repeats, the implementations interleaved so that load
changes hit both), the ratio percepmetric / DISTS_pytorch, the peak RSS growth during inference
(MB above the RSS after building the model and the inputs) and the total peak RSS, and the
largest difference of the two implementations' values on the same inputs. Both use the real
weights (torchvision's VGG16 from ``$TORCH_HOME``, ``weights.pt`` of dists-pytorch), CPU,
float32, eager mode; DISTS_pytorch runs under its own ``torch.no_grad()`` (``require_grad=False``).

    python benchmarks/dists_speed.py                        # 32 x 64x64 and 4 x 256x256
    python benchmarks/dists_speed.py --repeats 5 --threads 2
    python benchmarks/dists_speed.py --matrix               # 100 images of 64x64: matrix paths
    python benchmarks/dists_speed.py --compile              # torch.compile, compile time apart
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

CONFIGS = {"32x64": (32, 64), "4x256": (4, 256)}
IMPLS = ("percepmetric", "DISTS_pytorch")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _build(impl: str, compiled: bool = False):
    """``f(x, y)`` giving the ``(N,)`` DISTS of ``[0, 1]`` batches."""
    import torch

    if impl == "percepmetric":
        from percepmetric import create_metric

        m = create_metric("dists")
        if compiled:
            return torch.compile(m)
        return m
    if impl == "DISTS_pytorch":
        import warnings

        import DISTS_pytorch

        warnings.filterwarnings("ignore")  # torchvision's notice for pretrained=True
        ref = DISTS_pytorch.DISTS().eval()
        return lambda x, y: ref(x, y).reshape(-1)
    raise ValueError(impl)


def _inputs(batch: int, size: int):
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g)
    y = (x + 0.2 * torch.randn(batch, 3, size, size, generator=g)).clamp(0, 1)
    return x, y


def speed_worker(impl: str, batch: int, size: int, iters: int, threads: int, compiled: bool) -> dict:
    import torch

    torch.set_num_threads(threads)
    f = _build(impl, compiled)
    x, y = _inputs(batch, size)
    base = _rss_mb()
    start = time.perf_counter()
    f(x, y)  # warm-up: oneDNN picks and caches its kernels on the first call (torch.compile compiles)
    first = time.perf_counter() - start
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(iters):
        f(x, y)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    peak = _peak_mb()
    return {"images_per_s": batch * iters / seconds, "images_per_cpu_s": batch * iters / cpu_seconds,
            "peak_mb": peak, "inference_mb": peak - base, "first_call_s": first}


def matrix_worker(path: str, n: int, size: int, threads: int) -> dict:
    """The ``n x n`` matrix of ``n`` random images: ``statistics`` (what ``pairwise`` does for
    DISTS) or ``per-pair`` (the generic path every formula metric takes: the trunk on both
    images of every pair of each tile)."""
    import numpy as np
    import torch

    import percepmetric
    from percepmetric.distributed import Group
    from percepmetric.functional import private_metric

    pairwise_module = sys.modules["percepmetric.pairwise"]
    torch.set_num_threads(threads)
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    m = private_metric("dists", {}, torch.device("cpu"))
    trunk_images = [0]
    m.stages[0].register_forward_pre_hook(lambda _m, args: trunk_images.__setitem__(0, trunk_images[0] + len(args[0])))
    base = _rss_mb()
    start = time.perf_counter()
    if path == "statistics":
        matrix = percepmetric.pairwise(x, metric=m)
    else:
        rows = pairwise_module._Images(x, "x")
        matrix = pairwise_module._formula_matrix(m, rows, rows, True, True, torch.device("cpu"), None,
                                                 pairwise_module.DEFAULT_MEMORY_BUDGET, None, Group())
        pairwise_module._zero_identical_pairs(matrix, rows, rows, True)
    seconds = time.perf_counter() - start
    peak = _peak_mb()
    np.save(f"{os.environ.get('DISTS_SPEED_TMP', '/tmp')}/dists_matrix_{path}.npy", matrix.numpy())
    return {"seconds": seconds, "peak_mb": peak, "inference_mb": peak - base, "trunk_images": trunk_images[0]}


def _run(*args: object) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def value_check(threads: int) -> None:
    """Largest |percepmetric - DISTS_pytorch| on each configuration's inputs."""
    import torch

    torch.set_num_threads(threads)
    ours, theirs = _build("percepmetric"), _build("DISTS_pytorch")
    for cfg, (batch, size) in CONFIGS.items():
        x, y = _inputs(batch, size)
        with torch.no_grad():
            diff = (ours(x, y) - theirs(x, y)).abs().max().item()
        print(f"values {cfg:<6} max |percepmetric - DISTS_pytorch| = {diff:.2e}")


def speed(args) -> None:
    print(f"CPU, {args.threads} threads, median of {args.repeats} runs x {args.iters} calls (after one warm-up call)")
    print(f"{'config':<7} {'impl':<14} {'img/s':>7} {'ratio':>6} {'img/cpu-s':>9} {'ratio':>6} {'infer MB':>9} "
          f"{'peak MB':>8}")
    for cfg in args.configs:
        batch, size = CONFIGS[cfg]
        runs: dict[str, list[dict]] = {impl: [] for impl in IMPLS}
        ratios: list[float] = []
        for _ in range(args.repeats):
            for impl in IMPLS:
                runs[impl].append(_run("speed", impl, batch, size, args.iters, args.threads, 0))
            pair = [runs[impl][-1] for impl in IMPLS]
            if all("error" not in r for r in pair):
                ratios.append(pair[0]["images_per_s"] / pair[1]["images_per_s"])
        summary = {}
        for impl, results in runs.items():
            ok = [r for r in results if "error" not in r]
            summary[impl] = ({k: statistics.median(r[k] for r in ok) for k in ok[0]} if ok
                             else {"error": results[-1]["error"]})
        base = summary["DISTS_pytorch"].get("images_per_s")
        base_cpu = summary["DISTS_pytorch"].get("images_per_cpu_s")
        for impl, s in summary.items():
            if "error" in s:
                print(f"{cfg:<7} {impl:<14} unavailable: {s['error']}")
                continue
            ratio = f"{s['images_per_s'] / base:.2f}" if base else "-"
            ratio_cpu = f"{s['images_per_cpu_s'] / base_cpu:.2f}" if base_cpu else "-"
            print(f"{cfg:<7} {impl:<14} {s['images_per_s']:>7.1f} {ratio:>6} {s['images_per_cpu_s']:>9.1f} "
                  f"{ratio_cpu:>6} {s['inference_mb']:>9.0f} {s['peak_mb']:>8.0f}")
        if ratios:
            print(f"{cfg:<7} ratio percepmetric / DISTS_pytorch per round: "
                  f"median {statistics.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f}")
        sys.stdout.flush()
    value_check(args.threads)


def compile_speed(args) -> None:
    print(f"torch.compile of percepmetric's DISTS, CPU, {args.threads} threads ({args.iters} timed calls after "
          "the compiling one); eager for comparison, each in its own subprocess")
    for cfg in args.configs:
        batch, size = CONFIGS[cfg]
        for label, compiled in (("eager", 0), ("compiled", 1)):
            r = _run("speed", "percepmetric", batch, size, args.iters, args.threads, compiled)
            if "error" in r:
                print(f"{cfg:<7} {label:<9} unavailable: {r['error']}")
                continue
            print(f"{cfg:<7} {label:<9} first call {r['first_call_s']:7.1f} s   {r['images_per_s']:7.1f} img/s   "
                  f"peak {r['peak_mb']:.0f} MB")


def matrix(args) -> None:
    import numpy as np

    n, size = args.matrix_images, args.matrix_size
    print(f"percepmetric.pairwise(x, metric='dists'): {n} images of {size}x{size}, CPU, {args.threads} threads")
    results = {path: _run("matrix", path, n, size, args.threads) for path in args.matrix_paths}
    for path, r in results.items():
        if "error" in r:
            print(f"{path:<11} failed: {r['error']}")
            continue
        print(f"{path:<11} {r['seconds']:8.1f} s   trunk images {r['trunk_images']:>6}   "
              f"inference {r['inference_mb']:6.0f} MB   peak {r['peak_mb']:6.0f} MB")
    if len(results) == 2 and all("error" not in r for r in results.values()):
        folder = os.environ.get("DISTS_SPEED_TMP", "/tmp")
        a, b = (np.load(f"{folder}/dists_matrix_{p}.npy") for p in results)
        print(f"speed-up {results['per-pair']['seconds'] / results['statistics']['seconds']:.1f}x, "
              f"max |difference| {np.abs(a - b).max():.2e}")


def main() -> None:
    shared = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "torch_home")
    if "TORCH_HOME" not in os.environ and os.path.isdir(shared):
        os.environ["TORCH_HOME"] = os.path.normpath(shared)
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "speed":
            impl, batch, size, iters, threads, compiled = rest
            result = speed_worker(impl, int(batch), int(size), int(iters), int(threads), compiled == "1")
        else:
            path, n, size, threads = rest
            result = matrix_worker(path, int(n), int(size), int(threads))
        print(json.dumps(result))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=",".join(CONFIGS), type=lambda s: s.split(","))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--iters", type=int, default=2, help="timed calls per subprocess (after one warm-up call)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--matrix", action="store_true", help="time the distance matrix paths instead")
    p.add_argument("--matrix-images", type=int, default=100)
    p.add_argument("--matrix-size", type=int, default=64)
    p.add_argument("--matrix-paths", default="statistics,per-pair", type=lambda s: s.split(","),
                   help="which matrix paths to time (the per-pair one takes minutes: 2 trunk passes per pair)")
    p.add_argument("--compile", action="store_true", help="time torch.compile against eager instead")
    args = p.parse_args()
    if args.matrix:
        matrix(args)
    elif args.compile:
        compile_speed(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
