"""FLIP (LDR and HDR): parity with NVIDIA's flip-evaluator 1.7, properties, gradients, bad input.

flip-evaluator (``pip install --no-deps flip-evaluator==1.7``) is a test dependency only: the
parity tests skip without it. It computes in float32 and sums the mean in float32; measured
over the images below (sizes 64x48, 37x53, 128x128; smooth and textured; noise, blur, colour
shift and JPEG-like blocks, mild and strong): the mean within 6.3e-6 relative, the maps within
1.7e-5 absolute (LDR 8.1e-6, HDR 1.7e-5), float32 and float64 alike.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from percepmetric.errors import InputError
from percepmetric.metrics.flip import DEFAULT_PPD, FLIP

try:
    import flip_evaluator
except ImportError:  # pragma: no cover - depends on the environment
    flip_evaluator = None

needs_flip_evaluator = pytest.mark.skipif(
    flip_evaluator is None,
    reason="flip-evaluator is not installed: pip install --no-deps flip-evaluator==1.7")

#: Parity targets: the mean within 1e-4 relative is the brief's; measured 6.3e-6 (float32 sums).
MEAN_RTOL = 2e-5
MAP_ATOL = 5e-5

SIZES = [(64, 48), (37, 53), (128, 128)]
DISTORTIONS = [(kind, strength) for kind in ("noise", "blur", "shift", "blocks") for strength in ("mild", "strong")]


# ---------------------------------------------------------------- test images

def content(kind: str, h: int, w: int, seed: int = 0) -> np.ndarray:
    """``(3, H, W)`` float64 in [0, 1]: ``"smooth"`` sinusoids or ``"textured"`` checkers and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "smooth":
        img = np.stack([0.5 + 0.4 * np.sin(xx / 7 + 0.3), 0.5 + 0.4 * np.cos(yy / 5),
                        0.5 + 0.3 * np.sin((xx + yy) / 9)])
    else:
        check = (xx // 4 + yy // 4) % 2
        img = np.stack([0.2 + 0.6 * check, 0.5 + 0.45 * np.sin(xx * 1.3) * np.cos(yy * 0.7), rng.random((h, w))])
        img = 0.7 * img + 0.3 * rng.random((3, h, w))
    return np.clip(img, 0.0, 1.0)


def distort(img: np.ndarray, kind: str, strength: str, seed: int = 1) -> np.ndarray:
    """A distorted copy of ``img`` ``(3, H, W)``, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    c, h, w = img.shape
    mild = strength == "mild"
    if kind == "noise":
        out = img + rng.normal(0.0, 0.02 if mild else 0.15, img.shape)
    elif kind == "blur":  # box blur, 3x3 or 7x7
        k = 1 if mild else 3
        pad = np.pad(img, ((0, 0), (k, k), (k, k)), mode="edge")
        out = sum(pad[:, i:i + h, j:j + w] for i in range(2 * k + 1) for j in range(2 * k + 1)) / (2 * k + 1) ** 2
    elif kind == "shift":  # colour shift
        d = np.array([0.02, -0.01, 0.015]) if mild else np.array([0.25, -0.1, 0.2])
        out = img + d[:, None, None]
    else:  # JPEG-like: block means (4x4 or 8x8) and a little ringing noise
        b = 4 if mild else 8
        hb, wb = -(-h // b) * b, -(-w // b) * b
        pad = np.pad(img, ((0, 0), (0, hb - h), (0, wb - w)), mode="edge")
        means = pad.reshape(c, hb // b, b, wb // b, b).mean(axis=(2, 4))
        blocks = np.repeat(np.repeat(means, b, 1), b, 2)[:, :h, :w]
        a = 0.5 if mild else 1.0
        out = (1 - a) * img + a * blocks + (0.01 if mild else 0.03) * np.sign(rng.normal(size=img.shape))
    return np.clip(out, 0.0, 1.0)


def hdr(img: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A linear HDR version of ``img``: scaled per pixel by ``2^(10 g - 4)`` (``g`` the green of
    ``like``, the reference), values up to 64: several exposures."""
    return img * 2.0 ** (10.0 * like[1:2] - 4.0)


def as_batch(img: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32)).to(dtype)[None]


def reference(x: np.ndarray, y: np.ndarray, mode: str, **params: object) -> tuple[np.ndarray, float, dict]:
    """flip-evaluator's ``(map (H, W), mean, parameters)`` for ``(3, H, W)`` images, in float32."""
    assert flip_evaluator is not None
    ref = np.ascontiguousarray(x.transpose(1, 2, 0).astype(np.float32))
    test = np.ascontiguousarray(y.transpose(1, 2, 0).astype(np.float32))
    error_map, mean, used = flip_evaluator.evaluate(ref, test, mode.upper(), applyMagma=False,
                                                    parameters=dict(params))
    return error_map[..., 0], float(mean), used


