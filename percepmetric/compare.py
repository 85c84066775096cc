"""Two folders compared image by image: ``percepmetric distance DIR_A DIR_B`` and :func:`compare_folders`.

The weekly job of restoration, super-resolution and compression work: score a model's outputs
against the ground truth, over a whole folder, with PSNR, SSIM and LPIPS. It is done in four
steps, each below in this file:

* **matching** (:func:`match_folders`): files pair up by their path relative to each folder,
  recursively (``match="stem"``: by that path without its extension, so ``0001.png`` meets
  ``0001.jpg``). Files on one side only stop the job unless ``allow_missing``; pairs whose
  sizes differ stop it unless a ``size_mismatch`` policy (``resize`` or ``crop``) is chosen.
  Both are checked from the files' headers, before any pixel is decoded.
* **chunks** (:func:`plan_chunks`): pairs of one size, at most ``batch_size`` of them and at most
  :data:`PIXELS_PER_BATCH` pixels per side, so memory stays bounded whatever the folder holds.
  A chunk is the unit of work and of resumption.
* **computing**: the pairs of the next chunks are decoded in threads while the metrics run on
  the current one; each chunk's values are saved at once, atomically, in the resume folder
  beside the output (``OUT.partial/chunk-KEY.npz``). KEY hashes what the values depend on: the
  pairs' relative paths, what the files hold (a content hash of each file's bytes, taken when
  the folders are listed: a rewrite that keeps a file's size and modification time still
  changes it), the size policy and each metric's ``spec`` with the content hash of the weight
  files it was built from (:func:`~percepmetric.weights.content_identity`). Each file is hashed again
  from the very bytes decoded, and a file that changed since the listing stops the run (its new
  values would be saved under its old content). An interrupted run (Ctrl-C, a kill) rerun with
  the same ``out`` computes only the chunks it lacks, and since chunks are cut the same way,
  gives the same numbers; the folder goes once the results are written.
* **results**: one row per pair (``a``, ``b``: paths relative to their folders, as text:
  :func:`percepmetric.io.name_text`; one column per metric label with the metric's own value),
  and per metric the mean over finite values with its 95% bootstrap interval
  (:func:`percepmetric.stats.bootstrap_ci`). Every output path (the table, the summary, the
  resume folder) is checked before any work.
* **several processes** (``torchrun --nproc-per-node N -m percepmetric distance ...``): every
  rank plans the same chunks and computes chunk ``i`` when ``i % N`` is its rank
  (:func:`percepmetric.distributed.shard`), saving it in its resume folder as above; the values
  are then gathered on every rank and rank 0 writes the outputs, byte for byte those of one
  process. A rank that fails stops all of them (:func:`percepmetric.distributed.run_part`).

Part of the core by the layering rule (tests/test_layering.py): it imports only core modules,
so that ``percepmetric.compare_folders`` is the library's own function.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import zipfile
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import distributed, stats
from .devices import decoding_threads, resolve_device
from .errors import InputError
from .io import (
    atomic_path,
    csv_cell,
    list_image_files,
    max_pixels_limit,
    name_text,
    prepare_output_file,
    printable_path,
    probe_writable,
    read_image_and_digest,
    read_image_header,
    to_value_range,
)
from .metrics.base import Metric
from .registry import create_metric, unique_labels
from .weights import content_identity

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["compare_folders", "match_folders", "plan_chunks", "check_outputs", "resume_folder", "summary_path",
           "MATCH_MODES", "SIZE_POLICIES"]

MATCH_MODES = ("path", "stem")
#: What to do with pairs whose sizes differ (None: refuse them). See :func:`_apply_size_policy`.
SIZE_POLICIES = ("resize", "crop")
#: Pixels of one side of a batch at most (16 M: 256 images of 256x256, 6 of 2040x1356), so that a
#: folder of large images does not take ``batch_size`` times their memory.
PIXELS_PER_BATCH = 1 << 24
#: How many file names an error or a note lists before "...".
NAMES_SHOWN = 5
DEFAULT_METRICS = ("psnr", "ssim", "lpips")
OUTPUT_SUFFIXES = (".csv", ".json")


# ---------------------------------------------------------------- matching

@dataclass(frozen=True)
class ImageFile:
    """One image of a folder: its path relative to the folder (POSIX form, extension included),
    its size from the file's header, and ``digest``, the hash of the file's bytes
    (:func:`percepmetric.io.read_image_header`), which any rewrite of its content changes."""

    relative: str
    path: Path
    width: int
    height: int
    digest: str


@dataclass(frozen=True)
class FolderPairs:
    """What :func:`match_folders` found: the pairs, in the order of A's relative paths, and the
    relative paths present on one side only."""

    pairs: list[tuple[ImageFile, ImageFile]]
    only_a: list[str]
    only_b: list[str]


def _match_key(relative: str, match: str) -> str:
    return relative if match == "path" else relative.rsplit(".", 1)[0] if "." in Path(relative).name else relative


def _shown(names: Sequence[str]) -> str:
    """The first names of a list (as text already: :func:`percepmetric.io.name_text`) and how many more."""
    more = f", ... ({len(names) - NAMES_SHOWN} more)" if len(names) > NAMES_SHOWN else ""
    return ", ".join(names[:NAMES_SHOWN]) + more


def _keyed(folder: Path, names: list[str], match: str) -> dict[str, str]:
    """``{match key: relative path}``; two files of one folder with the same key are an error."""
    keyed: dict[str, str] = {}
    clashes: dict[str, list[str]] = {}
    for name in names:
        key = _match_key(name, match)
        if key in keyed:
            clashes.setdefault(key, [keyed[key]]).append(name)
        keyed[key] = name
    if clashes:
        first = next(iter(clashes))
        raise InputError(f"--match {match}: {printable_path(folder)} has {len(clashes)} ambiguous stem(s), "
                         f"e.g. {name_text(first)!r}: {' and '.join(map(name_text, clashes[first]))}; "
                         "use --match path or rename them")
    return keyed


def _describe(folder: Path, relative: str, max_pixels: int) -> ImageFile:
    """The file's size from its header (no decoding; over ``max_pixels`` pixels is an error) and
    the hash of its bytes."""
    path = folder / relative
    header = read_image_header(path, max_pixels=max_pixels, digest=True)
    assert header.digest is not None
    return ImageFile(relative, path, header.width, header.height, header.digest)


def match_folders(dir_a: str | os.PathLike, dir_b: str | os.PathLike, *, match: str = "path",
                  allow_missing: bool = False, workers: int | None = None,
                  max_pixels: int | None = None) -> FolderPairs:
    """Pair the images of two folders by relative path (``match="stem"``: without extension).

    Raises :class:`InputError` (one line) for a folder that does not exist, ambiguous stems,
    no pair at all, and, unless ``allow_missing``, files present on one side only (their count
    and first names); for an image name that is not a regular file, and for an image whose
    header claims more than ``max_pixels`` pixels (:func:`percepmetric.io.max_pixels_limit`).
    Image headers are read, and the files' bytes hashed, in ``workers`` threads.
    """
    limit = max_pixels_limit(max_pixels)
    if match not in MATCH_MODES:
        raise InputError(f"--match {match!r}: expected one of {', '.join(MATCH_MODES)}")
    folders = []
    for name, given in (("A", dir_a), ("B", dir_b)):
        folder = Path(given)
        if not folder.is_dir():
            raise InputError(f"{printable_path(folder)}: no such folder ({name})")
        folders.append(folder)
    folder_a, folder_b = folders
    keyed_a = _keyed(folder_a, list_image_files(folder_a), match)
    keyed_b = _keyed(folder_b, list_image_files(folder_b), match)
    only_a = sorted(keyed_a[k] for k in keyed_a.keys() - keyed_b.keys())
    only_b = sorted(keyed_b[k] for k in keyed_b.keys() - keyed_a.keys())
    if (only_a or only_b) and not allow_missing:
        note = unmatched_note([name_text(n) for n in only_a], [name_text(n) for n in only_b], folder_a, folder_b)
        raise InputError(f"{note}; pass --allow-missing (allow_missing=True) to skip them")
    common = sorted(keyed_a.keys() & keyed_b.keys(), key=lambda k: keyed_a[k])
    if not common:
        raise InputError(f"no image pairs: {printable_path(folder_a)} has {len(keyed_a)} images, "
                         f"{printable_path(folder_b)} has {len(keyed_b)}, and no relative path is in both"
                         + (" (try --match stem)" if match == "path" else ""))
    with ThreadPoolExecutor(max_workers=decoding_threads(workers)) as pool:
        described_a = list(pool.map(lambda k: _describe(folder_a, keyed_a[k], limit), common))
        described_b = list(pool.map(lambda k: _describe(folder_b, keyed_b[k], limit), common))
    return FolderPairs(list(zip(described_a, described_b)), only_a, only_b)


def unmatched_note(only_a: Sequence[str], only_b: Sequence[str], folder_a: Path, folder_b: Path) -> str:
    """``3 files only in A (first: ...), 1 only in B (first: ...)`` for errors and notes; the
    names as text (:func:`percepmetric.io.name_text`)."""
    parts = [f"{len(names)} file(s) only in {printable_path(folder)} (first: {_shown(names)})"
             for names, folder in ((only_a, folder_a), (only_b, folder_b)) if names]
    return "; ".join(parts)


def _target_size(a: ImageFile, b: ImageFile, size_mismatch: str | None) -> tuple[int, int]:
    """``(height, width)`` both images of the pair are compared at."""
    if size_mismatch == "crop":
        return min(a.height, b.height), min(a.width, b.width)
    return a.height, a.width


def _check_sizes(pairs: Sequence[tuple[ImageFile, ImageFile]], size_mismatch: str | None) -> None:
    if size_mismatch is not None and size_mismatch not in SIZE_POLICIES:
        raise InputError(f"--size-mismatch {size_mismatch!r}: expected one of {', '.join(SIZE_POLICIES)}")
    if size_mismatch is not None:
        return
    differ = [f"{name_text(a.relative)} ({a.width}x{a.height}) vs {name_text(b.relative)} ({b.width}x{b.height})"
              for a, b in pairs if (a.width, a.height) != (b.width, b.height)]
    if differ:
        raise InputError(f"{len(differ)} pair(s) differ in size: {_shown(differ)}; "
                         "choose --size-mismatch resize|crop (size_mismatch=...) to compare them anyway")


# ---------------------------------------------------------------- chunks

@dataclass(frozen=True)
class Chunk:
    """Pairs (indices into the pair list) of one compared size, computed and saved together;
    ``key`` names the chunk's saved values (see the module docstring)."""

    indices: tuple[int, ...]
    key: str


