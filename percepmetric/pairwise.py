"""Distance matrices: every image of one set against every image of another (or of itself).

``pairwise(x, y=None, metric="lpips", **options)`` returns the ``(N, M)`` matrix whose entry
``[i, j]`` is ``percepmetric.distance(x[i], y[j], metric, **options)``: the metric's *distance
form* (``metric.to_distance`` of its value: LPIPS as it is, DSSIM ``(1 - SSIM) / 2`` for SSIM,
the MSE of the images scaled to [0, 1] for PSNR), so that a matrix entry and a ``distance``
call on the same pair agree (within 1e-6). ``y=None`` compares ``x`` with itself: ``N x N``,
with a diagonal of exact zeros, and for a symmetric metric (``metric.symmetric``) only the
upper triangle is computed and mirrored, so the matrix is exactly symmetric (for one whose ``x``
is the reference, entry ``[i, j]`` has image ``i`` as reference). Pairs of identical images are
exact zeros wherever they are.

Three ways of computing, chosen by the metric:

* **Embedding metrics** (LPIPS: ``metric.pair_embedding``): the distance is a squared Euclidean
  distance between per-image rows ``e_i`` (unit-normalised trunk features times
  ``sqrt(w_l / (H_l W_l))``). Each image goes through the trunk once (``N + M`` passes, not
  ``N * M``), in batches of ``batch_size``; then each tile of the matrix is
  ``|e_i|^2 + |e_j|^2 - 2 e_i . e_j``, one matrix product per tile, in float64 (float32 would
  lose about 1e-5 to cancellation). Memory: the embeddings, ``(N + M) * K * 4`` bytes
  (``K`` = 31,872 for AlexNet at 64x64: 125 KiB per image, 1.3 GB for 10,000 images), plus per
  tile ``2 * T * K * 8 + T^2 * 8`` bytes for a ``T x T`` tile; ``T`` is the largest that fits
  ``memory_budget`` (256 MB by default: ``T`` = 526 for AlexNet at 64x64).
* **Feature-statistics metrics** (DISTS: ``metric.pair_features``): the distance is not a
  Euclidean one, but every pair term is a per-channel function of each image's means and
  variances and of the two images' covariances, which are spatial dot products of centred
  features. Each image's row (``K`` values: 514,950 for DISTS at 64x64, 2 MB in float32; 33 MB
  at 256x256) comes from one trunk pass; a ``T x T`` tile is one batched matrix product per
  feature set over views of the kept rows (float32, no copy), then the formula in float64:
  ``44 * 1475 * T^2`` bytes within ``memory_budget`` (``T`` = 64 by default). Rows are kept a
  *row block* at a time: when the rows of both sets fit ``feature_budget`` (1 GiB by default:
  about 500 images at 64x64, 31 at 256x256) the block is the whole set, and the trunk runs
  ``N + M`` times (``N`` for ``y=None``); otherwise blocks of ``B = feature_budget / (K * 4) - T``
  rows (rounded down to a multiple of ``T``, at least ``T``) are computed in turn and, for each,
  the columns it meets ``T`` at a time: ``N + ceil(N / B) * M`` trunk passes (about
  ``N + N^2 / (2B)`` for ``y=None``), against the ``2 N M`` (``N^2``) of the per-pair path.
* **Formula metrics** (L2, PSNR, SSIM, ...): the pairs of a ``T x T`` tile are laid out as two
  batches of ``T^2`` images and go through the metric in one call (no Python loop over pairs).
  A pair costs about ``2 * C * H * W * 4 * 12`` bytes with the metric's temporaries, and ``T`` is
  the largest tile whose pairs fit ``memory_budget``.

``tile_size`` overrides ``T`` (tiles change nothing but memory and speed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from .distributed import Group, all_gather, shard
from .errors import InputError
from .functional import private_metric
from .io import UNIT_RANGE, ImageLike, as_batch, content_digest, is_coded, read_image_header, to_value_range
from .metrics.base import Metric, check_pair

__all__ = ["pairwise", "ImageSet", "DEFAULT_MEMORY_BUDGET", "DEFAULT_FEATURE_BUDGET"]

#: What one tile of the computation may hold, in bytes (see the module docstring).
DEFAULT_MEMORY_BUDGET = 256 * 2**20
#: What the kept per-image rows of a feature-statistics metric (DISTS) may hold, in bytes.
DEFAULT_FEATURE_BUDGET = 2**30
#: Bytes a formula metric holds per pair, as a multiple of the two images' bytes (SSIM's
#: filtered maps are the largest of the registered metrics' temporaries).
FORMULA_OVERHEAD = 12

#: One image set: a batch tensor ``(N,C,H,W)`` / ``(N,H,W,C)`` array, or a sequence of anything
#: :func:`percepmetric.io.as_batch` reads as one image (paths, arrays, PIL images, tensors).
ImageSet = torch.Tensor | np.ndarray | Sequence[ImageLike]
Progress = Callable[[int, int], None]


def pairwise(
    x: ImageSet,
    y: ImageSet | None = None,
    metric: str | Metric = "lpips",
    *,
    batch_size: int = 64,
    tile_size: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    feature_budget: int = DEFAULT_FEATURE_BUDGET,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
    split: Group | None = None,
    **options: Any,
) -> torch.Tensor:
    """The ``(N, M)`` matrix of ``distance(x[i], y[j], metric, **options)``; ``N x N`` for ``y=None``.

    ``x``, ``y``: a tensor ``(N,C,H,W)`` (or ``(N,H,W,C)`` NumPy array), or a list of paths,
    arrays, PIL images or single-image tensors; every image of both sets must have the same
    height and width (one :class:`InputError` line names the first that differs). Lists of
    files are read ``batch_size`` at a time for embedding metrics, so only the embeddings stay
    in memory. ``metric``: a registry name, with ``options`` for it (``net="vgg"``,
    ``convention="lpips"``, ...), or a metric object already built (then no ``options``).

    ``feature_budget``: bytes of per-image rows a feature-statistics metric (DISTS) keeps at
    once; beyond it, rows are recomputed per row block (see the module docstring).

    ``device``: where to compute (default: the device of a tensor input, else the CPU).
    ``progress(done, total)`` is called as work advances (trunk batches, then tiles).
    The result is on that device, in the dtype ``distance`` would give (float32 for float32
    or uint8 inputs). See the module docstring for the memory each tile takes.

    ``split``: a :class:`~percepmetric.distributed.Group` whose process group is joined (as
    ``percepmetric matrix`` does under torchrun): every rank of it must call ``pairwise`` with
    the same arguments; rank ``r`` computes the trunk batches and tiles ``r, r + world, ...``
    and every rank returns the whole matrix, equal to one process's.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"pairwise: batch_size must be a positive integer, got {batch_size!r}")
    if tile_size is not None and (not isinstance(tile_size, int) or tile_size < 1):
        raise InputError(f"pairwise: tile_size must be a positive integer, got {tile_size!r}")
    for name, budget in (("memory_budget", memory_budget), ("feature_budget", feature_budget)):
        if not isinstance(budget, int) or budget < 1:
            raise InputError(f"pairwise: {name} must be a positive number of bytes, got {budget!r}")
    same = y is None
    rows = _Images(x, "x")
    cols = rows if y is None else _Images(y, "y")
    if not same:
        _check_same_size(rows, cols)
    target = torch.device(device) if device is not None else (rows.device or cols.device or torch.device("cpu"))
    if isinstance(metric, Metric):
        if options:
            raise InputError(f"pairwise: options {sorted(options)} go with a metric name, not a built metric")
        # The user's metric is used where they put it, never moved.
        placed = metric.placement[0]
        if placed is not None and device is not None and torch.device(device) != placed:
            raise InputError(f"pairwise: device {device} differs from the device the metric was moved to ({placed})")
        target = placed if placed is not None else target
        m = metric
    else:
        m = private_metric(metric, options, target)
    if getattr(m, "spatial", False):
        raise InputError("pairwise: option spatial gives a distance map per pair, not a number")
    rows.value_range = cols.value_range = m.value_range  # integer codes span the metric's input range
    # a symmetric distance (Metric.symmetric): the upper triangle of x against itself suffices
    symmetric = same and m.symmetric
    if hasattr(m, "pair_embedding"):
        matrix = _embedding_matrix(m, rows, cols, same, symmetric, target, batch_size, tile_size,
                                   memory_budget, progress, split or Group())
    elif hasattr(m, "pair_features"):
        matrix = _statistics_matrix(m, rows, cols, same, symmetric, target, batch_size, tile_size,
                                    (memory_budget, feature_budget), progress, split or Group())
    else:
        matrix = _formula_matrix(m, rows, cols, same, symmetric, target, tile_size, memory_budget, progress,
                                 split or Group())
    _zero_identical_pairs(matrix, rows, cols, same)
    return matrix


