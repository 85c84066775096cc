"""Reading images and turning whatever the user holds into a float batch.

Conventions (the only place they are decided):

* **Tensors** are channel-first: ``(H,W)``, ``(C,H,W)`` or ``(N,C,H,W)``.
* **NumPy arrays and PIL images** are channel-last, as NumPy, PIL and scikit-image use
  them: ``(H,W)``, ``(H,W,C)`` or ``(N,H,W,C)``.
* Integer data is scaled to [0, 1]: uint8 by 255, uint16 by 65535. Float data is taken
  as it is (its range is checked later by the metric against its ``data_range``).
* **Files are read at their full depth**: 16-bit PNG and TIFF files, grey or colour, give
  uint16 samples (PIL reads 16-bit colour at 8 bits, so imagecodecs decodes those).
* **Alpha** is dropped (RGBA -> RGB, LA -> L), as PIL's ``convert("RGB")`` does and as
  the LPIPS and pyiqa loaders do, so numbers match theirs. Composite over a background
  yourself before calling if transparency matters to you.
* **Palette images** (GIF) are expanded; a palette whose entries are all grey gives a
  one-channel image (MATLAB's ``imread`` + ``ind2gray`` view of e.g. goldhill.gif).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import torch

from .errors import InputError

if TYPE_CHECKING:
    import PIL.Image

ImageLike = Union[torch.Tensor, np.ndarray, "PIL.Image.Image", str, "os.PathLike[str]"]  # what as_batch reads

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")


def list_image_files(folder: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of the image files under ``folder`` (recursively), sorted. Hidden
    files and folders (``.name``, e.g. an interrupted atomic write) are not images of the set."""
    root = Path(folder)
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((Path(directory) / name).relative_to(root).as_posix())
    return sorted(found)


def read_image_array(path: str | os.PathLike) -> np.ndarray:
    """Read an image file to an ``(H,W,C)`` uint8/uint16 array, C in {1, 3}, at the file's full
    sample depth (a 16-bit PNG or TIFF, grey or colour, gives uint16).

    Raises :class:`InputError` naming the file when it is missing or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file")
    try:
        with Image.open(path) as img:
            if _colour_deeper_than_8_bits(img, path):
                return _decode_deep_colour(path, img.format)
            img.load()
            array = _pil_to_array(img)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    return array


def _colour_deeper_than_8_bits(img, path: Path) -> bool:
    """True for a PNG or TIFF whose colour (or grey + alpha) samples have more than 8 bits:
    PIL decodes those to 8 bits per sample (it keeps 16 bits only for plain grey), so they are
    decoded by :func:`_decode_deep_colour` instead. The depth comes from the file's header."""
    if img.mode.startswith("I") or img.mode == "F":  # grey at full depth already
        return False
    if img.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(26)  # signature (8), IHDR length and type (8), width, height (8), depth
        return len(header) == 26 and header[12:16] == b"IHDR" and header[24] > 8
    if img.format == "TIFF":
        bits = img.tag_v2.get(258, (8,))  # BitsPerSample
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) > 8
    return False


def _decode_deep_colour(path: Path, file_format: str) -> np.ndarray:
    """A 16-bit colour (or grey + alpha) PNG or TIFF -> ``(H,W,C)`` uint16, C in {1, 3}
    (alpha dropped, as for 8-bit files), decoded by imagecodecs (libpng / libtiff)."""
    import imagecodecs

    decode = imagecodecs.png_decode if file_format == "PNG" else imagecodecs.tiff_decode
    try:
        array = np.asarray(decode(path.read_bytes()))
    except Exception as exc:  # noqa: BLE001 - the codec's own error classes vary by format
        raise InputError(f"{path}: not a readable {file_format} image ({exc.__class__.__name__})") from None
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.dtype != np.uint16 or array.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"{path}: unsupported {file_format} layout {array.shape} of {array.dtype} "
                         "(expected 16-bit grey or RGB, with or without alpha)")
    channels = {1: 1, 2: 1, 3: 3, 4: 3}[array.shape[-1]]  # drop alpha
    return np.ascontiguousarray(array[..., :channels])