def plan_chunks(pairs: Sequence[tuple[ImageFile, ImageFile]], batch_size: int, size_mismatch: str | None,
                identities: Sequence[str]) -> list[Chunk]:
    """Cut the pairs into chunks of one compared size, in a fixed order (by size, then by the
    order of the pairs), so that a rerun of the same job cuts the same chunks."""
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, (a, b) in enumerate(pairs):
        by_size.setdefault(_target_size(a, b, size_mismatch), []).append(index)
    chunks = []
    for (height, width), indices in sorted(by_size.items()):
        per_chunk = max(1, min(batch_size, PIXELS_PER_BATCH // max(1, height * width)))
        for start in range(0, len(indices), per_chunk):
            members = tuple(indices[start:start + per_chunk])
            chunks.append(Chunk(members, _chunk_key(pairs, members, size_mismatch, identities)))
    return chunks


def _chunk_key(pairs, members: Sequence[int], size_mismatch: str | None, identities: Sequence[str]) -> str:
    described = [[pairs[i][0].relative, pairs[i][0].digest, pairs[i][1].relative, pairs[i][1].digest]
                 for i in members]
    text = json.dumps({"pairs": described, "size_mismatch": size_mismatch, "metrics": list(identities),
                       "keyed_on": "content"})
    return hashlib.sha1(text.encode()).hexdigest()[:24]


# ---------------------------------------------------------------- decoding one pair

def _as_float(array: np.ndarray) -> torch.Tensor:
    """``(H,W,C)`` uint8/uint16 -> ``(C,H,W)`` float32 in [0, 1], as :func:`percepmetric.io.load_image`."""
    scale = 255.0 if array.dtype == np.uint8 else 65535.0
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)).div_(scale)


