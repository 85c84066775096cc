"""VIF (vifvec.m) and VIF-P (vifp_mscale.m): parity with the authors' code run under Octave, the
steerable pyramid, properties, gradients, bad input, peers, CLI.

VIF needs 72x72 images and VIF-P 41x41, more than the shared property tests
(tests/test_classic_properties.py, 33x40) use: their properties are checked here at sizes the
metrics take.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from percepmetric import InputError, create_metric, distance, functional
from percepmetric.io import load_image
from percepmetric.metrics.eight_bit import values_8bit
from percepmetric.metrics.steerable import (
    corr_reflect1,
    max_pyramid_height,
    sp5_filters,
    steerable_pyramid,
)
from percepmetric.metrics.vif import VIF_MIN_SIZE, VIFP_MIN_SIZE, _subband_plan, fspecial_gaussian

from helpers import cli_distance_value

NAMES = ("vif", "vifp")
# Both are ratios of information sums in [0, ~1]: 1e-4 absolute is the parity target.
# Measured on the reference pairs: float64 within 1e-13 (vif) and 2e-12 (vifp), float32 within
# 4e-8 (the float32 result's own rounding; the formula runs in float64 either way).
TOLERANCE = 1e-4
MEASURED = {torch.float64: 1e-11, torch.float32: 2e-7}


def reference_rows(reference_dir, metric: str | None = None) -> list[dict[str, str]]:
    with open(reference_dir / "vif" / "expected.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r for r in rows if metric is None or r["metric"] == metric]


def load_pair(reference_dir, row) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_image(reference_dir / row["reference"]), load_image(reference_dir / row["distorted"])
    if row["crop"]:
        r0, c0, h, w = map(int, row["crop"].split())
        x, y = x[..., r0 : r0 + h, c0 : c0 + w], y[..., r0 : r0 + h, c0 : c0 + w]
    return x, y


def _pair(n: int = 3, channels: int = 3, size: tuple[int, int] = (75, 80), dtype=torch.float32, seed: int = 0):
    """Smooth content plus noise (a textured scene, so the GSM covariances are well conditioned)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, channels, size[0] // 4 + 1, size[1] // 4 + 1, generator=g, dtype=dtype)
    x = F.interpolate(base, size=size, mode="bilinear", align_corners=False)
    x = (x + 0.05 * torch.rand(x.shape, generator=g, dtype=dtype)).clamp(0, 1)
    y = (x + 0.08 * torch.randn(x.shape, generator=g, dtype=dtype)).clamp(0, 1)
    return x, y


# ---------------------------------------------------------------- parity with the authors' code


def test_reference_covers_sizes_colours_and_both_metrics(reference_dir):
    rows = reference_rows(reference_dir)
    assert {r["metric"] for r in rows} == set(NAMES)
    for name, smallest in (("vif", VIF_MIN_SIZE), ("vifp", VIFP_MIN_SIZE)):
        shapes = {tuple(load_pair(reference_dir, r)[0].shape) for r in reference_rows(reference_dir, name)}
        assert any(s[1] == 1 for s in shapes) and any(s[1] == 3 for s in shapes)
        assert any(s[2] != s[3] for s in shapes)  # non-square
        assert any(s[2] % 2 or s[3] % 2 for s in shapes)  # odd
        assert any(s[2] % 3 or s[3] % 3 for s in shapes)  # VIF crops its subbands to multiples of 3
        assert any(min(s[2:]) == smallest for s in shapes)  # the minimum size
        assert len(shapes) >= 8
        assert any(float(r["value"]) > 1 for r in reference_rows(reference_dir, name))  # contrast enhancement


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_with_authors_code(reference_dir, name, dtype):
    worst = 0.0
    for row in reference_rows(reference_dir, name):
        x, y = load_pair(reference_dir, row)
        got = create_metric(name)(x.to(dtype), y.to(dtype))
        assert got.shape == (1,) and got.dtype == dtype
        err = abs(got.item() - float(row["value"]))
        assert err < TOLERANCE, row
        worst = max(worst, err)
    assert worst < MEASURED[dtype], worst


