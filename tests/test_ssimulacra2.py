"""SSIMULACRA 2: parity with the ``ssimulacra2`` 0.3.0 PyPI package, libjxl's recursive Gaussian,
properties, gradients, bad input."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from percepmetric.errors import InputError
from percepmetric.metrics.ssimulacra2 import (
    SSIMULACRA2,
    WEIGHTS,
    gaussian_blur,
    recursive_gaussian_taps,
    scale_count,
    ssimulacra2,
)

try:
    import ssimulacra2 as ssimulacra2_package
except ImportError:  # pragma: no cover - the test dependency is absent
    ssimulacra2_package = None

needs_package = pytest.mark.skipif(
    ssimulacra2_package is None or getattr(ssimulacra2_package, "__version__", "") != "0.3.0",
    reason="needs the reference port: pip install --no-deps ssimulacra2==0.3.0",
)

#: (H, W): odd, non-square, and sizes where the port keeps 3, 4 and 5 of the 6 scales.
SIZES = ((48, 64), (61, 97), (192, 256))


def smooth_image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    planes = [128 + 100 * np.sin(xx / 9.0 + c) * np.cos(yy / 13.0 - c) for c in range(3)]
    return np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)


def textured_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = smooth_image(h, w).astype(np.float64)
    return np.clip(base * 0.5 + rng.integers(0, 128, (h, w, 3)), 0, 255).astype(np.uint8)


def jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def noisy(a: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(a + rng.normal(0.0, sigma, a.shape), 0, 255).astype(np.uint8)


def blurred(a: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(radius)))


def colour_shifted(a: np.ndarray) -> np.ndarray:
    return np.clip(a.astype(np.int64) + np.array([12, -8, 5]), 0, 255).astype(np.uint8)


DISTORTIONS = {
    "noise_mild": lambda a: noisy(a, 3.0),
    "noise_strong": lambda a: noisy(a, 40.0),
    "blur_mild": lambda a: blurred(a, 0.7),
    "blur_strong": lambda a: blurred(a, 4.0),
    "jpeg90": lambda a: jpeg(a, 90),
    "jpeg10": lambda a: jpeg(a, 10),
    "colour_shift": colour_shifted,
}


def as_tensor(a: np.ndarray, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(H,W,3)`` uint8 -> ``(1,3,H,W)`` in [0, 1], exactly the codes / 255 the port computes."""
    return (torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[None] / 255.0).to(dtype)


def package_score(tmp_path, a: np.ndarray, b: np.ndarray) -> float:
    """The port's score: it reads files (``Image.open(..).convert("RGB")``), so give it lossless PNGs
    of the same 8-bit pixels."""
    pa, pb = tmp_path / "ref.png", tmp_path / "dist.png"
    Image.fromarray(a).save(pa)
    Image.fromarray(b).save(pb)
    return float(ssimulacra2_package.compute_ssimulacra2(str(pa), str(pb)))


@needs_package
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_parity_with_the_ssimulacra2_package(tmp_path, size):
    """Every (content, distortion) pair against the port, in float64 (measured: 5e-13 relative at
    worst, the target is 1e-3) and in float32 (measured: 3e-5 relative at worst)."""
    h, w = size
    metric = SSIMULACRA2()
    scores = []
    for content in (smooth_image(h, w), textured_image(h, w)):
        for name, distort in DISTORTIONS.items():
            dist = distort(content)
            expected = package_score(tmp_path, content, dist)
            got64 = metric(as_tensor(content), as_tensor(dist))
            got32 = metric(as_tensor(content, torch.float32), as_tensor(dist, torch.float32))
            assert got64.dtype == torch.float64 and got32.dtype == torch.float32
            assert abs(got64.item() - expected) <= 1e-9 * max(abs(expected), 1.0), (size, name, expected, got64)
            assert abs(got32.item() - expected) <= 2e-4 * max(abs(expected), 1.0), (size, name, expected, got32)
            scores.append(expected)
    # The set spans the scale: near-lossless, medium and very bad (negative) scores.
    assert max(scores) > 85 and min(scores) < 0