def _centre_crop(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    top, left = (image.shape[-2] - height) // 2, (image.shape[-1] - width) // 2
    return image[..., top:top + height, left:left + width]


def _apply_size_policy(x: torch.Tensor, y: torch.Tensor, size: tuple[int, int],
                       size_mismatch: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images at the compared ``size``: ``resize`` brings B to A's size (bicubic, antialiased
    when shrinking, on the [0, 1] floats, clamped to [0, 1]); ``crop`` takes the centre of both."""
    height, width = size
    if size_mismatch == "crop":
        return _centre_crop(x, height, width), _centre_crop(y, height, width)
    if y.shape[-2:] != x.shape[-2:]:  # resize
        resized = torch.nn.functional.interpolate(y[None], size=(height, width), mode="bicubic",
                                                  align_corners=False, antialias=True)
        y = resized[0].clamp_(0.0, 1.0)
    return x, y


def _read_listed(file: ImageFile, max_pixels: int) -> torch.Tensor:
    """The image as listed: decoded from bytes whose hash is the listing's, else an error (the
    chunk's key names the listed content, so values of other content must not be saved under it)."""
    array, digest = read_image_and_digest(file.path, max_pixels)
    if digest != file.digest:
        raise InputError(f"{printable_path(file.path)}: changed while the run was going (its bytes differ from "
                         "when the folders were listed); finished pairs are kept: run the command again")
    return _as_float(array)


def _decode_pair(a: ImageFile, b: ImageFile, size_mismatch: str | None,
                 max_pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pair as two ``(C,H,W)`` float32 tensors of one shape; a grey image beside a colour one
    is repeated to three channels, as ``percepmetric distance A B`` does."""
    x, y = _read_listed(a, max_pixels), _read_listed(b, max_pixels)
    if x.shape[0] != y.shape[0]:
        x, y = x.expand(3, -1, -1), y.expand(3, -1, -1)
    return _apply_size_policy(x, y, _target_size(a, b, size_mismatch), size_mismatch)


# ---------------------------------------------------------------- computing one chunk

@dataclass
class ChunkValues:
    """The metrics' values on one chunk's pairs, ``(pairs, metrics)`` float64 (NaN where a metric
    could not run), and per metric why it could not (None when it ran)."""

    values: np.ndarray
    reasons: list[str | None]


def _compute_chunk(metrics: Sequence[Metric], decoded: Sequence[tuple[torch.Tensor, torch.Tensor]],
                   device: torch.device) -> ChunkValues:
    """Each metric on the chunk's pairs, batched by shape (a grey pair and a colour pair of one
    size do not stack). A metric that cannot take these images (too small for its window)
    gives NaN and its reason; the others still run."""
    values = np.full((len(decoded), len(metrics)), np.nan)
    reasons: list[str | None] = [None] * len(metrics)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for position, (x, _) in enumerate(decoded):
        by_shape.setdefault(tuple(x.shape), []).append(position)
    with torch.inference_mode():
        for positions in by_shape.values():
            x = torch.stack([decoded[p][0] for p in positions]).to(device)
            y = torch.stack([decoded[p][1] for p in positions]).to(device)
            for column, metric in enumerate(metrics):
                try:  # the decoded [0, 1] images in the metric's declared input range
                    result = metric.values(to_value_range(x, metric.value_range), to_value_range(y, metric.value_range))
                except InputError as exc:
                    reasons[column] = _reason(metric, exc)
                    continue
                values[positions, column] = result.detach().to(torch.float64).cpu().numpy().reshape(-1)
    return ChunkValues(values, reasons)


def _reason(metric: Metric, exc: InputError) -> str:
    reason, prefix = str(exc), f"{metric.name}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason


# ---------------------------------------------------------------- resume state

def check_outputs(out: str | os.PathLike) -> Path:
    """Check, before any work, every path a run writing ``out`` uses: the table (a ``.csv`` or
    ``.json`` file whose folder can be written: :func:`percepmetric.io.prepare_output_file`),
    its summary (:func:`summary_path`: not a folder) and its resume folder
    (:func:`resume_folder`: a folder that can be written, or absent; it is not created here).
    One :class:`InputError` line naming ``--out`` and the path otherwise."""
    target = prepare_output_file(out, OUTPUT_SUFFIXES)
    shown = printable_path(out)
    summary = summary_path(target)
    if summary.is_dir():
        raise InputError(f"--out {shown}: its summary goes to {printable_path(summary)}, which is a folder; "
                         "remove it or choose another --out")
    state = resume_folder(target)
    if state.is_symlink() or state.exists():
        if not state.is_dir():
            raise InputError(f"--out {shown}: {printable_path(state)} (where a run keeps its finished chunks until "
                             "it completes) exists and is not a folder; remove it or choose another --out")
        try:
            probe_writable(state)
        except OSError as exc:
            raise InputError(f"--out {shown}: cannot write in {printable_path(state)} "
                             f"({exc.strerror or type(exc).__name__})") from None
    return target


def resume_folder(out: str | os.PathLike) -> Path:
    """Where a run writing ``out`` keeps its finished chunks until it completes: ``OUT.partial/``."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def summary_path(out: str | os.PathLike) -> Path:
    """Where the per-metric summary of ``out`` goes: ``results.csv`` -> ``results.summary.csv``."""
    out = Path(out)
    return out.with_name(out.stem + ".summary" + out.suffix)


def _chunk_file(folder: Path, chunk: Chunk) -> Path:
    return folder / f"chunk-{chunk.key}.npz"


def _read_chunk(folder: Path, chunk: Chunk, n_metrics: int) -> ChunkValues | None:
    """A chunk's saved values, or None when absent or unreadable (a damaged file is recomputed)."""
    try:
        with np.load(_chunk_file(folder, chunk), allow_pickle=False) as data:
            values, reasons = data["values"], json.loads(str(data["reasons"]))
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    if values.shape != (len(chunk.indices), n_metrics) or not isinstance(reasons, list) or len(reasons) != n_metrics:
        return None
    return ChunkValues(values.astype(np.float64), reasons)


def _write_chunk(folder: Path, chunk: Chunk, result: ChunkValues) -> None:
    with atomic_path(_chunk_file(folder, chunk)) as tmp, open(tmp, "wb") as f:
        np.savez(f, values=result.values, reasons=np.array(json.dumps(result.reasons)))


# ---------------------------------------------------------------- the job

def _build_metrics(metrics: Sequence[str | Metric]) -> list[Metric]:
    built = [create_metric(m) if isinstance(m, str) else m for m in metrics]
    if not built:
        raise InputError("compare_folders: give at least one metric")
    for metric in built:
        if not isinstance(metric, Metric):
            raise InputError(f"compare_folders: metrics are names or Metric objects, got {type(metric).__name__}")
    return built


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="pairs", unit="pair", file=sys.stderr, disable=not enabled,
                dynamic_ncols=True, smoothing=0.1)