def _pil_to_array(img) -> np.ndarray:
    mode = img.mode
    if mode == "P" or mode == "PA":
        img = img.convert("RGB")
        array = np.asarray(img)
        if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2]):
            array = array[..., :1]
        return np.ascontiguousarray(array)
    if mode in ("1", "L", "LA"):
        return np.asarray(img.convert("L"))[..., None]
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grey. PIL reports 16-bit PNG/TIFF as I;16* or I (32-bit container).
        array = np.asarray(img).astype(np.int64)
        if array.min() < 0 or array.max() > 65535:
            raise InputError(f"{getattr(img, 'filename', 'image')}: integer values outside 0..65535")
        return array.astype(np.uint16)[..., None]
    if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB"))
    if mode == "F":
        raise InputError(f"{getattr(img, 'filename', 'image')}: floating-point images are not supported; "
                         "save as 8- or 16-bit")
    return np.asarray(img.convert("RGB"))


def _array_to_float(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return array
    raise InputError(f"{name}: unsupported array dtype {array.dtype} (use uint8, uint16 or float)")


def load_image(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Read an image file as a ``(1,C,H,W)`` tensor in [0, 1] (C = 1 for grey, 3 for colour)."""
    array = _array_to_float(read_image_array(path), str(path))
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).to(dtype)[None]


def as_batch(obj: ImageLike, name: str = "input") -> torch.Tensor:
    """Turn a tensor, NumPy array, PIL image or image path into an ``(N,C,H,W)`` float tensor.

    See the module docstring for layout and scaling rules. ``name`` appears in errors.
    """
    if isinstance(obj, (str, os.PathLike)):
        return load_image(obj)
    if isinstance(obj, torch.Tensor):
        t = obj
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        elif t.dtype == torch.bool:
            t = t.float()
        elif not t.is_floating_point():
            raise InputError(f"{name}: unsupported tensor dtype {t.dtype} (use a float dtype or uint8)")
        if t.ndim == 2:
            return t[None, None]
        if t.ndim == 3:
            return t[None]
        if t.ndim == 4:
            return t
        raise InputError(f"{name}: expected a tensor of 2, 3 or 4 dimensions (H,W / C,H,W / N,C,H,W), "
                         f"got shape {tuple(t.shape)}")
    from PIL import Image  # a dependency, as for load_image

    if isinstance(obj, Image.Image):
        obj = _pil_to_array(obj)
    if isinstance(obj, np.ndarray):
        array = _array_to_float(obj, name)
        if array.ndim == 2:
            array = array[None, ..., None]
        elif array.ndim == 3:
            array = array[None]
        elif array.ndim != 4:
            raise InputError(f"{name}: expected an array of 2, 3 or 4 dimensions (H,W / H,W,C / N,H,W,C), "
                             f"got shape {array.shape}")
        if array.shape[-1] == 4:  # drop alpha, as for files
            array = array[..., :3]
        if array.shape[-1] not in (1, 3):
            raise InputError(f"{name}: arrays are channel-last (H,W,C); "
                             f"got {array.shape[-1]} channels in shape {obj.shape}")
        return torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
    raise InputError(f"{name}: cannot read an image from {type(obj).__name__} "
                     "(give a tensor, NumPy array, PIL image or path)")


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` when the block succeeds.

    Readers never see a half-written result, and a failed write leaves no stray file. The
    file gets the permissions a plain ``open()`` would give. ``suffix`` matters to writers
    that pick a format from the name (matplotlib's ``savefig``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # nothing left after a successful rename


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def prepare_output_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create the output folder ``path`` (and its parents) and check that files can be written in it.

    :class:`InputError` naming ``option`` when ``path`` is a file, cannot be created, or is not
    writable, so that a command fails in one line before it computes anything.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"{option} {path}: cannot write there ({reason})") from None
    return path


def prepare_output_file(path: str | os.PathLike, suffixes: tuple[str, ...], option: str = "--out") -> Path:
    """Check an output file before any work: its name ends in one of ``suffixes`` (the format is
    chosen by it), it is not a folder, and its folder can be created and written
    (:func:`prepare_output_dir`). :class:`InputError` naming ``option`` otherwise."""
    target = Path(path)
    wanted = " or ".join(suffixes)
    if target.suffix.lower() not in suffixes:
        raise InputError(f"{option} {path}: give a file ending in {wanted}")
    if target.is_dir():
        raise InputError(f"{option} {path}: is a folder; give a file ending in {wanted}")
    prepare_output_dir(target.parent, option=option)
    return target
