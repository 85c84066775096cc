"""What every metric's forward takes: two float dtypes (promoted to their common one, as
PyTorch's arithmetic does), and NumPy arrays, PIL images and paths besides tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import percepmetric
from percepmetric import create_metric
from percepmetric.errors import InputError
from percepmetric.metrics.fsim import fsim
from percepmetric.metrics.lpips import LPIPS
from percepmetric.metrics.ssim import ms_ssim, ssim
from percepmetric.registry import distance_label

# One cheap configuration per family (and per code path that builds its own windows).
FAMILIES = [
    ("l2", {}, 8),
    ("l1", {}, 8),
    ("psnr", {}, 8),
    ("ssim", {}, 16),
    ("ssim", {"convention": "lpips"}, 16),
    ("ms_ssim", {}, 16),
    ("fsim", {}, 16),
    ("lpips", None, 32),  # an untrained trunk: no weight file needed
]
DTYPE_PAIRS = [(torch.float32, torch.float64), (torch.float16, torch.float32), (torch.float64, torch.float32)]


def _metric(name, options):
    if name == "lpips":
        return LPIPS.untrained("alex", "scratch", seed=0)
    return create_metric(name, **options)


def _pair(size, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, size, size, generator=gen)
    y = (x + 0.1 * torch.rand(2, 3, size, size, generator=gen)).clamp(0, 1)
    return x, y


@pytest.mark.parametrize("name,options,size", FAMILIES, ids=lambda v: str(v))
@pytest.mark.parametrize("dtypes", DTYPE_PAIRS, ids=lambda d: f"{d[0]}-{d[1]}".replace("torch.", ""))
def test_mixed_float_dtypes_are_promoted_to_the_common_one(name, options, size, dtypes):
    m = _metric(name, options)
    x, y = _pair(size)
    x, y = x.to(dtypes[0]), y.to(dtypes[1])
    common = torch.promote_types(*dtypes)
    value = m(x, y)
    assert value.dtype == torch.promote_types(common, torch.float32) if name == "lpips" else value.dtype == common
    # The same number as the user casting both inputs first.
    assert torch.equal(value, m(x.to(common), y.to(common)))
    v0, _ = m.triplet_values(x, y, x.to(dtypes[1]))
    assert torch.equal(v0, value)


def test_functional_forms_promote_too():
    x, y = _pair(16)
    for function in (ssim, ms_ssim, fsim):
        assert torch.equal(function(x, y.double()), function(x.double(), y.double()))
        assert function(x.half(), y).dtype == torch.float32


def test_forward_reads_arrays_images_and_paths_and_leaves_tensors_alone(tmp_path):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + 9, 0, 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    m = create_metric("psnr")
    expected = m(torch.from_numpy(a).permute(2, 0, 1)[None] / 255.0, torch.from_numpy(b).permute(2, 0, 1)[None] / 255.0)
    assert torch.allclose(m(a, b), expected)
    assert torch.allclose(m(tmp_path / "a.png", Image.fromarray(b)), expected)
    assert torch.allclose(m(str(tmp_path / "a.png"), torch.from_numpy(b).permute(2, 0, 1)[None] / 255.0), expected)
    assert torch.allclose(m.triplet_values(a, b, b)[1], expected)
    # Tensors are not converted: a uint8 tensor is refused, not silently rescaled.
    with pytest.raises(InputError, match="float tensor"):
        m(torch.from_numpy(a).permute(2, 0, 1)[None], expected)
    with pytest.raises(InputError, match="cannot read an image from int"):
        m(42, b)


def test_distance_labels_say_what_the_distance_is():
    assert distance_label(create_metric("psnr")) == "psnr as mse"
    assert distance_label(create_metric("ssim", convention="lpips")).endswith(" as dssim")
    assert distance_label(create_metric("ms_ssim")) == "ms_ssim as ms_dssim"
    assert distance_label(create_metric("fsim")) == "fsim as 1-fsim"
    assert distance_label(create_metric("l2")) == "l2"  # the value is the distance
    assert percepmetric.distance_label("psnr") == "psnr as mse"
    x, y = _pair(8)
    mse = ((x - y) ** 2).flatten(1).mean(1)
    assert torch.allclose(percepmetric.distance(x, y, metric="psnr"), mse, rtol=1e-5)