def _run_chunks(chunks: Sequence[Chunk], pairs, metrics: Sequence[Metric], size_mismatch: str | None,
                device: torch.device, workers: int, max_pixels: int) -> Iterator[tuple[Chunk, ChunkValues]]:
    """Each chunk's values, in order: the pairs of the next two chunks are decoded in threads
    while the metrics run on the current one (decoding releases the GIL)."""
    pool = ThreadPoolExecutor(max_workers=workers)
    pending: deque[tuple[Chunk, list[Future]]] = deque()
    upcoming = iter(chunks)

    def submit_next() -> None:
        chunk = next(upcoming, None)
        if chunk is not None:
            pending.append((chunk, [pool.submit(_decode_pair, pairs[i][0], pairs[i][1], size_mismatch, max_pixels)
                                    for i in chunk.indices]))

    try:
        for _ in range(2):
            submit_next()
        while pending:
            chunk, futures = pending.popleft()
            decoded = [future.result() for future in futures]
            submit_next()
            yield chunk, _compute_chunk(metrics, decoded, device)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def compare_folders(dir_a: str | os.PathLike, dir_b: str | os.PathLike,
                    metrics: Sequence[str | Metric] = DEFAULT_METRICS, *, match: str = "path",
                    allow_missing: bool = False, size_mismatch: str | None = None,
                    out: str | os.PathLike | None = None, batch_size: int = 16,
                    device: str | torch.device | None = "auto", workers: int | None = None,
                    progress: bool = False, max_pixels: int | None = None) -> pd.DataFrame:
    """Compare every image of ``dir_a`` with its counterpart in ``dir_b``: a pandas DataFrame.

    One row per pair: ``a`` and ``b`` (paths relative to their folders, extensions included, as
    text: :func:`percepmetric.io.name_text`, the name itself unless it holds bytes that are not
    UTF-8 or a backslash) and one column per metric (names, or :class:`~percepmetric.metrics.base.Metric` objects
    built with any options) holding the metric's own value (PSNR in dB, SSIM as a similarity,
    LPIPS as a distance; NaN where the metric could not run). Rows are in the order of A's
    relative paths. ``df.attrs`` holds:

    * ``"summary"``: one dict per metric (``pd.DataFrame(df.attrs["summary"])`` makes it a table;
      plain values, not a DataFrame, so that ``pd.concat`` of such frames still works):
      ``metric``, ``unit``, ``n`` (pairs with a finite value), ``mean`` and its 95% bootstrap
      interval ``ci_low``, ``ci_high`` over those (1000 resamples, seed 0), ``infinite`` (e.g.
      PSNR of identical images) and ``not_applicable`` (pairs the metric could not take);
      ``reason`` says why.
    * ``"only_a"``, ``"only_b"``: files skipped under ``allow_missing``.

    ``match``: ``"path"`` or ``"stem"``. ``size_mismatch``: None (pairs of different sizes are
    an error), ``"resize"`` (B to A's size) or ``"crop"`` (the centre of both at the common
    size). ``out``: also write the table (``.csv``, or ``.json``) and the summary beside it
    (:func:`summary_path`), atomically; the run keeps finished chunks in
    :func:`resume_folder` and a rerun after an interruption computes only what is missing.
    ``workers`` threads decode images (default: the usable CPUs, at most 8). ``max_pixels``: an
    image whose header claims more pixels is refused before decoding (default:
    :func:`percepmetric.io.max_pixels_limit`). The output paths (``out``, its summary and its
    resume folder) are checked before any work.
    Under torchrun each rank computes its share of the chunks and returns the whole table; only
    rank 0 writes ``out``.
    """
    built = _build_metrics(metrics)
    torch_device = distributed.rank_device(resolve_device(device))
    limit = max_pixels_limit(max_pixels)
    target = check_outputs(out) if out is not None else None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise InputError(f"--batch-size {batch_size!r}: must be a whole number")
    found = match_folders(dir_a, dir_b, match=match, allow_missing=allow_missing, workers=workers,
                          max_pixels=limit)
    _check_sizes(found.pairs, size_mismatch)
    built = [metric.to(torch_device).eval() for metric in built]
    identities = [content_identity(metric.spec, metric.weight_files) for metric in built]
    chunks = plan_chunks(found.pairs, batch_size, size_mismatch, identities)
    state = resume_folder(target) if target is not None else None
    with distributed.process_group(torch_device) as group:
        mine = distributed.shard(list(enumerate(chunks)), group)
        part = distributed.run_part(group, lambda: _compute_part(
            mine, found.pairs, built, size_mismatch, torch_device, decoding_threads(workers), state,
            progress and group.is_main, limit))
        values = np.full((len(found.pairs), len(built)), np.nan)
        reasons: list[str | None] = [None] * len(built)
        for rank_part in distributed.all_gather(group, part):
            for position, result in rank_part.items():
                values[list(chunks[position].indices)] = result.values
                for column, reason in enumerate(result.reasons):
                    reasons[column] = reasons[column] or reason
        table = _table(found.pairs, unique_labels(built), values)
        table.attrs["summary"] = _summary(built, unique_labels(built), values, reasons)
        table.attrs["only_a"] = [name_text(n) for n in found.only_a]
        table.attrs["only_b"] = [name_text(n) for n in found.only_b]
        if target is not None and state is not None:
            distributed.run_part(group, lambda: _write_outputs(table, target) if group.is_main else None)
            shutil.rmtree(state, ignore_errors=True)  # each machine's own, or the one they share
    return table


