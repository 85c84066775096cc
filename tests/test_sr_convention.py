"""The super-resolution convention: PSNR and SSIM on BT.601 luma Y with a shaved border.

Parity target: BasicSR 1.4.2's ``calculate_psnr`` / ``calculate_ssim`` with ``crop_border`` and
``test_y_channel=True`` (basicsr/metrics/psnr_ssim.py), the reference of the SR community.
BasicSR cannot be imported next to torchvision 0.29 (it imports the removed
``torchvision.transforms.functional_tensor``), so its formulas are written out below from its
definitions, with NumPy and SciPy only (no percepmetric code), and our metrics must agree
within 1e-5.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import correlate

import percepmetric
from percepmetric import functional
from percepmetric.errors import InputError
from percepmetric.io import read_image_array
from percepmetric.metrics.eight_bit import values_8bit
from percepmetric.registry import create_metric, metric_label

from helpers import REFERENCE_DIR, run_cli

TID = REFERENCE_DIR / "tid2013-pair"
TOLERANCE = 1e-5


# ---------------------------------------------------------------- BasicSR, written out


def basicsr_to_y_channel(img: np.ndarray) -> np.ndarray:
    """BasicSR's ``to_y_channel``: an HWC image on the 0..255 scale -> Y on 0..255, ``(H,W,1)``.

    ``img.astype(np.float32) / 255.``, then ``bgr2ycbcr(img, y_only=True)``, which for a
    float32 image in [0, 1] computes ``np.dot(img, [24.966, 128.553, 65.481]) + 16.0`` and
    divides by 255 (``_convert_output_type_range``), then ``* 255.``. Its images are BGR (read
    by cv2); ours are RGB, so the weights are applied as 65.481 R + 128.553 G + 24.966 B.
    Everything in float32, as BasicSR computes it.
    """
    img = img.astype(np.float32) / np.float32(255.0)
    y = np.dot(img, np.array([65.481, 128.553, 24.966], dtype=np.float32)) + np.float32(16.0)
    y = (y / np.float32(255.0)).astype(np.float32)
    return (y * np.float32(255.0))[..., None]


def basicsr_prepare(img: np.ndarray, crop_border: int) -> np.ndarray:
    """The common start of both functions: crop ``crop_border`` on every side, Y, float64."""
    if crop_border != 0:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
    return basicsr_to_y_channel(img).astype(np.float64)


def basicsr_psnr(img: np.ndarray, img2: np.ndarray, crop_border: int) -> float:
    """``calculate_psnr(img, img2, crop_border, test_y_channel=True)``: ``10 log10(255^2 / mse)``."""
    a, b = basicsr_prepare(img, crop_border), basicsr_prepare(img2, crop_border)
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 * 255.0 / mse))


def basicsr_ssim(img: np.ndarray, img2: np.ndarray, crop_border: int) -> float:
    """``calculate_ssim(img, img2, crop_border, test_y_channel=True)``: BasicSR's ``_ssim`` on Y.

    Y as :func:`basicsr_prepare` makes it, then :func:`basicsr_ssim_of_planes`.
    """
    return basicsr_ssim_of_planes(basicsr_prepare(img, crop_border)[..., 0], basicsr_prepare(img2, crop_border)[..., 0])


def basicsr_ssim_of_planes(a: np.ndarray, b: np.ndarray) -> float:
    """BasicSR's ``_ssim`` of two float64 planes on 0..255: the window is the outer product of
    ``cv2.getGaussianKernel(11, 1.5)`` (normalised Gaussian); ``cv2.filter2D(v, -1, window)[5:-5, 5:-5]``
    (a correlation whose border mode the crop removes: 'valid' filtering; SciPy's ``correlate``
    plays cv2's part); C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2; population moments; the mean
    of the map.
    """
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    u = np.arange(11) - 5.0
    kernel = np.exp(-(u * u) / (2 * 1.5 * 1.5))
    kernel /= kernel.sum()
    window = np.outer(kernel, kernel)

    def filtered(v: np.ndarray) -> np.ndarray:
        return correlate(v, window, mode="mirror")[5:-5, 5:-5]

    mu1, mu2 = filtered(a), filtered(b)
    sigma1_sq = filtered(a * a) - mu1 ** 2
    sigma2_sq = filtered(b * b) - mu2 ** 2
    sigma12 = filtered(a * b) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * sigma12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


def matlab_y(img: np.ndarray) -> np.ndarray:
    """MATLAB's ``rgb2ycbcr`` Y of a uint8 HWC RGB image: ``imlincomb`` of the channels with
    weights ``T(1,:)/255`` and offset 16, rounded (halves up) to uint8; here on 0..255."""
    y = 16.0 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0
    return np.floor(y + 0.5)


# ---------------------------------------------------------------- images


def _tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float64) / 255.0).permute(2, 0, 1)[None]


def _tid_pair() -> tuple[np.ndarray, np.ndarray]:
    return read_image_array(TID / "i01_01_5.bmp"), read_image_array(TID / "I01.BMP")


def _random_pair(seed: int = 0, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (size, size + 8, 3), dtype=np.uint8)
    noise = rng.integers(-20, 21, a.shape)
    return a, np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- parity with BasicSR


@pytest.mark.parametrize("shave", [0, 4])
@pytest.mark.parametrize("source", ["random", "tid2013"])
def test_psnr_and_ssim_on_y_equal_basicsr(source, shave):
    a, b = _random_pair() if source == "random" else _tid_pair()
    x, y = _tensor(a), _tensor(b)
    psnr = create_metric("psnr", color="y", shave=shave)(x, y).item()
    ssim = create_metric("ssim", color="y", shave=shave)(x, y).item()
    assert abs(psnr - basicsr_psnr(a, b, shave)) < TOLERANCE
    assert abs(ssim - basicsr_ssim(a, b, shave)) < TOLERANCE


def test_float_rgb_input_equals_basicsr_on_the_same_values_scaled_to_255():
    # Float images not on the 8-bit grid: BasicSR is handed them scaled to 0..255 (its range).
    rng = np.random.default_rng(3)
    a = rng.random((40, 36, 3))
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    x, y = (torch.from_numpy(v).permute(2, 0, 1)[None] for v in (a, b))
    for shave in (0, 4):
        psnr, ssim = (getattr(functional, name)(x, y, color="y", shave=shave).item() for name in ("psnr", "ssim"))
        assert abs(psnr - basicsr_psnr(a * 255, b * 255, shave)) < TOLERANCE
        assert abs(ssim - basicsr_ssim(a * 255, b * 255, shave)) < TOLERANCE
    # float32 input gives the same numbers to float32 precision
    x32, y32 = x.float(), y.float()
    assert abs(functional.ssim(x32, y32, color="y").item() - basicsr_ssim(a * 255, b * 255, 0)) < 1e-4


def test_uint8_files_read_by_path_equal_basicsr(tmp_path):
    a, b = _random_pair(seed=5)
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for img, path in zip((a, b), paths):
        Image.fromarray(img).save(path)
    psnr = percepmetric.create_metric("psnr", color="y", shave=4)(str(paths[0]), str(paths[1])).item()
    ssim = percepmetric.create_metric("ssim", color="y", shave=4)(str(paths[0]), str(paths[1])).item()
    assert abs(psnr - basicsr_psnr(a, b, 4)) < TOLERANCE
    assert abs(ssim - basicsr_ssim(a, b, 4)) < TOLERANCE


def test_batches_give_each_pair_its_own_value():
    pairs = [_random_pair(seed) for seed in (1, 2)]
    x = torch.cat([_tensor(a) for a, _ in pairs])
    y = torch.cat([_tensor(b) for _, b in pairs])
    values = functional.ssim(x, y, color="y", shave=4)
    want = [basicsr_ssim(a, b, 4) for a, b in pairs]
    assert np.allclose(values.numpy(), want, atol=TOLERANCE, rtol=0)


def test_the_benchmarks_8bit_path_and_the_loss_form_take_the_convention():
    a, b = _random_pair(seed=4)
    codes = [torch.from_numpy(v)[None] for v in (a, b)]
    for name, reference in (("psnr", basicsr_psnr), ("ssim", basicsr_ssim)):
        metric = create_metric(name, color="y", shave=4)
        assert abs(values_8bit(metric, *codes).item() - reference(a, b, 4)) < TOLERANCE
    x = _tensor(a).requires_grad_(True)
    loss = create_metric("ssim", color="y", shave=4, quantize=True, as_loss=True)(x, _tensor(b))
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# ---------------------------------------------------------------- MATLAB's integer Y


def test_quantize_true_gives_matlabs_integer_y():
    a, b = _random_pair(seed=7)
    ya, yb = matlab_y(a), matlab_y(b)
    mse = np.mean((ya - yb) ** 2)
    want_psnr = 10 * np.log10(255.0 ** 2 / mse)
    x, y = _tensor(a), _tensor(b)
    assert abs(functional.psnr(x, y, color="y", quantize=True).item() - want_psnr) < TOLERANCE
    # SSIM of MATLAB's integer Y with BasicSR's window and constants.
    ours = functional.ssim(x, y, color="y", quantize=True).item()
    assert abs(ours - basicsr_ssim_of_planes(ya, yb)) < TOLERANCE
    assert abs(ours - functional.ssim(x, y, color="y").item()) > 1e-6  # and it is not the float Y's value


def test_float_and_integer_y_differ_on_the_tid_pair_as_documented():
    # docs/metrics.md ("The super-resolution convention") quotes these four numbers.
    a, b = _tid_pair()
    x, y = _tensor(a), _tensor(b)
    values = {
        (name, quantize): getattr(functional, name)(x, y, color="y", shave=4, quantize=quantize).item()
        for name in ("psnr", "ssim") for quantize in (False, True)
    }
    assert values[("psnr", False)] == pytest.approx(25.815112, abs=5e-6)
    assert values[("psnr", True)] == pytest.approx(25.811688, abs=5e-6)
    assert values[("ssim", False)] == pytest.approx(0.6961629, abs=5e-7)
    assert values[("ssim", True)] == pytest.approx(0.6958952, abs=5e-7)


# ---------------------------------------------------------------- options, specs, errors


def test_default_specs_and_labels_are_unchanged():
    assert create_metric("psnr").spec == "psnr(data_range=1.0)"
    assert create_metric("psnr", color="rgb", shave=0, quantize=False).spec == "psnr(data_range=1.0)"
    assert create_metric("ssim").spec == (
        "ssim(color=grey,convention=matlab,data_range=1.0,downsample=True,quantize=auto)")
    assert create_metric("ssim", shave=0).spec == create_metric("ssim").spec
    assert metric_label(create_metric("psnr")) == "psnr"
    assert metric_label(create_metric("ssim")) == "ssim(color=grey)"


def test_y_never_downsamples_and_quantizes_only_when_asked():
    m = create_metric("ssim", color="Y", shave=4)
    assert (m.color, m.downsample, m.quantize, m.shave) == ("y", False, False, 4)
    assert m.spec == "ssim(color=y,convention=matlab,data_range=1.0,downsample=False,quantize=False,shave=4)"
    assert create_metric("ssim", color="y", downsample=True).downsample is False
    assert create_metric("ssim", color="y", quantize="true").quantize is True
    assert create_metric("psnr", color="y", shave=2).spec == "psnr(color=y,data_range=1.0,quantize=False,shave=2)"
    # A 512x512 pair: the grey default downsamples by 2, Y does not (it equals BasicSR).
    rng = np.random.default_rng(11)
    a = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    assert abs(functional.ssim(_tensor(a), _tensor(b), color="y").item() - basicsr_ssim(a, b, 0)) < TOLERANCE


def test_shave_applies_to_rgb_psnr_and_grey_ssim_too():
    a, b = _random_pair(seed=9)
    x, y = _tensor(a), _tensor(b)
    torch.testing.assert_close(functional.psnr(x, y, shave=3), functional.psnr(x[..., 3:-3, 3:-3], y[..., 3:-3, 3:-3]))
    torch.testing.assert_close(functional.ssim(x, y, shave=3), functional.ssim(x[..., 3:-3, 3:-3], y[..., 3:-3, 3:-3]))


@pytest.mark.parametrize(("name", "options", "message"), [
    ("psnr", {"shave": -1}, "shave must be a non-negative integer"),
    ("ssim", {"shave": 1.5}, "shave must be a non-negative integer"),
    ("psnr", {"color": "lab"}, "color must be one of rgb, y"),
    ("psnr", {"quantize": True}, "quantize=True rounds the luma"),
    ("psnr", {"color": "y", "quantize": "auto"}, "quantize must be True or False"),
    ("ssim", {"convention": "lpips", "color": "y"}, "color must be one of"),
])
def test_bad_options_are_one_line_errors(name, options, message):
    with pytest.raises(InputError, match=message):
        create_metric(name, **options)


def test_images_too_small_for_the_shave_are_refused():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(InputError, match="smaller than the 19x19"):
        create_metric("ssim", color="y", shave=4)(x, x)
    with pytest.raises(InputError, match="smaller than the 17x17"):
        create_metric("psnr", color="y", shave=8)(x, x)


# ---------------------------------------------------------------- the command line


def test_cli_distance_with_color_y_and_shave(tmp_path, capsys):
    a, b = _random_pair(seed=5)
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for img, path in zip((a, b), paths):
        Image.fromarray(img).save(path)
    code, out, err = run_cli(capsys, "distance", *paths, "-m", "psnr", "-m", "ssim", "-o", "color=y", "-o", "shave=4")
    assert code == 0, err
    labels = [line.split()[0] for line in out.splitlines()]
    assert [label.split("(")[0] for label in labels] == ["psnr", "ssim"]
    assert all("color=y" in label and "shave=4" in label for label in labels), labels
    code, out, err = run_cli(capsys, "distance", *paths, "-m", "psnr", "-m", "ssim", "-o", "color=y", "-o", "shave=4",
                             "--json")
    assert code == 0, err
    results = json.loads(out)["results"]
    assert abs(results[0]["value"] - basicsr_psnr(a, b, 4)) < TOLERANCE
    assert abs(results[1]["value"] - basicsr_ssim(a, b, 4)) < TOLERANCE
    assert "shave=4" in results[0]["spec"] and "color=y" in results[1]["spec"]


def test_cli_bad_shave_is_one_line(tmp_path, capsys):
    a, b = _random_pair()
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for img, path in zip((a, b), paths):
        Image.fromarray(img).save(path)
    code, out, err = run_cli(capsys, "distance", *paths, "-m", "psnr", "-o", "shave=-2")
    assert code == 2
    assert err.strip().count("\n") == 0 and "shave must be a non-negative integer" in err
