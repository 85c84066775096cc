"""Reading images and turning whatever the user holds into a float batch.

Conventions (the only place they are decided):

* **Tensors** are channel-first: ``(H,W)``, ``(C,H,W)`` or ``(N,C,H,W)``.
* **NumPy arrays and PIL images** are channel-last, as NumPy, PIL and scikit-image use
  them: ``(H,W)``, ``(H,W,C)`` or ``(N,H,W,C)``.
* **Integer data spans the declared input range.** Codes (files, PIL images, integer arrays,
  uint8 tensors) are scaled so that 0 is the bottom of the range and the largest code (255 for
  8 bits, 65535 for 16) is its top: ``[0, 1]`` by default, ``[0, 255]`` for a metric told
  ``data_range=255``, ``[-1, 1]`` for LPIPS told ``input_range=(-1, 1)``
  (:func:`to_value_range`). A range option therefore never changes a metric's value on
  images read from files: it says what the *tensors* a user passes hold. Float data is taken
  as it is (its range is checked later by the metric against its declared range).
* **Files are read at their full depth**: 16-bit PNG and TIFF files, grey or colour, give
  uint16 samples (PIL reads 16-bit colour at 8 bits, so imagecodecs decodes those).
* **Alpha** is dropped (RGBA -> RGB, LA -> L), as PIL's ``convert("RGB")`` does and as
  the LPIPS and pyiqa loaders do, so numbers match theirs. Composite over a background
  yourself before calling if transparency matters to you.
* **Palette images** (GIF) are expanded; a palette whose entries are all grey gives a
  one-channel image (MATLAB's ``imread`` + ``ind2gray`` view of e.g. goldhill.gif).
* **Hostile files** are refused in one :class:`InputError` line naming the file, before any
  decoding: a path that is not a regular file (a FIFO is never opened), an image whose header
  claims more pixels than the limit (:func:`max_pixels_limit`: ``max_pixels=``,
  ``$PERCEPMETRIC_MAX_PIXELS``, 100 million by default; PIL's global settings are left alone),
  and a damaged or truncated file (a PNG whose data ends before its last row included, which
  PIL would fill with zeros).
* **Names as text**: :func:`name_text` writes any file name losslessly in UTF-8 (a byte that is
  not UTF-8 as ``\\xHH``), :func:`name_from_text` reads it back; :func:`csv_cell` quotes a text
  cell a spreadsheet would run as a formula.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Union

import numpy as np
import torch

from .errors import InputError

if TYPE_CHECKING:
    import PIL.Image

ImageLike = Union[torch.Tensor, np.ndarray, "PIL.Image.Image", str, "os.PathLike[str]"]  # what as_batch reads

#: The range images decoded from integer codes are in unless a metric declares another.
UNIT_RANGE: tuple[float, float] = (0.0, 1.0)

#: Where percepmetric keeps what it can compute again (decoded BAPPS splits, FID features).
ENV_CACHE = "PERCEPMETRIC_CACHE"


def default_cache_dir() -> Path:
    """``$PERCEPMETRIC_CACHE``, else ``$XDG_CACHE_HOME/percepmetric``, else ``~/.cache/percepmetric``."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "percepmetric"


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")

#: The most pixels (width x height) an image file may claim before it is decoded: 100 million,
#: a 100-megapixel photograph (medium format, 11648x8736, is just above). A 157-byte PNG can
#: claim 240 million pixels; decoded, compared and batched, such an image takes gigabytes
#: (12 bytes a pixel as float32 RGB, twice per pair, several times that in a metric's
#: temporaries), so the size is checked from the header first. Raise it with ``max_pixels=``,
#: ``--max-pixels`` or :data:`MAX_PIXELS_ENV`.
DEFAULT_MAX_PIXELS = 100_000_000
#: The environment variable that sets the pixel limit (read at each call, not at import).
MAX_PIXELS_ENV = "PERCEPMETRIC_MAX_PIXELS"
#: The limit of an enclosing :func:`pixel_limit` block (this thread's context only).
_scoped_max_pixels: ContextVar[int | None] = ContextVar("percepmetric_max_pixels", default=None)
#: Bytes of a file's content digest (blake2b), the identity resumed work is keyed on.
DIGEST_SIZE = 16