def _compute_part(mine: Sequence[tuple[int, Chunk]], pairs, metrics: Sequence[Metric], size_mismatch: str | None,
                  device: torch.device, workers: int, state: Path | None,
                  progress: bool, max_pixels: int) -> dict[int, ChunkValues]:
    """This rank's chunks' values by chunk position: read from the resume folder ``state`` when a
    previous run saved them, computed (and saved there at once) otherwise."""
    done: dict[int, ChunkValues] = {}
    missing = [(position, chunk) for position, chunk in mine]
    if state is not None:
        state.mkdir(exist_ok=True)
        for _, chunk in mine:
            # A kill during an atomic write leaves these. Each rank clears only its own chunks'
            # temporaries: another rank may be writing its chunks right now.
            for stale in state.glob(f".chunk-{chunk.key}.npz.*.tmp"):
                stale.unlink(missing_ok=True)
        missing = []
        for position, chunk in mine:
            saved = _read_chunk(state, chunk, len(metrics))
            if saved is None:
                missing.append((position, chunk))
            else:
                done[position] = saved
    positions = {chunk.key: position for position, chunk in missing}
    total = sum(len(chunk.indices) for _, chunk in mine)
    bar = _progress_bar(total, total - sum(len(chunk.indices) for _, chunk in missing), progress)
    try:
        for chunk, result in _run_chunks([chunk for _, chunk in missing], pairs, metrics, size_mismatch, device,
                                         workers, max_pixels):
            if state is not None:
                _write_chunk(state, chunk, result)
            done[positions[chunk.key]] = result
            bar.update(len(chunk.indices))
    finally:
        bar.close()
    return done