def compare(metric: FLIP, x: np.ndarray, y: np.ndarray, dtype: torch.dtype, **params: object) -> tuple[float, float]:
    """(relative difference of the means, max abs difference of the maps) against flip-evaluator."""
    ref_map, ref_mean, _ = reference(x, y, metric.mode, **params)
    xt, yt = as_batch(x, dtype), as_batch(y, dtype)
    value = metric(xt, yt)
    error_map = metric.distance_map(xt, yt)
    assert value.dtype == dtype and error_map.dtype == dtype and error_map.shape == (1, 1, *x.shape[1:])
    rel = abs(value.item() - ref_mean) / ref_mean
    return rel, float(np.abs(error_map[0, 0].numpy() - ref_map).max())


# ---------------------------------------------------------------- parity with flip-evaluator

@needs_flip_evaluator
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["smooth", "textured"])
def test_ldr_parity(dtype, size, kind):
    x = content(kind, *size)
    metric = FLIP()
    for distortion in DISTORTIONS:
        y = distort(x, *distortion)
        rel, diff = compare(metric, x, y, dtype)
        assert rel < MEAN_RTOL and diff < MAP_ATOL, (distortion, rel, diff)


@needs_flip_evaluator
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["smooth", "textured"])
def test_hdr_parity(dtype, size, kind):
    x = content(kind, *size)
    metric = FLIP(mode="hdr")
    for distortion in DISTORTIONS:
        y = distort(x, *distortion)
        xh, yh = hdr(x, x), hdr(y, x)
        assert xh.max() > 1.0
        _, _, used = reference(xh, yh, "hdr")
        assert used["numExposures"] >= 4  # a real exposure sweep
        rel, diff = compare(metric, xh, yh, dtype)
        assert rel < MEAN_RTOL and diff < MAP_ATOL, (distortion, rel, diff)


@needs_flip_evaluator
@pytest.mark.parametrize("ppd", [30.0, 120.0])
@pytest.mark.parametrize("mode", ["ldr", "hdr"])
def test_pixels_per_degree_parity(ppd, mode):
    x = content("textured", 37, 53)
    y = distort(x, "blocks", "mild")
    if mode == "hdr":
        x, y = hdr(x, x), hdr(y, x)
    metric = FLIP(mode=mode, pixels_per_degree=ppd)
    rel, diff = compare(metric, x, y, torch.float32, ppd=ppd)
    assert rel < MEAN_RTOL and diff < MAP_ATOL
    # and the option matters: another viewing distance gives another value
    assert abs(metric(as_batch(x), as_batch(y)).item() - FLIP(mode=mode)(as_batch(x), as_batch(y)).item()) > 1e-3


@needs_flip_evaluator
def test_default_pixels_per_degree_is_flip_evaluators():
    x = content("smooth", 16, 16)
    _, _, used = reference(x, x, "ldr")
    assert DEFAULT_PPD == pytest.approx(used["ppd"], rel=1e-6)


@needs_flip_evaluator
@pytest.mark.parametrize("tone_mapper", ["aces", "hable", "reinhard"])
def test_hdr_tone_mappers_and_exposures_parity(tone_mapper):
    x = content("smooth", 64, 48)
    y = distort(x, "noise", "strong")
    xh, yh = hdr(x, x), hdr(y, x)
    rel, diff = compare(FLIP(mode="hdr", tone_mapper=tone_mapper), xh, yh, torch.float32, tonemapper=tone_mapper)
    assert rel < MEAN_RTOL and diff < MAP_ATOL
    explicit = FLIP(mode="hdr", tone_mapper=tone_mapper, start_exposure=-3.0, stop_exposure=2.0, num_exposures=4)
    rel, diff = compare(explicit, xh, yh, torch.float32, tonemapper=tone_mapper, startExposure=-3.0,
                        stopExposure=2.0, numExposures=4)
    assert rel < MEAN_RTOL and diff < MAP_ATOL


@needs_flip_evaluator
def test_hdr_only_start_exposure_given():
    x = content("textured", 37, 53)
    y = distort(x, "shift", "mild")
    xh, yh = hdr(x, x), hdr(y, x)
    rel, diff = compare(FLIP(mode="hdr", start_exposure=-5.0), xh, yh, torch.float32, startExposure=-5.0)
    assert rel < MEAN_RTOL and diff < MAP_ATOL


