"""L2 and PSNR: reference values, properties, input checks."""

import math

import numpy as np
import pytest
import torch
from skimage.color import rgb2lab
from skimage.metrics import peak_signal_noise_ratio

import percepmetric
from percepmetric import create_metric
from percepmetric.errors import InputError


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 20, generator=g)
    y = (x + 0.1 * torch.randn(4, 3, 16, 20, generator=g)).clamp(0, 1)
    return x, y


def test_psnr_equals_scikit_image(pair):
    x, y = pair
    ours = create_metric("psnr")(x.double(), y.double())
    for i in range(len(x)):
        ref = peak_signal_noise_ratio(x[i].double().numpy(), y[i].double().numpy(), data_range=1.0)
        assert ours[i].item() == pytest.approx(ref, abs=1e-10)


def test_psnr_data_range_255(pair):
    x, y = pair
    assert torch.allclose(create_metric("psnr", data_range=255)(x * 255, y * 255), create_metric("psnr")(x, y),
                          atol=1e-4)


def test_psnr_identical_is_inf_with_finite_zero_gradient(pair):
    x, _ = pair
    xg = x.clone().requires_grad_()
    value = create_metric("psnr")(xg, x)
    assert torch.isinf(value).all()
    value.sum().backward()
    assert torch.isfinite(xg.grad).all() and (xg.grad == 0).all()
    assert torch.equal(percepmetric.distance(x, x, metric="psnr"), torch.zeros(4))


def test_l2_plain_and_lpips_conventions(pair):
    x, y = pair
    mse = ((x - y) ** 2).flatten(1).mean(1)
    assert torch.allclose(create_metric("l2")(x, y), mse)
    assert torch.allclose(create_metric("l2", convention="lpips", color="rgb")(x, y), 4 * mse)
    # Lab, as the LPIPS code computes it: [-1, 1] float32 tensor -> truncated uint8 -> skimage rgb2lab
    # -> 0.5 * mean((d / 100)^2)
    def lpips_uint8(t):
        t = ((t.float() - 0.5) / 0.5).numpy().transpose(0, 2, 3, 1)
        return ((t + 1.0) * 127.5).astype(np.uint8)

    x8, y8 = lpips_uint8(x), lpips_uint8(y)
    expected = [0.5 * np.mean((rgb2lab(a) / 100 - rgb2lab(b) / 100) ** 2) for a, b in zip(x8, y8)]
    ours = create_metric("l2", convention="lpips", color="lab")(x.double(), y.double())
    assert np.allclose(ours.numpy(), expected, rtol=1e-9, atol=1e-12)
    # As a loss the same number comes from another path (straight-through rounding, then the
    # per-pixel sRGB power function instead of the 8-bit table): checked against skimage too.
    as_loss = create_metric("l2", convention="lpips", color="lab")(x.double().requires_grad_(), y.double())
    assert np.allclose(as_loss.detach().numpy(), expected, rtol=1e-9, atol=1e-12)


def test_lpips_code_8bit_truncates_like_the_original():
    from percepmetric.metrics.color import lpips_code_8bit

    v = torch.arange(256, dtype=torch.float32)
    back = torch.round(lpips_code_8bit(v / 255) * 255)
    # float32 rounding in (v/255 - 0.5)/0.5 then (t + 1) * 127.5 loses one step for 1..63
    assert torch.equal(back[1:64], v[1:64] - 1)
    assert back[0] == 0 and torch.equal(back[64:], v[64:])


def test_l1_is_mean_absolute_error(pair):
    x, y = pair
    assert torch.allclose(create_metric("l1")(x, y), (x - y).abs().flatten(1).mean(1))


@pytest.mark.parametrize(
    "name,options",
    [("l2", {}), ("l2", {"color": "lab"}), ("l2", {"color": "grey"}), ("l2", {"convention": "lpips", "color": "lab"}),
     ("l1", {}), ("psnr", {})],
)
def test_properties(pair, name, options):
    x, y = pair
    m = create_metric(name, **options)

    def d(a, b):
        return m.to_distance(m(a, b))

    assert torch.allclose(d(x, x), torch.zeros(len(x)), atol=1e-12)
    assert torch.allclose(d(x, y), d(y, x))
    batched = d(x, y)
    single = torch.cat([d(x[i : i + 1], y[i : i + 1]) for i in range(len(x))])
    assert torch.allclose(batched, single, rtol=1e-6)
    assert torch.allclose(d(x.double(), y.double()).float(), batched, rtol=1e-4)
    xg = x.clone().requires_grad_()
    for other in (x, y):
        grad, = torch.autograd.grad(m(xg, other).sum(), xg)
        assert torch.isfinite(grad).all()


def test_bad_inputs_are_refused_with_a_reason(pair):
    x, y = pair
    m = create_metric("l2")
    with pytest.raises(InputError, match="differ in shape"):
        m(x, y[:, :, :8])
    with pytest.raises(InputError, match="outside the declared input range"):
        m(x * 255, y * 255)
    nan = x.clone()
    nan[0, 0, 0, 0] = math.nan
    with pytest.raises(InputError, match="NaN"):
        m(nan, y)
    with pytest.raises(InputError, match="channels"):
        m(x[:, :2], y[:, :2])
    with pytest.raises(InputError, match="float tensor"):
        m((x * 255).to(torch.uint8), y)
    with pytest.raises(InputError, match="data_range"):
        create_metric("psnr", data_range=0)
    with pytest.raises(InputError, match="color"):
        create_metric("l2", color="hsv")


def test_registry_metadata_and_unknown_names():
    names = percepmetric.list_metrics()
    assert {"l2", "psnr"} <= set(names)
    m = create_metric("psnr")
    assert isinstance(m, torch.nn.Module) and m.lower_is_better is False and m.differentiable
    assert m.value_range == (0.0, 1.0)
    assert create_metric("l2", color="lab").spec == "l2(color=lab,convention=plain,data_range=1.0)"
    with pytest.raises(InputError, match="unknown metric 'nope'"):
        create_metric("nope")
    with pytest.raises(InputError, match="no option 'sigma'"):
        create_metric("psnr", sigma=2)


def test_distance_accepts_arrays_images_and_paths(tmp_path):
    from PIL import Image

    a = np.random.default_rng(1).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + 9, 0, 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    expected = percepmetric.distance(a, b, metric="l2")
    assert torch.allclose(percepmetric.distance(tmp_path / "a.png", Image.fromarray(b), metric="l2"), expected)
    assert torch.allclose(percepmetric.distance(str(tmp_path / "a.png"), b, metric="l2"), expected)
