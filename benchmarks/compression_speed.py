"""Speed of the compression and rendering metrics against their reference implementations, in the same run.

SSIMULACRA 2, Butteraugli, ColorVideoVDP and FLIP (when ``"flip"`` is in the registry) on CPU,
float32, percepmetric under ``torch.no_grad()``, for two workloads: 8 images of 512x384 and 16
of 128x128 (smooth content plus a texture, distorted with noise, quantised to 8 bits so that
every side sees the same pixels, PNGs included). Peers, each on the same pairs:

- ssimulacra2: the ``ssimulacra2`` 0.3.0 PyPI port (``compute_ssimulacra2(ref.png, dist.png)``,
  one pair per call: it only takes paths, so its time includes PIL's PNG decoding);
- cvvdp: ``pycvvdp.cvvdp(display_name="standard_4k").predict(test, ref, dim_order="BHWC")``, the
  whole batch in one call;
- flip: ``flip_evaluator.evaluate(ref, test, "LDR")`` (1.7), one pair per call;
- butteraugli: libjxl's ``butteraugli_main ref.png dist.png`` in a subprocess per pair (its time
  includes process start and PNG decoding; no target).

Timing is interleaved (ours, then each peer, in every round), best of ``--repeats`` after a
warm-up call whose values give the sanity column: the maximum relative difference
``|ours - peer| / |peer|`` over the images. The ratio is the peer's time over ours (>= 1.0: at
least as fast), at the best and per round.

Usage: ``python benchmarks/compression_speed.py [--repeats 1] [--threads N] [--metrics ssimulacra2,cvvdp]``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

WORKLOADS = (("8 x 512x384", 8, 384, 512), ("16 x 128x128", 16, 128, 128))
METRICS = ("ssimulacra2", "butteraugli", "cvvdp", "flip")
PEER_NAMES = {"ssimulacra2": "ssimulacra2 0.3.0", "butteraugli": "butteraugli_main",
              "cvvdp": "pycvvdp", "flip": "flip-evaluator"}
#: Options of ours matching the peer's defaults (butteraugli_main's first line is the max norm).
OPTIONS = {"butteraugli": {"norm": "max"}}
TARGET = ">= 1.0 against the Python references (ssimulacra2 port, cvvdp, flip-evaluator); butteraugli_main: no target"


def make_pair(n: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(reference, distorted) as uint8 (N, H, W, 3): smooth colour fields plus an oriented
    sinusoidal texture, distorted with Gaussian noise; deterministic."""
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(n, 3, height // 16 + 1, width // 16 + 1, generator=gen)
    smooth = torch.nn.functional.interpolate(base, size=(height, width), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    angle = torch.rand(n, 1, 1, 1, generator=gen) * math.pi
    freq = 0.1 + 0.3 * torch.rand(n, 1, 1, 1, generator=gen)
    texture = torch.sin(freq * (xx * torch.cos(angle) + yy * torch.sin(angle)))
    ref = (0.2 + 0.6 * smooth + 0.1 * texture).clamp(0, 1)
    dist = (ref + 0.04 * torch.randn(ref.shape, generator=gen)).clamp(0, 1)

    def to_uint8(t: torch.Tensor) -> np.ndarray:
        return (t * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

    return to_uint8(ref), to_uint8(dist)


def implementations(name: str, ref: np.ndarray, dist: np.ndarray, folder: Path):
    """{label: callable() -> (N,) float64 values} for ``name`` on the pair: ours, then the peer if it
    runs here (else a printed line). PNGs of the pairs are written to ``folder`` before timing."""
    import percepmetric

    x = torch.from_numpy(ref).permute(0, 3, 1, 2).float().div(255).contiguous()
    y = torch.from_numpy(dist).permute(0, 3, 1, 2).float().div(255).contiguous()
    metric = percepmetric.create_metric(name, **OPTIONS.get(name, {}))

    def ours() -> np.ndarray:
        with torch.no_grad():
            return metric(x, y).double().numpy()

    impls = {"percepmetric": ours}
    paths = []
    if name in ("ssimulacra2", "butteraugli"):
        from PIL import Image

        for i in range(len(ref)):
            pr, pd = folder / f"ref{i}.png", folder / f"dist{i}.png"
            Image.fromarray(ref[i]).save(pr)
            Image.fromarray(dist[i]).save(pd)
            paths.append((str(pr), str(pd)))
    peer = PEER_NAMES[name]
    try:
        if name == "ssimulacra2":
            import ssimulacra2

            impls[peer] = lambda: np.array([ssimulacra2.compute_ssimulacra2(a, b) for a, b in paths], dtype=np.float64)
        elif name == "butteraugli":
            tool = shutil.which("butteraugli_main")
            if tool is None:
                raise ImportError("butteraugli_main is not on PATH (apt-get install libjxl-devtools)")

            def butteraugli_main() -> np.ndarray:
                out = [subprocess.run([tool, a, b], capture_output=True, text=True, check=True).stdout
                       for a, b in paths]
                return np.array([float(o.strip().splitlines()[0]) for o in out], dtype=np.float64)

            impls[peer] = butteraugli_main
        elif name == "cvvdp":
            import pycvvdp

            logging.getLogger().setLevel(logging.ERROR)  # cvvdp warns on every call with [0, 1] input
            reference = pycvvdp.cvvdp(display_name="standard_4k", quiet=True, device=torch.device("cpu"))
            xt, yt = x.permute(0, 2, 3, 1).contiguous(), y.permute(0, 2, 3, 1).contiguous()

            def cvvdp_batch() -> np.ndarray:
                with torch.no_grad():
                    q, _ = reference.predict(yt, xt, dim_order="BHWC")
                return q.double().reshape(-1).numpy()

            impls[peer] = cvvdp_batch
        elif name == "flip":
            import flip_evaluator

            refs = [np.ascontiguousarray(a.astype(np.float32) / 255) for a in ref]
            dists = [np.ascontiguousarray(b.astype(np.float32) / 255) for b in dist]
            impls[peer] = lambda: np.array([flip_evaluator.evaluate(a, b, "LDR", applyMagma=False)[1]
                                            for a, b in zip(refs, dists)], dtype=np.float64)
    except ImportError as error:
        print(f"{name}: peer {peer} not importable here ({error}): skipped")
    return impls


def time_once(fn) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def time_metric(name: str, label: str, n: int, height: int, width: int, repeats: int) -> dict[str, object]:
    ref, dist = make_pair(n, height, width)
    with tempfile.TemporaryDirectory() as folder:
        impls = implementations(name, ref, dist, Path(folder))
        values = {k: time_once(fn)[1] for k, fn in impls.items()}  # warm-up, and the sanity values
        times: dict[str, list[float]] = {k: [] for k in impls}
        for _ in range(repeats):
            for k, fn in impls.items():
                times[k].append(time_once(fn)[0])
    peer = next((k for k in impls if k != "percepmetric"), None)
    row = {"workload": label, "metric": name, "peer": peer, "ours": n / min(times["percepmetric"]),
           "theirs": None, "ratio": None, "ratios": [], "rel_diff": None}
    if peer is not None:
        row["theirs"] = n / min(times[peer])
        row["ratio"] = min(times[peer]) / min(times["percepmetric"])
        row["ratios"] = [p / o for p, o in zip(times[peer], times["percepmetric"])]
        theirs = values[peer]
        row["rel_diff"] = float(np.max(np.abs(values["percepmetric"] - theirs) / np.maximum(np.abs(theirs), 1e-12)))
    return row


def print_row(row: dict[str, object]) -> None:
    if row["peer"] is None:
        peer = theirs = ratio = rounds = diff = "-"
    else:
        peer, theirs = row["peer"], f"{row['theirs']:.1f}"
        ratio = f"{row['ratio']:.2f}" + ("" if row["peer"] != "butteraugli_main" else " [1]")
        rounds = " ".join(f"{r:.2f}" for r in row["ratios"])
        diff = f"{row['rel_diff']:.1e}"
    print(f"| {row['workload']} | {row['metric']} | {row['ours']:.1f} | {peer} | {theirs} | {ratio} | {rounds} | "
          f"{diff} |", flush=True)


def main() -> None:
    import percepmetric

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds after a warm-up (best reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--metrics", default=None,
                        help=f"comma-separated subset of {','.join(METRICS)} (default: every one registered)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    registered = set(percepmetric.list_metrics())
    wanted = args.metrics.split(",") if args.metrics else list(METRICS)
    names = [m for m in wanted if m in registered]
    for missing in [m for m in wanted if m not in names]:
        print(f"{missing}: not in percepmetric's registry here: skipped")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, no_grad, best of "
          f"{args.repeats} after a warm-up; os.getloadavg() {os.getloadavg()} on {os.cpu_count()} cores")
    print(f"Target: {TARGET}\n")
    print("| workload | metric | percepmetric img/s | peer | peer img/s | ratio (peer time / ours) | ratio per round "
          "| max rel. diff of values |")
    print("|---|---|---:|---|---:|---:|---|---:|")
    for label, n, height, width in WORKLOADS:
        for name in names:
            print_row(time_metric(name, label, n, height, width, args.repeats))
    print("\n[1] butteraugli_main runs as one process per pair: its time includes process start and PNG "
          "decoding. The ssimulacra2 port's time includes PIL's PNG decoding (it takes paths only).")
    print(f"os.getloadavg() at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