# ---------------------------------------------------------------- image sets


class _Images:
    """One image set, read lazily: ``len``, ``size`` (H, W), ``batches(n)`` and ``all()``.

    A tensor or array batch is converted once; a list is read item by item, so a folder of
    files is decoded ``n`` at a time. Integer codes (files, uint8 data) are handed out in
    ``value_range``, the metric's declared input range (set once the metric is known). Each
    image's content digest is kept as it is read, to find identical images (their distance is
    exactly 0).
    """

    def __init__(self, images: ImageSet, label: str) -> None:
        self.label = label
        self.device: torch.device | None = None
        self.batch: torch.Tensor | None = None
        self.batch_coded = False
        self.value_range: tuple[float, float] = UNIT_RANGE
        self.items: list[Any] = []
        if isinstance(images, (torch.Tensor, np.ndarray)):
            self.batch = as_batch(images, label)
            self.batch_coded = is_coded(images)
            self.device = self.batch.device if isinstance(images, torch.Tensor) else None
            count = self.batch.shape[0]
        elif isinstance(images, (str, os.PathLike)):
            raise InputError(f"{label}: give a list of images (or a batch tensor), not one path")
        else:
            self.items = list(images)
            count = len(self.items)
            self.device = next((i.device for i in self.items if isinstance(i, torch.Tensor)), None)
        if count == 0:
            raise InputError(f"{label}: no images")
        self.count = count
        self.digests: list[str | None] = [None] * count
        self.size = self._common_size()

    def __len__(self) -> int:
        return self.count

    def name(self, index: int) -> str:
        item = self.items[index] if self.items else None
        return str(item) if isinstance(item, (str, os.PathLike)) else f"{self.label}[{index}]"

    def _common_size(self) -> tuple[int, int]:
        """(H, W) of every image (read from file headers for paths), or one InputError line."""
        if self.batch is not None:
            return (self.batch.shape[-2], self.batch.shape[-1])
        sizes = (_image_size(item, self.name(i)) for i, item in enumerate(self.items))
        first = next(sizes)
        for index, size in enumerate(sizes, start=1):
            if size != first:
                raise InputError(f"{self.name(index)}: size {size[1]}x{size[0]} differs from {self.name(0)} "
                                 f"({first[1]}x{first[0]}); every image must have the same size")
        return first

    def batches(self, n: int, device: torch.device) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, (b,C,H,W) float tensor on device)`` for consecutive runs of ``n`` images."""
        for start in range(0, self.count, n):
            yield start, self._read(start, min(start + n, self.count), device)

    def part(self, start: int, stop: int, n: int, device: torch.device) -> Iterator[torch.Tensor]:
        """Images ``start:stop``, ``n`` at a time, as :meth:`batches` gives them."""
        for first in range(start, stop, n):
            yield self._read(first, min(first + n, stop), device)

    def _read(self, start: int, stop: int, device: torch.device) -> torch.Tensor:
        if self.batch is not None:
            part = self.batch[start:stop]
            part = to_value_range(part, self.value_range) if self.batch_coded else part
        else:
            images = [_one_image(self.items[i], self.name(i), self.value_range) for i in range(start, stop)]
            if any(image.shape[1] == 3 for image in images):  # grey among colour: repeated to RGB
                images = [image.expand(-1, 3, -1, -1) for image in images]
            part = torch.cat(images)
        self._note_digests(start, part)
        return part.to(device)

    def read_digests(self) -> None:
        """Read the images whose digest is not known yet (for :func:`_zero_identical_pairs`)."""
        for index, digest in enumerate(self.digests):
            if digest is None:
                self._read(index, index + 1, torch.device("cpu"))  # notes the digest as every read does

    def all(self, device: torch.device) -> torch.Tensor:
        return torch.cat([part for _, part in self.batches(max(self.count, 1), device)])

    def _note_digests(self, start: int, part: torch.Tensor) -> None:
        flat = part.detach().to("cpu").contiguous()
        for offset in range(flat.shape[0]):
            if self.digests[start + offset] is None:
                data = flat[offset].numpy().tobytes() + str(tuple(flat[offset].shape)).encode()
                self.digests[start + offset] = content_digest(data)


def _one_image(item: Any, name: str, value_range: tuple[float, float] = UNIT_RANGE) -> torch.Tensor:
    batch = as_batch(item, name, value_range)
    if batch.shape[0] != 1:
        raise InputError(f"{name}: each item of an image list must be one image, got a batch of {batch.shape[0]}")
    return batch


def _image_size(item: Any, name: str) -> tuple[int, int]:
    """(H, W) of one list item; files are sized from their header, without decoding."""
    if isinstance(item, (str, os.PathLike)):
        header = read_image_header(item)  # checked against the pixel limit; one line on any problem
        return (header.height, header.width)
    if isinstance(item, torch.Tensor):
        return (item.shape[-2], item.shape[-1])
    batch = as_batch(item, name)  # arrays and PIL images: channel-last, as_batch knows the layout
    return (batch.shape[-2], batch.shape[-1])


def _check_same_size(rows: _Images, cols: _Images) -> None:
    if rows.size != cols.size:
        (h, w), (h0, w0) = cols.size, rows.size
        raise InputError(f"{cols.name(0)}: size {w}x{h} differs from {rows.name(0)} ({w0}x{h0}); "
                         "every image of both sets must have the same size")


# ---------------------------------------------------------------- the ways of computing


def _tiles(n: int, m: int, tile: int, upper_only: bool) -> list[tuple[slice, slice]]:
    """The ``tile x tile`` blocks covering an ``n x m`` matrix; for ``upper_only`` only the
    blocks on or above the diagonal (the rest is mirrored)."""
    blocks = []
    for i in range(0, n, tile):
        for j in range(i if upper_only else 0, m, tile):
            blocks.append((slice(i, min(i + tile, n)), slice(j, min(j + tile, m))))
    return blocks


def _fill(matrix: torch.Tensor, rows: slice, cols: slice, block: torch.Tensor, symmetric: bool) -> None:
    """Write one computed block; for a symmetric matrix also its mirror image. A block on the
    diagonal keeps its upper triangle only, mirrored, so the matrix is exactly symmetric."""
    if symmetric and rows == cols:
        upper = torch.triu(block, diagonal=1)
        block = upper + upper.T
    matrix[rows, cols] = block
    if symmetric and rows != cols:
        matrix[cols, rows] = block.T


def _output_dtype(reference: torch.Tensor) -> torch.dtype:
    return torch.promote_types(reference.dtype, torch.float32)


def _embedding_matrix(m: Metric, rows: _Images, cols: _Images, same: bool, symmetric: bool, device: torch.device,
                      batch_size: int, tile_size: int | None, budget: int, progress: Progress | None,
                      split: Group) -> torch.Tensor:
    """Embedding metrics: one trunk pass per image, then the squared distances of the rows of
    the embeddings, tile by tile (see the module docstring). Split over ranks, each rank runs
    its share of the trunk batches (all ranks still read every image, for the digests) and of
    the tiles; the parts are gathered on every rank."""
    trunk_batches = math.ceil(len(rows) / batch_size) + (0 if same else math.ceil(len(cols) / batch_size))
    blocks: list[tuple[slice, slice]] = []
    done = 0

    def embed(images: _Images) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal done, blocks
        parts: dict[int, torch.Tensor] = {}
        for number, (_, part) in enumerate(images.batches(batch_size, device)):
            if number % split.world != split.rank:
                continue
            parts[number] = m.pair_embedding(part)  # type: ignore[operator]
            done += 1
            if progress is not None:
                progress(done, trunk_batches + len(blocks))
        embedding = torch.cat([part.to(device) for _, part in sorted(_gathered(split, parts).items())])
        if not blocks:  # the tile size follows from the embedding's length K
            tile = tile_size or max(1, int(budget // (16 * embedding.shape[1] + 8)))
            blocks = _tiles(len(rows), len(cols), tile, symmetric)
        return embedding, embedding.double().square().sum(dim=1)

    ex, norms_x = embed(rows)
    ey, norms_y = (ex, norms_x) if same else embed(cols)
    total = trunk_batches + len(blocks)
    matrix = torch.empty((len(rows), len(cols)), dtype=_output_dtype(ex), device=device)
    computed: dict[int, torch.Tensor] = {}
    for number, (r, c) in shard(list(enumerate(blocks)), split):
        gram = ex[r].double() @ ey[c].double().T
        block = (norms_x[r, None] + norms_y[None, c] - 2.0 * gram).clamp_min_(0.0).to(matrix.dtype)
        _keep(matrix, blocks, number, block, symmetric, split, computed)
        done += 1
        if progress is not None:
            progress(done, total)
    _fill_gathered(matrix, blocks, split, computed, symmetric)
    return matrix


#: Bytes per channel and pair a feature-statistics tile holds: the float32 covariances of the
#: matrix product and five float64 ``channels x T x T`` tensors (covariances, structure,
#: texture, two temporaries of the formula). The rows themselves are views of the kept ones.
STATISTICS_TILE_BYTES = 4 + 5 * 8


def _statistics_tile(channels: int, budget: int) -> int:
    """The largest ``T`` with ``44 * channels * T^2 <= budget`` (see the module docstring)."""
    return max(1, math.isqrt(budget // (STATISTICS_TILE_BYTES * channels)))


def _statistics_matrix(m: Metric, rows: _Images, cols: _Images, same: bool, symmetric: bool, device: torch.device,
                       batch_size: int, tile_size: int | None, budgets: tuple[int, int], progress: Progress | None,
                       split: Group) -> torch.Tensor:
    """Feature-statistics metrics (DISTS): per-image rows from one trunk pass each, kept a row
    block at a time; each ``T x T`` tile from the rows of its images (``metric.pair_distances``).

    Row blocks are computed by every rank together (rank ``r`` runs the trunk batches ``r, r +
    world, ...`` of the block; the parts are gathered), so ranks go through the row blocks in
    the same order. The work inside a block, one *unit* per column chunk of ``T`` images (its
    columns' rows computed once for all the block's tiles), is shared round-robin: a unit's
    column rows are computed by the rank that owns it (see the module docstring for the count).
    """
    budget, feature_budget = budgets
    height, width = rows.size
    row_values = m.pair_feature_length(height, width)  # type: ignore[operator]
    input_dtype = rows.batch.dtype if rows.batch is not None else torch.float32  # files: float32
    row_bytes = row_values * torch.promote_types(input_dtype, torch.float32).itemsize
    n, k = len(rows), len(cols)
    tile = tile_size or _statistics_tile(max(getattr(m, "pair_channels", 1), 1), budget)
    if (n + (0 if same else k)) * row_bytes <= feature_budget:
        block = n  # every row at once; the columns of another set are computed once each, by chunk
    else:
        block = max(tile, (feature_budget // row_bytes - tile) // tile * tile)
    blocks = _tiles(n, k, tile, symmetric)
    units: dict[tuple[int, int], list[int]] = {}  # (row block start, column chunk start) -> tile numbers
    for number, (r, c) in enumerate(blocks):
        units.setdefault((r.start // block * block, c.start), []).append(number)
    mine = shard(list(units.items()), split)
    own_row_batches = sum(len(shard(list(range(start, min(start + block, n), batch_size)), split))
                          for start in range(0, n, block))
    total = own_row_batches + sum(len(numbers) for _, numbers in mine)
    done = 0
    matrix: torch.Tensor | None = None
    computed: dict[int, torch.Tensor] = {}

    def features(images: _Images, start: int, stop: int, shared: bool) -> torch.Tensor:
        """Rows of images ``start:stop``; ``shared``: computed together by every rank."""
        nonlocal done
        parts: dict[int, torch.Tensor] = {}
        for number, part in enumerate(images.part(start, stop, batch_size, device)):
            if shared and number % split.world != split.rank:
                continue
            parts[number] = m.pair_features(part)  # type: ignore[operator]
            if shared:
                done += 1
                if progress is not None:
                    progress(done, total)
        gathered = _gathered(split, parts) if shared else parts
        return torch.cat([part.to(device) for _, part in sorted(gathered.items())])

    for row_start in range(0, n, block):
        row_stop = min(row_start + block, n)
        row_features = features(rows, row_start, row_stop, shared=True)
        if matrix is None:
            matrix = torch.empty((n, k), dtype=_output_dtype(row_features), device=device)
        for (unit_rows, column_start), numbers in mine:
            if unit_rows != row_start:
                continue
            column_stop = blocks[numbers[0]][1].stop
            if same and row_start <= column_start and column_stop <= row_stop:
                column_features = row_features[column_start - row_start:column_stop - row_start]
            else:
                column_features = features(cols, column_start, column_stop, shared=False)
            for number in numbers:
                r, c = blocks[number]
                values = m.pair_distances(  # type: ignore[operator]
                    row_features[r.start - row_start:r.stop - row_start],
                    column_features[c.start - column_start:c.stop - column_start], (height, width))
                _keep(matrix, blocks, number, values.to(matrix.dtype), symmetric, split, computed)
                done += 1
                if progress is not None:
                    progress(done, total)
    assert matrix is not None  # n >= 1: at least one row block
    if not same:
        cols.read_digests()  # chunks computed by other ranks were not read here
    _fill_gathered(matrix, blocks, split, computed, symmetric)
    return matrix


def _keep(matrix: torch.Tensor, blocks: Sequence[tuple[slice, slice]], number: int, block: torch.Tensor,
          symmetric: bool, split: Group, computed: dict[int, torch.Tensor]) -> None:
    """One process fills its block at once (memory stays one matrix); a rank keeps it to share."""
    if split.active:
        computed[number] = block
    else:
        _fill(matrix, *blocks[number], block, symmetric)


def _fill_gathered(matrix: torch.Tensor, blocks: Sequence[tuple[slice, slice]], split: Group,
                   computed: dict[int, torch.Tensor], symmetric: bool) -> None:
    """Every rank's blocks into ``matrix`` (nothing to do outside torchrun: :func:`_keep` filled them)."""
    if not split.active:
        return
    for number, block in _gathered(split, computed).items():
        _fill(matrix, *blocks[number], block.to(matrix.device), symmetric)


