"""Two folders of PNGs scored with PSNR, SSIM and LPIPS-alex: percepmetric against the loop users write today.

The job: ``--pairs`` pairs (500 by default) of 256x256 PNGs, made in a temporary folder from
scikit-image's photos (random crops; B is A after JPEG compression, Gaussian blur or noise),
scored with PSNR, SSIM and LPIPS (AlexNet, v0.1), decoding included. Both sides run in the
same process, one after the other, after building their models (not timed) and a warm-up pair:

* **percepmetric**: ``compare_folders(A, B, metrics)`` (decoding in threads while the metrics
  run on batches of ``--batch-size`` pairs).
* **the loop**: for each file name, PIL opens both files, ``lpips.LPIPS(net="alex")`` scores the
  pair (``normalize=True``: inputs in [0, 1]), ``piq.psnr`` and ``piq.ssim`` (``data_range=1``)
  too, one pair at a time, under ``torch.no_grad()``.

Same conventions on both sides: ``piq.ssim(data_range=1)`` on RGB is SSIM with ssim.m's
Gaussian window and constants on each RGB channel, averaged over channels, with its automatic
downsampling by ``max(1, round(min(H, W) / 256))`` (1 at 256x256); percepmetric's match is
``ssim(color="rgb", downsample=False)``. piq computes in the inputs' dtype, and in float32 its
local variances (``E[x^2] - E[x]^2``) lose up to 3e-5 of SSIM on photos with flat regions (against
itself in float64); percepmetric's float32 stays within 4e-6 of float64. So SSIM is checked
against ``piq.ssim`` on the same images in float64 (untimed; the two agree there to 1e-13), and
the difference to the timed float32 loop is printed beside it. PSNR: ``psnr`` against ``piq.psnr`` (piq adds 1e-8 to
the MSE, so its dB are lower by ``10 log10(1 + 1e-8 / MSE)``; that amount is printed, and the
check is made on PSNR with piq's constant undone). LPIPS: ``lpips(net="alex")`` (the same v0.1
calibration file, the same torchvision AlexNet trunk from ``$TORCH_HOME``).

Prints both times, pairs per second, the ratio (the loop's time / percepmetric's) and the
largest difference of each metric's values (checked against ``--tolerance``, 1e-5).

    python benchmarks/folders_speed.py [--pairs 500] [--batch-size 16] [--threads N]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

SIDE = 256
PIQ_EPS = 1e-8  # what piq.psnr adds to the MSE


def photos() -> list[np.ndarray]:
    """scikit-image's colour photos of at least 256 pixels a side, uint8 RGB."""
    from skimage import data

    found = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field"):
        image = getattr(data, name)()
        if image.ndim == 3 and min(image.shape[:2]) >= SIDE:
            found.append(np.ascontiguousarray(image[..., :3]))
    return found


def distorted(image: np.ndarray, kind: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageFilter

    picture = Image.fromarray(image)
    if kind == 0:
        buffer = io.BytesIO()
        picture.save(buffer, format="JPEG", quality=int(rng.integers(10, 60)))
        return np.asarray(Image.open(buffer).convert("RGB"))
    if kind == 1:
        return np.asarray(picture.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.0)))))
    noise = rng.normal(0.0, rng.uniform(5.0, 20.0), image.shape)
    return np.clip(image + noise, 0, 255).round().astype(np.uint8)


def make_folders(root: Path, pairs: int, seed: int = 0) -> tuple[Path, Path]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = photos()
    dir_a, dir_b = root / "A", root / "B"
    dir_a.mkdir()
    dir_b.mkdir()
    for k in range(pairs):
        source = sources[k % len(sources)]
        top = int(rng.integers(0, source.shape[0] - SIDE + 1))
        left = int(rng.integers(0, source.shape[1] - SIDE + 1))
        a = source[top:top + SIDE, left:left + SIDE]
        Image.fromarray(a).save(dir_a / f"{k:05d}.png")
        Image.fromarray(distorted(a, k % 3, rng)).save(dir_b / f"{k:05d}.png")
    return dir_a, dir_b


