"""``percepmetric matrix DIR [DIR2]``: the distance matrix of a folder's images (against
themselves or against a second folder), computed by :func:`percepmetric.pairwise`. Attached to
``percepmetric`` by ``percepmetric.cli``.

One metric per run: a matrix file holds one metric's numbers, and a second ``-m`` is refused
in one line (run the command once per metric, each with its own ``--out``).

Rows and columns are named by the images' relative paths as text (:func:`percepmetric.io.name_text`:
a byte that is not UTF-8 as ``\\xHH``), in the summary, the CSV and the ``.names.json`` sidecar;
in the CSV a name that a spreadsheet would run as a formula gets a ``'`` in front
(:func:`percepmetric.io.csv_cell`). Every output path is checked before any work.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import click
import torch

from .cli_options import (
    build_available_metrics,
    device_option,
    max_pixels_option,
    metric_option_flags,
    no_progress_option,
)
from .errors import InputError, WeightsNotFoundError
from .io import csv_cell, max_pixels_limit, name_text, pixel_limit, prepare_output_file, printable_path

#: Longest line the summary prints.
LINE_WIDTH = 99
#: How many of the closest pairs the summary lists.
CLOSEST = 5
OUT_SUFFIXES = (".npy", ".csv")


def list_images(folder: str) -> list[str]:
    """Image files under ``folder`` (recursively; hidden files and folders left out), as sorted
    relative paths with ``/`` separators. One :class:`InputError` line when there are none, and
    for an image name that is not a regular file (a FIFO: never opened). The pixel limit is
    checked from each header by :func:`percepmetric.pairwise`, before anything is decoded."""
    from .io import IMAGE_SUFFIXES, list_image_files

    root = Path(folder)
    if not root.exists():
        raise InputError(f"{printable_path(folder)}: no such folder")
    if not root.is_dir():
        raise InputError(f"{printable_path(folder)}: is not a folder (matrix compares the images of a folder)")
    found = list_image_files(root)
    if not found:
        raise InputError(f"{printable_path(folder)}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it or below it")
    return found


def names_path(target: Path) -> Path:
    """The sidecar of a ``.npy`` matrix: ``matrix.npy`` -> ``matrix.names.json``."""
    return target.with_suffix(".names.json")


def check_outputs(out: str) -> Path:
    """``--out`` checked before any work: a ``.npy`` or ``.csv`` file whose folder can be written,
    and for ``.npy`` a names sidecar (:func:`names_path`) that is not a folder."""
    target = prepare_output_file(out, OUT_SUFFIXES)
    if target.suffix.lower() == ".npy" and names_path(target).is_dir():
        raise InputError(f"--out {printable_path(out)}: its names go to {printable_path(names_path(target))}, "
                         "which is a folder; remove it or choose another --out")
    return target


def write_matrix(target: Path, matrix: torch.Tensor, rows: list[str], cols: list[str], about: dict) -> list[Path]:
    """Write the matrix atomically: ``.npy`` (float32/64 as computed) plus its names sidecar, or
    a labelled ``.csv`` (header: an empty corner cell, then the column names; each row starts with
    its name; values with 9 significant digits, enough to read float32 back exactly). ``rows``,
    ``cols``: the names as text (:func:`percepmetric.io.name_text`); in the CSV a name that a
    spreadsheet would run as a formula gets a ``'`` in front (:func:`percepmetric.io.csv_cell`),
    numbers never. Both files are UTF-8."""
    from .io import atomic_path, atomic_write_text

    values = matrix.detach().cpu().numpy()
    if target.suffix.lower() == ".csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["", *map(csv_cell, cols)])
        for name, row in zip(rows, values):
            writer.writerow([csv_cell(name), *(f"{v:.9g}" for v in row)])
        atomic_write_text(target, text.getvalue())
        return [target]
    import numpy as np

    sidecar = names_path(target)
    atomic_write_text(sidecar, json.dumps({**about, "rows": rows, "columns": cols}, indent=1) + "\n")
    with atomic_path(target, suffix=".npy") as tmp, open(tmp, "wb") as f:
        np.save(f, values)
    return [target, sidecar]


def _shorten(text: str, width: int) -> str:
    """``text`` cut in the middle to ``width`` characters (the ends of paths say the most)."""
    if len(text) <= width:
        return text
    keep = max(width - 3, 2)
    return text[: keep // 2] + "..." + text[len(text) - (keep - keep // 2):]


def _shorten_folder(name: str, width: int) -> str:
    """A folder's name cut to ``width`` characters from the left (its last parts tell folders
    apart), from a ``/`` where one is left: ``.../results/gt_images``."""
    if len(name) <= width:
        return name
    tail = name[len(name) - max(width - 3, 1):]
    cut = tail.find("/", 1)
    return "..." + (tail[cut:] if cut > 0 and len(tail) - cut > 1 else tail)


def _shape_line(label: str, n_rows: int, n_cols: int, folders: tuple[str, str] | None) -> str:
    """``LABEL: N x M (against itself)``, or ``(rows: FOLDER, columns: FOLDER2)`` naming the two
    folders as given; a long name keeps its end (:func:`_shorten_folder`) to fit the line."""
    head = f"{label}: {n_rows} x {n_cols} ("
    if folders is None:
        return _shorten(f"{head}against itself)", LINE_WIDTH)
    first, second = folders
    room = LINE_WIDTH - len(f"{head}rows: , columns: )")
    # each name gets half the room, and what the other leaves unused
    first_room = max(room - len(second), room // 2)
    first = _shorten_folder(first, first_room)
    second = _shorten_folder(second, room - len(first))
    return _shorten(f"{head}rows: {first}, columns: {second})", LINE_WIDTH)


def summary_lines(matrix: torch.Tensor, rows: list[str], cols: list[str], same: bool, label: str,
                  folders: tuple[str, str] | None = None) -> list[str]:
    """A few lines: the shape (naming ``folders``, the rows' and the columns', when they differ),
    min/mean/max over the pairs (off the diagonal for a folder against itself), and the closest
    pairs; every line shorter than 100 columns."""
    values = matrix.detach().double().cpu()
    if same:
        i, j = torch.triu_indices(len(rows), len(rows), offset=1)
        pairs = values[i, j]
    else:
        grid_i, grid_j = torch.meshgrid(torch.arange(len(rows)), torch.arange(len(cols)), indexing="ij")
        i, j, pairs = grid_i.flatten(), grid_j.flatten(), values.flatten()
    lines = [_shape_line(label, len(rows), len(cols), None if same else (folders or ("first set", "second set")))]
    if pairs.numel() == 0:
        return lines + ["one image: no pairs to compare"]
    where = "off-diagonal" if same else "all pairs"
    lines.append(f"{where}: min {pairs.min():.6g}  mean {pairs.mean():.6g}  max {pairs.max():.6g}")
    lines.append("closest pairs:")
    order = torch.argsort(pairs, stable=True)[:CLOSEST]
    for k in order.tolist():
        value = f"  {pairs[k]:.6g}  "
        room = (LINE_WIDTH - len(value) - 2) // 2
        lines.append(f"{value}{_shorten(rows[i[k]], room)}  {_shorten(cols[j[k]], room)}")
    return lines


@click.command("matrix")
@click.argument("folder", type=click.Path())
@click.argument("folder2", required=False, type=click.Path())
@metric_option_flags(default=("lpips",))
@device_option
@click.option("--out", default=None, metavar="FILE.npy|FILE.csv",
              help="Write the matrix: .npy (with FILE.names.json naming rows and columns) or a labelled .csv.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Images per trunk pass (deep metrics).")
@no_progress_option
@max_pixels_option
def matrix_command(folder, folder2, metrics, net, variant, weights, extra, device, out, batch_size,
                   no_progress, max_pixels) -> None:
    """Distances between every pair of images of DIR (or of DIR against DIR2).

    Images are found recursively and sorted by relative path; all must have the same size.
    Entries are each metric's distance form (LPIPS as it is, SSIM as (1 - SSIM) / 2, PSNR as
    the MSE), as `percepmetric distance` reports under "distance". One metric per run (-m,
    lpips by default). Prints a summary: size, min/mean/max and the closest pairs.
    """
    from . import distributed
    from .devices import resolve_device
    from .pairwise import pairwise
    from .registry import distance_label

    if len(metrics) > 1:
        raise InputError(f"matrix computes one metric per run, got {len(metrics)} (-m {' -m '.join(metrics)}): "
                         "run it once per metric, each with its own --out")
    target = check_outputs(out) if out is not None else None
    torch_device = distributed.rank_device(resolve_device(device))
    limit = max_pixels_limit(max_pixels)  # checked now; pairwise holds every header to it
    rows = list_images(folder)
    same = folder2 is None
    cols = rows if same else list_images(folder2)
    (metric,) = _build_matrix_metric(metrics, net, variant, weights, extra)
    row_files = [str(Path(folder) / name) for name in rows]
    col_files = None if same else [str(Path(folder2) / name) for name in cols]
    # Under torchrun every rank computes its share of the trunk batches and tiles; rank 0 reports
    # and writes (percepmetric.distributed). Every rank reads every image, so a bad file fails
    # them all alike, and torchrun stops the others when one fails.
    with distributed.process_group(torch_device) as group:
        with _ProgressBar(not no_progress and group.is_main) as advance, pixel_limit(limit):
            matrix = pairwise(row_files, col_files, metric, batch_size=batch_size, device=torch_device,
                              progress=advance, split=group)
        if not group.is_main:
            return
    label = distance_label(metric)
    shown_folders = (printable_path(folder), printable_path(folder if same else folder2))
    row_names = [name_text(name) for name in rows]
    col_names = row_names if same else [name_text(name) for name in cols]
    for line in summary_lines(matrix, row_names, col_names, same, label, folders=None if same else shown_folders):
        click.echo(line)
    if target is not None:
        about = {"metric": label, "spec": metric.spec, "rows_folder": shown_folders[0],
                 "columns_folder": shown_folders[1]}
        for kind, path in zip(("matrix", "names"), write_matrix(target, matrix, row_names, col_names, about)):
            click.echo(f"{kind}: {printable_path(path)}")


def _build_matrix_metric(metrics, net, variant, weights, extra) -> list:
    """The one metric of the run; when the default, LPIPS, has no weights here, the one line says
    so and names metrics that need none, instead of only the missing file."""
    built, unavailable = build_available_metrics(metrics, net, variant, weights, extra, default=("lpips",))
    if unavailable:
        hint = "" if metrics else "; choose a metric that needs no weights with -m (e.g. -m ssim, -m psnr)"
        raise WeightsNotFoundError(f"{unavailable[0].label} cannot run: {unavailable[0].reason}{hint}")
    return built


class _ProgressBar:
    """A tqdm bar on stderr (rate and time left) driven by ``pairwise``'s ``progress(done, total)``;
    nothing when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __enter__(self):
        return self.advance

    def advance(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="matrix", unit="step", leave=False, dynamic_ncols=True)
        bar = self.bar
        bar.total = total
        bar.update(done - bar.n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


COMMANDS = [matrix_command]
