"""The Inception features of a set of images, at scale: what FID, KID and precision/recall are
computed from (:mod:`percepmetric.metrics.distribution`), for ``percepmetric fid`` and
:func:`percepmetric.fid`. It is done in the steps of :mod:`percepmetric.compare`:

* **listing**: a folder's images (recursively, sorted: :func:`percepmetric.io.list_image_files`),
  a list of files, or an (N, C, H, W) tensor. With a cache, each file's content hash is taken
  from its bytes (in threads) before any work.
* **chunks**: ``batch_size`` consecutive images, the unit of work, of caching and of sharing
  between processes. Chunks are cut the same way whatever the number of processes, so that each
  image meets the network in the same batch.
* **decoding ahead**: worker threads read each image, decode it and turn it into the network's
  299x299 input as the mode prescribes (:func:`~percepmetric.nets.inception.network_input`),
  on the CPU, while the network runs on the current chunk (on ``device``).
* **the cache** (``cache``: a folder; off by default in the API, on in the CLI): each chunk's
  features are saved at once, atomically, as ``<cache>/fid-features/<key>.npy`` (float32, the
  network's output exactly). ``key`` hashes what the features depend on: the content of each
  file of the chunk, in order, the network file's SHA-256, the mode, the network's dtype and
  device type and whether its batch norms are folded. A rerun, another run over some of the same
  images in the same chunks, or a run after an interruption reads the chunks it has; a damaged
  cache file is computed again. Each file is hashed again from the very bytes decoded, and a
  file that changed since the listing stops the run: its features would be saved under its old
  content.
* **several processes** (``torchrun --nproc-per-node N -m percepmetric fid ...``): chunk ``i``
  goes to rank ``i % N`` (:func:`percepmetric.distributed.shard`); the features are gathered on
  every rank in chunk order.

Part of the core: it imports only core modules.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed
from .devices import decoding_threads
from .errors import InputError
from .io import (
    atomic_path,
    list_image_files,
    printable_path,
    read_image_and_digest,
    read_image_array,
    read_image_header,
)
from .nets.inception import network_input
from .threads import side_by_side_pool

__all__ = ["ImageSet", "ExtractionSettings", "set_features", "check_image_set", "is_image_set"]

#: What a set of images may be: a folder, a list of image files, or an (N, C, H, W) tensor.
ImageSet = str | os.PathLike | Sequence[str | os.PathLike] | torch.Tensor
FEATURES = 2048
CACHE_FOLDER = "fid-features"
CACHE_FORMAT = 1


@dataclass(frozen=True)
class ExtractionSettings:
    """How features are extracted. ``workers``: decoding threads (None: the usable CPUs, at
    most 8). ``cache``: the cache's base folder (None: no cache). ``fold``: the network's batch
    norms folded into its convolutions (percepmetric's default; features within 1e-5)."""

    mode: str = "clean"
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    batch_size: int = 32
    workers: int | None = None
    cache: Path | None = None
    progress: bool = False
    max_pixels: int | None = None
    fold: bool = True


# ---------------------------------------------------------------- the images of a set


@dataclass(frozen=True)
class _Source:
    """A set's images: ``files`` (with ``digests`` when a cache is used) or a ``tensor``."""

    name: str
    files: tuple[Path, ...] = ()
    digests: tuple[str, ...] = ()
    tensor: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.tensor) if self.tensor is not None else len(self.files)


def is_image_set(obj: Any) -> bool:
    """Whether ``obj`` is one of the forms of :data:`ImageSet` (a folder path, a list of paths,
    a tensor), as opposed to saved statistics."""
    if isinstance(obj, torch.Tensor):
        return True
    if isinstance(obj, (str, os.PathLike)):
        return not Path(obj).is_file()
    return isinstance(obj, (list, tuple)) and all(isinstance(f, (str, os.PathLike)) for f in obj)


