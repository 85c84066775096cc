"""Trained DeePSiM generators as models under evaluation.

* :func:`normalized_error`: the paper's ``||a - b|| / N`` (Table 2), N the mean distance
  between all pairs of different test samples, in image space and in a feature space.
* :func:`reencode` and :func:`interpolate`: iterative re-encoding (Fig. 5) and interpolation
  between codes (Fig. 7), saved as image grids by :func:`save_grid`.
* :func:`bench_models`: reconstruct the test images with each model and score every chosen
  registry metric between reconstruction and original (mean distance with a 95% bootstrap
  CI); with two or more models, per metric, the fraction of images on which each model
  reconstructs closer than the other (2AFC style). ``percepmetric bench --model deepsim:...``
  reaches it through :data:`DEEPSIM_MODELS`, a plugin of :mod:`percepmetric.bench.models`.

Every number of that table is a distance (``metric.to_distance``: lower = closer), so a metric
whose own value is a similarity is labelled by what the number is
(:func:`percepmetric.registry.distance_label`, as every table of percepmetric labels distances):
``psnr as mse`` (not dB), ``ssim as dssim``, ``fsim as 1-fsim``; in the text table, the CSV,
the JSON of the demo and the plots alike.

Reconstructions are clamped to [0, 1] before a registry metric sees them (the generators'
output is linear; registry metrics refuse values outside their input range).

Devices: the functions taking a model move their input images to the model's device;
:func:`evaluate_run` and :func:`bench_models` choose it (see their ``device`` argument).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..devices import resolve_device
from ..errors import InputError, PercepmetricError
from ..evaluation import metric_device, metric_distances
from ..io import atomic_path, atomic_write_text, prepare_output_dir, to_value_range
from ..registry import distance_label, number_repeats, unique_labels
from ..stats import two_afc_credit
from .networks import ReconstructionModel, build_comparator
from .train import ImageCrops, load_deepsim_checkpoint, model_from_checkpoint

MODEL_PREFIX = "deepsim:"


# ---------------------------------------------------------------- models

def checkpoint_path(spec: str) -> Path:
    """``"deepsim:run/final.pt"`` (or a bare path) -> ``Path("run/final.pt")``."""
    spec = str(spec)
    if spec.startswith(MODEL_PREFIX):
        spec = spec[len(MODEL_PREFIX):]
    elif ":" in spec and not Path(spec).exists() and not (len(spec) > 1 and spec[1] == ":"):
        raise InputError(f"--model {spec!r}: expected deepsim:PATH/TO/final.pt")
    if not spec:
        raise InputError("--model deepsim: needs a checkpoint path, e.g. deepsim:run/final.pt")
    return Path(spec)


def load_model(spec: str, device: str | torch.device | None = None) -> tuple[ReconstructionModel, dict[str, Any]]:
    """The model of ``deepsim:PATH`` in eval mode on ``device`` (None: the CPU), and its checkpoint dict."""
    path = checkpoint_path(spec)
    ckpt = load_deepsim_checkpoint(path)
    return model_from_checkpoint(ckpt, device, path), ckpt


def model_label(spec: str, ckpt: dict[str, Any]) -> str:
    """Short row label: the run folder name for ``.../NAME/final.pt`` (or ``last.pt``), else the file stem."""
    path = checkpoint_path(spec)
    name = path.parent.name if path.stem in ("final", "last") and path.parent.name else path.stem
    return name


def reconstruct(model: ReconstructionModel, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """``(N,3,S,S)`` in [0, 1] -> the model's reconstructions ``(N,3,S,S)`` (linear, unclamped),
    on the model's device.

    A VAE reconstructs from ``mu`` (no sampling), so results are deterministic.
    """
    p = next(model.parameters())
    out = []
    with torch.inference_mode():
        for chunk in images.split(batch_size):
            out.append(model.reconstruct(chunk.to(device=p.device, dtype=p.dtype)))
    return torch.cat(out)


# ---------------------------------------------------------------- the paper's measures

def normalized_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Normalised Euclidean error of Table 2: ``mean_i ||a_i - b_i||_2 / N``.

    ``a`` (reconstructions or their features) and ``b`` (the originals or theirs) are ``(n, ...)``
    with ``n >= 2``; ``N = mean_{i != j} ||b_i - b_j||_2`` over all pairs of different test
    samples, so 1.0 (100%) means as good as drawing a random test sample.
    """
    if a.shape != b.shape:
        raise InputError(f"normalized_error: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    n = a.shape[0]
    if n < 2:
        raise InputError("normalized_error needs at least two samples (N averages distances between different samples)")
    fa, fb = a.reshape(n, -1).double(), b.reshape(n, -1).double()
    pair = torch.cdist(fb, fb)
    norm = pair.sum() / (n * (n - 1))  # the diagonal is zero
    if norm == 0:
        raise InputError("normalized_error: all test samples are identical, N = 0")
    return float((fa - fb).norm(dim=1).mean() / norm)


def inversion_errors(model: ReconstructionModel, images: torch.Tensor, comparator: torch.nn.Module | None = None,
                     batch_size: int = 16) -> dict[str, float]:
    """Normalised errors (fractions, x100 for the paper's %) of the model on ``images``.

    ``image``: in image space. ``code``: between the code of the image and of its
    reconstruction (for ``invert`` the AlexNet features being inverted: the paper's feature
    space). ``comparator``: in the comparator's feature space, when one is given.
    """
    recon = reconstruct(model, images, batch_size).clamp(0, 1)
    images = images.to(recon)
    out = {"image": normalized_error(recon, images)}
    with torch.inference_mode():
        out["code"] = normalized_error(_batched(model.encode, recon, batch_size),
                                       _batched(model.encode, images, batch_size))
        if comparator is not None:
            out["comparator"] = normalized_error(_batched(comparator, recon, batch_size),
                                                 _batched(comparator, images, batch_size))
    return out


def _batched(fn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(chunk) for chunk in x.split(batch_size)])


