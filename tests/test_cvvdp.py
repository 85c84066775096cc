"""ColorVideoVDP: parity with the cvvdp package (pycvvdp 0.5.7) on still images, properties,
gradients, bad input.

cvvdp is a test dependency only (``pip install cvvdp==0.5.7``); the parity tests skip without it.
It computes in float32: measured worst JOD difference 1.5e-7 relative over the sizes and
distortions below and all the non-linear displays of display_models.json; its raw heatmap is
stored as float16, so the map is compared to 1e-3 absolute (measured 6e-5).
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from percepmetric.errors import InputError
from percepmetric.metrics.cvvdp import CVVDP, DEFAULT_DISPLAY, display_names

try:
    import pycvvdp
except ImportError:  # pragma: no cover - depends on the environment
    pycvvdp = None

needs_cvvdp = pytest.mark.skipif(pycvvdp is None, reason="cvvdp is not installed: pip install cvvdp==0.5.7")

#: The brief's parity target (JOD, relative), and what was measured (float32 on both sides).
RTOL = 1e-4
MEASURED_RTOL = 1e-6
MAP_ATOL = 1e-3

#: (H, W): even, odd and non-square, incl. H and W of different parity (the pyramid's edge).
SIZES = [(48, 64), (61, 97), (192, 256), (64, 97)]
DISTORTIONS = [("noise", 0.02), ("noise", 0.2), ("blur", 1), ("blur", 3)]


def make_pair(h: int, w: int, kind: str, strength: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random reference with some texture, and a noisy or box-blurred test, (1,3,H,W) in [0, 1]."""
    g = torch.Generator().manual_seed(seed + 7919 * h + w)
    base = torch.rand(1, 3, h // 4 + 1, w // 4 + 1, generator=g)
    ref = F.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    ref = (ref + 0.1 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)
    if kind == "noise":
        test = (ref + strength * torch.randn(1, 3, h, w, generator=g)).clamp(0, 1)
    else:
        k = 2 * int(strength) + 1
        test = F.avg_pool2d(F.pad(ref, (k // 2,) * 4, mode="replicate"), k, 1)
    return ref, test


@pytest.fixture(scope="module")
def reference_metric():
    logging.getLogger().setLevel(logging.ERROR)  # cvvdp logs a warning per call on [0, 1] input
    return pycvvdp.cvvdp(display_name=DEFAULT_DISPLAY, quiet=True, device=torch.device("cpu"))


def cvvdp_predict(metric, ref: torch.Tensor, test: torch.Tensor) -> float:
    q, _ = metric.predict(test[0].permute(1, 2, 0).contiguous(), ref[0].permute(1, 2, 0).contiguous(),
                          dim_order="HWC")
    return float(q)


@needs_cvvdp
@pytest.mark.parametrize("size", SIZES)
def test_parity_with_cvvdp(reference_metric, size):
    ours = CVVDP()
    for kind, strength in DISTORTIONS:
        ref, test = make_pair(size[0], size[1], kind, strength)
        expected = cvvdp_predict(reference_metric, ref, test)
        got = ours(ref, test).item()
        assert abs(got - expected) <= RTOL * abs(expected), (size, kind, strength, got, expected)
        assert abs(got - expected) <= MEASURED_RTOL * abs(expected), (size, kind, strength, got, expected)


@needs_cvvdp
def test_parity_grey_and_small(reference_metric):
    ours = CVVDP()
    for h, w in [(4, 4), (8, 6), (33, 20)]:
        ref, test = make_pair(h, w, "noise", 0.1)
        for r, t in ((ref, test), (ref[:, :1], test[:, :1])):
            expected = cvvdp_predict(reference_metric, r, t)
            assert ours(r, t).item() == pytest.approx(expected, rel=MEASURED_RTOL)


@needs_cvvdp
@pytest.mark.parametrize("display", ["standard_fhd", "standard_hmd", "standard_phone", "standard_hdr_pq",
                                     "standard_hdr_hlg"])
def test_parity_other_displays(display):
    logging.getLogger().setLevel(logging.ERROR)
    metric = pycvvdp.cvvdp(display_name=display, quiet=True, device=torch.device("cpu"))
    ref, test = make_pair(61, 97, "noise", 0.1)
    assert CVVDP(display=display)(ref, test).item() == pytest.approx(cvvdp_predict(metric, ref, test),
                                                                      rel=MEASURED_RTOL)


@needs_cvvdp
def test_distance_map_is_cvvdps_raw_heatmap():
    logging.getLogger().setLevel(logging.ERROR)
    metric = pycvvdp.cvvdp(display_name=DEFAULT_DISPLAY, quiet=True, device=torch.device("cpu"), heatmap="raw")
    ref, test = make_pair(61, 97, "noise", 0.1)
    _, stats = metric.predict(test[0].permute(1, 2, 0).contiguous(), ref[0].permute(1, 2, 0).contiguous(),
                              dim_order="HWC")
    expected = stats["heatmap"].float()[:, :, 0]  # (1, 1, H, W)
    got = CVVDP().distance_map(ref, test)
    assert got.shape == (1, 1, 61, 97)
    assert (got - expected).abs().max().item() < MAP_ATOL
    assert got.max().item() > 0.05  # a real difference, not two zero maps


# ---------------------------------------------------------------- properties


def test_identical_images_give_10():
    ref, _ = make_pair(48, 64, "noise", 0.1)
    metric = CVVDP()
    assert torch.equal(metric(ref, ref), torch.full((1,), 10.0))
    assert metric.to_distance(metric(ref, ref)).item() == 0.0
    assert metric.distance_map(ref, ref).abs().max().item() == 0.0


def test_batch_invariance_and_order():
    pairs = [make_pair(40, 56, kind, s, seed=i) for i, (kind, s) in enumerate(DISTORTIONS)]
    ref = torch.cat([p[0] for p in pairs])
    test = torch.cat([p[1] for p in pairs])
    metric = CVVDP()
    batched = metric(ref, test)
    single = torch.cat([metric(r, t) for r, t in pairs])
    assert batched.shape == (4,)
    torch.testing.assert_close(batched, single, rtol=1e-6, atol=1e-6)
    assert (batched < 10).all()
    # worse distortions score lower
    assert batched[1] < batched[0] and batched[3] < batched[2]


def test_metadata_and_distance():
    metric = CVVDP()
    assert metric.lower_is_better is False and metric.symmetric is False and metric.differentiable
    ref, test = make_pair(48, 64, "noise", 0.2)
    value = metric(ref, test)
    torch.testing.assert_close(metric.to_distance(value), 10.0 - value)
    assert metric.spec == f"cvvdp(data_range=1.0,display={DEFAULT_DISPLAY})"
    assert metric(ref, test).item() != pytest.approx(metric(test, ref).item(), abs=1e-6)  # not symmetric


def test_data_range_255():
    ref, test = make_pair(48, 64, "noise", 0.1)
    torch.testing.assert_close(CVVDP(data_range=255)(ref * 255, test * 255), CVVDP()(ref, test), rtol=1e-5, atol=1e-5)


def test_float64_in_float64_out_and_close_to_float32():
    ref, test = make_pair(48, 64, "blur", 1)
    v64 = CVVDP()(ref.double(), test.double())
    assert v64.dtype == torch.float64
    assert v64.item() == pytest.approx(CVVDP()(ref, test).item(), rel=1e-5)
    assert CVVDP().distance_map(ref.double(), test.double()).dtype == torch.float64


def test_finite_gradients_including_identical_images():
    ref, test = make_pair(32, 40, "noise", 0.1)
    for t in (ref.clone(), test):
        t = t.double().requires_grad_(True)
        CVVDP()(ref.double(), t).sum().backward()
        assert t.grad is not None and torch.isfinite(t.grad).all()
    t = test.double().requires_grad_(True)
    CVVDP()(ref.double(), t).sum().backward()
    assert t.grad is not None and t.grad.abs().sum() > 0
    m = test.double().requires_grad_(True)
    CVVDP().distance_map(ref.double(), m).sum().backward()
    assert m.grad is not None and torch.isfinite(m.grad).all()


def test_display_names():
    names = display_names()
    assert DEFAULT_DISPLAY in names and "standard_fhd" in names
    assert "standard_hdr_linear" not in names  # absolute linear input, not [0, data_range]


@pytest.mark.parametrize("bad", [
    lambda m, x: m(x, x[:, :, :-1]),  # shapes differ
    lambda m, x: m(x[:, :2], x[:, :2]),  # 2 channels
    lambda m, x: m(x[:, :, :3, :3], x[:, :, :3, :3]),  # below min size
    lambda m, x: m(x * 2, x),  # out of range
    lambda m, x: m(x[0], x[0]),  # 3-D
    lambda m, x: m(x.long(), x.long()),  # integer tensor
    lambda m, x: m.distance_map(x, x[:, :, :-1]),
])
def test_bad_input(bad):
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError):
        bad(CVVDP(), x)


@pytest.mark.parametrize("options", [{"display": "no_such_display"}, {"display": "standard_hdr_linear"},
                                     {"display": 3}, {"data_range": 0}])
def test_bad_options(options):
    with pytest.raises(InputError):
        CVVDP(**options)