def _gathered(split: Group, parts: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Every rank's ``{number: tensor}`` merged (on the CPU for the exchange); ``parts`` itself
    outside torchrun."""
    if not split.active:
        return parts
    merged: dict[int, torch.Tensor] = {}
    for rank_parts in all_gather(split, {n: t.cpu() for n, t in parts.items()}):
        merged.update(rank_parts)
    return merged


def _formula_matrix(m: Metric, rows: _Images, cols: _Images, same: bool, symmetric: bool, device: torch.device,
                    tile_size: int | None, budget: int, progress: Progress | None, split: Group) -> torch.Tensor:
    """Formula metrics: each tile's pairs laid out as two batches, one metric call per tile;
    split over ranks, each computes its share of the tiles and they are gathered on every rank."""
    xs = rows.all(device)
    ys = xs if same else cols.all(device)
    if xs.shape[1] != ys.shape[1]:  # a grey set against a colour one: grey repeated to RGB
        xs, ys = xs.expand(-1, 3, -1, -1), ys.expand(-1, 3, -1, -1)
    # Validate each set once here, so that the tiles' errors cannot name a pair layout.
    check_pair(xs, xs, value_range=m.value_range, channels=m.channels, min_size=m.min_size, metric=m.name)
    if not same:
        check_pair(ys, ys, value_range=m.value_range, channels=m.channels, min_size=m.min_size, metric=m.name)
    pair_bytes = 2 * xs[0].numel() * xs.element_size() * FORMULA_OVERHEAD
    tile = tile_size or max(1, math.isqrt(max(1, budget // pair_bytes)))
    blocks = _tiles(len(rows), len(cols), tile, symmetric)
    matrix = torch.empty((len(rows), len(cols)), dtype=_output_dtype(xs), device=device)
    mine = shard(list(enumerate(blocks)), split)
    computed: dict[int, torch.Tensor] = {}
    for done, (number, (r, c)) in enumerate(mine, start=1):
        a, b = xs[r], ys[c]
        first = a.repeat_interleave(b.shape[0], dim=0)
        second = b.repeat(a.shape[0], 1, 1, 1)
        block = m.to_distance(m.values(first, second)).reshape(a.shape[0], b.shape[0]).to(matrix.dtype)
        _keep(matrix, blocks, number, block, symmetric, split, computed)
        if progress is not None:
            progress(done, len(mine))
    _fill_gathered(matrix, blocks, split, computed, symmetric)
    return matrix


def _zero_identical_pairs(matrix: torch.Tensor, rows: _Images, cols: _Images, same: bool) -> None:
    """Exact zeros on the diagonal of a set against itself and for every pair of identical
    images (``distance`` gives 0 for ``x == y``; float rounding would leave ~1e-9)."""
    if same:
        matrix.fill_diagonal_(0.0)
    where: dict[str | None, list[int]] = {}
    for j, digest in enumerate(cols.digests):
        where.setdefault(digest, []).append(j)
    for i, digest in enumerate(rows.digests):
        if digest is not None and digest in where:
            matrix[i, where[digest]] = 0.0
