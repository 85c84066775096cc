"""DISTS: parity with the DISTS_pytorch 0.1 code and its published values, the resize option,
properties (identity, symmetry, batches, gradients, dtypes), weight files, and the command line."""

from __future__ import annotations

import csv
import json
import warnings

import pytest
import torch
import torch.nn.functional as F

import percepmetric
from percepmetric import InputError, WeightsNotFoundError, create_metric
from percepmetric.io import load_image
from percepmetric.metrics.dists import DISTS, dists_weights_path, hann_pooling_window
from percepmetric.weights import content_identity

from helpers import requires_weights, run_cli, run_cli_subprocess, skip_without_weights

TID = "tid2013-pair"
PAIRS = [("i01_01_5.bmp", "I01.BMP"), ("goldhill_jpeg.gif", "goldhill.gif")]


@pytest.fixture(scope="module")
def metric() -> DISTS:
    skip_without_weights("vgg")
    return create_metric("dists")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def original():
    """The authors' DISTS_pytorch 0.1 model (it builds its VGG16 with ``pretrained=True``, which
    torchvision reads from the same ``$TORCH_HOME`` file, and reads ``sys.prefix/weights.pt``)."""
    package = pytest.importorskip("DISTS_pytorch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation notice for pretrained=True
        return package.DISTS().eval()


def _pair(shape=(3, 3, 48, 40), seed=0, strength=0.2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=gen)
    return x, (x + strength * torch.randn(*shape, generator=gen)).clamp(0, 1)


def _tid_pair(reference_dir, distorted: str, reference: str) -> tuple[torch.Tensor, torch.Tensor]:
    return load_image(reference_dir / TID / distorted), load_image(reference_dir / TID / reference)


# ------------------------------------------------------------------ parity


@pytest.mark.parametrize("shape", [(3, 3, 64, 64), (2, 3, 37, 53)])
def test_equals_the_original_code_on_random_images(metric, original, shape):
    x, y = _pair(shape, seed=shape[2])
    with torch.no_grad():
        want = original(x, y).reshape(-1)
    torch.testing.assert_close(metric(x, y), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("distorted,reference", PAIRS)
def test_published_values(metric, reference_dir, distorted, reference):
    with open(reference_dir / TID / "expected.csv", newline="") as f:
        rows = {(r["distorted"], r["metric"]): (float(r["value"]), float(r["tolerance"])) for r in csv.DictReader(f)}
    value, tolerance = rows[(distorted, "dists")]
    assert tolerance == pytest.approx(1e-5)
    got = metric(*_tid_pair(reference_dir, distorted, reference))
    assert got.shape == (1,) and abs(got.item() - value) < tolerance


def test_equals_the_original_code_on_real_images(metric, original, reference_dir):
    # Crops keep it fast; the full images are checked against the published values above.
    pairs = [_tid_pair(reference_dir, *pair) for pair in PAIRS]
    x = torch.cat([d[..., 100:196, 200:328].expand(-1, 3, -1, -1) for d, _ in pairs])
    y = torch.cat([r[..., 100:196, 200:328].expand(-1, 3, -1, -1) for _, r in pairs])
    with torch.no_grad():  # the original wants RGB: the grey GIF pair is repeated to three channels
        want = original(x, y).reshape(-1)
    got = metric(x, y)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(metric(x[1:, :1], y[1:, :1]), want[1:], rtol=0, atol=1e-6)  # grey as it is


def test_pooling_window_is_the_normalised_inner_hann_outer_product():
    expected = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16
    assert torch.equal(hann_pooling_window(), expected)


# ------------------------------------------------------------------ resize


def test_resize_shrinks_the_shorter_side_to_256_as_piq_does(metric, reference_dir):
    resized = create_metric("dists", resize=True)
    assert resized.spec == "dists(data_range=1.0,resize=True)" and metric.spec == "dists(data_range=1.0,resize=False)"
    x, y = _pair((1, 3, 300, 320), seed=9)

    def shrink(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, scale_factor=256 / 300, mode="bilinear", align_corners=False,
                             recompute_scale_factor=False)

    assert shrink(x).shape[-2:] == (256, 273)
    torch.testing.assert_close(resized(x, y), metric(shrink(x), shrink(y)), rtol=0, atol=1e-6)
    small_x, small_y = _pair((1, 3, 64, 80))
    assert torch.equal(resized(small_x, small_y), metric(small_x, small_y))  # 256 or less: untouched
    # the value docs/metrics.md quotes (0.237676 without resize)
    assert resized(*_tid_pair(reference_dir, *PAIRS[0])).item() == pytest.approx(0.173217, abs=1e-5)
    with pytest.raises(InputError, match="resize"):
        create_metric("dists", resize="sometimes")


# ------------------------------------------------------------------ properties


def test_identity_symmetry_and_batch_invariance(metric):
    x, y = _pair((4, 3, 40, 56), seed=3)
    d = metric(x, y)
    assert d.shape == (4,) and bool((d > 0).all()) and bool((d < 1).all())
    assert torch.equal(metric(x, x.clone()), torch.zeros(4))  # identical pairs: exactly 0
    torch.testing.assert_close(metric(y, x), d, rtol=0, atol=1e-7)  # the formula is symmetric
    one_by_one = torch.cat([metric(x[i:i + 1], y[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(one_by_one, d, rtol=0, atol=1e-6)
    # a triplet shares the reference's features and gives the pairs' values
    z = _pair((4, 3, 40, 56), seed=4)[1]
    d0, d1 = metric.triplet_values(x, y, z)
    torch.testing.assert_close(d0, d, rtol=0, atol=1e-6)
    torch.testing.assert_close(d1, metric(x, z), rtol=0, atol=1e-6)


def test_grey_data_range_and_dtype_follow_the_input(metric):
    x, y = _pair((2, 1, 32, 32), seed=5)
    grey = metric(x, y)
    torch.testing.assert_close(grey, metric(x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)))
    scaled = create_metric("dists", data_range=255)(x * 255, y * 255)
    torch.testing.assert_close(scaled, grey, rtol=0, atol=1e-6)
    double = create_metric("dists")(x.double(), y.double())
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), grey, rtol=0, atol=1e-6)
    half = create_metric("dists")(x.half(), y.half())
    assert half.dtype == torch.float32 and float((half - grey).abs().max()) < 1e-3
    with pytest.raises(InputError, match="outside the declared input range"):
        metric(x * 2, y)


@requires_weights("vgg")
def test_finite_gradients_as_a_loss_identical_pair_included():
    loss_fn = create_metric("dists", as_loss=True)
    x, y = _pair((2, 3, 32, 32), seed=6)
    for target in (y, x.clone()):
        image = x.clone().requires_grad_(True)
        loss = loss_fn(image, target)
        loss.backward()
        assert image.grad is not None and bool(torch.isfinite(image.grad).all())
    # a step along the gradient lowers the loss
    image = x.clone().requires_grad_(True)
    loss = loss_fn(image, y)
    loss.backward()
    assert image.grad is not None
    stepped = (x - 0.01 * image.grad / image.grad.abs().max()).clamp(0, 1)
    assert loss_fn(stepped, y) < loss


def test_functional_equals_the_class(metric):
    x, y = _pair((2, 3, 32, 32), seed=7)
    torch.testing.assert_close(percepmetric.functional.dists(x, y), metric(x, y))
    torch.testing.assert_close(percepmetric.distance(x, y, metric="dists"), metric(x, y))


# ------------------------------------------------------------------ weight files


@requires_weights("vgg")  # the trunk loads first
def test_a_missing_weight_file_names_it_and_how_to_get_it(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "weights.pt"
    monkeypatch.setenv("PERCEPMETRIC_DISTS_WEIGHTS", str(missing))
    assert dists_weights_path() == missing
    with pytest.raises(WeightsNotFoundError, match=r"weights\.pt.*pip install dists-pytorch==0\.1"):
        create_metric("dists")


def test_weight_files_are_read_safely_and_key_the_cache(metric, tmp_path, monkeypatch):
    assert dists_weights_path().name == "weights.pt" and dists_weights_path().is_file()
    identity = content_identity(metric.spec, metric.weight_files)
    assert identity.startswith(metric.spec + "|trunk=blake2b:") and ",alpha_beta=blake2b:" in identity
    # a file with other weights gives another identity
    other = tmp_path / "other.pt"
    torch.save({"alpha": metric.alpha.detach() * 2, "beta": metric.beta.detach()}, other)
    monkeypatch.setenv("PERCEPMETRIC_DISTS_WEIGHTS", str(other))
    other_metric = create_metric("dists")
    assert content_identity(other_metric.spec, other_metric.weight_files) != identity
    # a foreign file is refused with one line naming it
    torch.save({"alpha": torch.ones(3)}, other)
    with pytest.raises(InputError, match=r"other\.pt: no alpha of 1475 values"):
        create_metric("dists")


def test_weights_command_lists_the_dists_files(capsys):
    code, out, _ = run_cli(capsys, "weights", "--json")
    assert code == 0
    rows = [r for r in json.loads(out) if r["net"] == "dists"]
    assert [r["kind"] for r in rows] == ["trunk", "alpha_beta"]
    assert rows[1]["path"] == str(dists_weights_path()) and rows[1]["present"]


def test_weights_command_says_how_to_get_missing_alpha_beta(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PERCEPMETRIC_DISTS_WEIGHTS", str(tmp_path / "weights.pt"))
    code, out, _ = run_cli(capsys, "weights")
    assert code == 0 and "pip install dists-pytorch==0.1" in out


# ------------------------------------------------------------------ the command line


def test_cli_distance(tmp_path, metric):
    from PIL import Image

    x, y = _pair((1, 3, 40, 48), seed=8)
    paths = []
    for name, image in (("a.png", x), ("b.png", y)):
        array = (image[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(array).save(tmp_path / name)
        paths.append(tmp_path / name)
    run = run_cli_subprocess("distance", *paths, "-m", "dists", "--json", check_rc=0)
    assert "dists" in run.stdout
    want = metric(load_image(paths[0]), load_image(paths[1])).item()
    assert f"{want:.4f}"[:5] in run.stdout


def test_cli_metrics_lists_dists(capsys):
    code, out, _ = run_cli(capsys, "metrics")
    assert code == 0 and any(line.split()[:1] == ["dists"] for line in out.splitlines()), out
