"""FSIM / FSIMc: parity with the authors' MATLAB code, properties, gradients, bad input, CLI."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from percepmetric import InputError, create_metric, distance
from percepmetric.io import load_image
from percepmetric.metrics.fsim import fsim, log_gabor_bank, phase_congruency
from percepmetric.metrics.matlab import box_downsample, downsample_factor, matlab_round

TID = "tid2013-pair"


def expected_values(reference_dir) -> dict[tuple[str, str, str], tuple[float, float]]:
    with open(reference_dir / TID / "expected.csv", newline="") as f:
        return {(r["distorted"], r["reference"], r["metric"]): (float(r["value"]), float(r["tolerance"]))
                for r in csv.DictReader(f)}


PARITY_CASES = [
    ("i01_01_5.bmp", "I01.BMP", "fsim", {}),
    ("i01_01_5.bmp", "I01.BMP", "fsimc", {"chromatic": True}),
    ("goldhill_jpeg.gif", "goldhill.gif", "fsim", {}),
]


@pytest.mark.parametrize("precision", ["input", "float64"])
@pytest.mark.parametrize("distorted,reference,row,options", PARITY_CASES)
def test_published_values(reference_dir, distorted, reference, row, options, precision):
    value, tolerance = expected_values(reference_dir)[(distorted, reference, row)]
    assert tolerance == pytest.approx(1e-4)
    x = load_image(reference_dir / TID / distorted)
    y = load_image(reference_dir / TID / reference)
    if row == "fsim" and distorted.endswith(".gif"):
        assert x.shape[1] == 1  # the grey pair stays grey, as MATLAB's code sees it
    m = create_metric("fsim", precision=precision, **options)
    got = m(x, y)
    assert got.shape == (1,) and got.dtype == torch.float32
    assert abs(got.item() - value) < tolerance


def test_identity_and_distance(reference_dir):
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 40, 48, generator=g)
    grey = torch.rand(2, 1, 40, 48, generator=g)
    for x, options in ((rgb, {}), (rgb, {"chromatic": True}), (grey, {})):
        m = create_metric("fsim", **options)
        value = m(x, x.clone())
        torch.testing.assert_close(value, torch.ones(2), rtol=0, atol=1e-6)
        torch.testing.assert_close(m.to_distance(value), torch.zeros(2), rtol=0, atol=1e-6)
    assert distance(rgb, rgb, metric="fsim").abs().max() < 1e-6


def test_symmetric_and_bounded():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 32, 36, generator=g)
    y = (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    for chromatic in (False, True):
        m = create_metric("fsim", chromatic=chromatic)
        a, b = m(x, y), m(y, x)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
        assert ((a > 0) & (a < 1)).all()


def test_batch_equals_single_images():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(5, 3, 33, 40, generator=g)  # odd height: the other branch of Kovesi's grid
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    m = create_metric("fsim", chromatic=True)
    batched = m(x, y)
    single = torch.cat([m(x[i : i + 1], y[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-6)


def test_float32_and_float64_agree():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 48, 48, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    for chromatic in (False, True):
        v64 = fsim(x, y, chromatic=chromatic)
        v32 = fsim(x.float(), y.float(), chromatic=chromatic)
        v32_in_f64 = fsim(x.float(), y.float(), chromatic=chromatic, precision="float64")
        assert v64.dtype == torch.float64 and v32.dtype == torch.float32 and v32_in_f64.dtype == torch.float32
        torch.testing.assert_close(v32.double(), v64, rtol=0, atol=1e-5)
        torch.testing.assert_close(v32_in_f64.double(), v64, rtol=0, atol=1e-6)


def test_data_range_255_matches_scaled_input():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64)
    y = torch.rand(2, 3, 32, 32, generator=g, dtype=torch.float64)
    for chromatic in (False, True):
        one = create_metric("fsim", chromatic=chromatic)(x, y)
        byte = create_metric("fsim", chromatic=chromatic, data_range=255)(x * 255, y * 255)
        torch.testing.assert_close(one, byte, rtol=0, atol=1e-10)
    with pytest.raises(InputError, match="outside the declared input range"):
        create_metric("fsim")(x * 255, y * 255)


@pytest.mark.parametrize("chromatic", [False, True])
def test_finite_gradients(chromatic):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 24, 24, generator=g)
    m = create_metric("fsim", chromatic=chromatic)
    pairs = {
        "x == y": (x, x.clone()),
        "random": (x, torch.rand(2, 3, 24, 24, generator=g)),
        "flat images": (torch.full_like(x, 0.5), torch.full_like(x, 0.5)),
        "different flat images": (torch.full_like(x, 0.2), torch.full_like(x, 0.7)),
        "black vs random": (torch.zeros_like(x), x),
    }
    for label, (a, b) in pairs.items():
        a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        value = m(a, b)
        assert torch.isfinite(value).all(), label
        (1 - value).sum().backward()
        assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all(), label
    # at x == y the score is at its maximum: the gradient vanishes
    a = x.clone().requires_grad_(True)
    m(a, x).sum().backward()
    assert a.grad.abs().max() < 1e-5


def test_gradcheck_tiny_image():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(1, 3, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 3, 6, 7, generator=g, dtype=torch.float64)
    m = create_metric("fsim", chromatic=True)
    assert torch.autograd.gradcheck(lambda a: m(a, y), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_bad_inputs():
    m, mc = create_metric("fsim"), create_metric("fsim", chromatic=True)
    ok = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match="smaller"):
        m(torch.rand(1, 3, 5, 16), torch.rand(1, 3, 5, 16))
    with pytest.raises(InputError, match="needs RGB"):
        mc(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
    nan = ok.clone()
    nan[0, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        m(nan, ok)
    with pytest.raises(InputError, match="outside"):
        m(ok * 2, ok)
    with pytest.raises(InputError, match="channels"):
        m(torch.rand(1, 2, 16, 16), torch.rand(1, 2, 16, 16))
    for option, value in (("chromatic", "yes"), ("convention", "piq"), ("precision", "half")):
        with pytest.raises(InputError, match=option):
            create_metric("fsim", **{option: value})
    with pytest.raises(InputError, match="no option"):
        create_metric("fsim", lambda_=0.03)


def test_registry_round_trip():
    m = create_metric("fsim", chromatic=True)
    assert m.options == {"data_range": 1.0, "chromatic": True, "convention": "matlab", "precision": "input"}
    assert m.spec == "fsim(chromatic=True,convention=matlab,data_range=1.0,precision=input)"
    assert m.lower_is_better is False and m.differentiable
    assert create_metric("fsim").options["chromatic"] is False
    torch.testing.assert_close(m.to_distance(torch.tensor([0.75])), torch.tensor([0.25]))


def test_cli_prints_fsimc(reference_dir):
    folder = reference_dir / TID
    out = subprocess.run(
        [sys.executable, "-m", "percepmetric.cli", "distance", str(folder / "i01_01_5.bmp"), str(folder / "I01.BMP"),
         "-m", "fsim", "-o", "chromatic=True"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("fsim(chromatic=True")
    value, tol = expected_values(reference_dir)[("i01_01_5.bmp", "I01.BMP", "fsimc")]
    assert abs(float(line.split()[-1]) - value) < tol


# ---------------------------------------------------------------- the MATLAB building blocks


def test_matlab_rounding_and_downsample_factor():
    assert [matlab_round(v) for v in (0.5, 1.5, 2.5, -2.5)] == [1, 2, 3, -3]  # Python's round: 0, 2, 2, -2
    halves = torch.tensor([0.5, 1.5, 2.5, -2.5, 0.49, 254.5])
    assert matlab_round(halves).tolist() == [1, 2, 3, -3, 0, 255]  # torch.round: 0, 2, 2, -2, 0, 254
    assert downsample_factor(384, 512) == 2
    assert downsample_factor(640, 853) == 3  # 2.5 rounds up, as in MATLAB
    assert downsample_factor(100, 5000) == 1


@pytest.mark.parametrize("factor,size", [(2, (9, 12)), (3, (10, 11)), (4, (13, 16))])
def test_box_downsample_is_conv2_same_then_every_fth(factor, size):
    g = torch.Generator().manual_seed(7)
    x = torch.rand(1, 1, *size, generator=g, dtype=torch.float64)
    kernel = np.ones((factor, factor)) / factor**2
    full = convolve2d(x[0, 0].numpy(), kernel, mode="full")
    # MATLAB's 'same': the full result from index floor(k/2) on (0-based), then 1:F:end.
    k = factor // 2
    same = full[k : k + size[0], k : k + size[1]]
    expected = torch.from_numpy(np.ascontiguousarray(same[::factor, ::factor]))
    torch.testing.assert_close(box_downsample(x, factor, "zeros")[0, 0], expected, rtol=0, atol=1e-12)


def test_filter_bank_and_phase_congruency():
    bank, noise = log_gabor_bank(31, 40, torch.device("cpu"), torch.float64)
    assert bank.shape == (4, 4, 31, 40) and noise.shape == (4,)
    assert (bank[..., 0, 0] == 0).all() and (bank >= 0).all() and (noise > 0).all()
    # A noisy vertical step (circular: edges at columns 0 and 64): phase congruency peaks on
    # the edges and the noise threshold silences the flat middle. Values lie in [0, 1].
    g = torch.Generator().manual_seed(8)
    y = torch.zeros(1, 32, 128, dtype=torch.float64)
    y[..., 64:] = 200.0
    y = y + 2.0 * torch.randn(y.shape, generator=g, dtype=torch.float64)
    pc = phase_congruency(y)
    assert pc.shape == (1, 32, 128) and pc.min() >= 0 and pc.max() <= 1
    profile = pc[0].mean(dim=0)
    assert profile[63:65].min() > 0.7 and profile[25:40].max() < 0.1


# ---------------------------------------------------------------- steady speed, same numbers


def test_scharr_gradient_of_a_batch_equals_conv2_per_image():
    from percepmetric.metrics.fsim import scharr_gradient_magnitude

    g = torch.Generator().manual_seed(3)
    y = torch.rand(3, 1, 12, 17, generator=g, dtype=torch.float64) * 255
    kernel = np.array([[3.0, 0.0, -3.0], [10.0, 0.0, -10.0], [3.0, 0.0, -3.0]]) / 16  # FeatureSIM.m's dx
    for i in range(3):
        ix = convolve2d(y[i, 0].numpy(), kernel, mode="same")
        iy = convolve2d(y[i, 0].numpy(), kernel.T, mode="same")
        expected = torch.from_numpy(np.sqrt(ix**2 + iy**2))
        torch.testing.assert_close(scharr_gradient_magnitude(y)[i, 0], expected, rtol=0, atol=1e-10)


def test_chunks_in_threads_give_the_numbers_of_the_plain_loop(monkeypatch):
    import percepmetric.metrics.fsim as fsim_module

    g = torch.Generator().manual_seed(4)
    x = torch.rand(24, 3, 32, 32, generator=g)
    y = (x + 0.1 * torch.rand(x.shape, generator=g)).clamp(0, 1)
    monkeypatch.setattr(fsim_module, "_CHUNK_BYTES", 1 << 20)  # several chunks even for 24 images
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            in_threads = fsim(x, y, chromatic=True)
        assert torch.get_num_threads() == 2, "the thread count is restored"
        torch.set_num_threads(1)
        plain = fsim(x, y, chromatic=True)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(in_threads, plain)
    assert not plain.is_inference() and in_threads.is_inference()  # each caller's mode is kept


def test_fsim_leaves_malloc_settings_to_the_program():
    """Keeping freed memory is a process setting: only a command that owns the process sets it."""
    code = ("import torch, percepmetric.memory as m, percepmetric; x = torch.rand(2, 3, 32, 32); "
            "percepmetric.create_metric('fsim')(x, x); print(m._applied)")
    env = {k: v for k, v in os.environ.items() if k != "PERCEPMETRIC_KEEP_FREED_MEMORY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "False"
