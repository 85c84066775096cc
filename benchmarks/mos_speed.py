"""A MOS database scored with PSNR, SSIM and LPIPS-alex: the benchmark's runner against per-pair loops.

The job: a generated KADID-10k-layout set (``--references`` 81 x ``--distortions`` 20 of
512x384 PNGs by default, made by ``percepmetric.data.mos_fixtures.make_mos_fixture`` in a
temporary folder), each pair scored with PSNR, SSIM and LPIPS (AlexNet, v0.1), decoding
included. All sides run in the same process, one after the other, after building their models
(not timed) and a warm-up pair:

* **percepmetric's runner**: ``percepmetric.bench.mos.mos_values`` (what ``bench
  --dataset`` computes before its statistics): each reference decoded once and, for LPIPS,
  through the trunk once for all its distortions; decoding in threads; ``--batch-size``
  distorted images per forward.
* **percepmetric per pair**: for each pair, ``percepmetric.load_image`` of both files, then each
  metric's ``m(x, y)``: the loop a percepmetric user writes without the runner.
* **PIL + lpips + piq per pair**: PIL opens both files, ``lpips.LPIPS(net="alex")``
  (``normalize=True``), ``piq.psnr`` and ``piq.ssim`` (``data_range=1``), under ``torch.no_grad()``.

Values: the runner against percepmetric's loop (the same functions: must agree within
``--tolerance``, 1e-5); against lpips and piq the largest differences are printed (piq adds
1e-8 to the MSE of PSNR and computes SSIM in float32 with its own downsampling at this size:
``max(1, round(min(H, W) / 256)) = 2``, so percepmetric's side uses ``ssim(color="rgb")`` with
automatic downsampling, and the difference is reported, not checked).

The statistics (correlations with 1,000 bootstrap resamples) are timed separately.

    python benchmarks/mos_speed.py [--references 81] [--distortions 20] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def percepmetric_loop(dataset, metrics) -> list[np.ndarray]:
    from percepmetric import load_image

    out: list[list[float]] = [[] for _ in metrics]
    with torch.inference_mode():
        for ref, dist in zip(dataset.reference_paths, dataset.distorted):
            x, y = load_image(ref), load_image(dist)
            for values, metric in zip(out, metrics):
                values.append(float(metric(x, y)[0]))
    return [np.array(v) for v in out]


def peer_loop(dataset, lpips_model) -> list[np.ndarray]:
    import piq
    from PIL import Image

    def tensor(path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1)[None]

    out: list[list[float]] = [[], [], []]
    with torch.no_grad():
        for ref, dist in zip(dataset.reference_paths, dataset.distorted):
            x, y = tensor(ref), tensor(dist)
            out[0].append(piq.psnr(x, y, data_range=1.0).item())
            out[1].append(piq.ssim(x, y, data_range=1.0).item())
            out[2].append(lpips_model(x, y, normalize=True).item())
    return [np.array(v) for v in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--references", type=int, default=81)
    parser.add_argument("--distortions", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--no-peers", action="store_true", help="skip the lpips + piq loop")
    args = parser.parse_args()

    import warnings

    import percepmetric
    from percepmetric.bench import mos as mos_bench
    from percepmetric.data.mos import load_mos_dataset
    from percepmetric.data.mos_fixtures import make_mos_fixture
    from percepmetric.distributed import Group

    warnings.filterwarnings("ignore")
    metrics = [percepmetric.create_metric("psnr"), percepmetric.create_metric("ssim", color="rgb"),
               percepmetric.create_metric("lpips", net="alex")]
    with tempfile.TemporaryDirectory(prefix="mos_speed.") as tmp:
        start = time.perf_counter()
        root = make_mos_fixture("kadid10k", Path(tmp), references=args.references, distortions=args.distortions,
                                size=(512, 384))
        made = time.perf_counter() - start
        dataset = load_mos_dataset("kadid10k", root)
        n = len(dataset)
        warm = load_mos_dataset("kadid10k", make_mos_fixture("kadid10k", Path(tmp) / "warm", references=1,
                                                             distortions=2, size=(512, 384)))
        mos_bench.mos_values(metrics, warm, None, Group(), batch_size=args.batch_size)  # warm-up: first calls allocate
        percepmetric_loop(warm, metrics)

        start = time.perf_counter()
        in_order = mos_bench.mos_values(metrics, dataset, None, Group(), batch_size=args.batch_size)
        runner_seconds = time.perf_counter() - start
        start = time.perf_counter()
        loop = percepmetric_loop(dataset, metrics)
        loop_seconds = time.perf_counter() - start
        peers, peer_seconds = None, float("nan")
        if not args.no_peers:
            import lpips

            reference_lpips = lpips.LPIPS(net="alex", verbose=False).eval()
            peer_loop(warm, reference_lpips)
            start = time.perf_counter()
            peers = peer_loop(dataset, reference_lpips)
            peer_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for metric, values in zip(metrics, in_order):
            mos_bench.score_dataset([metric.name], [metric], dataset, [values], n_boot=1000)
        stats_seconds = time.perf_counter() - start

    print(f"{n} pairs ({args.references} references x {args.distortions} distortions) of 512x384 PNGs, "
          f"PSNR + SSIM + LPIPS-alex, decoding included")
    print(f"  torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, batch {args.batch_size}; "
          f"making the set took {made:.0f} s")
    print(f"  percepmetric runner (bench --dataset) : {runner_seconds:7.2f} s  ({n / runner_seconds:6.1f} pairs/s)")
    print(f"  percepmetric per pair                 : {loop_seconds:7.2f} s  ({n / loop_seconds:6.1f} pairs/s)"
          f"  ratio {loop_seconds / runner_seconds:.2f}x")
    if peers is not None:
        print(f"  PIL + lpips + piq per pair            : {peer_seconds:7.2f} s  ({n / peer_seconds:6.1f} pairs/s)"
              f"  ratio {peer_seconds / runner_seconds:.2f}x")
    print(f"  statistics, 3 metrics x 1000 resamples: {stats_seconds:7.2f} s")
    worst = max(float(np.abs(a - b).max()) for a, b in zip(in_order, loop))
    print(f"  runner against the per-pair loop: largest difference {worst:.2g} "
          f"({'within' if worst <= args.tolerance else 'NOT within'} {args.tolerance})")
    if peers is not None:
        for name, ours_values, theirs in zip(("psnr (dB)", "ssim", "lpips"), in_order, peers):
            print(f"  against the peers' loop, {name:<10}: largest difference {np.abs(ours_values - theirs).max():.2g}")


if __name__ == "__main__":
    main()
