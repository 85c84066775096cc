"""Saving and loading checkpoints: atomic writes, and loads that never run code.

Every ``.pt`` file a user hands in (a run's ``latest.pt``/``last.pt``/``final.pt``, a
``--weights`` file, ``bench --model deepsim:FILE``) is read with
``torch.load(weights_only=True)``: tensors, numbers, strings, lists, tuples and dicts only.
A file that needs anything else (a pickled object whose ``__reduce__`` would run a command)
is refused with one line, and nothing in it runs. So checkpoints store their random-number
states as tensors and plain lists (:func:`numpy_rng_state`), never as pickled objects.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError, WeightsNotFoundError
from .io import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint_file", "remove_stale_temporaries",
           "numpy_rng_state", "set_numpy_rng_state"]


def save_checkpoint(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_weight_file(path: Path, *, what: str, missing: str, format: str | None = None) -> dict[str, Any]:
    """A weight file's tensors, read without running code (:func:`load_checkpoint_file`), or
    :class:`~percepmetric.errors.WeightsNotFoundError` with the message ``missing`` (where the
    file comes from) when ``path`` is absent: what every loader of pretrained weights does first."""
    if not path.is_file():
        raise WeightsNotFoundError(missing)
    return load_checkpoint_file(path, format=format, what=what)


def load_checkpoint_file(path: str | os.PathLike, *, format: str | None, required: Iterable[str] = (),
                         what: str = "percepmetric checkpoint") -> dict[str, Any]:
    """Read a checkpoint dict written by :func:`save_checkpoint`, without running any code.

    :class:`InputError` naming the file when it is absent, unreadable, holds pickled objects
    (refused, not run), is not a dict with ``format`` equal to ``format``, or lacks one of the
    ``required`` keys. ``format=None`` takes any dict: a weight file made elsewhere (the ``lpips``
    package's calibration), which has no ``format`` key.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refused a global: the file wants to build objects (and could run code).
        raise InputError(f"{path}: refused: the file holds pickled Python objects, not only tensors and plain "
                         f"data, so loading it could run code (not a {what})") from None
    except (OSError, EOFError, RuntimeError, ValueError, zipfile.BadZipFile, KeyError, AttributeError,
            IndexError, TypeError) as exc:
        raise InputError(f"{path}: not a readable checkpoint ({type(exc).__name__}; truncated or not a "
                         f"torch file?)") from None
    if not isinstance(ckpt, dict) or (format is not None and ckpt.get("format") != format):
        raise InputError(f"{path}: not a {what}")
    missing = [key for key in required if key not in ckpt]
    if missing:
        raise InputError(f"{path}: damaged {what}: missing {', '.join(repr(k) for k in missing)}")
    return ckpt


def remove_stale_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files that :func:`~percepmetric.io.atomic_path` leaves when a process
    is killed while writing ``folder/NAME`` (``.NAME.*.tmp``); returns what was removed.

    Call it only where one process owns ``folder`` (the start of a training run): another
    writer's temporary file would be removed under it.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for name in names:
        for tmp in folder.glob(f".{name}.*.tmp"):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def numpy_rng_state() -> dict[str, Any]:
    """NumPy's legacy global RNG state as a tensor and plain numbers (loads with ``weights_only``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64)),
            "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def set_numpy_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`numpy_rng_state` stored."""
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["kind"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"]))