@pytest.mark.parametrize("name", NAMES)
def test_parity_as_one_batch_from_8bit_codes_and_255_range(reference_dir, name):
    """The benchmark's uint8 path and data_range=255 give the same numbers; pairs of one size
    batched together give each its own value."""
    rows = [r for r in reference_rows(reference_dir, name) if r["reference"].startswith("srsim/grey_121x88")]
    assert len(rows) == 3
    pairs = [load_pair(reference_dir, r) for r in rows]
    x, y = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    want = torch.tensor([float(r["value"]) for r in rows], dtype=torch.float64)
    codes = [(t * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous() for t in (x, y)]
    torch.testing.assert_close(values_8bit(create_metric(name), *codes).double(), want, rtol=0, atol=2e-7)
    byte = create_metric(name, data_range=255)((x * 255).round().double(), (y * 255).round().double())
    torch.testing.assert_close(byte, want, rtol=0, atol=1e-11)


# ---------------------------------------------------------------- the steerable pyramid and its pieces


def test_vifvec_subbands_are_orientations_0_and_90_degrees_of_each_level():
    plan = _subband_plan()
    # ind2wtree's 4, 7 are the coarsest level's bands 4 and 1 (1-based) with a 3x3 window,
    # 22, 25 the finest level's with a 17x17 window.
    assert plan == {0: ([3, 0], 17), 1: ([3, 0], 9), 2: ([3, 0], 5), 3: ([3, 0], 3)}


def test_sp5_filters_as_printed():
    f = sp5_filters()
    assert f["hi0"].shape == (9, 9) and f["lo0"].shape == (5, 5) and f["lo"].shape == (9, 9)
    assert f["bands"].shape == (6, 7, 7)
    assert f["hi0"][4, 4].item() == 0.81380200 and f["lo"][4, 4].item() == 2 * 0.10096540
    # band 1 (0 degrees): its printed first line is its first column; antisymmetric left-right
    b0 = f["bands"][0]
    assert b0[:, 0].tolist() == [0.00277643, 0.00496194, 0.01026699, 0.01455399, 0.01026699, 0.00496194, 0.00277643]
    torch.testing.assert_close(b0, -b0.flip(1), rtol=0, atol=0)
    torch.testing.assert_close(f["bands"][3], -f["bands"][3].flip(0), rtol=0, atol=0)  # band 4: up-down
    for band in f["bands"]:  # every oriented band filter has no DC response
        assert abs(band.sum().item()) < 1e-7


def test_max_pyramid_height_is_maxpyrht():
    assert max_pyramid_height(72, 72) == 4 and max_pyramid_height(71, 200) == 3
    assert max_pyramid_height(8, 100) == 0 and max_pyramid_height(512, 384) == 6
    with pytest.raises(ValueError, match="at most 3"):
        steerable_pyramid(torch.rand(1, 1, 71, 80), 4)


def test_corr_reflect1_is_reflect_padding_then_correlation():
    """The float64 CPU path (FFT) and conv2d agree, and reflect1 is numpy's 'reflect'."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 23, 30, generator=g, dtype=torch.float64) * 255
    w = torch.randn(3, 1, 7, 9, generator=g, dtype=torch.float64)
    for stride in (1, 2):
        got = corr_reflect1(x, w, stride)
        padded = np.pad(x.numpy(), ((0, 0), (0, 0), (3, 3), (4, 4)), mode="reflect")
        want = F.conv2d(torch.from_numpy(padded), w, stride=stride)
        assert got.shape == (2, 3, math.ceil(23 / stride), math.ceil(30 / stride))
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
        torch.testing.assert_close(corr_reflect1(x.float(), w.float(), stride).double(), want, rtol=1e-4, atol=1e-3)


def test_pyramid_shapes_and_band_selection():
    x = torch.rand(2, 1, 75, 83, dtype=torch.float64)
    hi0, levels, lo = steerable_pyramid(x, 4)
    assert hi0.shape == (2, 1, 75, 83) and lo.shape == (2, 1, 5, 6)
    assert [tuple(t.shape) for t in levels] == [(2, 6, 75, 83), (2, 6, 38, 42), (2, 6, 19, 21), (2, 6, 10, 11)]
    _, some, none = steerable_pyramid(x, 4, bands=(0, 3), residuals=False)
    assert none is None
    for full, part in zip(levels, some):
        torch.testing.assert_close(part, full[:, [0, 3]], rtol=0, atol=1e-10)
    # the pyramid of a constant has no band energy (zero-sum filters, reflected edges)
    _, flat, _ = steerable_pyramid(torch.full((1, 1, 72, 72), 200.0, dtype=torch.float64), 4)
    assert max(t.abs().max().item() for t in flat) < 1e-9


def test_fspecial_gaussian_is_matlabs():
    for size in (17, 9, 5, 3):
        k = fspecial_gaussian(size, size / 5, torch.float64, torch.device("cpu"))
        r = np.arange(size) - (size - 1) / 2
        h = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * (size / 5) ** 2))
        h[h < np.finfo(float).eps * h.max()] = 0
        np.testing.assert_allclose(torch.outer(k, k).numpy(), h / h.sum(), rtol=0, atol=1e-16)


# ---------------------------------------------------------------- properties (the shared ones, at sizes VIF takes)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_identical_images_give_one(name, channels):
    m = create_metric(name)
    x, _ = _pair(channels=channels)
    torch.testing.assert_close(m(x, x.clone()), torch.ones(3), rtol=0, atol=1e-6)
    torch.testing.assert_close(m.to_distance(m(x, x)), torch.zeros(3), rtol=0, atol=1e-6)
    flat = torch.full((2, channels, 80, 80), 0.5)  # no information in the reference: 1 (0/0 in the code)
    torch.testing.assert_close(m(flat, flat), torch.ones(2), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_a_batch_gives_each_pair_its_own_value(name):
    m = create_metric(name)
    x, y = _pair(n=4)
    single = torch.cat([m(x[i : i + 1], y[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(m(x, y), single, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_two_float_dtypes_compute_in_their_common_one(name):
    m = create_metric(name)
    x, y = _pair(n=2, dtype=torch.float64)
    v64 = m(x, y)
    mixed = m(x.float(), y)
    assert v64.dtype == mixed.dtype == torch.float64
    torch.testing.assert_close(mixed, m(x.float().double(), y), rtol=0, atol=1e-12)
    v32 = m(x.float(), y.float())
    assert v32.dtype == torch.float32
    torch.testing.assert_close(v32.double(), v64, rtol=1e-4, atol=1e-5)
    assert m(x.half(), y.half()).dtype == torch.float16


@pytest.mark.parametrize("name", NAMES)
def test_asymmetric_monotone_and_above_one_for_more_contrast(name):
    m = create_metric(name)
    assert not m.symmetric and not m.lower_is_better and m.differentiable
    x, _ = _pair(n=2)
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(x.shape, generator=g)
    values = [m(x, (x + s * noise).clamp(0, 1)) for s in (0.02, 0.05, 0.1, 0.2)]
    for a, b in zip(values, values[1:]):
        assert (a > b).all()
    y = (x + 0.1 * noise).clamp(0, 1)
    assert (m(x, y) - m(y, x)).abs().min() > 1e-3
    mid = 0.3 + 0.4 * x  # room for a contrast stretch without clipping
    enhanced = (mid - 0.5) * 1.3 + 0.5
    assert (m(mid, enhanced) > 1).all() and (m(enhanced, mid) < 1).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradients_are_finite_where_images_are_equal_flat_or_black(name):
    m = create_metric(name)
    x, y = _pair(n=2)
    pairs = {"x == y": (x, x.clone()), "noisy": (x, y), "flat": (torch.full_like(x, 0.5), torch.full_like(x, 0.5)),
             "black vs image": (torch.zeros_like(x), x), "image vs black": (x, torch.zeros_like(x))}
    for label, (a, b) in pairs.items():
        a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        m.as_loss()(a, b).backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all(), label
    a = x.clone().requires_grad_(True)
    m.as_loss()(a, y).backward()
    assert a.grad.abs().max() > 0


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_finite_differences(name):
    g = torch.Generator().manual_seed(1)
    x, y = (t.double() for t in _pair(n=1, size=(VIF_MIN_SIZE, VIF_MIN_SIZE + 3)))
    x = (x + 0.01 * torch.rand(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)  # off the 8-bit grid
    m = create_metric(name, quantize=False)
    yy = y.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda b: m(x, b), (yy,), eps=1e-6, atol=1e-5, fast_mode=True)
    xx = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: m(a, y), (xx,), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_refused_in_one_line(name):
    m = create_metric(name)
    x, y = _pair(n=1)
    nan = x.clone()
    nan[0, 0, 3, 3] = float("nan")
    small = m.min_size - 1
    cases = [(nan, y, "NaN"), (x * 2, y, "outside"), (x[:, :2], y[:, :2], "channels"), (x, y[..., :-1], "shape"),
             (x[..., :small, :], y[..., :small, :], f"{m.min_size}x{m.min_size}"),
             (x[..., :, :small], y[..., :, :small], f"{m.min_size}x{m.min_size}")]
    for a, b, words in cases:
        with pytest.raises(InputError, match=words) as info:
            m(a, b)
        assert "\n" not in str(info.value), words
    assert m.min_size == {"vif": 72, "vifp": 41}[name]
    z = torch.rand(1, 1, m.min_size, m.min_size)
    assert torch.isfinite(m(z, (z + 0.1).clamp(0, 1))).all()  # the minimum works
    for option, value in (("convention", "piq"), ("quantize", "sometimes")):
        with pytest.raises(InputError, match=option):
            create_metric(name, **{option: value})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_values(name):
    m = create_metric(name)
    x, y = _pair(n=2)
    torch.testing.assert_close(m(x.cuda(), y.cuda()).cpu(), m(x, y), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_registry_functional_and_quantize(name):
    m = create_metric(name, quantize="False")
    assert m.options == {"data_range": 1.0, "convention": "matlab", "quantize": False}
    assert create_metric(name).spec == f"{name}(convention=matlab,data_range=1.0,quantize=auto)"
    x, y = _pair(n=2)
    torch.testing.assert_close(getattr(functional, name)(x, y), create_metric(name)(x, y))
    # quantize: off-grid images are used unrounded by "auto", rounded by True
    off = (x + 0.3 / 255).clamp(0, 1)
    auto, rounded = create_metric(name)(off, y), create_metric(name, quantize=True)(off, y)
    assert (auto - rounded).abs().max() > 1e-7
    torch.testing.assert_close(distance(x, y, metric=name), 1 - create_metric(name)(x, y))


@pytest.mark.parametrize("name", NAMES)
def test_range_options_and_files(name, tmp_path):
    """data_range=255 reads files as 0..255 and gives the default's values (the range doors, at a
    size VIF takes: tests/test_range_doors.py uses 48x48)."""
    from PIL import Image

    x, y = _pair(n=1, size=(80, 85))
    codes = [(t[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy() for t in (x, y)]
    paths = [tmp_path / f"{k}.png" for k in "ab"]
    for c, p in zip(codes, paths):
        Image.fromarray(c).save(p)
    truth = create_metric(name)(*(torch.from_numpy(c).permute(2, 0, 1)[None].float() / 255 for c in codes))
    for options in ({}, {"data_range": 255}):
        m = create_metric(name, **options)
        torch.testing.assert_close(m(*paths), truth, rtol=0, atol=1e-6)
        torch.testing.assert_close(m(*codes), truth, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- peers


def test_vifp_against_piq(reference_dir):
    """piq's vif_p (0.8) follows vifp_mscale.m with its own choices: Y = 0.299 R + 0.587 G +
    0.114 B unrounded (not MATLAB's rgb2gray), eps 1e-8 (not 1e-10) in its clean-ups and
    (num + 1e-8) / (den + 1e-8), and the distorted image first. Measured on the reference pairs:
    up to 1.1e-2 on RGB pairs (the luma), 1.2e-8 on grey ones."""
    piq = pytest.importorskip("piq")
    for row in reference_rows(reference_dir, "vifp"):
        x, y = load_pair(reference_dir, row)
        if max(x.shape[-2:]) > 150:  # piq's float64 conv2d is slow on the CPU: the small pairs suffice
            continue
        theirs = piq.vif_p(y.double(), x.double(), data_range=1.0, reduction="none").item()
        gap = abs(theirs - float(row["value"]))
        assert gap < (1e-7 if x.shape[1] == 1 else 2e-2), (row, gap)


def test_vif_against_pyiqa(reference_dir):
    """pyiqa's vif (0.1.x) ports vifvec.m in float32 with its own choices: the Y of YCbCr
    (16..235, unrounded) for RGB, tol 1e-12 (not 1e-15), pinverse for inv, den + 1e-12.
    Measured on the reference pairs: up to 4.1e-4 (RGB), 2.1e-4 (grey, fed as three equal
    channels)."""
    pyiqa = pytest.importorskip("pyiqa")
    metric = pyiqa.create_metric("vif", device="cpu", as_loss=False)
    gaps = []
    for row in reference_rows(reference_dir, "vif"):
        x, y = load_pair(reference_dir, row)
        x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)  # pyiqa takes RGB only
        gaps.append(abs(metric(y, x).item() - float(row["value"])))
    assert max(gaps) < 1e-3


def test_cli_distance(reference_dir):
    row = next(r for r in reference_rows(reference_dir, "vif") if r["distorted"].endswith("i01_01_5.bmp")
               and not r["crop"])
    printed = cli_distance_value(reference_dir / row["reference"], reference_dir / row["distorted"], "vif")
    assert abs(printed - float(row["value"])) < 1e-6  # the metric's own value, six decimals