def _tensor_source(t: torch.Tensor, name: str) -> _Source:
    if t.ndim != 4 or t.shape[1] not in (1, 3):
        raise InputError(f"{name}: expected an (N, 3, H, W) image tensor, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        t = t.to(torch.float32)
    elif t.is_floating_point():
        if t.numel() and (not torch.isfinite(t).all() or t.min() < 0 or t.max() > 1):
            raise InputError(f"{name}: float images must lie in [0, 1] (uint8 tensors hold 0..255 codes)")
        t = t.to(torch.float32) * 255
    else:
        raise InputError(f"{name}: unsupported tensor dtype {t.dtype} (uint8, or float in [0, 1])")
    if len(t) == 0:
        raise InputError(f"{name}: no images")
    return _Source(name, tensor=t.detach().cpu())


def _digests(files: Sequence[Path], workers: int, max_pixels: int | None) -> tuple[str, ...]:
    """Each file's content hash (and its header checked: not an image, too large -> one line)."""
    with side_by_side_pool(workers) as pool:
        return tuple(pool.map(lambda f: read_image_header(f, max_pixels, digest=True).digest or "", files))


def _source(images: ImageSet, name: str, settings: ExtractionSettings) -> _Source:
    if isinstance(images, torch.Tensor):
        return _tensor_source(images, name)
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            what = "does not exist" if not folder.exists() else "is not a folder"
            raise InputError(f"{name}: {printable_path(folder)} {what} (give a folder of images, a list of files, "
                             f"a tensor or a statistics file)")
        files = tuple(folder / f for f in list_image_files(folder))
        if not files:
            raise InputError(f"{name}: {printable_path(folder)} holds no images")
    elif isinstance(images, (list, tuple)):
        files = tuple(Path(f) for f in images)
        if not files:
            raise InputError(f"{name}: the list of files is empty")
    else:
        raise InputError(f"{name}: expected a folder, a list of image files, an image tensor or saved statistics, "
                         f"got {type(images).__name__}")
    digests = () if settings.cache is None else _digests(files, decoding_threads(settings.workers),
                                                         settings.max_pixels)
    return _Source(name, files, digests)


def check_image_set(images: ImageSet, name: str) -> int:
    """How many images a set holds, checked without decoding anything (a folder is listed, a
    tensor's shape and range are checked): bad input is one line before the network is loaded."""
    return len(_source(images, name, ExtractionSettings()))


# ---------------------------------------------------------------- chunks and their cache


@dataclass(frozen=True)
class _Chunk:
    start: int
    stop: int
    key: str | None  # None: not cached


def _chunks(source: _Source, settings: ExtractionSettings, network_sha256: str) -> list[_Chunk]:
    if isinstance(settings.batch_size, bool) or not isinstance(settings.batch_size, int) or settings.batch_size < 1:
        raise InputError(f"--batch-size {settings.batch_size!r}: must be a whole number of at least 1")
    chunks = []
    for start in range(0, len(source), settings.batch_size):
        stop = min(start + settings.batch_size, len(source))
        key = None
        if settings.cache is not None and source.digests:
            text = json.dumps({"files": source.digests[start:stop], "network": network_sha256, "mode": settings.mode,
                               "dtype": str(settings.dtype), "device": settings.device.type, "fold": settings.fold,
                               "format": CACHE_FORMAT})
            key = hashlib.sha1(text.encode()).hexdigest()[:32]
        chunks.append(_Chunk(start, stop, key))
    return chunks


def _cache_file(settings: ExtractionSettings, chunk: _Chunk) -> Path:
    assert settings.cache is not None and chunk.key is not None
    return settings.cache / CACHE_FOLDER / chunk.key[:2] / f"{chunk.key}.npy"


def _read_cached(settings: ExtractionSettings, chunk: _Chunk) -> np.ndarray | None:
    """A chunk's saved features, or None when absent, damaged or not what the key promises."""
    if chunk.key is None:
        return None
    try:
        features = np.load(_cache_file(settings, chunk), allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    if features.shape != (chunk.stop - chunk.start, FEATURES) or features.dtype != np.float32:
        return None
    return features if np.isfinite(features).all() else None


def _write_cached(settings: ExtractionSettings, chunk: _Chunk, features: np.ndarray) -> bool:
    """Save a chunk's features; False (after one line on stderr) when the cache cannot take
    them: a full or read-only cache costs speed, not the result."""
    if chunk.key is None:
        return True
    target = _cache_file(settings, chunk)
    try:
        with atomic_path(target) as tmp, open(tmp, "wb") as f:
            np.save(f, features)
    except OSError as exc:
        print(f"percepmetric: could not save features in the cache {printable_path(target.parent)} "
              f"({exc.strerror or type(exc).__name__}); going on without it", file=sys.stderr)
        return False
    return True


# ---------------------------------------------------------------- decoding ahead, the network


def _load(source: _Source, index: int, settings: ExtractionSettings) -> torch.Tensor:
    """Image ``index`` of the set as the network's (3, 299, 299) input (on the CPU)."""
    if source.tensor is not None:
        image = source.tensor[index]
    else:
        file = source.files[index]
        if source.digests:
            array, digest = read_image_and_digest(file, settings.max_pixels)
            if digest != source.digests[index]:
                raise InputError(f"{printable_path(file)}: changed while the job ran (its features would be cached "
                                 f"under its old content); run again")
        else:
            array = read_image_array(file, settings.max_pixels)
        scale = 255.0 / 65535.0 if array.dtype == np.uint16 else 1.0
        image = torch.from_numpy(np.array(array, dtype=np.float32)).permute(2, 0, 1)
        if scale != 1.0:
            image = image * scale
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return network_input(image, settings.mode)


def _progress_bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="image", file=sys.stderr, disable=not enabled,
                dynamic_ncols=True, smoothing=0.1)


def _run(chunks: Sequence[_Chunk], source: _Source, settings: ExtractionSettings,
         network: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[tuple[_Chunk, np.ndarray]]:
    """Each chunk's features, in order: the next two chunks' images are prepared in threads
    (each with single-threaded torch ops: :mod:`percepmetric.threads`) while the network runs."""
    pending: deque[tuple[_Chunk, list[Future]]] = deque()
    upcoming = iter(chunks)
    with side_by_side_pool(decoding_threads(settings.workers)) as pool:
        def submit_next() -> None:
            chunk = next(upcoming, None)
            if chunk is not None:
                pending.append((chunk, [pool.submit(_load, source, i, settings)
                                        for i in range(chunk.start, chunk.stop)]))

        try:
            for _ in range(2):
                submit_next()
            while pending:
                chunk, futures = pending.popleft()
                batch = torch.stack([future.result() for future in futures])
                submit_next()
                with torch.inference_mode():
                    out = network(batch.to(device=settings.device, dtype=settings.dtype))
                yield chunk, out.to(device="cpu", dtype=torch.float32).numpy()
        finally:
            for _, futures in pending:
                for future in futures:
                    future.cancel()


def _compute_part(mine: Sequence[tuple[int, _Chunk]], source: _Source, settings: ExtractionSettings,
                  network: Callable[[torch.Tensor], torch.Tensor], progress: bool) -> dict[int, np.ndarray]:
    """This rank's chunks' features by chunk position: from the cache when it holds them,
    computed (and saved there at once) otherwise."""
    done: dict[int, np.ndarray] = {}
    missing = []
    for position, chunk in mine:
        cached = _read_cached(settings, chunk)
        if cached is None:
            missing.append((position, chunk))
        else:
            done[position] = cached
    total = sum(chunk.stop - chunk.start for _, chunk in mine)
    bar = _progress_bar(total, total - sum(c.stop - c.start for _, c in missing), progress, f"{source.name} features")
    positions = {id(chunk): position for position, chunk in missing}
    caching = True
    try:
        for chunk, features in _run([chunk for _, chunk in missing], source, settings, network):
            caching = caching and _write_cached(settings, chunk, features)
            done[positions[id(chunk)]] = features
            bar.update(chunk.stop - chunk.start)
    finally:
        bar.close()
    return done


def set_features(images: ImageSet, settings: ExtractionSettings, network: Callable[[torch.Tensor], torch.Tensor],
                 network_sha256: str, name: str = "images") -> torch.Tensor:
    """The (N, 2048) pool features (float64, CPU) of ``images``, in the order of the set (a
    folder: its sorted relative paths). ``network``: the loaded FID Inception
    (:func:`~percepmetric.nets.inception.load_fid_inception`) on ``settings.device``;
    ``network_sha256``: its file's hash, for the cache keys. Under torchrun each rank computes
    its share of the chunks and every rank returns all features."""
    source = _source(images, name, settings)
    chunks = _chunks(source, settings, network_sha256)
    with distributed.process_group(settings.device) as group:
        mine = distributed.shard(list(enumerate(chunks)), group)
        part = distributed.run_part(group, lambda: _compute_part(mine, source, settings, network,
                                                                 settings.progress and group.is_main))
        features: dict[int, np.ndarray] = {}
        for rank_part in distributed.all_gather(group, part):
            features.update(rank_part)
    return torch.from_numpy(np.concatenate([features[i] for i in range(len(chunks))]).astype(np.float64))

