"""Image reading rules and as_batch conversions."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from percepmetric.errors import InputError
from percepmetric.io import as_batch, load_image, read_image_array

from helpers import png_chunk, run_cli_subprocess


def _save(tmp_path, name, array, mode=None):
    path = tmp_path / name
    Image.fromarray(array, mode=mode).save(path)
    return path


@pytest.mark.parametrize("suffix", ["png", "bmp", "tiff", "jpg"])
def test_rgb_formats_read_as_three_channels(tmp_path, suffix):
    rgb = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    t = load_image(_save(tmp_path, f"a.{suffix}", rgb))
    assert t.shape == (1, 3, 9, 7) and t.dtype == torch.float32
    assert 0 <= t.min() and t.max() <= 1
    if suffix != "jpg":  # lossless formats round-trip exactly
        assert torch.equal(t, torch.from_numpy(rgb.transpose(2, 0, 1)).float()[None] / 255)


def test_grey_and_alpha_rules(tmp_path):
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    assert load_image(_save(tmp_path, "g.png", grey)).shape == (1, 1, 4, 5)
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 10  # nearly transparent: alpha is dropped, not composited
    t = load_image(_save(tmp_path, "a.png", rgba))
    assert t.shape == (1, 3, 4, 5) and torch.allclose(t[0, 0], torch.full((4, 5), 200 / 255))


def test_sixteen_bit_png_is_scaled_by_65535(tmp_path):
    values = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    path = tmp_path / "d.png"
    Image.fromarray(values).save(path)
    t = load_image(path)
    assert t.shape == (1, 1, 2, 2)
    assert torch.allclose(t[0, 0], torch.from_numpy(values.astype(np.float32) / 65535))


def test_grey_palette_gif_becomes_one_channel(tmp_path):
    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (3, 1))
    path = tmp_path / "g.gif"
    Image.fromarray(grey).convert("P").save(path)
    assert read_image_array(path).shape == (3, 25, 1)


def test_missing_and_broken_files_name_the_file(tmp_path):
    with pytest.raises(InputError, match="nope.png: no such file"):
        load_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="bad.png: not a readable image"):
        load_image(bad)


def test_as_batch_layouts():
    hwc = np.zeros((5, 6, 3), dtype=np.uint8)
    assert as_batch(hwc).shape == (1, 3, 5, 6)
    assert as_batch(np.zeros((5, 6))).shape == (1, 1, 5, 6)
    assert as_batch(torch.zeros(3, 5, 6)).shape == (1, 3, 5, 6)
    assert as_batch(torch.zeros(2, 3, 5, 6)).shape == (2, 3, 5, 6)
    assert as_batch(Image.fromarray(hwc)).shape == (1, 3, 5, 6)
    assert as_batch(torch.full((2, 2), 255, dtype=torch.uint8)).max() == 1.0
    with pytest.raises(InputError, match="channel-last"):
        as_batch(np.zeros((3, 5, 6)))  # CHW numpy: ambiguous, refused
    with pytest.raises(InputError):
        as_batch(torch.zeros(1, 1, 1, 5, 6))
    with pytest.raises(InputError):
        as_batch(42)


def test_atomic_path_never_leaves_half_written_files(tmp_path):
    from percepmetric.io import atomic_path, atomic_write_text

    target = tmp_path / "sub" / "result.json"
    atomic_write_text(target, "first")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "first"  # the old complete result stays
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]  # no stray temporary file


def test_keep_freed_memory_is_idempotent():
    import sys

    from percepmetric.memory import keep_freed_memory

    first = keep_freed_memory()
    assert keep_freed_memory() is first
    if sys.platform.startswith("linux"):
        import platform

        assert first == (platform.libc_ver()[0] == "glibc")


def _png_16_bit(samples: np.ndarray) -> bytes:
    """A 16-bit PNG built by hand (signature, IHDR, one zlib IDAT, IEND): a writer independent
    of every decoder under test. ``samples``: ``(H,W,C)`` uint16, C = 1, 2, 3 or 4."""
    import struct
    import zlib

    height, width, channels = samples.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]  # grey, grey+alpha, RGB, RGBA (PNG spec, IHDR)
    rows = b"".join(b"\x00" + samples[r].astype(">u2").tobytes() for r in range(height))  # filter 0
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [3, 4, 2, 1])
def test_sixteen_bit_png_of_any_colour_type_keeps_all_its_bits(tmp_path, channels):
    samples = np.random.default_rng(channels).integers(0, 65536, (5, 7, channels), dtype=np.uint16)
    path = tmp_path / "deep.png"
    path.write_bytes(_png_16_bit(samples))
    array = read_image_array(path)
    kept = 1 if channels <= 2 else 3  # alpha dropped
    assert array.dtype == np.uint16 and np.array_equal(array, samples[..., :kept])
    expected = torch.from_numpy(samples[..., :kept].transpose(2, 0, 1).astype(np.float32) / 65535)
    assert torch.equal(load_image(path)[0], expected)


def test_sixteen_bit_rgb_tiff_keeps_all_its_bits(tmp_path):
    import tifffile

    samples = np.random.default_rng(7).integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "deep.tif", samples, photometric="rgb")
    assert np.array_equal(read_image_array(tmp_path / "deep.tif"), samples)


def test_psnr_of_sixteen_bit_rgb_pngs_matches_the_raw_samples(tmp_path):
    """Issue 11's case: 16-bit RGB files read at 8 bits gave 55.58 dB where the truth was 61.3.
    The truth here is computed from the raw samples, with numpy."""
    rng = np.random.default_rng(11)
    ref = rng.integers(2000, 63000, (24, 24, 3)).astype(np.uint16)
    noisy = (ref.astype(np.int64) + rng.integers(-60, 61, ref.shape)).astype(np.uint16)
    (tmp_path / "ref.png").write_bytes(_png_16_bit(ref))
    (tmp_path / "noisy.png").write_bytes(_png_16_bit(noisy))
    mse = np.mean((ref / 65535.0 - noisy / 65535.0) ** 2)
    truth = 10 * np.log10(1.0 / mse)
    proc = run_cli_subprocess("distance", tmp_path / "ref.png", tmp_path / "noisy.png", "-m", "psnr", "--json",
                              module="percepmetric")
    assert proc.returncode == 0, proc.stderr
    value = json.loads(proc.stdout)["results"][0]["value"]
    assert abs(value - truth) < 1e-3, (value, truth)
