"""Speed of `percepmetric bench` against a re-creation of the LPIPS reference evaluation, in one run.

The reference pipeline (PerceptualSimilarity's ``test_dataset_model.py``) reads one triplet
at a time in a ``torch.utils.data.Dataset`` (PIL ``open(...).convert("RGB")``, torchvision
``Resize(64)``, ``ToTensor``, ``Normalize(0.5, 0.5)``), batches them with a ``DataLoader``
(batch 50 for networks, 1 for L2 and SSIM; ``nThreads`` workers, 4 by default), and calls
the model on (ref, p0) and (ref, p1): the ``lpips`` package's ``LPIPS`` for the deep metric,
its ``L2`` (Lab, via ``tensor2tensorlab``) and an SSIM computed as its ``DSSIM`` does
(``tensor2im`` then scikit-image's SSIM on 8-bit RGB; the package's ``compare_ssim`` import
no longer exists in scikit-image). This file re-creates that structure with its own code.

This project's side is :func:`percepmetric.bench.run_benchmark` end to end: validation,
parallel decoding into the uint8 cache ("cold"; "warm" reuses the cache), batched
distances, scores with 1000-resample bootstrap intervals, the CSV/JSON outputs.

    python benchmarks/bench_pipeline.py --triplets 36000 --metric lpips --metric l2 --metric ssim

Prints, per metric: both times, the ratio, both 2AFC scores and their difference (target:
same to 1e-6), and the largest distance difference. ``--triplets`` scales the synthetic
split (the six BAPPS val sets hold about 36k triplets together).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "TORCH_HOME" not in os.environ and (ROOT.parent / "shared" / "torch_home").is_dir():
    os.environ["TORCH_HOME"] = str(ROOT.parent / "shared" / "torch_home")

from percepmetric.bench import run_benchmark, two_afc_score  # noqa: E402
from percepmetric.data import fixtures  # noqa: E402
from percepmetric.memory import keep_freed_memory  # noqa: E402
from percepmetric.registry import create_metric  # noqa: E402

SPLIT = "val/traditional"


# ---------------------------------------------------------------- the synthetic split

def write_split(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` sentinel triplets in BAPPS layout under ``root/2afc/val/traditional`` (chunks of 2000)."""
    folder = root / "2afc" / "val" / "traditional"
    for sub in ("ref", "p0", "p1", "judge"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    from PIL import Image

    for start in range(0, n, 2000):
        m = min(2000, n - start)
        ref, p0, p1, judge = fixtures.sentinel_triplets(m, "traditional", seed=seed + start)
        for i in range(m):
            stem = f"{start + i:06d}"
            for sub, arr in (("ref", ref), ("p0", p0), ("p1", p1)):
                Image.fromarray(arr[i]).save(folder / sub / f"{stem}.png", compress_level=1)
            np.save(folder / "judge" / f"{stem}.npy", judge[i : i + 1])
    return folder


# ---------------------------------------------------------------- the reference pipeline, re-created

class ReferenceTwoAFC(torch.utils.data.Dataset):
    """One triplet per item, read and transformed as the reference TwoAFCDataset does."""

    def __init__(self, folder: Path):
        import torchvision.transforms as T

        def listing(sub, suffix):
            return sorted(str(p) for p in (folder / sub).iterdir() if p.name.endswith(suffix))

        self.ref, self.p0, self.p1 = listing("ref", ".png"), listing("p0", ".png"), listing("p1", ".png")
        self.judge = listing("judge", ".npy")
        self.transform = T.Compose([T.Resize(64), T.ToTensor(), T.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])

    def __len__(self):
        return len(self.p0)

    def __getitem__(self, i):
        from PIL import Image

        images = {k: self.transform(Image.open(getattr(self, k)[i]).convert("RGB")) for k in ("ref", "p0", "p1")}
        images["judge"] = torch.FloatTensor(np.load(self.judge[i]).reshape((1, 1, 1)))
        return images


def _tensor2im(t: torch.Tensor) -> np.ndarray:
    # As the reference's tensor2im: [-1, 1] -> (x + 1) * 127.5 -> uint8 by truncation.
    return ((t[0].cpu().float().numpy().transpose(1, 2, 0) + 1.0) * 127.5).astype(np.uint8)


def reference_model(name: str):
    """The reference's distance callable for ``name``: batches in [-1, 1] -> ``(N,)`` tensor."""
    import lpips

    if name == "lpips":
        net = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()
        return lambda a, b: net(a, b)
    if name == "l2":
        l2 = lpips.L2(use_gpu=False, colorspace="Lab")
        return lambda a, b: l2(a, b)
    if name == "ssim":
        from skimage.metrics import structural_similarity

        def dssim(a, b):  # the reference DSSIM's RGB branch, with today's scikit-image name
            value = structural_similarity(1.0 * _tensor2im(a), 1.0 * _tensor2im(b), data_range=255.0, channel_axis=2)
            return torch.tensor([(1.0 - value) / 2.0])

        return dssim
    raise ValueError(name)


def run_reference(folder: Path, name: str, workers: int):
    batch = 50 if name == "lpips" else 1  # as test_dataset_model.py: l2 and ssim take batch 1
    loader = torch.utils.data.DataLoader(ReferenceTwoAFC(folder), batch_size=batch, shuffle=False,
                                         num_workers=workers)
    model = reference_model(name)
    d0s, d1s, gts = [], [], []
    with torch.no_grad():
        for data in loader:
            d0s += model(data["ref"], data["p0"]).cpu().numpy().flatten().tolist()
            d1s += model(data["ref"], data["p1"]).cpu().numpy().flatten().tolist()
            gts += data["judge"].cpu().numpy().flatten().tolist()
    d0, d1, gts = np.array(d0s), np.array(d1s), np.array(gts)
    score = np.mean((d0 < d1) * (1.0 - gts) + (d1 < d0) * gts + (d1 == d0) * 0.5)
    return float(score), d0, d1


# ---------------------------------------------------------------- this project

def our_metric(name: str):
    if name == "lpips":
        return create_metric("lpips", net="alex")
    if name == "l2":
        return create_metric("l2", color="lab", convention="lpips")
    if name == "ssim":
        return create_metric("ssim", convention="lpips")
    raise ValueError(name)


def run_ours(root: Path, name: str, cache: Path, out: Path):
    """``run_benchmark`` end to end; returns (seconds, score, d0, d1, judge) (only the run is timed)."""
    t = time.perf_counter()
    result = run_benchmark([our_metric(name)], [SPLIT], root, out, cache_dir=cache, n_boot=1000)
    seconds = time.perf_counter() - t
    from percepmetric.bench.runner import DistanceStore
    from percepmetric.data.bapps import load_two_afc

    split = load_two_afc(root, SPLIT, cache_dir=cache)
    data = np.load(DistanceStore(out / "distances").path(our_metric(name), split))
    return seconds, result.rows[0]["score"], data["d0"], data["d1"], split.judge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", type=int, default=36000, help="size of the synthetic split (val: ~36k)")
    parser.add_argument("--metric", action="append", choices=("lpips", "l2", "ssim"), help="repeatable")
    parser.add_argument("--workers", type=int, default=4, help="reference DataLoader workers (its default: 4)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both sides "
                             "(default: torch's choice; 1 avoids oversubscribing a busy machine)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the synthetic split in this folder")
    args = parser.parse_args()
    metrics = args.metric or ["lpips", "l2", "ssim"]
    if args.threads:
        torch.set_num_threads(args.threads)
    # The bench command asks malloc to keep freed memory (see percepmetric.memory and docs/bench.md,
    # "Process settings"); set it for the whole process up front, for run_benchmark and for the
    # reference pipeline (and its forked workers) alike.
    keep_freed_memory()
    work = Path(tempfile.mkdtemp(prefix="bench_pipeline."))
    root = args.keep or work / "bapps"
    try:
        t = time.perf_counter()
        if not (root / "2afc" / "val" / "traditional" / "judge").is_dir():
            write_split(root, args.triplets)
        print(f"split: {args.triplets} triplets of 64x64 in {root} (written in {time.perf_counter() - t:.1f} s); "
              f"torch threads {torch.get_num_threads()}, reference workers {args.workers}")
        print(f"{'metric':<6} {'reference s':>11} {'ours cold s':>11} {'ours warm s':>11} {'x cold':>7} {'x warm':>7}"
              f" {'score ref':>10} {'score ours':>10} {'|diff|':>9} {'max|dd|':>9}")
        for name in metrics:
            cache = work / f"cache-{name}"
            cold, ours_score, d0, d1, judge = run_ours(root, name, cache, work / f"out-{name}-cold")
            warm = run_ours(root, name, cache, work / f"out-{name}-warm")[0]  # images cached, distances recomputed
            t = time.perf_counter()
            ref_score, r0, r1 = run_reference(root / "2afc" / "val" / "traditional", name, args.workers)
            reference = time.perf_counter() - t
            # Same distance definitions on both sides (LPIPS; 0.5 mean squared Lab / 100; DSSIM = (1 - SSIM) / 2).
            dd = max(np.abs(d0 - r0).max(), np.abs(d1 - r1).max())
            assert two_afc_score(r0, r1, judge) == ref_score or abs(two_afc_score(r0, r1, judge) - ref_score) < 1e-12
            print(f"{name:<6} {reference:>11.1f} {cold:>11.1f} {warm:>11.1f} {reference / cold:>7.1f} "
                  f"{reference / warm:>7.1f} {ref_score:>10.6f} {ours_score:>10.6f} "
                  f"{abs(ref_score - ours_score):>9.2g} "
                  f"{dd:>9.2g}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
