"""A small DeePSiM experiment that runs on a CPU in minutes, on scikit-image's bundled photos.

Two 64x64 autoencoders of the same architecture are trained on the same random crops:

* ``image_loss``: the squared-error image loss alone (the paper's "image loss" baseline);
* ``deepsim``: the full DeePSiM loss (AlexNet conv5 comparator + adversarial + image terms);
* optionally a third one with a registry metric as its loss (``metric_loss="ms_ssim"`` ...).

Then every available registry metric scores their reconstructions of held-out patches
(:func:`percepmetric.deepsim.evaluate.bench_models`), and the paper's normalised errors,
reconstruction / re-encoding / interpolation grids are written next to it.

Loss weights at 64 px: the paper's lambda_adv = 100 "compensates for the fact that both image
and feature loss include summation over many spatial locations" (Sec. 3.2) at 227 px. A 64 px
image has (64/227)^2 of those pixels, so the demo scales lambda_adv by that ratio (100 -> 8)
and keeps lambda_img = 2e-6 and lambda_feat = 0.01. The discriminator has half the generator's
width (its convolutions dominate the cost of an iteration on a CPU). The learning rate is 1e-3
rather than the paper's 2e-4, to get somewhere within a few hundred iterations.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, PercepmetricError
from ..io import atomic_write_text, prepare_output_dir
from .train import DeepSimConfig, check_size, train_generator

DEMO_METRICS = ("l2", "psnr", "ssim", "ms_ssim", "fsim", "lpips")
TRAIN_PHOTOS = ("astronaut", "coffee", "rocket", "immunohistochemistry")
TEST_PHOTOS = ("chelsea", "hubble_deep_field")


def _photo(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]


def _half(image: np.ndarray) -> np.ndarray:
    # Halving the photos puts more of each scene into a 64 px crop.
    from PIL import Image

    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((w // 2, h // 2), Image.Resampling.LANCZOS))


def write_demo_data(folder: str | os.PathLike, size: int = 64, n_test: int = 16, seed: int = 0) -> tuple[Path, Path]:
    """Write ``folder/train`` (whole photos, halved: training takes random crops of them) and
    ``folder/test`` (``n_test`` ``size x size`` patches of other photos) as PNG; returns both folders."""
    from PIL import Image

    folder = Path(folder)
    train_dir, test_dir = folder / "train", folder / "test"
    train_dir.mkdir(parents=True, exist_ok=True)
    test_dir.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_PHOTOS:
        Image.fromarray(_half(_photo(name))).save(train_dir / f"{name}.png")
    rng = np.random.default_rng(seed)
    per_photo = -(-n_test // len(TEST_PHOTOS))
    k = 0
    for name in TEST_PHOTOS:
        image = _half(_photo(name))
        for _ in range(per_photo):
            if k == n_test:
                break
            top = rng.integers(0, image.shape[0] - size + 1)
            left = rng.integers(0, image.shape[1] - size + 1)
            patch = image[top: top + size, left: left + size]
            Image.fromarray(patch).save(test_dir / f"{name.split('_')[0]}_{k:03d}.png")  # hubble_deep_field: hubble
            k += 1
    return train_dir, test_dir


def available_metrics(names=DEMO_METRICS) -> tuple[list, list[str]]:
    """Build each named registry metric; returns (metrics, notes on those that are unavailable)."""
    from ..registry import create_metric

    metrics, notes = [], []
    for name in names:
        try:
            metrics.append(create_metric(name))
        except (PercepmetricError, ImportError, NotImplementedError) as exc:
            notes.append(f"{name}: unavailable ({exc})")
    return metrics, notes


def _check_before_writing(runs: dict[str, DeepSimConfig], out: Path, size: int, metric_loss: str | None) -> None:
    """Refuse, in one line, what would fail or destroy something only after minutes of work."""
    for config in [runs["deepsim"], *runs.values()]:  # the DeePSiM loss has the most networks: the fullest message
        check_size(config)
    largest = min(min(_half(_photo(name)).shape[:2]) for name in TEST_PHOTOS)
    if size > largest:
        raise InputError(f"--size {size}: the demo cuts its test patches from photos of {largest} px "
                         f"({', '.join(TEST_PHOTOS)}, halved); the largest --size is {largest}")
    if metric_loss:
        from ..registry import create_metric

        metric = create_metric(metric_loss)
        if not metric.differentiable:
            raise InputError(f"--metric-loss {metric_loss}: not differentiable, so it cannot be a loss")
        if size < metric.min_size:
            raise InputError(
                f"--size {size}: the loss metric {metric_loss} needs images of at least {metric.min_size} px")
    for name in runs:
        for file in ("final.pt", "last.pt"):
            if (out / name / file).is_file():
                raise InputError(f"--out {out} already holds a demo ({name}/{file}); choose another --out "
                                 f"(or delete that folder)")
    prepare_output_dir(out)


def run_demo(out: str | os.PathLike, iterations: int = 500, batch_size: int = 16, size: int = 64,
             width: float = 0.5, lr: float = 1e-3, n_test: int = 16, metric_names=DEMO_METRICS,
             metric_loss: str | None = None,
             comparator: str = "alex:conv5", progress: bool = True, seed: int = 0, log=print,
             device: str = "auto") -> dict[str, Any]:
    """Train the demo generators into ``out`` and evaluate them; returns the summary dict.

    Training, reconstruction and the metrics run on ``device`` (``auto``, ``cpu``, ``cuda[:N]``).

    Writes ``out/data/{train,test}``, ``out/<model>/final.pt`` (+ ``eval/`` grids and errors),
    ``out/deepsim_bench.csv`` / ``.png`` (metrics x models), ``out/comparison.png`` (originals,
    then one row per model) and ``out/summary.json`` / ``summary.md``.

    Before anything is written it checks ``device``, ``size`` (the smallest the networks take,
    :func:`~percepmetric.deepsim.train.check_size`), ``metric_loss``, ``out`` (a folder that can
    be written) and that ``out`` holds no earlier demo, whose models it would overwrite.
    """
    from ..devices import resolve_device
    from .evaluate import bench_models, evaluate_run, format_table, load_model, reconstruct, save_grid
    from .train import ImageCrops

    torch_device = resolve_device(device)
    out = Path(out)
    lambda_adv = 100.0 * (size / 227.0) ** 2
    common = DeepSimConfig(task="autoencoder", size=size, data=str(out / "data" / "train"), iterations=iterations,
                           batch_size=batch_size, lr=lr, width=width, discriminator_width=width / 2,
                           comparator=comparator, checkpoint_every=0, seed=seed, device=str(torch_device))
    runs = {
        "image_loss": replace(common, out=str(out / "image_loss"), loss="image"),
        "deepsim": replace(common, out=str(out / "deepsim"), loss="full", lambda_adv=lambda_adv),
    }
    if metric_loss:
        runs[f"{metric_loss}_loss"] = replace(common, out=str(out / f"{metric_loss}_loss"), loss="metric",
                                              metric=metric_loss)
    _check_before_writing(runs, out, size, metric_loss)
    started = time.perf_counter()
    test_dir = write_demo_data(out / "data", size, n_test, seed)[1]  # the train folder is in the configs
    timings = {}
    for name, config in runs.items():
        log(f"training {name}: {iterations} iterations, batch {batch_size}, {size}x{size} on {torch_device} ...")
        t0 = time.perf_counter()
        train_generator(config, progress=progress)
        timings[name] = time.perf_counter() - t0
    specs = [f"deepsim:{out / name / 'final.pt'}" for name in runs]

    metrics, notes = available_metrics(metric_names)
    metrics = [m.to(torch_device) for m in metrics]
    table = bench_models(specs, str(test_dir), metrics, out, plot=True, device=torch_device)
    errors = {}
    for name, spec in zip(runs, specs):
        errors[name] = evaluate_run(spec, test_dir, out / name / "eval", comparator=comparator, device=torch_device)
    test_crops = ImageCrops.from_folder(test_dir, size)
    originals = test_crops.center_crops()[:8]
    save_grid([originals] + [reconstruct(load_model(s, torch_device)[0], originals).clamp(0, 1) for s in specs],
              out / "comparison.png", row_labels=["original"] + list(runs),
              column_labels=[Path(name).stem for name in test_crops.names[:8]],
              title="Held-out test patches (top row) and each model's reconstruction of them")

    summary = {
        "models": list(runs), "iterations": iterations, "lr": lr, "batch_size": batch_size, "size": size,
        "width": width, "lambda_adv_deepsim": lambda_adv, "device": str(torch_device), "train_seconds": timings,
        "total_seconds": time.perf_counter() - started,
        "unavailable_metrics": notes,
        "normalized_errors": {k: {m: v[m] for m in ("image", "code", "comparator") if m in v}
                              for k, v in errors.items()},
        "bench": table.to_dict(orient="records"),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str))
    md = ["# DeePSiM demo", "",
          f"{len(runs)} {size}x{size} autoencoders (width {width}), {iterations} iterations of batch {batch_size}, "
          f"lr {lr:g}, "
          f"trained on random crops of {', '.join(TRAIN_PHOTOS)} (scikit-image); tested on {n_test} patches of "
          f"{', '.join(TEST_PHOTOS)}.", "",
          "## Registry metrics between reconstruction and original (lower = closer)", "", "```",
          format_table(table), "```", "",
          "## Normalised Euclidean error (paper, Table 2; 1.0 = a random test sample)", "",
          "| model | image | comparator features |", "|---|---|---|"]
    for k, v in errors.items():
        md.append(f"| {k} | {v['image']:.3f} | {v.get('comparator', float('nan')):.3f} |")
    if notes:
        md += ["", "Unavailable metrics: " + "; ".join(notes)]
    md += ["", "Figures: `deepsim_bench.png`, `comparison.png` (originals, then each model), `<model>/eval/*.png`."]
    atomic_write_text(out / "summary.md", "\n".join(md) + "\n")
    log(format_table(table))
    log(f"demo finished in {summary['total_seconds']:.0f} s; results in {out}")
    return summary