@needs_flip_evaluator
def test_hdr_is_not_symmetric_and_ldr_is():
    x = content("smooth", 37, 53)
    y = distort(x, "shift", "strong")
    xh, yh = hdr(x, x), hdr(y, x) * 4.0
    assert FLIP().symmetric and not FLIP(mode="hdr").symmetric
    _, forward, _ = reference(xh, yh, "hdr")
    _, backward, _ = reference(yh, xh, "hdr")
    assert abs(forward - backward) > 1e-3  # flip-evaluator: the exposures come from the reference
    ldr = FLIP()
    assert ldr(as_batch(x), as_batch(y)).item() == pytest.approx(ldr(as_batch(y), as_batch(x)).item(), rel=1e-6)


# ---------------------------------------------------------------- properties

@pytest.mark.parametrize("mode", ["ldr", "hdr"])
def test_identical_images_give_zero(mode):
    x = as_batch(content("textured", 37, 53))
    if mode == "hdr":
        x = x * 20.0
    metric = FLIP(mode=mode)
    assert metric(x, x).item() == 0.0
    assert metric.distance_map(x, x).abs().max().item() == 0.0


@pytest.mark.parametrize("mode", ["ldr", "hdr"])
def test_batch_equals_one_by_one(mode):
    xs = [content(k, 37, 53, seed) for k in ("smooth", "textured") for seed in (0, 1)]
    ys = [distort(x, kind, "strong") for x, kind in zip(xs, ("noise", "blur", "shift", "blocks"))]
    if mode == "hdr":  # different dynamic ranges: different exposure counts within one batch
        ys = [hdr(y, x) * s for x, y, s in zip(xs, ys, (1.0, 5.0, 0.1, 40.0))]
        xs = [hdr(x, x) * s for x, s in zip(xs, (1.0, 5.0, 0.1, 40.0))]
    x = torch.cat([as_batch(a, torch.float64) for a in xs])
    y = torch.cat([as_batch(b, torch.float64) for b in ys])
    metric = FLIP(mode=mode)
    batched, maps = metric(x, y), metric.distance_map(x, y)
    assert batched.shape == (4,) and maps.shape == (4, 1, 37, 53)
    for i in range(4):
        assert batched[i].item() == pytest.approx(metric(x[i:i + 1], y[i:i + 1]).item(), rel=1e-12, abs=1e-15)
        assert torch.allclose(maps[i:i + 1], metric.distance_map(x[i:i + 1], y[i:i + 1]), rtol=0, atol=1e-13)


def test_value_range_and_monotone_in_distortion():
    x = content("smooth", 64, 48)
    metric = FLIP()
    mild = metric(as_batch(x), as_batch(distort(x, "noise", "mild"))).item()
    strong = metric(as_batch(x), as_batch(distort(x, "noise", "strong"))).item()
    assert 0.0 < mild < strong < 1.0
    white, black = torch.ones(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)
    assert 0.0 < metric(white, black).item() <= 1.0


def test_data_range_and_grey():
    x, y = content("textured", 37, 53), distort(content("textured", 37, 53), "noise", "mild")
    unit = FLIP()(as_batch(x), as_batch(y))
    scaled = FLIP(data_range=255)(as_batch(x) * 255, as_batch(y) * 255)
    assert scaled.item() == pytest.approx(unit.item(), rel=1e-5)
    grey_x, grey_y = as_batch(x)[:, 1:2], as_batch(y)[:, 1:2]
    assert FLIP()(grey_x, grey_y).item() == pytest.approx(
        FLIP()(grey_x.expand(-1, 3, -1, -1), grey_y.expand(-1, 3, -1, -1)).item(), rel=1e-6)


def test_options_in_spec():
    assert FLIP().spec == f"flip(data_range=1.0,mode=ldr,pixels_per_degree={DEFAULT_PPD})"
    spec = FLIP(mode="hdr", start_exposure=-2, stop_exposure=3, num_exposures=6).spec
    assert "start_exposure=-2.0" in spec and "num_exposures=6" in spec and "tone_mapper=aces" in spec