@needs_package
@pytest.mark.parametrize("size", [(8, 8), (9, 15), (17, 300)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_parity_on_small_images_with_fewer_scales(tmp_path, size):
    """Images whose coarser scales fall below 8 pixels: the port drops them (and takes the weights
    in order from the start); so does the metric."""
    h, w = size
    a = textured_image(h, w)
    b = jpeg(a, 30)
    got = SSIMULACRA2()(as_tensor(a), as_tensor(b)).item()
    expected = package_score(tmp_path, a, b)
    assert abs(got - expected) <= 1e-9 * max(abs(expected), 1.0)


@needs_package
def test_batch_of_pairs_matches_the_package_pair_by_pair(tmp_path):
    a = textured_image(40, 56)
    pairs = [(a, jpeg(a, 50)), (a, noisy(a, 10.0)), (smooth_image(40, 56), blurred(smooth_image(40, 56), 2.0))]
    x = torch.cat([as_tensor(p) for p, _ in pairs])
    y = torch.cat([as_tensor(q) for _, q in pairs])
    got = SSIMULACRA2()(x, y)
    expected = torch.tensor([package_score(tmp_path, p, q) for p, q in pairs], dtype=torch.float64)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_data_range_255_gives_the_same_score():
    a = textured_image(32, 40)
    b = jpeg(a, 40)
    x, y = as_tensor(a), as_tensor(b)
    torch.testing.assert_close(SSIMULACRA2(data_range=255)(x * 255, y * 255), SSIMULACRA2()(x, y),
                               rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- libjxl's recursive Gaussian


def libjxl_recursion(row: np.ndarray) -> np.ndarray:
    """libjxl's ``FastGaussian1D`` written as its scalar recursion (float64), from the coefficients
    of ``CreateRecursiveGaussian(1.5)``: ``y_k[n] = n2_k (x[n-N-1] + x[n+N-1]) - d1_k y_k[n-1] -
    y_k[n-2]``, zero outside the row, output ``sum_k y_k[n]``."""
    sigma = 1.5
    radius = round(3.2795 * sigma + 0.2546)
    omega = [k * math.pi / (2.0 * radius) for k in (1, 3, 5)]
    p = [1 / math.tan(omega[0] / 2), -1 / math.tan(omega[1] / 2), 1 / math.tan(omega[2] / 2)]
    r = [p[0] ** 2 / math.sin(omega[0]), -p[1] ** 2 / math.sin(omega[1]), p[2] ** 2 / math.sin(omega[2])]
    rho = [math.exp(-0.5 * sigma**2 * w**2) / radius for w in omega]
    d13, d35, d51 = p[0] * r[1] - r[0] * p[1], p[1] * r[2] - r[1] * p[2], p[2] * r[0] - r[2] * p[0]
    z15, z35 = d35 / d13, d51 / d13
    beta = np.linalg.solve(np.array([p, r, [z15, z35, 1.0]]),
                           np.array([1.0, radius**2 - sigma**2, z15 * rho[0] + z35 * rho[1] + rho[2]]))
    size = len(row)
    out = np.zeros(size)
    for k in range(3):
        n2, d1 = -beta[k] * math.cos(omega[k] * (radius + 1)), -2 * math.cos(omega[k])
        prev = prev2 = 0.0
        for n in range(-radius + 1, size):
            left, right = n - radius - 1, n + radius - 1
            total = (row[left] if left >= 0 else 0.0) + (row[right] if right < size else 0.0)
            value = n2 * total - d1 * prev - prev2
            prev2, prev = prev, value
            if n >= 0:
                out[n] += value
    return out


def test_recursive_blur_is_libjxls_recursion():
    taps = recursive_gaussian_taps()
    assert len(taps) == 9 and abs(sum(taps) - 1.0) < 1e-12 and taps == taps[::-1]
    rng = np.random.default_rng(3)
    rows = rng.random((4, 37))
    expected = np.stack([libjxl_recursion(row) for row in rows])
    # A one-row image: the vertical pass of a one-row image multiplies by the centre tap only.
    t = torch.from_numpy(rows)[:, None, None, :]
    got = gaussian_blur(t, "recursive")[:, 0, 0].numpy() / taps[4]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # Separable: columns are filtered in the same way.
    img = torch.from_numpy(rng.random((1, 1, 23, 19)))
    blurred_img = gaussian_blur(img, "recursive")[0, 0].numpy()
    rows_first = np.stack([libjxl_recursion(r) for r in img[0, 0].numpy()])
    both = np.stack([libjxl_recursion(c) for c in rows_first.T]).T
    np.testing.assert_allclose(blurred_img, both, rtol=0, atol=1e-12)


def test_scale_counts_of_the_two_conventions():
    assert scale_count(512, 384, "exact") == scale_count(512, 384, "recursive") == 6
    assert scale_count(192, 256, "exact") == 5 and scale_count(192, 256, "recursive") == 6
    assert scale_count(48, 64, "exact") == 3 and scale_count(48, 64, "recursive") == 4
    assert scale_count(8, 8, "exact") == 1 and scale_count(8, 8, "recursive") == 2
    assert len(WEIGHTS) == 108


def test_recursive_convention_is_close_to_the_exact_one():
    a = textured_image(256, 320)
    for dist in (jpeg(a, 90), jpeg(a, 20), blurred(a, 2.0)):
        exact = SSIMULACRA2()(as_tensor(a), as_tensor(dist)).item()
        recursive = SSIMULACRA2(blur="recursive")(as_tensor(a), as_tensor(dist)).item()
        assert abs(exact - recursive) < 3.0, (exact, recursive)


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize("blur", ["exact", "recursive"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identical_images_give_100(blur, dtype):
    x = as_tensor(textured_image(33, 47), dtype)
    got = SSIMULACRA2(blur=blur)(x, x.clone())
    assert got.dtype == dtype and got.shape == (1,)
    assert got.item() == 100.0
    assert SSIMULACRA2().to_distance(got).item() == 0.0


def test_float16_input_keeps_its_dtype():
    x = as_tensor(textured_image(16, 16), torch.float16)
    y = as_tensor(noisy(textured_image(16, 16), 5.0), torch.float16)
    got = SSIMULACRA2()(x, y)
    assert got.dtype == torch.float16 and torch.isfinite(got).all()


def test_worse_distortion_scores_lower_and_asymmetry():
    a = textured_image(64, 80)
    x = as_tensor(a)
    mild, strong = SSIMULACRA2()(x, as_tensor(jpeg(a, 90))), SSIMULACRA2()(x, as_tensor(jpeg(a, 10)))
    assert 100 > mild.item() > strong.item()
    # Ringing and detail loss have different weights: swapping the images changes the score.
    c = smooth_image(64, 80)
    b, d = as_tensor(c), as_tensor(jpeg(c, 30))
    m = SSIMULACRA2()
    assert not m.symmetric and abs(m(b, d).item() - m(d, b).item()) > 0.01


@pytest.mark.parametrize("blur", ["exact", "recursive"])
def test_batch_invariance(blur):
    a, c = textured_image(40, 52, seed=5), smooth_image(40, 52)
    x = torch.cat([as_tensor(a), as_tensor(c), as_tensor(a)])
    y = torch.cat([as_tensor(jpeg(a, 30)), as_tensor(noisy(c, 8.0)), as_tensor(a)])
    m = SSIMULACRA2(blur=blur)
    batched = m(x, y)
    single = torch.cat([m(x[i:i + 1], y[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)
    assert batched[2].item() == 100.0


def test_metadata_and_distance():
    m = SSIMULACRA2()
    assert m.name == "ssimulacra2" and not m.lower_is_better and not m.symmetric
    assert m.min_size == 8 and m.channels == (3,) and m.differentiable
    assert m.spec == "ssimulacra2(blur=exact,data_range=1.0)"
    torch.testing.assert_close(m.to_distance(torch.tensor([100.0, 50.0, -20.0])), torch.tensor([0.0, 0.5, 1.2]))


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("blur", ["exact", "recursive"])
def test_gradients_are_finite_at_x_equal_y_and_elsewhere(blur):
    m = SSIMULACRA2(blur=blur)
    x = as_tensor(textured_image(24, 20))
    # At x == y: the score is at its maximum, the gradient 0 and finite (guarded 4-th roots, s^0.63).
    y = x.clone().requires_grad_(True)
    m(x, y).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().max() == 0
    # Elsewhere: finite, non-zero, and the loss decreases along the negative gradient.
    y = as_tensor(jpeg(textured_image(24, 20), 30)).requires_grad_(True)
    loss = m.as_loss()(x, y)
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all() and y.grad.abs().max() > 0
    with torch.no_grad():
        stepped = (y - 1e-3 * y.grad / y.grad.abs().max()).clamp(0, 1)
        assert m.as_loss()(x, stepped) < loss


def test_gradcheck_on_a_small_pair():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 9, 10, generator=g, dtype=torch.float64) * 0.8 + 0.1
    y = (x + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0.05, 0.95)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: ssimulacra2(x, t), (y,), eps=1e-6, atol=1e-5)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "match"),
    [
        (torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16), {}, "3 channels"),
        (torch.rand(1, 3, 7, 16), torch.rand(1, 3, 7, 16), {}, "smaller than the 8x8"),
        (torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 15), {}, "differ in shape"),
        (torch.rand(1, 3, 16, 16) * 2, torch.rand(1, 3, 16, 16), {}, "outside the declared input range"),
        (torch.rand(3, 16, 16), torch.rand(3, 16, 16), {}, "shape"),
        (torch.randint(0, 255, (1, 3, 16, 16)), torch.randint(0, 255, (1, 3, 16, 16)), {}, "float tensor"),
    ],
)
def test_bad_input_raises_input_error(x, y, kwargs, match):
    with pytest.raises(InputError, match=match):
        SSIMULACRA2(**kwargs)(x, y)


def test_bad_options_raise_input_error():
    with pytest.raises(InputError, match="blur must be one of"):
        SSIMULACRA2(blur="box")
    with pytest.raises(InputError, match="data_range"):
        SSIMULACRA2(data_range=0)