def reencode(model: ReconstructionModel, images: torch.Tensor, iterations: int = 4) -> list[torch.Tensor]:
    """Fig. 5: ``[x, G(E(x)), G(E(G(E(x)))), ...]``, ``iterations + 1`` batches like ``images``
    (the reconstructions on the model's device)."""
    rows = [images]
    p = next(model.parameters())
    with torch.inference_mode():
        current = images.to(device=p.device, dtype=p.dtype)
        for _ in range(iterations):
            current = model.reconstruct(current).clamp(0, 1)
            rows.append(current)
    return rows


def interpolate(model: ReconstructionModel, a: torch.Tensor, b: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """Fig. 7: images decoded from ``(1 - t) E(a) + t E(b)`` for ``steps`` values of t in [0, 1].

    ``a``, ``b``: ``(1,3,S,S)``; returns ``(steps,3,S,S)`` clamped to [0, 1].
    """
    p = next(model.parameters())
    with torch.inference_mode():
        ca, cb = model.encode(a.to(device=p.device, dtype=p.dtype)), model.encode(b.to(device=p.device, dtype=p.dtype))
        t = torch.linspace(0, 1, steps, dtype=ca.dtype, device=ca.device).view(-1, *([1] * (ca.ndim - 1)))
        return model.decode((1 - t) * ca + t * cb).clamp(0, 1)


def save_grid(rows: list[torch.Tensor], path: str | os.PathLike, pad: int = 2, row_labels: list[str] | None = None,
              column_labels: list[str] | None = None, title: str | None = None) -> Path:
    """Write image batches as the rows of one PNG grid, atomically.

    ``rows``: list of ``(n,3,S,S)`` tensors in [0, 1], all of one shape. Without labels the
    PNG is the bare grid (white padding of ``pad`` pixels). With ``row_labels`` (one per row),
    ``column_labels`` (one per column) or a ``title``, matplotlib draws the grid with them
    around it, each image enlarged to at least an inch (nearest neighbour, no smoothing) so
    small images stay readable next to the text.
    """
    grid = torch.stack([r.detach().float().clamp(0, 1).cpu() for r in rows])  # (R, n, 3, S, S)
    r, n, c, s, _ = grid.shape
    canvas = torch.ones(c, r * (s + pad) + pad, n * (s + pad) + pad)
    for i in range(r):
        for j in range(n):
            top, left = pad + i * (s + pad), pad + j * (s + pad)
            canvas[:, top: top + s, left: left + s] = grid[i, j]
    array = (canvas.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    path = Path(path)
    if row_labels is None and column_labels is None and title is None:
        from PIL import Image

        with atomic_path(path) as tmp:
            Image.fromarray(array).save(tmp, format="PNG")
        return path
    for labels, count, what in ((row_labels, r, "row"), (column_labels, n, "column")):
        if labels is not None and len(labels) != count:
            raise ValueError(f"save_grid: {len(labels)} {what} labels for {count} {what}s")
    return _labeled_grid(array, r, n, s, pad, row_labels, column_labels, title, path)


def _labeled_grid(array: np.ndarray, r: int, n: int, s: int, pad: int, row_labels, column_labels, title,
                  path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cell = min(2.3, max(1.0, s / 100))  # inches per image
    fig, ax = plt.subplots(figsize=(n * cell, r * cell))
    ax.imshow(array, interpolation="nearest")
    def centres(k: int) -> list[float]:
        return [pad + i * (s + pad) + s / 2 - 0.5 for i in range(k)]

    ax.set_xticks(centres(n) if column_labels else [], column_labels or [], fontsize=8)
    ax.set_yticks(centres(r) if row_labels else [], row_labels or [], fontsize=9)
    ax.xaxis.tick_top()
    ax.tick_params(length=0, pad=3)
    # A label wider than its column (about 0.07 inch per character at 8 pt) would run into its
    # neighbour: slant them all.
    if column_labels and max(map(len, column_labels)) * 0.07 > 0.9 * cell:
        plt.setp(ax.get_xticklabels(), rotation=30, ha="left", rotation_mode="anchor")
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        # an axes title sits above the column labels, however tall they are
        ax.set_title(_wrap(title, int((n * cell + 1) * 13)), fontsize=9)  # ~13 characters per inch at 9 pt
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight", pad_inches=0.08)
    finally:
        plt.close(fig)
    return path


def _wrap(label: str, width: int) -> str:
    """``label`` on lines of at most ``width`` characters (at least 20), breaking after commas too
    (option lists such as ``lpips(net=alex,variant=lin)`` have no spaces)."""
    import re
    import textwrap

    return textwrap.fill(re.sub(r",(?=\S)", ", ", label), max(20, width))


def _short_names(names: list[str], width: int = 20) -> list[str]:
    """Image names for labels: the file stem, at most ``width`` characters; a longer one keeps its
    start and its end (where numbered files differ), joined by an ellipsis."""
    stems = [Path(name).stem for name in names]
    head = (width - 1) // 2
    return [stem if len(stem) <= width else stem[:head] + "…" + stem[-(width - 1 - head):] for stem in stems]


def evaluate_run(spec: str, data_dir: str | os.PathLike, out_dir: str | os.PathLike, n_show: int = 8,
                 iterations: int = 4, comparator: str | None = None, device: str | torch.device | None = "auto",
                 ) -> dict[str, Any]:
    """Normalised errors, re-encoding and interpolation grids (and VAE samples) of one model.

    Model and comparator run on ``device`` (:func:`~percepmetric.devices.resolve_device`).

    Writes ``errors.json``, ``reconstructions.png`` (originals / reconstructions),
    ``reencode.png``, ``interpolation.png`` and, for a VAE, ``samples.png`` into ``out_dir``;
    returns the errors.
    """
    device = resolve_device(device)
    model, ckpt = load_model(spec, device)
    out = prepare_output_dir(out_dir)  # before any work: an --out that cannot be written fails now
    crops = ImageCrops.from_folder(data_dir, model.size)
    images = crops.center_crops().to(device)
    comp_spec = comparator or ckpt["comparator"]["spec"]
    comp = build_comparator(comp_spec, ckpt["comparator"]["pretrained"]).to(device)
    errors: dict[str, Any] = {"model": str(checkpoint_path(spec)), "task": model.task,
                              "layer": model.config["layer"] if model.task == "invert" else None,
                              "n_images": int(images.shape[0]), "comparator_spec": comp_spec,
                              **inversion_errors(model, images, comp)}
    show = images[:n_show]
    names = _short_names(crops.names[:n_show])
    save_grid([show, reconstruct(model, show).clamp(0, 1)], out / "reconstructions.png",
              row_labels=["original", "reconstruction"], column_labels=names,
              title=f"{model_label(spec, ckpt)}: test images and their reconstructions")
    save_grid(reencode(model, show, iterations), out / "reencode.png",
              row_labels=["original"] + [f"re-encoded {k}x" for k in range(1, iterations + 1)], column_labels=names,
              title=f"{model_label(spec, ckpt)}: each row encodes and decodes the row above (paper, Fig. 5)")
    if images.shape[0] >= 2:
        starts = range(0, min(len(images) - 1, 8), 2)
        steps = 7
        pairs = [interpolate(model, images[i: i + 1], images[i + 1: i + 2], steps) for i in starts]
        all_names = _short_names(crops.names)
        save_grid(pairs, out / "interpolation.png",
                  row_labels=[f"{all_names[i]} → {all_names[i + 1]}" for i in starts],
                  column_labels=[f"t={t:.2g}" for t in np.linspace(0, 1, steps)],
                  title=f"{model_label(spec, ckpt)}: images decoded from (1-t) E(a) + t E(b) (paper, Fig. 7)")
    if model.task == "vae":
        g = torch.Generator(device=device).manual_seed(0)
        with torch.inference_mode():
            save_grid([model.sample(n_show, g).clamp(0, 1)], out / "samples.png", row_labels=["z ~ N(0, I)"],
                      title=f"{model_label(spec, ckpt)}: samples from the prior")
    atomic_write_text(out / "errors.json", json.dumps(errors, indent=2))
    return errors


# ---------------------------------------------------------------- models x metrics

def _ci(values: np.ndarray) -> tuple[float, float]:
    """95% percentile bootstrap CI of the mean, as every other table of percepmetric computes it."""
    from ..stats import bootstrap_ci

    return bootstrap_ci(np.mean, np.asarray(values, dtype=np.float64), n_boot=1000, level=0.95, seed=0)


def metrics_device(metrics: list) -> torch.device:
    """The device of the first metric holding a parameter or buffer; ``auto`` when none does
    (parameter-free metrics such as l2 compute wherever their input is)."""
    for metric in metrics:
        for tensor in (*metric.parameters(), *metric.buffers()):
            return tensor.device
    return resolve_device("auto")


def bench_models(model_specs: list[str], data_dir: str, metrics: list, out_dir: Path | None, plot: bool,
                 device: str | torch.device | None = None):
    """Score trained generators with registry metrics: how close are reconstructions to originals?

    Each model reconstructs the central ``size x size`` crop of every image of ``data_dir``, on
    ``device`` (None: the device of the metrics, see :func:`metrics_device`); each metric then
    scores on its own device.
    Returns a pandas DataFrame with one row per model x metric: ``model``, ``checkpoint``,
    ``task``, ``metric`` (its spec), ``metric_name``, ``distance`` (what the numbers are,
    :func:`~percepmetric.registry.distance_label` of the metric's
    :func:`~percepmetric.registry.unique_labels` label, e.g. ``psnr as mse``), ``n_images``, ``mean_distance``,
    ``ci_low``, ``ci_high`` (95% percentile bootstrap over images), ``note`` (why a metric was
    skipped, e.g. images too small for MS-SSIM) and, with two or more models,
    ``closer_fraction`` with ``closer_ci_low/high``: the fraction of (image, other model) pairs
    in which this model's reconstruction is the closer one by that metric (ties count 1/2).
    With ``out_dir`` it writes ``deepsim_bench.csv`` (and ``deepsim_bench.png`` when ``plot``).
    """
    return _bench_models(model_specs, data_dir, metrics, out_dir, plot, device)[0]


def _bench_models(model_specs: list[str], data_dir: str, metrics: list, out_dir: Path | None, plot: bool,
                  device: str | torch.device | None = None):
    """:func:`bench_models`'s table, with the images it compared: ``(table, sets)``, ``sets`` one
    ``(label, reconstructions, originals)`` per model, CPU tensors in [0, 1] (the reconstructions
    clamped), the labels those of the table."""
    import pandas as pd

    if not model_specs:
        raise InputError("bench_models: no models given")
    if not metrics:
        raise InputError("bench_models: no metrics given")
    device = metrics_device(metrics) if device is None else resolve_device(device)
    loaded = [(spec, *load_model(spec, device)) for spec in model_specs]
    out = prepare_output_dir(out_dir) if out_dir is not None else None  # fails now, not after the work
    sizes = {m.size for _, m, _ in loaded}
    if len(sizes) > 1:
        raise InputError(f"the models reconstruct images of different sizes ({', '.join(map(str, sorted(sizes)))}); "
                         "compare models of one size")
    images = ImageCrops.from_folder(data_dir, sizes.pop()).center_crops()
    labels = number_repeats([model_label(spec, ckpt) for spec, _, ckpt in loaded])
    metric_labels = unique_labels(metrics)
    recons = [reconstruct(model, images) for _, model, _ in loaded]

    rows = []
    per_image: dict[tuple[int, int], np.ndarray] = {}
    for k, metric in enumerate(metrics):
        for i, ((spec, model, ckpt), label, recon) in enumerate(zip(loaded, labels, recons)):
            row = {"model": label, "checkpoint": str(checkpoint_path(spec)), "task": model.task,
                   "loss": ckpt["config"].get("loss"), "metric": metric.spec, "metric_name": metric.name,
                   "distance": distance_label(metric, metric_labels[k]), "n_images": int(images.shape[0]),
                   "note": ""}
            try:
                # Reconstructions and images are in [0, 1]; the metric gets them in its declared range.
                pair = tuple(to_value_range(t, metric.value_range) for t in (recon.clamp(0, 1), images))
                (d,) = metric_distances(metric, pair, batch_size=16,
                                        device=metric_device(metric, default=recon.device))
            except PercepmetricError as exc:
                row.update(mean_distance=float("nan"), ci_low=float("nan"), ci_high=float("nan"), note=str(exc))
            else:
                per_image[(k, i)] = d
                lo, hi = _ci(d)
                row.update(mean_distance=float(d.mean()), ci_low=lo, ci_high=hi)
            rows.append(row)
    table = pd.DataFrame(rows)
    if len(loaded) >= 2:
        fractions, lows, highs = [], [], []
        for k in range(len(metrics)):
            for i in range(len(loaded)):
                if (k, i) not in per_image:
                    fractions.append(float("nan"))
                    lows.append(float("nan"))
                    highs.append(float("nan"))
                    continue
                # 1 where this model's reconstruction is the closer one, 1/2 on a tie: the 2AFC credit
                # of a question (p0: the other model's, p1: this one's) that everybody answers p1
                wins = [two_afc_credit(per_image[(k, j)], per_image[(k, i)], 1.0)
                        for j in range(len(loaded)) if j != i and (k, j) in per_image]
                if not wins:
                    fractions.append(float("nan"))
                    lows.append(float("nan"))
                    highs.append(float("nan"))
                    continue
                w = np.mean(wins, axis=0)  # per image, averaged over the other models
                lo, hi = _ci(w)
                fractions.append(float(w.mean()))
                lows.append(lo)
                highs.append(hi)
        table["closer_fraction"] = fractions
        table["closer_ci_low"] = lows
        table["closer_ci_high"] = highs
    if out is not None:
        atomic_write_text(out / "deepsim_bench.csv", table.to_csv(index=False))
        if plot:
            plot_bench(table, out / "deepsim_bench.png")
    sets = [(label, recon.clamp(0, 1).cpu(), images) for label, recon in zip(labels, recons)]
    return table, sets


def plot_bench(table, path: str | os.PathLike) -> Path:
    """:func:`bench_figure` of ``table``, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = bench_figure(plt, table)
    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
    return path


def bench_figure(plt, table):
    """The figure of a :func:`bench_models` table: one panel per metric, titled by what its
    numbers are (:func:`~percepmetric.registry.distance_label`): mean distance per model with its
    95% CI; a second row with the closer-fraction when the table has it. A metric skipped for
    every model says "not applicable" (its reason is in the table). A title says what is
    compared on how many images; a legend gives each model's colour, the interval bars and the
    0.5 line."""
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    metrics = list(dict.fromkeys(table["metric"]))
    models = list(dict.fromkeys(table["model"]))
    colours = {model: f"C{k % 10}" for k, model in enumerate(models)}
    has_afc = "closer_fraction" in table
    nrows = 2 if has_afc else 1
    fig, axes = plt.subplots(nrows, len(metrics), figsize=(2.6 * len(metrics) + 1, 2.8 * nrows + 0.9), squeeze=False,
                             layout="constrained")
    for col, spec in enumerate(metrics):
        sub = table[table["metric"] == spec]
        x = np.arange(len(sub))
        ax = axes[0, col]
        err = np.vstack([sub["mean_distance"] - sub["ci_low"], sub["ci_high"] - sub["mean_distance"]])
        ax.bar(x, sub["mean_distance"], yerr=np.nan_to_num(err), capsize=3, color=[colours[m] for m in sub["model"]])
        ax.set_title(_wrap(sub["distance"].iloc[0], 28), fontsize=9)
        skipped = bool(sub["note"].astype(bool).all())
        ax.set_xticks(x, sub["model"], rotation=30, ha="right", fontsize=7)
        if col == 0:
            ax.set_ylabel("distance to original\n(lower = closer)")
        panels = [ax]
        if has_afc:
            ax = axes[1, col]
            err = np.vstack([sub["closer_fraction"] - sub["closer_ci_low"],
                             sub["closer_ci_high"] - sub["closer_fraction"]])
            ax.bar(x, sub["closer_fraction"], yerr=np.nan_to_num(err), capsize=3,
                   color=[colours[m] for m in sub["model"]])
            if not skipped:
                ax.axhline(0.5, color="grey", lw=0.8, ls="--")  # as often closer as not
            ax.set_ylim(0, 1)
            ax.set_xticks(x, sub["model"], rotation=30, ha="right", fontsize=7)
            if col == 0:
                ax.set_ylabel("fraction of images\nreconstructed closer")
            panels.append(ax)
        if skipped:  # no numbers: no axis to read them on
            for ax in panels:
                ax.set_xlim(-0.5, len(sub) - 0.5)
                ax.set_yticks([])
                ax.text(0.5, 0.5, "not applicable", ha="center", va="center", transform=ax.transAxes, color="grey")
    n_images = int(table["n_images"].iloc[0]) if len(table) else 0
    fig.suptitle(f"How close each model's reconstructions are to the originals ({n_images} images): "
                 + ("\ntop: mean distance per metric (lower = closer); bottom: fraction of images on which the "
                    "model's reconstruction is the closer one" if has_afc else "mean distance per metric "
                                                                             "(lower = closer)"), fontsize=10)
    handles: list[Artist] = [Patch(color=colours[m], label=m) for m in models]
    handles.append(Line2D([], [], color="black", marker="|", markersize=10, markeredgewidth=1.5, linestyle="none",
                          label="95% interval (bootstrap over images)"))
    if has_afc:
        handles.append(Line2D([], [], color="grey", lw=0.8, ls="--", label="0.5: as often closer as not"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    return fig


def format_table(table) -> str:
    """The bench table as aligned text, one block per metric: a line naming what the numbers are
    (e.g. ``psnr as mse``), then per model its mean distance, 95% CI and closer fraction; then
    what the columns mean. Metric labels with many options stay on their own line, so the
    number lines stay short."""
    has_afc = "closer_fraction" in table
    labels = [str(label) for label in (table["distance"] if "distance" in table else table["metric_name"])]
    head = ["metric / model", "distance", "95% CI"] + (["closer"] if has_afc else [])
    blocks: dict[str, list[tuple[list[str], str]]] = {}
    for label, (_, r) in zip(labels, table.iterrows()):
        model = f"  {r['model']}"
        if r["note"]:
            blocks.setdefault(label, []).append(([model], f"skipped: {r['note']}"))
            continue
        cells = [model, f"{r['mean_distance']:.4g}", f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]"]
        blocks.setdefault(label, []).append((cells + ([f"{r['closer_fraction']:.3f}"] if has_afc else []), ""))
    rows = [cells for block in blocks.values() for cells, _ in block]
    widths = [max(len(row[i]) for row in [head, *rows] if i < len(row)) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        # names and intervals to the left (an interval's two ends vary in width), numbers to the right
        return "  ".join(c.ljust(w) if i in (0, 2) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    lines = [line(head)]
    for label, block in blocks.items():
        lines.append(label)
        notes = {note for _, note in block}
        if len(notes) == 1 and "" not in notes:  # skipped for every model, for one reason: say it once
            lines.append(f"  every model {notes.pop()}")
            continue
        lines += [line(cells) + (f" {note}" if note else "") for cells, note in block]
    lines.append("distance: mean over the images, reconstruction to original; lower = closer")
    if any(" as " in label for label in labels):
        lines.append("METRIC as D: the metric's value turned into the distance D (psnr as mse: the MSE, not dB)")
    if has_afc:
        lines.append("closer: fraction of images on which this model's reconstruction is the closer one")
    return "\n".join(lines)


# ---------------------------------------------------------------- the plugin of `bench --model`

class DeepSimModels:
    """DeePSiM generators as a kind of model under evaluation: ``percepmetric bench --model
    deepsim:PATH`` (a :class:`percepmetric.bench.models.ModelKind`, announced under the
    ``percepmetric.models`` entry points in ``pyproject.toml``). Its report is
    :func:`format_table` of :func:`bench_models`; with it, it hands back each model's
    reconstructions and the originals (the central crops), from which bench computes FID and KID
    (``(report, [(label, reconstructions, originals), ...])``: a
    :class:`percepmetric.bench.models.ModelReport`, as a plain tuple since deepsim does not import
    bench)."""

    name = "deepsim"
    example = f"{MODEL_PREFIX}PATH/TO/final.pt"

    def evaluate(self, paths: Sequence[str], data_dir: str, metrics: Sequence[torch.nn.Module], out_dir: Path | None,
                 plot: bool) -> tuple[str, list[tuple[str, torch.Tensor, torch.Tensor]]]:
        specs = [MODEL_PREFIX + path for path in paths]
        table, sets = _bench_models(specs, data_dir, list(metrics), out_dir, plot)
        return format_table(table), sets


DEEPSIM_MODELS = DeepSimModels()
