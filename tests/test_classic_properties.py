"""Properties every metric of the classic full-reference suite keeps, whatever its formula.

One parametrized test per property, over the suite's registry names; each metric's own test
file holds what is particular to it (parity with its authors' code, its options, its maps).
"""

from __future__ import annotations

import pytest
import torch

from percepmetric import create_metric
from percepmetric.errors import InputError

CLASSIC = ("gmsd", "ms_gmsd", "haarpsi", "mdsi", "srsim", "vsi", "nlpd", "dss", "mad", "vif", "vifp", "iw_ssim",
           "cw_ssim")
#: An odd, non-square size most of them take (MAD needs 34x34); a metric that needs more (VIF
#: 72, CW-SSIM 64, IW-SSIM 176) gets its smallest size by one more column.
HEIGHT, WIDTH = 35, 40


def _size(metric) -> tuple[int, int]:
    return (HEIGHT, WIDTH) if metric.min_size <= HEIGHT else (metric.min_size, metric.min_size + 1)


def _pair(metric, n: int = 4, channels: int = 3, dtype: torch.dtype = torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, *_size(metric), generator=g, dtype=dtype)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=dtype)).clamp(0, 1)
    return x, y


def _ideal(metric) -> float:
    """The value of identical images: 0 for a distance, 1 for a similarity index."""
    return 0.0 if metric.lower_is_better else 1.0


@pytest.mark.parametrize("name", CLASSIC)
@pytest.mark.parametrize("channels", [1, 3])
def test_identical_images_give_the_ideal_value(name, channels):
    m = create_metric(name)
    x, _ = _pair(m, channels=channels)
    torch.testing.assert_close(m(x, x.clone()), torch.full((4,), _ideal(m)), rtol=0, atol=1e-6)
    torch.testing.assert_close(m.to_distance(m(x, x)), torch.zeros(4), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", CLASSIC)
def test_a_batch_gives_each_pair_its_own_value(name):
    m = create_metric(name)
    x, y = _pair(m, n=5)
    single = torch.cat([m(x[i : i + 1], y[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(m(x, y), single, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", CLASSIC)
def test_two_float_dtypes_compute_in_their_common_one(name):
    m = create_metric(name)
    x, y = _pair(m, n=2, dtype=torch.float64)
    v64 = m(x, y)
    mixed = m(x.float(), y)
    assert v64.dtype == mixed.dtype == torch.float64
    torch.testing.assert_close(mixed, m(x.float().double(), y), rtol=0, atol=1e-12)
    v32 = m(x.float(), y.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", CLASSIC)
def test_gradients_are_finite_where_images_are_equal_flat_or_black(name):
    m = create_metric(name)
    x, y = _pair(m, n=2)
    pairs = {"x == y": (x, x.clone()), "noisy": (x, y), "flat": (torch.full_like(x, 0.5), torch.full_like(x, 0.5)),
             "black vs image": (torch.zeros_like(x), x)}
    for label, (a, b) in pairs.items():
        a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        m.as_loss()(a, b).backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all(), label


@pytest.mark.parametrize("name", CLASSIC)
def test_a_first_call_under_inference_mode_does_not_stop_later_training(name):
    """Cached constant tensors (filter banks, pyramid matrices) built during an evaluation under
    ``torch.inference_mode()`` must still enter a training step's graph later in the process (a
    size no other test uses, so the caches are built here)."""
    m = create_metric(name)
    h, w = _size(m)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, h + 3, w + 5, generator=g)
    y = (x + 0.1 * torch.rand(x.shape, generator=g)).clamp(0, 1)
    with torch.inference_mode():
        m(x, y)
    a = x.clone().requires_grad_(True)
    m.as_loss()(a, y).backward()
    assert torch.isfinite(a.grad).all()


@pytest.mark.parametrize("name", CLASSIC)
def test_gradients_match_finite_differences(name):
    g = torch.Generator().manual_seed(1)
    m = create_metric(name)
    h, w = max(18, m.min_size), max(19, m.min_size + 1)  # 18x19, or the smallest a metric takes (DSS: 32)
    x = torch.rand(1, 3, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 3, h, w, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: m(a, y), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("name", CLASSIC)
def test_bad_input_is_refused_in_one_line(name):
    m = create_metric(name)
    x, y = _pair(m, n=1)
    nan = x.clone()
    nan[0, 0, 3, 3] = float("nan")
    too_small = m.min_size - 1
    cases = [(nan, y, "NaN"), (x * 2, y, "outside"), (x[:, :2], y[:, :2], "channels"), (x, y[..., :-1], "shape")]
    if too_small >= 1:
        cases.append((x[..., :too_small, :], y[..., :too_small, :], f"{m.min_size}x{m.min_size}"))
    for a, b, words in cases:
        with pytest.raises(InputError, match=words) as info:
            m(a, b)
        assert "\n" not in str(info.value), words


@pytest.mark.parametrize("name", CLASSIC)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_values(name):
    m = create_metric(name)
    x, y = _pair(m, n=2)
    torch.testing.assert_close(m(x.cuda(), y.cuda()).cpu(), m(x, y), rtol=0, atol=1e-5)
