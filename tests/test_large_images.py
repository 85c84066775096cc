"""Large images (percepmetric.metrics.budget): the formula metrics in row bands give the numbers of
the whole image; the others refuse an image that cannot fit with one line, before allocating.

Banding normally starts at 1 GiB of temporaries; the tests lower the budget so that small images
take the banded path, and check that they did (the bands were counted)."""

from __future__ import annotations

import pytest
import torch

from percepmetric import create_metric
from percepmetric.errors import InputError

from helpers import requires_weights, run_cli


def _pair(shape, seed=0, on_grid=True, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = (x + 0.15 * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    if on_grid:  # as decoded 8-bit files are (SSIM's quantize="auto" rounds their luminance)
        x, y = torch.round(x * 255) / 255, torch.round(y * 255) / 255
    return x.to(dtype), y.to(dtype)


@pytest.fixture
def band_counter(monkeypatch):
    """Counts the bands the metrics compute (every call of ``budget.bands`` yields some)."""
    from percepmetric.metrics import budget as module

    counted = {"bands": 0}
    original = module.bands

    def counting(rows, per_band):
        for band in original(rows, per_band):
            counted["bands"] += 1
            yield band

    monkeypatch.setattr(module, "bands", counting)
    return counted


def _banded(monkeypatch, metric, x, y, budget_bytes):
    from percepmetric.metrics import budget as module

    monkeypatch.setattr(module, "BAND_BUDGET_BYTES", budget_bytes)
    try:
        return metric(x, y)
    finally:
        monkeypatch.setattr(module, "BAND_BUDGET_BYTES", 1 << 30)


# (metric, options, shape): odd sizes, grey and RGB, every colour, both SSIM conventions, the
# matlab downsampling on (factors 2 and 3) and off, shave, the super-resolution convention.
CASES = [
    ("psnr", {}, (2, 3, 37, 29)),
    ("psnr", {"data_range": 255}, (1, 1, 40, 33)),
    ("psnr", {"color": "y", "shave": 3}, (2, 3, 41, 35)),
    ("psnr", {"color": "y", "quantize": True}, (1, 3, 33, 30)),
    ("l2", {}, (2, 3, 37, 29)),
    ("l2", {"color": "grey"}, (2, 3, 31, 27)),
    ("l2", {"color": "lab"}, (1, 3, 35, 33)),
    ("l2", {"color": "lab", "convention": "lpips"}, (1, 3, 35, 33)),
    ("l2", {"convention": "lpips"}, (1, 1, 35, 33)),
    ("l1", {}, (2, 1, 37, 29)),
    ("l1", {"color": "lab"}, (1, 3, 35, 33)),
    ("ssim", {}, (1, 3, 401, 389)),  # downsampled by 2, odd sizes: the blocks meet the border
    ("ssim", {}, (1, 1, 646, 653)),  # by 3: a centred block reaches one row before and after
    ("ssim", {"shave": 3}, (2, 3, 398, 390)),
    ("ssim", {"downsample": False}, (1, 3, 61, 53)),
    ("ssim", {"color": "rgb", "downsample": False}, (2, 3, 45, 52)),
    ("ssim", {"color": "lab"}, (1, 3, 47, 41)),
    ("ssim", {"quantize": True}, (1, 3, 44, 40)),
    ("ssim", {"color": "y", "shave": 4}, (1, 3, 61, 55)),
    ("ssim", {"color": "y", "quantize": True}, (1, 3, 43, 38)),
    ("ssim", {"convention": "lpips"}, (2, 3, 45, 38)),
    ("ssim", {"convention": "lpips"}, (1, 1, 33, 40)),
    ("ssim", {"convention": "lpips", "color": "lab"}, (1, 3, 31, 29)),
    ("ssim", {"convention": "lpips", "quantize": False, "shave": 2}, (1, 3, 35, 30)),
    ("ms_ssim", {}, (1, 3, 181, 197)),  # five scales, odd sizes at every scale
    ("ms_ssim", {"color": "rgb", "scales": 3}, (2, 3, 67, 75)),
    ("ms_ssim", {"color": "lab", "scales": 2}, (1, 3, 45, 40)),
]


@pytest.mark.parametrize("bands", ["one-row", "several-rows"])
@pytest.mark.parametrize(("name", "options", "shape"), CASES, ids=[f"{n}-{o}-{s}" for n, o, s in CASES])
def test_bands_give_the_numbers_of_the_whole_image(monkeypatch, band_counter, name, options, shape, bands):
    metric = create_metric(name, **options)
    scale = options.get("data_range", 1)
    x, y = (t * scale for t in _pair(shape))
    # A budget of one image's bytes: bands of a few rows (halo included) for every metric here.
    budget_bytes = 1 if bands == "one-row" else x.numel() * x.element_size()
    whole = metric(x, y)
    assert band_counter["bands"] == 0  # small images: the unbanded path, unchanged
    banded = _banded(monkeypatch, metric, x, y, budget_bytes)
    assert band_counter["bands"] > 2
    assert banded.dtype == whole.dtype and banded.shape == whole.shape
    assert torch.allclose(banded, whole, rtol=1e-6, atol=0), (banded - whole).abs().max()


@pytest.mark.parametrize(("name", "options", "shape"), [
    ("psnr", {}, (1, 3, 37, 29)), ("ssim", {}, (1, 3, 401, 389)), ("ms_ssim", {}, (1, 1, 181, 197)),
    ("ssim", {"convention": "lpips", "color": "lab"}, (1, 3, 31, 29)),
])
def test_float64_bands_agree_to_float64_rounding(monkeypatch, band_counter, name, options, shape):
    metric = create_metric(name, **options)
    x, y = _pair(shape, dtype=torch.float64)
    whole, banded = metric(x, y), _banded(monkeypatch, metric, x, y, x.numel() * 4)
    assert band_counter["bands"] > 2 and banded.dtype == torch.float64
    assert torch.allclose(banded, whole, rtol=1e-12, atol=0)


def test_ssim_rounds_each_image_as_the_whole_image_decides(monkeypatch, band_counter):
    """quantize="auto" rounds the luminance of the images on the 8-bit grid only: the test is of
    the whole image (here the second image leaves the grid in its last row), not of each band."""
    metric = create_metric("ssim", downsample=False)
    x, y = _pair((2, 3, 60, 50))
    x[1, :, -1, -1] = 0.5 + 1e-3  # off the grid, in the last band only
    whole, banded = metric(x, y), _banded(monkeypatch, metric, x, y, x.numel() * 4)
    assert band_counter["bands"] > 2
    assert torch.allclose(banded, whole, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", ["psnr", "l2", "ssim", "ms_ssim"])
def test_identical_images_keep_their_exact_value(monkeypatch, band_counter, name):
    metric = create_metric(name)
    x, _ = _pair((1, 3, 200, 190))
    whole, banded = metric(x, x.clone()), _banded(monkeypatch, metric, x, x.clone(), x.numel() * 4)
    assert band_counter["bands"] > 2
    assert torch.equal(banded, whole)  # inf dB, 0, 1


@pytest.mark.parametrize("name", ["psnr", "l1", "ssim", "ms_ssim"])
def test_inputs_requiring_grad_are_not_banded_and_get_gradients(monkeypatch, band_counter, name):
    metric = create_metric(name)
    x, y = _pair((1, 3, 200, 190))
    x.requires_grad_()
    value = _banded(monkeypatch, metric, x, y, 1)
    value.sum().backward()
    assert band_counter["bands"] == 0
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_triplets_and_references_are_banded_too(monkeypatch, band_counter):
    from percepmetric.metrics import budget as module

    ref, p0 = _pair((2, 3, 40, 36), seed=1)
    _, p1 = _pair((2, 3, 40, 36), seed=2)
    others = torch.cat((p0, p1))
    for metric in (create_metric("ssim", convention="lpips"), create_metric("l2", color="lab")):
        whole = metric.triplet_values(ref, p0, p1)
        whole_to_ref = metric.values_to_reference(ref[:1], others)
        counted = band_counter["bands"]
        monkeypatch.setattr(module, "BAND_BUDGET_BYTES", 20_000)
        banded = metric.triplet_values(ref, p0, p1)
        banded_to_ref = metric.values_to_reference(ref[:1], others)
        monkeypatch.setattr(module, "BAND_BUDGET_BYTES", 1 << 30)
        assert band_counter["bands"] > counted + 4
        for a, b in zip((*banded, banded_to_ref), (*whole, whole_to_ref)):
            assert torch.allclose(a, b, rtol=1e-6, atol=0)


def test_band_rows():
    from percepmetric.metrics import budget as module

    assert module.band_rows(1000, 1000) is None  # 1 MB: fits
    assert module.band_rows(10_000, 1 << 20, halo=10) == (1 << 10) - 10
    assert module.band_rows(10, 1 << 40) == 1  # never fewer than one row
    assert list(module.bands(10, 4)) == [(0, 4), (4, 8), (8, 10)]


# ---------------------------------------------------------------- the one-line memory error

def _deep_metric(name: str):
    if name == "lpips":
        from helpers import skip_without_weights

        skip_without_weights("alex")
    if name == "dists":
        from helpers import skip_without_weights

        skip_without_weights("vgg")
    return create_metric(name)


DEEP = ["lpips", "dists", "stlpips", "fsim"]
# What computes: made to fail if anything is computed before the memory check.
COMPUTE = {"lpips": "_stacked_input", "stlpips": "_stacked_input", "dists": "_distances_to_reference"}


def _forbid_computing(monkeypatch, name, metric):
    def refuse(*args, **kwargs):
        raise AssertionError("computed before the memory check")

    if name == "fsim":
        from percepmetric.metrics import fsim as module

        monkeypatch.setattr(module, "_fsim", refuse)
    else:
        monkeypatch.setattr(metric, COMPUTE[name], refuse)


@pytest.mark.parametrize("name", DEEP)
def test_too_large_for_memory_is_one_line_before_allocating(monkeypatch, name):
    from percepmetric.metrics import budget as module

    metric = _deep_metric(name)
    x, y = _pair((1, 3, 64, 64))
    monkeypatch.setattr(module, "available_memory", lambda device: 100_000)  # less than any of them needs
    _forbid_computing(monkeypatch, name, metric)
    with pytest.raises(InputError) as caught:
        metric(x, y)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: a 64x64 image pair needs about ")
    assert "100 kB available on cpu" in message


@pytest.mark.parametrize("name", ["lpips", "dists"])
def test_the_estimate_counts_every_image_of_the_call(monkeypatch, name):
    from percepmetric.metrics import budget as module

    metric = _deep_metric(name)
    ref, p0 = _pair((2, 3, 64, 64))
    pair_need = metric.memory_needed(4, 64, 64, torch.float32)
    assert metric.memory_needed(6, 64, 64, torch.float32) > pair_need > metric.memory_needed(2, 64, 64, torch.float32)
    monkeypatch.setattr(module, "available_memory", lambda device: pair_need + 1)
    metric(ref, p0)  # fits
    with pytest.raises(InputError, match="needs about"):
        metric.triplet_values(ref, p0, p0)  # 6 images do not


@pytest.mark.parametrize("name", DEEP)
@pytest.mark.parametrize("error", [
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                 "you tried to allocate 8192000000 bytes. Error code 12 (Cannot allocate memory)"),
    RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 51200000000 bytes."),
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
], ids=["cpu-cant-allocate", "cpu-not-enough", "out-of-memory-error"])
def test_running_out_of_memory_inside_is_one_line(monkeypatch, name, error):
    metric = _deep_metric(name)
    x, y = _pair((1, 3, 64, 64))

    def fail(*args, **kwargs):
        raise error

    if name == "fsim":
        from percepmetric.metrics import fsim as module

        monkeypatch.setattr(module, "phase_congruency", fail)
    elif name == "dists":
        monkeypatch.setattr(metric, "feature_sets", fail)
    else:
        monkeypatch.setattr(metric.trunk, "taps", fail)
    with pytest.raises(InputError) as caught:
        metric(x, y)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{name}: a 64x64 image pair ran out of memory on cpu")
    assert caught.value.__cause__ is error


def test_other_runtime_errors_pass_unchanged(monkeypatch):
    metric = create_metric("fsim")
    from percepmetric.metrics import fsim as module

    def fail(*args, **kwargs):
        raise RuntimeError("something else entirely")

    monkeypatch.setattr(module, "phase_congruency", fail)
    with pytest.raises(RuntimeError, match="something else entirely"):
        metric(*_pair((1, 3, 64, 64)))


def test_available_memory():
    from percepmetric.metrics import budget as module

    assert module.available_memory("meta") is None  # unknown: no check
    cpu = module.available_memory("cpu")
    import sys

    if sys.platform.startswith("linux"):
        assert isinstance(cpu, int) and 0 < cpu


@requires_weights("alex")
def test_the_cli_says_it_in_one_line_and_exits_2(monkeypatch, capsys, tmp_path):
    import numpy as np
    from PIL import Image

    from percepmetric.metrics import budget as module

    x, y = _pair((1, 3, 64, 64))
    for path, image in ((tmp_path / "a.png", x), (tmp_path / "b.png", y)):
        Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    monkeypatch.setattr(module, "available_memory", lambda device: 100_000)
    code, _, err = run_cli(capsys, "distance", tmp_path / "a.png", tmp_path / "b.png", "-m", "lpips")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "64x64 image pair needs about" in lines[0], err