def _write_outputs(table: pd.DataFrame, target: Path) -> None:
    import pandas as pd

    write_table(table, target)
    write_table(pd.DataFrame(table.attrs["summary"]), summary_path(target))


def _table(pairs, labels: Sequence[str], values: np.ndarray) -> pd.DataFrame:
    import pandas as pd

    columns: dict[str, Any] = {"a": [name_text(a.relative) for a, _ in pairs],
                               "b": [name_text(b.relative) for _, b in pairs]}
    columns.update({label: values[:, k] for k, label in enumerate(labels)})
    return pd.DataFrame(columns)


def _summary(metrics: Sequence[Metric], labels: Sequence[str], values: np.ndarray,
             reasons: Sequence[str | None]) -> list[dict[str, Any]]:
    rows = []
    for k, (metric, label) in enumerate(zip(metrics, labels)):
        column = values[:, k]
        finite = column[np.isfinite(column)]
        mean = float(finite.mean()) if len(finite) else math.nan
        low, high = (stats.bootstrap_ci(np.mean, finite, n_boot=1000, seed=0) if len(finite) > 1
                     else (math.nan, math.nan))
        rows.append({"metric": label, "unit": metric.unit, "n": len(finite), "mean": mean, "ci_low": low,
                     "ci_high": high, "infinite": int(np.isinf(column).sum()),
                     "not_applicable": int(np.isnan(column).sum()), "reason": reasons[k] or ""})
    return rows


