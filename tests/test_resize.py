"""MATLAB-exact imresize (percepmetric.metrics.resize): against a direct transcription of
MATLAB's documented algorithm and against Octave, plus its properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from percepmetric import InputError
from percepmetric.metrics.resize import imresize, output_size, resize_matrix

MAGIC7 = [
    [30, 39, 48, 1, 10, 19, 28], [38, 47, 7, 9, 18, 27, 29], [46, 6, 8, 17, 26, 35, 37], [5, 14, 16, 25, 34, 36, 45],
    [13, 15, 24, 33, 42, 44, 4], [21, 23, 32, 41, 43, 3, 12], [22, 31, 40, 49, 2, 11, 20],
]
# imresize(magic(7), 0.5) printed by GNU Octave 7.3.0 with the image package 2.14.0's own imresize
# (whose bicubic shrink agrees with MATLAB's algorithm to 1e-12 on these calls) and by
# tests/reference/srsim/imresize.m; 5 significant digits as printed.
MAGIC7_HALF = [
    [38.189, 17.812, 16.862, 29.275], [18.924, 15.403, 34.046, 38.253],
    [16.912, 33.621, 30.974, 11.985], [26.949, 41.326, 11.238, 15.974],
]


def _cubic(t: float) -> float:
    a = abs(t)
    if a <= 1:
        return 1.5 * a**3 - 2.5 * a**2 + 1
    if a <= 2:
        return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
    return 0.0


def _loop_resize_1d(v: np.ndarray, n_out: int, scale: float) -> np.ndarray:
    """One axis, output sample by sample, as MATLAB's imresize describes it (bicubic, antialias)."""
    n_in = len(v)
    shrink = scale < 1
    width = 4 / scale if shrink else 4
    out = np.zeros(n_out)
    for i in range(1, n_out + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + k for k in range(math.ceil(width) + 2)]
        w = np.array([scale * _cubic(scale * (u - t)) if shrink else _cubic(u - t) for t in taps])
        w /= w.sum()
        for weight, t in zip(w, taps):
            j = (t - 1) % (2 * n_in)
            j = j if j < n_in else 2 * n_in - 1 - j
            out[i - 1] += weight * v[j]
    return out


def test_octave_values():
    got = imresize(torch.tensor(MAGIC7, dtype=torch.float64), scale=0.5)
    torch.testing.assert_close(got, torch.tensor(MAGIC7_HALF, dtype=torch.float64), rtol=0, atol=6e-4)


@pytest.mark.parametrize("n_in,n_out,scale", [(37, 10, 0.25), (10, 37, 3.7), (9, 3, 0.25), (50, 13, 13 / 50),
                                              (5, 5, 1.0), (1, 4, 4.0), (3, 1, 0.25)])
def test_matches_direct_transcription(n_in, n_out, scale):
    v = np.random.default_rng(n_in * 100 + n_out).random(n_in) * 255
    expected = _loop_resize_1d(v, n_out, scale)
    got = resize_matrix(n_in, n_out, scale) @ torch.from_numpy(v)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-10)


def test_rows_sum_to_one_and_constants_stay():
    for n_in, n_out, s in ((37, 10, 0.25), (12, 31, 31 / 12), (8, 8, 1.0)):
        m = resize_matrix(n_in, n_out, s)
        torch.testing.assert_close(m.sum(dim=1), torch.ones(n_out, dtype=torch.float64))
    x = torch.full((2, 1, 21, 34), 0.3)
    torch.testing.assert_close(imresize(x, scale=0.25), torch.full((2, 1, 6, 9), 0.3))


def test_sizes_batching_and_gradient():
    assert output_size(97, 131, 0.25) == (25, 33)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 17, 23, generator=g, dtype=torch.float64)
    small = imresize(x, scale=0.25)
    assert small.shape == (3, 2, 5, 6)
    torch.testing.assert_close(small[1, 1], imresize(x[1, 1], scale=0.25))
    back = imresize(small, size=(17, 23))
    assert back.shape == x.shape
    assert imresize(x.float(), scale=0.5).dtype == torch.float32
    b = imresize(x, size=(9, 30), kernel="bilinear")
    assert b.shape == (3, 2, 9, 30)
    a = x.clone().requires_grad_(True)
    imresize(a, scale=0.25).sum().backward()
    assert torch.isfinite(a.grad).all()


def test_bad_arguments():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(InputError, match="exactly one"):
        imresize(x)
    with pytest.raises(InputError, match="kernel"):
        imresize(x, scale=0.5, kernel="lanczos3")  # type: ignore[arg-type]
