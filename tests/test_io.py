"""Image reading rules and as_batch conversions."""

import numpy as np
import pytest
import torch
from PIL import Image

from percepmetric.errors import InputError
from percepmetric.io import as_batch, load_image, read_image_array


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
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
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