@pytest.mark.parametrize("mode", ["ldr", "hdr"])
def test_dtype_and_device_follow_the_input(mode):
    x = as_batch(content("smooth", 20, 24), torch.float64)
    y = as_batch(distort(content("smooth", 20, 24), "shift", "strong"), torch.float64)
    metric = FLIP(mode=mode)
    assert metric(x, y).dtype == torch.float64 and metric.distance_map(x, y).dtype == torch.float64
    assert metric(x.float(), y.float()).dtype == torch.float32
    half = metric(x.half(), y.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    if torch.cuda.is_available():
        assert metric(x.cuda(), y.cuda()).device.type == "cuda"


# ---------------------------------------------------------------- gradients

@pytest.mark.parametrize("mode", ["ldr", "hdr"])
def test_gradients_finite_at_identity_and_elsewhere(mode):
    x = as_batch(content("textured", 24, 20))
    y = as_batch(distort(content("textured", 24, 20), "noise", "mild"))
    if mode == "hdr":
        x, y = x * 8.0, y * 8.0
    metric = FLIP(mode=mode)
    for target in (x.clone(), y.clone()):
        test = target.requires_grad_(True)
        value = metric(x, test).sum()
        (grad,) = torch.autograd.grad(value, test)
        assert torch.isfinite(grad).all()
    test = y.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(metric(x, test).sum(), test)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["ldr", "hdr"])
def test_gradcheck_float64(mode):
    rng = np.random.default_rng(3)
    x = torch.from_numpy(0.2 + 0.6 * rng.random((1, 3, 6, 5)))
    y = (x + torch.from_numpy(0.1 * rng.standard_normal((1, 3, 6, 5)))).clamp(0.05, 0.95)
    if mode == "hdr":
        x, y = x * 4.0, y * 4.0
    metric = FLIP(mode=mode, pixels_per_degree=10.0, num_exposures=3 if mode == "hdr" else None)
    test = y.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: metric(x, t), (test,), eps=1e-7, atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("mode", ["ldr", "hdr"])
def test_bad_input(mode):
    metric = FLIP(mode=mode)
    good = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError):
        metric(torch.rand(1, 4, 16, 16), torch.rand(1, 4, 16, 16))  # wrong channel count
    with pytest.raises(InputError):
        metric(good, torch.rand(1, 3, 16, 15))  # mismatched shapes
    with pytest.raises(InputError):
        metric(good, good.clone().fill_(math.nan))
    with pytest.raises(InputError):
        metric(good, -good)  # negative values
    with pytest.raises(InputError):
        metric.distance_map(good, torch.rand(2, 3, 16, 16))


def test_ldr_range_and_hdr_unbounded():
    with pytest.raises(InputError):
        FLIP()(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8) * 3.0)  # LDR: above data_range
    assert math.isfinite(FLIP(mode="hdr")(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8) * 300.0).item())


@pytest.mark.parametrize("options", [
    {"mode": "xdr"}, {"pixels_per_degree": 0}, {"pixels_per_degree": "67"}, {"tone_mapper": "filmic"},
    {"mode": "hdr", "num_exposures": 1}, {"mode": "hdr", "start_exposure": 2.0, "stop_exposure": 1.0},
    {"mode": "hdr", "start_exposure": math.inf}, {"mode": "hdr", "data_range": 255},
])
def test_bad_options(options):
    with pytest.raises(InputError):
        FLIP(**options)


def test_hdr_computed_exposures_conflicting_with_a_given_one():
    x = torch.full((1, 3, 8, 8), 0.5)
    with pytest.raises(InputError):
        FLIP(mode="hdr", start_exposure=20.0)(x, x)  # above the computed stop exposure


def test_hdr_black_and_mostly_black_reference():
    metric = FLIP(mode="hdr")
    black = torch.zeros(1, 3, 16, 16)
    mostly = black.clone()
    mostly[..., :4, :4] = 2.0
    for x in (black, mostly):
        value = metric(x, x + 0.5)
        assert torch.isfinite(value).all() and 0 < value.item() <= 1


def test_hdr_refuses_display_encoded_images_at_every_door(tmp_path, capsys):
    """mode='hdr' reads linear light: an 8-bit file (sRGB codes) through any door is one line,
    exit 2, never a number; float tensors through the Python API are taken."""
    import numpy as np
    from PIL import Image

    from percepmetric import create_metric

    from helpers import run_cli

    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(tmp_path / name)
    code, out, err = run_cli(capsys, "distance", tmp_path / "a.png", tmp_path / "b.png", "-m", "flip:mode=hdr")
    assert code == 2 and err.count("\n") == 1 and "takes linear HDR values as float tensors" in err, err
    metric = create_metric("flip", mode="hdr")
    with pytest.raises(InputError, match="linear HDR values as float tensors"):
        metric(str(tmp_path / "a.png"), str(tmp_path / "b.png"))
    x = torch.rand(1, 3, 32, 40, dtype=torch.float64) * 4
    assert metric(x, x * 1.1).item() > 0