def json_records(rows: pd.DataFrame | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A table's rows (a DataFrame, or dicts) as plain dicts for JSON, which has no infinity or
    NaN: non-finite numbers become null."""
    records = rows.to_dict(orient="records") if hasattr(rows, "to_dict") else [dict(row) for row in rows]
    for record in records:
        for key, value in record.items():
            if isinstance(value, float) and not math.isfinite(value):
                record[key] = None
            elif isinstance(value, np.integer):
                record[key] = int(value)
    return records


def write_table(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``frame`` atomically as CSV, or as a JSON list of rows when ``path`` ends in ``.json``
    (non-finite numbers as null; in CSV an infinite value is ``inf`` and NaN an empty field).
    Both are UTF-8. In CSV, a text cell (or column name) that a spreadsheet would run as a
    formula gets a ``'`` in front (:func:`percepmetric.io.csv_cell`); numbers are written as
    they are."""
    import pandas as pd

    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        if path.suffix.lower() == ".json":
            tmp.write_text(json.dumps(json_records(frame), indent=1, allow_nan=False) + "\n", encoding="utf-8")
        else:
            safe = frame.rename(columns=lambda c: csv_cell(c) if isinstance(c, str) else c)
            for column in safe.columns:
                if not pd.api.types.is_numeric_dtype(safe[column]):
                    safe[column] = safe[column].map(csv_cell)
            safe.to_csv(tmp, index=False, encoding="utf-8")
    return path