# ---------------------------------------------------------------- names as text

_SURROGATES = re.compile("[\ud800-\udfff]")
_ESCAPES = re.compile(r"\\(\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")
#: What a CSV text cell may not start with: a spreadsheet runs ``=``, ``+``, ``-``, ``@`` (and
#: a tab or carriage return before them) as a formula; ``'`` is its text marker.
_CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def name_text(name: str) -> str:
    """A file name as text that any UTF-8 writer takes, losslessly (:func:`name_from_text` undoes it).

    Names come from the file system as Python gives them: a byte that is not UTF-8 is a lone
    surrogate (PEP 383: ``b"bad\\xff.png"`` -> ``"bad\\udcff.png"``), which UTF-8 cannot encode.
    Each such byte is written ``\\xHH`` (``bad\\xff.png``, the text), any other lone surrogate
    (Windows) ``\\uHHHH``, and a backslash ``\\\\`` so that the escapes cannot be confused with a
    name's own characters. Every other character, non-ASCII letters included, is itself: a name
    that is valid UTF-8 without a backslash is its own text.
    """
    text = name.replace("\\", "\\\\")
    if not _SURROGATES.search(text):
        return text
    return _SURROGATES.sub(lambda m: f"\\x{ord(m[0]) - 0xDC00:02x}" if 0xDC80 <= ord(m[0]) <= 0xDCFF
                           else f"\\u{ord(m[0]):04x}", text)


def name_from_text(text: str, csv: bool = False) -> str:
    """The file name :func:`name_text` wrote as ``text`` (``os.fsencode`` of it gives the name's
    bytes). ``csv=True``: ``text`` is a cell of a CSV file percepmetric wrote, where a text that
    starts with ``'`` carries one more (:func:`csv_cell`), removed here first."""
    if csv and text.startswith("'"):
        text = text[1:]

    def unescape(match: re.Match) -> str:
        code = match[1]
        if code == "\\":
            return "\\"
        return chr(0xDC00 + int(code[1:], 16)) if code[0] == "x" else chr(int(code[1:], 16))

    return _ESCAPES.sub(unescape, text)


def csv_cell(value: Any) -> Any:
    """A text cell for a CSV file that a spreadsheet will not run: text starting with ``=``,
    ``+``, ``-``, ``@``, a tab, a carriage return or ``'`` gets a ``'`` in front (the usual
    defence against CSV formula injection; ``'`` itself is included so that removing one
    leading ``'`` always gives the text back). Anything that is not a ``str`` (numbers, -0.5
    among them) is returned as it is."""
    if isinstance(value, str) and value.startswith(_CSV_FORMULA_STARTS):
        return "'" + value
    return value


def printable_path(path: str | os.PathLike) -> str:
    """``path`` for a message: each byte that is not UTF-8 as ``\\xHH`` (:func:`name_text`'s
    escape; other characters, backslashes included, as they are), so that it can be printed."""
    text = os.fspath(path)
    text = os.fsdecode(text) if isinstance(text, bytes) else text
    return name_text(text).replace("\\\\", "\\") if _SURROGATES.search(text) else text


# ---------------------------------------------------------------- the pixel limit