def the_loop(dir_a: Path, dir_b: Path, names: list[str], lpips_model) -> dict[str, np.ndarray]:
    """What users write today: one pair at a time, PIL, lpips, piq."""
    import piq
    from PIL import Image

    def tensor(path: Path) -> torch.Tensor:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1)[None]

    out: dict[str, list[float]] = {"psnr": [], "ssim": [], "lpips": []}
    with torch.no_grad():
        for name in names:
            x, y = tensor(dir_a / name), tensor(dir_b / name)
            out["psnr"].append(piq.psnr(x, y, data_range=1.0).item())
            out["ssim"].append(piq.ssim(x, y, data_range=1.0).item())
            out["lpips"].append(lpips_model(x, y, normalize=True).item())
    return {k: np.array(v) for k, v in out.items()}


def ssim_in_float64(dir_a: Path, dir_b: Path, names: list[str]) -> np.ndarray:
    """``piq.ssim`` of each pair in float64: the formula without float32 rounding (not timed)."""
    import piq

    import percepmetric

    def image(path: Path) -> torch.Tensor:
        return percepmetric.load_image(path).double()

    with torch.no_grad():
        return np.array([piq.ssim(image(dir_a / n), image(dir_b / n), data_range=1.0).item() for n in names])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import warnings

    import lpips

    import percepmetric

    warnings.filterwarnings("ignore")
    metrics = [percepmetric.create_metric("psnr"), percepmetric.create_metric("ssim", color="rgb", downsample=False),
               percepmetric.create_metric("lpips", net="alex")]
    reference_lpips = lpips.LPIPS(net="alex", verbose=False).eval()

    with tempfile.TemporaryDirectory(prefix="folders_speed.") as tmp:
        dir_a, dir_b = make_folders(Path(tmp), args.pairs)
        names = sorted(p.name for p in dir_a.iterdir())
        the_loop(dir_a, dir_b, names[:1], reference_lpips)  # warm-up: first calls allocate
        percepmetric.compare_folders(dir_a, dir_b, metrics, batch_size=args.batch_size, device="cpu")

        start = time.perf_counter()
        table = percepmetric.compare_folders(dir_a, dir_b, metrics, batch_size=args.batch_size, device="cpu")
        ours_seconds = time.perf_counter() - start
        start = time.perf_counter()
        theirs = the_loop(dir_a, dir_b, names, reference_lpips)
        loop_seconds = time.perf_counter() - start

        ssim_float64 = ssim_in_float64(dir_a, dir_b, names)

    ours = {"psnr": table.iloc[:, 2].to_numpy(), "ssim": table.iloc[:, 3].to_numpy(),
            "lpips": table.iloc[:, 4].to_numpy()}
    mse = 10.0 ** (-ours["psnr"] / 10.0)
    piq_offset = 10.0 * np.log10(1.0 + PIQ_EPS / mse)
    differences = {
        "psnr (dB, piq's +1e-8 undone)": np.abs(ours["psnr"] - (theirs["psnr"] + piq_offset)).max(),
        "ssim (piq in float64)": np.abs(ours["ssim"] - ssim_float64).max(),
        "lpips": np.abs(ours["lpips"] - theirs["lpips"]).max(),
    }
    print(f"{args.pairs} pairs of {SIDE}x{SIDE} PNGs, PSNR + SSIM + LPIPS-alex, decoding included; "
          f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, batch {args.batch_size}")
    print(f"  percepmetric.compare_folders : {ours_seconds:7.2f} s  ({args.pairs / ours_seconds:6.1f} pairs/s)")
    print(f"  PIL + lpips + piq, per pair  : {loop_seconds:7.2f} s  ({args.pairs / loop_seconds:6.1f} pairs/s)")
    print(f"  ratio (loop / percepmetric)  : {loop_seconds / ours_seconds:.2f}x")
    print(f"  ssim against the timed float32 loop: {np.abs(ours['ssim'] - theirs['ssim']).max():.2g} "
          f"(piq float32 against piq float64: {np.abs(theirs['ssim'] - ssim_float64).max():.2g})")
    print(f"  piq.psnr's +1e-8 lowers its dB by up to {piq_offset.max():.2g} dB on these pairs")
    worst = 0.0
    for label, difference in differences.items():
        worst = max(worst, float(difference))
        print(f"  largest difference, {label:<30}: {difference:.2g}")
    print("  values agree within", args.tolerance, "yes" if worst <= args.tolerance else "NO")


if __name__ == "__main__":
    main()
