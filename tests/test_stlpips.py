"""ST-LPIPS: parity with the stlpips-pytorch 0.0.2 code and its published example, the strict
weight loader, properties (identity, symmetry, batches, gradients, shift tolerance), and the
command line (distance, matrix, weights, metrics)."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

import percepmetric
from percepmetric import InputError, WeightsNotFoundError, create_metric
from percepmetric.io import load_image
from percepmetric.metrics.stlpips import STLPIPS, load_stlpips_file, stlpips_weights_path
from percepmetric.nets.antialiased import BlurPool, binomial_filter
from percepmetric.weights import content_identity

from helpers import run_cli, run_cli_subprocess

# The stlpips-pytorch README: LPIPS(net="alex", variant="shift_tolerant") of imgs/ex_p0.png against
# imgs/ex_ref.png (the LPIPS repository's example triplet, in tests/data).
PUBLISHED_EX_P0_REF_ALEX = 0.7777554988861084


@pytest.fixture(scope="module")
def alex() -> STLPIPS:
    return create_metric("stlpips")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def vgg() -> STLPIPS:
    return create_metric("stlpips", net="vgg")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def original_package():
    """The authors' ``stlpips_pytorch.stlpips`` module. Its files import IPython (``embed``) and
    torchsummary (``summary``, used only by a printing helper) without using them on the metric's
    path: where they are not installed, stand-ins are put in ``sys.modules`` for the import alone."""
    stubs = {}
    for name, attribute in (("IPython", "embed"), ("torchsummary", "summary")):
        try:
            __import__(name)
        except ImportError:
            stub = types.ModuleType(name)
            setattr(stub, attribute, lambda *args, **kwargs: None)
            stubs[name] = stub
    sys.modules.update(stubs)
    try:
        from stlpips_pytorch import stlpips
    finally:
        for name in stubs:
            sys.modules.pop(name, None)
    return stlpips


@pytest.fixture(scope="module")
def originals(original_package):
    """One reference model per net, built once (the shift-tolerant trunks need no torchvision file)."""
    built = {}

    def get(net: str):
        if net not in built:
            built[net] = original_package.LPIPS(net=net, variant="shift_tolerant", verbose=False).eval()
        return built[net]

    return get


def _pair(shape, seed=0, strength=0.2) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=gen)
    return x, (x + strength * torch.randn(*shape, generator=gen)).clamp(0, 1)


def _metric(request, net: str) -> STLPIPS:
    return request.getfixturevalue(net)


# ------------------------------------------------------------------ parity


@pytest.mark.parametrize("net", ["alex", "vgg"])
@pytest.mark.parametrize("size", [(64, 64), (100, 72)])
def test_equals_the_original_code(request, originals, net, size):
    metric, original = _metric(request, net), originals(net)
    x, y = _pair((2, 3, *size), seed=size[1])
    with torch.no_grad():
        want = original(x, y, normalize=True).reshape(-1)
        want_layers = torch.cat(original(x, y, retPerLayer=True, normalize=True)[1], dim=1).reshape(2, 5)
    got = metric(x, y)
    assert float(want.min()) > 1e-3  # values worth comparing, not rounding noise
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    # the original adds layers 2..5 into its layer-1 tensor in place, so it returns the total there
    layers = metric.layer_distances(x, y)
    torch.testing.assert_close(layers[:, 1:], want_layers[:, 1:], rtol=0, atol=1e-6)
    torch.testing.assert_close(layers.sum(dim=1), want_layers[:, 0], rtol=0, atol=1e-6)
    # the authors' own convention: inputs in [-1, 1]
    signed = create_metric("stlpips", net=net, input_range="-1,1")
    torch.testing.assert_close(signed(2 * x - 1, 2 * y - 1), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_spatial_map_equals_the_original_code(originals, net):
    original = originals(net)
    x, y = _pair((2, 3, 64, 96), seed=5)
    original.spatial = True
    try:
        with torch.no_grad():
            want = original(x, y, normalize=True)
    finally:
        original.spatial = False
    got = create_metric("stlpips", net=net, spatial=True)(x, y)
    assert got.shape == want.shape == (2, 1, 64, 96)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_published_example_value(alex, reference_dir):
    folder = reference_dir / "lpips-example-triplet"
    got = alex(load_image(folder / "ex_p0.png"), load_image(folder / "ex_ref.png"))
    assert abs(got.item() - PUBLISHED_EX_P0_REF_ALEX) < 1e-6


# ------------------------------------------------------------------ weight files


def _save_altered(tmp_path, net: str, change) -> None:
    state = torch.load(stlpips_weights_path(net), map_location="cpu", weights_only=True)
    change(state)
    torch.save(state, tmp_path / f"{net}_shift_tolerant.pth")


def test_every_tensor_of_the_network_comes_from_the_file(alex):
    state = torch.load(stlpips_weights_path("alex"), map_location="cpu", weights_only=True)
    trunk = alex.trunk
    for key, value in trunk.state_dict().items():
        _, index, tensor = key.split(".", 2)
        file_key = f"net.slice{trunk.tap_of_layer(int(index)) + 1}.{index}.{tensor}"
        assert torch.equal(value, state.pop(file_key)), key
    for layer, weights in enumerate(alex.calibration):
        assert torch.equal(weights, state.pop(f"lin{layer}.model.1.weight").reshape(-1))
    assert torch.equal(alex.shift, state.pop("scaling_layer.shift"))
    assert torch.equal(alex.scale, state.pop("scaling_layer.scale"))
    assert not state  # nothing in the file is left unused
    blurs = [m for m in trunk.modules() if isinstance(m, BlurPool)]
    assert len(blurs) == 3 and all(torch.equal(b.filt[0, 0], binomial_filter(3)) for b in blurs)
    assert torch.equal(binomial_filter(3) * 16, torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]))


def test_a_file_missing_a_tensor_is_refused_with_one_line(tmp_path, monkeypatch):
    def drop(state):
        del state["net.slice3.8.filt"], state["lin2.model.1.weight"]

    _save_altered(tmp_path, "alex", drop)
    monkeypatch.setenv("PERCEPMETRIC_STLPIPS_WEIGHTS", str(tmp_path))
    with pytest.raises(InputError) as info:
        create_metric("stlpips")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "alex_shift_tolerant.pth") in message
    assert "missing: net.slice3.8.filt, lin2.model.1.weight" in message


def test_a_file_with_extra_or_misshapen_tensors_is_refused(tmp_path, monkeypatch):
    def alter(state):
        state["net.slice5.16.filt"] = torch.ones(256, 1, 3, 3)  # the unused last blur of the original
        state["lin0.model.1.weight"] = state["lin0.model.1.weight"][:, :32]

    _save_altered(tmp_path, "alex", alter)
    with pytest.raises(InputError, match=r"unexpected: net\.slice5\.16\.filt; wrong shape: lin0\.model\.1\.weight"):
        load_stlpips_file("alex", tmp_path / "alex_shift_tolerant.pth")


def test_an_absent_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPMETRIC_STLPIPS_WEIGHTS", str(tmp_path))
    assert stlpips_weights_path("vgg") == tmp_path / "vgg_shift_tolerant.pth"
    with pytest.raises(WeightsNotFoundError, match=r"vgg_shift_tolerant\.pth.*stlpips-pytorch==0\.0\.2"):
        create_metric("stlpips", net="vgg")


def test_the_cache_key_hashes_the_file(alex, tmp_path, monkeypatch):
    identity = content_identity(alex.spec, alex.weight_files)
    assert identity.startswith(alex.spec + "|weights=blake2b:")
    assert alex.spec == "stlpips(input_range=0,1,net=alex,precision=auto,spatial=False)"

    def scale_lin(state):
        state["lin4.model.1.weight"] = state["lin4.model.1.weight"] * 2

    _save_altered(tmp_path, "alex", scale_lin)
    monkeypatch.setenv("PERCEPMETRIC_STLPIPS_WEIGHTS", str(tmp_path))
    other = create_metric("stlpips")
    assert other.spec == alex.spec and content_identity(other.spec, other.weight_files) != identity


def test_options_and_sizes(alex, vgg):
    with pytest.raises(InputError, match="unknown net"):
        create_metric("stlpips", net="squeeze")
    assert create_metric("stlpips", net="VGG16").options["net"] == "vgg"
    with pytest.raises(InputError, match="either data_range or input_range"):
        create_metric("stlpips", data_range=255, input_range="-1,1")
    for metric, smallest in ((alex, 21), (vgg, 18)):
        assert metric.min_size == smallest
        x, y = _pair((1, 3, smallest, smallest + 3), seed=1)
        assert metric(x, y).shape == (1,)
        with pytest.raises(InputError):
            metric(x[..., 1:, :], y[..., 1:, :])


# ------------------------------------------------------------------ properties


def test_st_lpips_is_a_sibling_of_lpips_not_a_stand_in(alex, tmp_path):
    """ST-LPIPS shares everything LPIPS does once built, but has no untrained form and no training
    file: it is not an LPIPS, so code that needs one (training, its weight files) refuses it in
    one line, and code that measures distances (matrices) takes both."""
    from percepmetric.metrics.lpips import LPIPS, ChannelDistanceMetric
    from percepmetric.pairwise import pairwise
    from percepmetric.train.checkpoint import save_lpips_checkpoint

    assert isinstance(alex, ChannelDistanceMetric) and not isinstance(alex, LPIPS)
    assert not hasattr(alex, "untrained")
    with pytest.raises(InputError, match="expected an LPIPS metric, got STLPIPS"):
        save_lpips_checkpoint(alex, tmp_path / "st.pt")
    images = _pair((3, 3, 32, 32), seed=4)[0]
    matrix = pairwise(images, metric=alex)
    torch.testing.assert_close(matrix[0, 1].float(), alex(images[:1], images[1:2])[0], rtol=1e-4, atol=1e-6)


def test_identity_symmetry_batches_and_triplets(alex):
    x, y = _pair((4, 3, 48, 56), seed=3)
    d = alex(x, y)
    assert d.shape == (4,) and bool((d > 0).all())
    assert torch.equal(alex(x, x.clone()), torch.zeros(4))
    torch.testing.assert_close(alex(y, x), d, rtol=0, atol=1e-7)
    one_by_one = torch.cat([alex(x[i:i + 1], y[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(one_by_one, d, rtol=0, atol=1e-6)
    z = _pair((4, 3, 48, 56), seed=4)[1]
    d0, d1 = alex.triplet_values(x, y, z)
    torch.testing.assert_close(d0, d, rtol=0, atol=1e-6)
    torch.testing.assert_close(d1, alex(x, z), rtol=0, atol=1e-6)
    # grey is repeated to RGB; data_range scales the input
    torch.testing.assert_close(alex(x[:, :1], y[:, :1]), alex(x[:, :1].expand(-1, 3, -1, -1),
                                                              y[:, :1].expand(-1, 3, -1, -1)))
    torch.testing.assert_close(create_metric("stlpips", data_range=255)(x * 255, y * 255), d, rtol=0, atol=1e-6)
    # features once, distances many times: the matrix path's embedding gives the same numbers
    e = alex.pair_embedding(torch.cat([x, y]))
    torch.testing.assert_close(((e[:4] - e[4:]) ** 2).sum(dim=1), d, rtol=0, atol=1e-6)


def test_finite_gradients_identical_pair_included(alex):
    loss_fn = create_metric("stlpips", as_loss=True)
    x, y = _pair((2, 3, 32, 40), seed=6)
    for target in (y, x.clone()):
        image = x.clone().requires_grad_(True)
        loss_fn(image, target).backward()
        assert image.grad is not None and bool(torch.isfinite(image.grad).all())
        if target is y:
            assert float(image.grad.abs().sum()) > 0
    assert all(not p.requires_grad for p in alex.parameters())


def test_bfloat16_trunk_stays_close(alex):
    x, y = _pair((2, 3, 64, 64), seed=7)
    low = create_metric("stlpips", precision="bfloat16")(x, y)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, alex(x, y), rtol=0.05, atol=0)


def _shift_ratio(metric, image: torch.Tensor, distorted: torch.Tensor, size: int = 128) -> float:
    """How much a 1-pixel shift moves the metric, relative to a real distortion of the same crop:
    d(crop, crop shifted right by 1) / d(crop, distorted crop), averaged over a few crops."""
    tops = (20, 90, 160)
    ratios = []
    for top in tops:
        crop = image[..., top:top + size, 40:40 + size]
        shifted = image[..., top:top + size, 41:41 + size]
        noisy = distorted[..., top:top + size, 40:40 + size]
        ratios.append((metric(crop, shifted) / metric(crop, noisy)).item())
    return float(np.mean(ratios))


def test_a_one_pixel_shift_moves_st_lpips_less_than_lpips(alex, reference_dir):
    from helpers import pretrained_lpips

    image = load_image(reference_dir / "tid2013-pair" / "I01.BMP")
    distorted = load_image(reference_dir / "tid2013-pair" / "i01_01_5.bmp")  # additive noise, level 5
    lpips = pretrained_lpips("alex")
    st, plain = _shift_ratio(alex, image, distorted), _shift_ratio(lpips, image, distorted)
    assert st < 0.25 * plain, (st, plain)  # measured: 0.014 against 0.167 (docs/lpips.md, ST-LPIPS)


def test_functional_equals_the_class(alex):
    x, y = _pair((2, 3, 32, 32), seed=8)
    torch.testing.assert_close(percepmetric.functional.stlpips(x, y), alex(x, y))
    torch.testing.assert_close(percepmetric.functional.stlpips(x, y, reduction="mean"), alex(x, y).mean())
    torch.testing.assert_close(percepmetric.distance(x, y, metric="stlpips"), alex(x, y))


# ------------------------------------------------------------------ the command line


def _write_images(folder, count: int, size=(40, 48)) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(11)
    base = torch.rand(1, 3, *size, generator=gen)
    paths = []
    for i in range(count):
        image = (base + 0.15 * i * torch.randn(1, 3, *size, generator=gen)).clamp(0, 1)
        array = (image[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        paths.append(folder / f"im{i}.png")
        Image.fromarray(array).save(paths[-1])
    return paths


def test_cli_distance_alex_and_vgg(tmp_path, alex, vgg):
    a, b = _write_images(tmp_path / "pair", 2)
    run = run_cli_subprocess("distance", a, b, "-m", "stlpips", "-m", "stlpips:net=vgg", "--json", check_rc=0)
    results = json.loads(run.stdout)["results"]
    assert [r["metric"] for r in results] == ["stlpips", "stlpips(net=vgg)"]
    x, y = load_image(a), load_image(b)
    for result, metric in zip(results, (alex, vgg)):
        assert result["spec"] == metric.spec and result["lower_is_better"]
        assert abs(result["value"] - metric(x, y).item()) < 1e-6
        assert result["distance"] == result["value"]


def test_cli_matrix_equals_distance(tmp_path, capsys, alex):
    paths = _write_images(tmp_path / "set", 3)
    out = tmp_path / "m.npy"
    code, stdout, stderr = run_cli(capsys, "matrix", tmp_path / "set", "-m", "stlpips", "--out", out,
                                   "--no-progress")
    assert code == 0, stderr
    matrix = np.load(out)
    images = torch.cat([load_image(p) for p in paths])
    for i in range(3):
        for j in range(3):
            want = 0.0 if i == j else alex(images[i:i + 1], images[j:j + 1]).item()
            assert abs(matrix[i, j] - want) < 1e-6, (i, j, matrix[i, j], want)


def test_cli_weights_and_metrics_listings(capsys):
    code, out, _ = run_cli(capsys, "weights", "--json")
    assert code == 0
    rows = [r for r in json.loads(out) if r["net"] == "stlpips"]
    assert [r["kind"] for r in rows] == ["network:alex", "network:vgg"]
    assert all(r["present"] and r["path"] == str(stlpips_weights_path(r["kind"][8:])) for r in rows)
    code, out, _ = run_cli(capsys, "metrics")
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["stlpips"])
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    block = lines[start:end]
    assert 2 <= len(block) <= 4 and all(len(line) < 100 for line in block), block


def test_cli_weights_says_how_to_get_missing_networks(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PERCEPMETRIC_STLPIPS_WEIGHTS", str(tmp_path))
    code, out, _ = run_cli(capsys, "weights")
    assert code == 0 and "pip install stlpips-pytorch==0.0.2" in out


def test_bench_on_bapps_and_a_mos_set_and_a_deepsim_generator(tmp_path, tmp_path_factory, cache, capsys):
    """ST-LPIPS where every metric goes: BAPPS 2AFC and JND, a MOS dataset, a trained generator."""
    from percepmetric.data.mos_fixtures import make_mos_fixture
    from percepmetric.deepsim.train import DeepSimConfig, train_generator

    from helpers import synthetic_bapps_root

    root = synthetic_bapps_root(tmp_path_factory, size=3, seed=1)
    kadid = make_mos_fixture("kadid10k", tmp_path / "kadid", references=2, distortions=8)
    code, _, err = run_cli(capsys, "bench", "--root", root, "-s", "val/cnn", "-s", "jnd/val/cnn",
                           "--dataset", f"kadid10k={kadid}", "-m", "stlpips", "--bootstrap", 20, "--no-progress",
                           "--out", tmp_path / "out")
    assert code == 0, err
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    kinds = {(r["split"], r["kind"]) for r in rows if r["status"] == "complete"}
    assert {("val/cnn", "2afc"), ("jnd/val/cnn", "jnd_map"), ("kadid10k", "srcc"), ("kadid10k", "plcc_fitted")} <= kinds

    train, test = tmp_path / "train", tmp_path / "test"
    _write_images(train, 2, size=(48, 48))
    _write_images(test, 2, size=(32, 32))
    config = DeepSimConfig(task="autoencoder", size=32, data=str(train), out=str(tmp_path / "run"), iterations=1,
                           batch_size=2, width=0.125, discriminator_width=0.125, comparator_pretrained=False,
                           checkpoint_every=1, seed=3, loss="image")
    checkpoint = train_generator(config, progress=False)
    code, out, err = run_cli(capsys, "bench", "--model", f"deepsim:{checkpoint}", "--data", test, "-m", "stlpips")
    assert code == 0, err
    assert "stlpips" in out