def _whole_number(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{where} {value!r}: give a whole number of pixels, at least 1")
    return int(value)


def max_pixels_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` when given; else that of an enclosing
    :func:`pixel_limit` block; else ``$PERCEPMETRIC_MAX_PIXELS``, read now; else
    :data:`DEFAULT_MAX_PIXELS`. :class:`InputError` naming the setting when it is not a whole
    number of at least 1."""
    if max_pixels is not None:
        return _whole_number(max_pixels, "max_pixels")
    scoped = _scoped_max_pixels.get()
    if scoped is not None:
        return scoped
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{MAX_PIXELS_ENV}={text!r}: give a whole number of pixels, at least 1 "
                         f"(the default is {DEFAULT_MAX_PIXELS})")
    return value


@contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Within the block, files read without a ``max_pixels`` argument by this thread (by code
    that does not take one, e.g. :func:`percepmetric.pairwise` on paths) are held to
    ``max_pixels``; ``None`` changes nothing. Nothing outside the block, and no other thread,
    sees it; PIL's own settings are not touched."""
    if max_pixels is None:
        yield
        return
    token = _scoped_max_pixels.set(_whole_number(max_pixels, "max_pixels"))
    try:
        yield
    finally:
        _scoped_max_pixels.reset(token)


def _check_pixels(shown: str, width: int, height: int, limit: int) -> None:
    if width * height > limit:
        raise InputError(f"{shown}: {width}x{height} is {width * height:,} pixels, more than the limit of {limit:,} "
                         "(a guard against decompression bombs); if the image is genuine, raise it with "
                         f"--max-pixels N (Python: max_pixels=N, or {MAX_PIXELS_ENV}=N)")


# ---------------------------------------------------------------- files

def _not_regular(shown: str, mode: int) -> InputError:
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "not a file")
    return InputError(f"{shown}: not a regular file ({kind}); give an image file")


def _regular_file(path: str | os.PathLike) -> os.stat_result:
    """``os.stat`` of ``path``, which must be a regular file (a FIFO, a device or a socket is
    never opened: reading a FIFO blocks until something writes to it). :class:`InputError`
    naming it otherwise."""
    shown = printable_path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        broken = os.path.islink(path)
        raise InputError(f"{shown}: no such file" + (" (a broken symbolic link)" if broken else "")) from None
    except OSError as exc:
        raise InputError(f"{shown}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{shown}: is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(shown, info.st_mode)
    return info


def _open_regular(path: str | os.PathLike) -> IO[bytes]:
    """``path`` opened for reading, checked to be a regular file before it is opened, and again
    on what was opened (O_NONBLOCK: a FIFO put there in between does not block the open)."""
    _regular_file(path)
    shown = printable_path(path)
    nonblocking = getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, os.O_RDONLY | nonblocking | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise InputError(f"{shown}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(shown, mode)
    if nonblocking:
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def list_image_files(folder: str | os.PathLike) -> list[str]:
    """Relative POSIX paths of the image files under ``folder`` (recursively), sorted. Hidden
    files and folders (``.name``, e.g. an interrupted atomic write) are not images of the set.
    An image name that is not a regular file (a FIFO, a device, a socket, a broken link) is an
    :class:`InputError` naming it: it is never opened."""
    root = Path(folder)
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                path = Path(directory) / name
                _regular_file(path)
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def content_digest(data: bytes) -> str:
    """The content hash percepmetric keys resumed and cached work on: BLAKE2b of ``data``,
    :data:`DIGEST_SIZE` bytes, in hex."""
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).hexdigest()


def file_digest(handle: IO[bytes]) -> tuple[str, int]:
    """:func:`content_digest` of what ``handle`` holds from its current position on, read a
    megabyte at a time, and how many bytes that was."""
    hasher = hashlib.blake2b(digest_size=DIGEST_SIZE)
    size = 0
    for block in iter(lambda: handle.read(1 << 20), b""):
        hasher.update(block)
        size += len(block)
    return hasher.hexdigest(), size


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding (:func:`read_image_header`):
    its size, PIL's name of its format, and, when asked, ``digest``, a content hash of the
    file's bytes (blake2b, 16 bytes, hex) that :func:`read_image_and_digest` also gives."""

    width: int
    height: int
    format: str
    digest: str | None = None


def read_image_header(path: str | os.PathLike, max_pixels: int | None = None,
                      digest: bool = False) -> ImageHeader:
    """The size and format of an image file from its header, checked against the pixel limit
    (:func:`max_pixels_limit`) without decoding anything; with ``digest``, also the hash of its
    bytes. :class:`InputError` naming the file when it is missing, not a regular file, not an
    image, or larger than the limit."""
    limit = max_pixels_limit(max_pixels)
    shown = printable_path(path)
    with _open_regular(path) as f:
        img = _open_checked(f, shown, limit)
        header = ImageHeader(img.width, img.height, str(img.format))
        if digest:
            f.seek(0)
            header = ImageHeader(header.width, header.height, header.format, file_digest(f)[0])
    return header


def read_image_array(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file to an ``(H,W,C)`` uint8/uint16 array, C in {1, 3}, at the file's full
    sample depth (a 16-bit PNG or TIFF, grey or colour, gives uint16).

    The header is read first: an image of more than ``max_pixels`` pixels (default:
    :func:`max_pixels_limit`) is refused before anything is decoded, as is a PNG whose image
    data ends before its last row (a truncated file, which PIL would fill with zeros).

    Raises :class:`InputError` naming the file when it is missing, not a regular file, not an
    image, damaged or truncated, or over the pixel limit.
    """
    return _read_image(path, max_pixels, with_digest=False)[0]


def read_image_and_digest(path: str | os.PathLike, max_pixels: int | None = None) -> tuple[np.ndarray, str]:
    """:func:`read_image_array` and the content hash of the very bytes decoded (the file is read
    once, hashed, and decoded from memory), equal to :func:`read_image_header`'s ``digest`` for
    a file that did not change in between."""
    array, digest = _read_image(path, max_pixels, with_digest=True)
    assert digest is not None
    return array, digest


def _identify(fp: IO[bytes]) -> Any:
    """``PIL.Image.open(fp)`` without PIL's own size check (``Image.MAX_IMAGE_PIXELS``, a
    process-wide setting that would cap any limit the user raises): the header is parsed, nothing
    is decoded, and the pixel limit is then checked by :func:`_check_pixels`. Formats are tried
    as ``Image.open`` tries them."""
    from PIL import Image, UnidentifiedImageError

    fp.seek(0)
    prefix = fp.read(16)
    tried: set[str] = set()
    for register in (Image.preinit, Image.init):
        register()
        for name in list(Image.ID):
            if name in tried:
                continue
            tried.add(name)
            factory, accept = Image.OPEN[name]
            accepted = not accept or accept(prefix)
            if not accepted or isinstance(accepted, str):
                continue
            fp.seek(0)
            try:
                return factory(fp, "")
            except (SyntaxError, IndexError, TypeError, struct.error):
                continue
    raise UnidentifiedImageError("cannot identify image file")


def _why(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _open_checked(fp: IO[bytes], shown: str, limit: int) -> Any:
    """The PIL image of ``fp``, header only, within the pixel limit; :class:`InputError` otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        img = _identify(fp)
    except Image.DecompressionBombError as exc:  # a plugin's own check while opening (GIF frames, MPO)
        raise InputError(f"{shown}: refused by PIL as a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise InputError(f"{shown}: not a readable image (UnidentifiedImageError)") from None
    except (OSError, SyntaxError, EOFError, ValueError, struct.error) as exc:
        raise InputError(f"{shown}: not a readable image ({_why(exc)})") from None
    _check_pixels(shown, img.width, img.height, limit)
    return img


def _read_image(path: str | os.PathLike, max_pixels: int | None, with_digest: bool) -> tuple[np.ndarray, str | None]:
    from PIL import Image

    limit = max_pixels_limit(max_pixels)
    shown = printable_path(path)
    digest = None
    with _open_regular(path) as f:
        source: IO[bytes] = f
        img = _open_checked(source, shown, limit)
        if with_digest:  # the bytes decoded are the bytes hashed
            f.seek(0)
            data = f.read()
            digest = content_digest(data)
            source = BytesIO(data)
            img = _open_checked(source, shown, limit)
        try:
            png = _png_header(source) if img.format == "PNG" else None
            if png is not None:
                _check_png_data(source, png, shown)
            if _colour_deeper_than_8_bits(img, png):
                source.seek(0)
                return _decode_deep_colour(source.read(), img.format, shown), digest
            img.load()
            return _pil_to_array(img, shown), digest
        except InputError:
            raise
        except Image.DecompressionBombError as exc:  # a plugin's own check while decoding
            raise InputError(f"{shown}: refused by PIL as a possible decompression bomb ({exc})") from None
        except (OSError, SyntaxError, EOFError, ValueError, struct.error) as exc:
            if "truncated" in str(exc):
                raise InputError(f"{shown}: damaged image: the file is truncated ({_why(exc)})") from None
            raise InputError(f"{shown}: not a readable image ({_why(exc)})") from None
        finally:
            img.close()


# ---------------------------------------------------------------- PNG image data

@dataclass(frozen=True)
class _PngHeader:
    width: int
    height: int
    depth: int
    colour: int
    interlace: int


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: Adam7: (first column, first row, column step, row step) of each of the seven passes.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_header(fp: IO[bytes]) -> _PngHeader | None:
    """The IHDR of a PNG (None when the header is not the standard one)."""
    fp.seek(0)
    head = fp.read(33)  # signature (8), IHDR length and type (8), its 13 bytes, CRC (4)
    if len(head) < 29 or head[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    if colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        return None
    return _PngHeader(width, height, depth, colour, interlace)


def _png_data_size(h: _PngHeader) -> int:
    """Bytes the image data of ``h`` inflates to: per row a filter byte and the packed samples,
    row by row, or pass by pass for Adam7 interlacing."""
    bits = _PNG_CHANNELS[h.colour] * h.depth

    def rows(width: int, height: int) -> int:
        return height * (1 + (width * bits + 7) // 8) if width and height else 0

    if h.interlace == 0:
        return rows(h.width, h.height)
    return sum(rows((h.width - x0 + dx - 1) // dx if h.width > x0 else 0,
                    (h.height - y0 + dy - 1) // dy if h.height > y0 else 0) for x0, y0, dx, dy in _ADAM7)


def _check_png_data(fp: IO[bytes], h: _PngHeader, shown: str) -> None:
    """Refuse a PNG whose image data (its run of IDAT chunks) inflates to fewer bytes than its
    header's rows need: PIL stops at the end of the zlib stream and leaves the missing rows at
    zero (libpng says "Not enough image data"). Inflated a megabyte at a time and counted, never
    kept, so a small file claiming a huge image costs no memory."""
    expected = _png_data_size(h)
    inflater = zlib.decompressobj()
    produced = 0
    seen_data = False
    fp.seek(8)
    while produced < expected:
        head = fp.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind != b"IDAT":
            if seen_data or kind == b"IEND":
                break  # the image data is over
            fp.seek(length + 4, os.SEEK_CUR)  # another chunk and its CRC
            continue
        seen_data = True
        remaining = length
        while remaining and produced < expected:
            block = fp.read(min(remaining, 1 << 16))
            if not block:
                break
            remaining -= len(block)
            try:
                while block and produced < expected:
                    produced += len(inflater.decompress(block, 1 << 20))
                    block = inflater.unconsumed_tail
            except zlib.error as exc:
                raise InputError(f"{shown}: damaged image: its compressed data is corrupt ({exc})") from None
        if remaining:
            break  # the file ends inside the chunk
        fp.seek(4, os.SEEK_CUR)  # CRC
    if produced < expected:
        raise InputError(f"{shown}: damaged image: the file is truncated, its image data stops after "
                         f"{produced:,} of the {expected:,} bytes its {h.width}x{h.height} header needs")


def _colour_deeper_than_8_bits(img, png: _PngHeader | None) -> bool:
    """True for a PNG or TIFF whose colour (or grey + alpha) samples have more than 8 bits:
    PIL decodes those to 8 bits per sample (it keeps 16 bits only for plain grey), so they are
    decoded by :func:`_decode_deep_colour` instead. The depth comes from the file's header."""
    if img.mode.startswith("I") or img.mode == "F":  # grey at full depth already
        return False
    if img.format == "PNG":
        return png is not None and png.depth > 8
    if img.format == "TIFF":
        bits = img.tag_v2.get(258, (8,))  # BitsPerSample
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) > 8
    return False


def _decode_deep_colour(data: bytes, file_format: str, shown: str) -> np.ndarray:
    """A 16-bit colour (or grey + alpha) PNG or TIFF -> ``(H,W,C)`` uint16, C in {1, 3}
    (alpha dropped, as for 8-bit files), decoded by imagecodecs (libpng / libtiff), which
    refuses truncated data itself."""
    from .extras import require

    imagecodecs = require("imagecodecs", f"{shown}: a 16-bit colour {file_format}")

    decode = imagecodecs.png_decode if file_format == "PNG" else imagecodecs.tiff_decode
    try:
        array = np.asarray(decode(data))
    except Exception as exc:  # noqa: BLE001 - the codec's own error classes vary by format
        raise InputError(f"{shown}: damaged or unreadable {file_format} image ({_why(exc)})") from None
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.dtype != np.uint16 or array.shape[-1] not in (1, 2, 3, 4):
        raise InputError(f"{shown}: unsupported {file_format} layout {array.shape} of {array.dtype} "
                         "(expected 16-bit grey or RGB, with or without alpha)")
    channels = {1: 1, 2: 1, 3: 3, 4: 3}[array.shape[-1]]  # drop alpha
    return np.ascontiguousarray(array[..., :channels])


def _pil_to_array(img, name: str | None = None) -> np.ndarray:
    name = name or getattr(img, "filename", "") or "image"
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
            raise InputError(f"{name}: integer values outside 0..65535")
        return array.astype(np.uint16)[..., None]
    if mode in ("RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(img.convert("RGB"))
    if mode == "F":
        raise InputError(f"{name}: floating-point images are not supported; "
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


def to_value_range(x: torch.Tensor, value_range: tuple[float, float] = UNIT_RANGE) -> torch.Tensor:
    """Images decoded to [0, 1] (code / largest code) -> the same images in ``value_range``:
    ``lo + x (hi - lo)``. This is how every door that reads files (the CLI, folders, matrices,
    the benchmarks) hands a metric its input, so that a metric declared over ``[0, 255]`` or
    ``[-1, 1]`` gets the values it was told, and gives the number it gives by default.
    ``x`` itself is returned for the unit range."""
    lo, hi = float(value_range[0]), float(value_range[1])
    if (lo, hi) == UNIT_RANGE:
        return x
    return x * (hi - lo) + lo


def is_coded(obj: object) -> bool:
    """True when :func:`as_batch` reads ``obj`` as integer codes, scaled into the declared range
    (paths, PIL images, integer or boolean arrays and tensors); False for float data, taken as it is."""
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point()
    if isinstance(obj, np.ndarray):
        return not np.issubdtype(obj.dtype, np.floating)
    return not isinstance(obj, (list, tuple))


def load_image(path: str | os.PathLike, dtype: torch.dtype = torch.float32,
               value_range: tuple[float, float] = UNIT_RANGE, max_pixels: int | None = None) -> torch.Tensor:
    """Read an image file as a ``(1,C,H,W)`` tensor (C = 1 for grey, 3 for colour) whose codes span
    ``value_range`` ([0, 1] by default; see :func:`to_value_range`). ``max_pixels``: the pixel
    limit (:func:`read_image_array`, :func:`max_pixels_limit`)."""
    array = _array_to_float(read_image_array(path, max_pixels), printable_path(path))
    return to_value_range(torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).to(dtype)[None],
                          value_range)


def as_batch(obj: ImageLike, name: str = "input", value_range: tuple[float, float] = UNIT_RANGE) -> torch.Tensor:
    """Turn a tensor, NumPy array, PIL image or image path into an ``(N,C,H,W)`` float tensor.

    Integer codes (files, PIL images, integer arrays, uint8 tensors) span ``value_range``, the
    range the metric that reads them declares ([0, 1] by default); float data is taken as it
    is. See the module docstring for layout and scaling rules. ``name`` appears in errors.
    """
    if is_coded(obj) and tuple(value_range) != UNIT_RANGE:
        return to_value_range(as_batch(obj, name), value_range)
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
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`), in UTF-8."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
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
        probe_writable(path)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise InputError(f"{option} {path}: cannot write there ({reason})") from None
    return path


def probe_writable(folder: str | os.PathLike) -> None:
    """Create and remove a hidden file in ``folder``: the ``OSError`` a write there would meet,
    raised now (permissions, a read-only file system), before any work."""
    fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
    os.close(fd)
    os.unlink(probe)


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
