"""LPIPS: properties, options, checkpoints, backbones and the CLI.

Most tests use a seeded random AlexNet trunk (no weight file needed); the pretrained ones
skip, naming the missing file, where torchvision's cache lacks it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import requires_cuda
from PIL import Image

import percepmetric
from percepmetric import InputError, WeightsNotFoundError, create_metric
from percepmetric.metrics.lpips import (
    LPIPS,
    ChannelNormalizedDistance,
    load_lpips_checkpoint,
)
from percepmetric.nets.backbones import build_backbone, tap_channels, trunk_weights_path
from percepmetric.train.checkpoint import save_lpips_checkpoint
from percepmetric.weights import content_identity

from helpers import alexnet_torch_home, pretrained_lpips, requires_weights, run_cli_subprocess

# Documented bound (docs/lpips.md, "Precision"): a reduced-precision trunk changes distances by at most
# this fraction of the float32 value (measured on CPU: fp16 ~1e-3, bf16 ~1e-2 relative).
PRECISION_REL_BOUND = {"float16": 0.01, "bfloat16": 0.05}


@pytest.fixture(scope="module")
def alex():
    return LPIPS.untrained("alex", "scratch", seed=0, calibration="v0.1")


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 64, 72, generator=g)
    y = (x + 0.2 * torch.randn(3, 3, 64, 72, generator=g)).clamp(0, 1)
    return x, y


# ---------------------------------------------------------------- properties


def test_identity_symmetry_batch(alex, pair):
    x, y = pair
    assert torch.equal(alex(x, x), torch.zeros(3))
    d = alex(x, y)
    assert d.shape == (3,) and torch.all(d > 0)
    torch.testing.assert_close(alex(y, x), d, rtol=0, atol=1e-6)
    single = torch.cat([alex(x[i : i + 1], y[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(single, d, rtol=0, atol=1e-6)


def test_layers_and_spatial(alex, pair):
    x, y = pair
    d = alex(x, y)
    layers = alex.layer_distances(x, y)
    assert layers.shape == (3, 5)
    torch.testing.assert_close(layers.sum(dim=1), d, rtol=0, atol=1e-6)
    dmap = alex.distance_map(x, y)
    assert dmap.shape == (3, 1, 64, 72) and torch.all(dmap >= 0)
    torch.testing.assert_close(dmap.mean(dim=(1, 2, 3)), d, rtol=0.05, atol=0)  # close, not equal
    spatial = LPIPS.untrained("alex", "scratch", seed=0, calibration="v0.1", spatial=True)
    torch.testing.assert_close(spatial(x, y), dmap)


def test_gradients_finite_and_weights_frozen(alex, pair):
    x, y = pair
    for target in (y, x):  # x == y is the delicate point
        xg = x.clone().requires_grad_(True)
        alex(xg, target).sum().backward()
        assert torch.isfinite(xg.grad).all()
        if target is y:
            assert xg.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in alex.parameters())


def test_gradient_at_all_zero_features():
    dist = ChannelNormalizedDistance()
    fx = torch.zeros(2, 8, 3, 3, requires_grad=True)
    fy = torch.zeros(2, 8, 3, 3)
    fy[0] = 1.0
    w = torch.rand(8)
    dist([fx], [fy], [w]).sum().backward()
    assert torch.isfinite(fx.grad).all()
    assert torch.equal(dist([fy], [fy.clone()], [w]), torch.zeros(2))


def test_training_gradients_reach_calibration(pair):
    m = LPIPS.untrained("alex", "lin", seed=0) if trunk_weights_path("alex").is_file() else \
        LPIPS.untrained("alex", "scratch", seed=0)
    m.calibration.requires_grad_(True)
    x, y = pair
    m(x, y).sum().backward()
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in m.calibration)
    assert all(p.grad is None for p in m.trunk.parameters())


def test_input_ranges(alex, pair):
    x, y = pair
    d = alex(x, y)
    m11 = LPIPS.untrained("alex", "scratch", seed=0, calibration="v0.1", input_range="-1,1")
    torch.testing.assert_close(m11(x * 2 - 1, y * 2 - 1), d, rtol=0, atol=1e-6)
    m255 = LPIPS.untrained("alex", "scratch", seed=0, calibration="v0.1", input_range=(0, 255))
    torch.testing.assert_close(m255(x * 255, y * 255), d, rtol=0, atol=1e-5)
    with pytest.raises(InputError, match="outside the declared input range"):
        alex(x * 2 - 1, y)
    with pytest.raises(InputError, match="outside the declared input range"):
        m11(x * 3, y)
    with pytest.raises(InputError, match="input_range"):
        LPIPS.untrained("alex", "scratch", input_range="0-1")


def test_grey_and_float64_and_small(alex, pair):
    x, y = pair
    grey_x, grey_y = x[:, :1], y[:, :1]
    torch.testing.assert_close(alex(grey_x, grey_y), alex(grey_x.expand(-1, 3, -1, -1), grey_y.expand(-1, 3, -1, -1)))
    m = LPIPS.untrained("alex", "scratch", seed=0, calibration="v0.1")
    d64 = m(x.double(), y.double())
    assert d64.dtype == torch.float64
    torch.testing.assert_close(d64.float(), alex(x, y), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="smaller than"):
        alex(x[..., :20, :20], y[..., :20, :20])


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_reduced_precision_error(alex, pair, precision):
    x, y = pair
    low = LPIPS.untrained("alex", "scratch", seed=0, calibration="v0.1", precision=precision)
    d32, d = alex(x, y), low(x, y)
    assert d.dtype == torch.float32 and next(low.trunk.parameters()).dtype == getattr(torch, precision)
    rel = ((d - d32).abs() / d32).max().item()
    assert rel < PRECISION_REL_BOUND[precision], rel


# ---------------------------------------------------------------- variants and options


def test_default_is_lin_v01_and_baseline(pair):
    m = pretrained_lpips("alex")
    assert (m.net, m.variant, m.options["weights"]) == ("alex", "lin", "v0.1")
    assert "net=alex" in m.spec and "variant=lin" in m.spec
    base = pretrained_lpips("alex", variant="baseline")
    assert all(torch.equal(w, torch.ones_like(w)) for w in base.calibration)
    x, y = pair
    assert torch.all(base(x, y) > 0)
    d = percepmetric.distance(x, y, net="alex")
    torch.testing.assert_close(d, m(x, y))


def test_bad_options():
    with pytest.raises(InputError, match="trained weight file.*percepmetric train --variant tune"):
        create_metric("lpips", variant="tune")
    with pytest.raises(InputError, match="unknown LPIPS net"):
        create_metric("lpips", net="resnet")
    with pytest.raises(InputError, match="unknown variant"):
        create_metric("lpips", variant="linear")
    with pytest.raises(InputError, match="precision"):
        create_metric("lpips", precision="int8")


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path, pair):
    x, y = pair
    m = LPIPS.untrained("alex", "scratch", seed=3, calibration="random")
    path = save_lpips_checkpoint(m, tmp_path / "run" / "final.pt", meta={"epochs": 2, "trained_on": ["traditional"]})
    assert sorted(p.name for p in path.parent.iterdir()) == ["final.pt"]  # no temporary file left
    state = load_lpips_checkpoint(path)
    assert (state["net"], state["variant"], state["meta"]["epochs"]) == ("alex", "scratch", 2)
    loaded = create_metric("lpips", weights=str(path))  # net and variant come from the file
    assert torch.equal(loaded(x, y), m(x, y))
    assert loaded.spec.count("sha256:") == 1 and "variant=scratch" in loaded.spec
    with pytest.raises(InputError, match="made for net 'alex', not 'vgg'"):
        create_metric("lpips", net="vgg", weights=str(path))
    with pytest.raises(InputError, match="holds a 'scratch' model"):
        create_metric("lpips", variant="tune", weights=str(path))


def test_lin_checkpoint_keeps_trunk_out(tmp_path, pair):
    m = pretrained_lpips("alex")
    path = save_lpips_checkpoint(m, tmp_path / "lin.pt")
    assert load_lpips_checkpoint(path)["trunk"] is None
    x, y = pair
    assert torch.equal(create_metric("lpips", weights=str(path))(x, y), m(x, y))
    # tune trains the ImageNet trunk: its file must carry the trunk.
    tuned = LPIPS.untrained("alex", "tune")
    with torch.no_grad():
        tuned.trunk.features[0].weight.mul_(1.5)
    path = save_lpips_checkpoint(tuned, tmp_path / "tune.pt")
    assert load_lpips_checkpoint(path)["trunk"] is not None
    assert torch.equal(create_metric("lpips", weights=str(path))(x, y), tuned(x, y))


def test_bad_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    for path in (garbage, foreign):
        with pytest.raises(InputError, match=path.name):
            create_metric("lpips", weights=str(path))
    with pytest.raises(WeightsNotFoundError, match="missing.pt"):
        create_metric("lpips", weights=str(tmp_path / "missing.pt"))


def _identity(metric) -> str:
    """What result caches key a metric on: its spec and the content of the files it reports."""
    return content_identity(metric.spec, metric.weight_files)


def test_the_cache_key_is_the_content_of_every_weight_file(tmp_path, monkeypatch):
    import shutil

    from percepmetric import weights as weights_module
    from percepmetric.metrics import lpips as lpips_module

    official = lpips_module.official_calibration_path("alex")
    pretrained_lpips("alex")  # skips, naming the file, when the trunk is absent
    monkeypatch.setenv("PERCEPMETRIC_LPIPS_WEIGHTS", str(tmp_path))
    calibration = lpips_module.official_calibration_path("alex")
    calibration.parent.mkdir(parents=True)
    shutil.copyfile(official, calibration)
    first = create_metric("lpips")
    identity = _identity(first)
    assert identity.startswith(first.spec + "|") and "trunk=blake2b:" in identity and "calibration=blake2b:" in identity
    # Hashed once per file and process: a second model of the same files reads neither again.
    monkeypatch.setattr(weights_module, "open", lambda *a, **k: pytest.fail("hashed again"), raising=False)
    assert _identity(create_metric("lpips")) == identity
    monkeypatch.undo()
    monkeypatch.setenv("PERCEPMETRIC_LPIPS_WEIGHTS", str(tmp_path))
    state = torch.load(calibration, map_location="cpu", weights_only=True)
    state["lin2.model.1.weight"] = state["lin2.model.1.weight"] * 0.5
    torch.save(state, calibration)  # same path, same size: only the content (and times) change
    second = create_metric("lpips")
    assert second.spec == first.spec  # readable names stay as they are ...
    assert _identity(second) not in (identity, _identity(first))  # ... the cache key does not
    assert "calibration=changed-since-read" in _identity(first)  # its bytes are not on disk anymore
    # A --weights checkpoint counts with its content too.
    path = save_lpips_checkpoint(LPIPS.untrained("alex", "scratch", seed=1), tmp_path / "mine.pt")
    assert "weights=blake2b:" in _identity(create_metric("lpips", weights=str(path)))


# ---------------------------------------------------------------- backbones


def test_backbone_taps_and_seeded_init():
    a, b = build_backbone("squeeze", pretrained=False, seed=11), build_backbone("squeeze", pretrained=False, seed=11)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    with torch.inference_mode():
        taps = a(torch.randn(1, 3, 64, 64))
    # Channels of the tapped layers, as in the reference implementation's networks
    # (the lpips package's lpips/lpips.py, ``self.chns`` of LPIPS.__init__ for vgg, alex, squeeze).
    assert [t.shape[1] for t in taps] == tap_channels("squeeze") == [64, 128, 256, 384, 384, 512, 512]
    assert tap_channels("alexnet") == [64, 192, 384, 256, 256]
    assert tap_channels("vgg16") == [64, 128, 256, 512, 512]


def test_lpips_reads_only_the_convolutions_of_the_alexnet_file(tmp_path, monkeypatch, pair):
    # torchvision's own file has a trained classifier, a trimmed copy may have zeros or none:
    # the distances must not depend on which one the machine has.
    x, y = pair
    distances, identities = {}, {}
    for classifier in ("zeros", "nonzero"):
        monkeypatch.setenv("TORCH_HOME", str(alexnet_torch_home(tmp_path / classifier, classifier)))
        metric = pretrained_lpips("alex")
        distances[classifier], identities[classifier] = metric(x, y), _identity(metric)
    assert identities["zeros"] != identities["nonzero"]  # each file was read: their hashes differ
    assert torch.equal(distances["zeros"], distances["nonzero"])


def test_missing_pretrained_file_names_file_and_folder(tmp_path, monkeypatch):
    import torchvision.models._api as tv_api

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", offline)  # hermetic even with internet
    with pytest.raises(WeightsNotFoundError) as info:
        build_backbone("squeeze")
    message = str(info.value)
    # torchvision's SqueezeNet1_1_Weights.IMAGENET1K_V1 URL ends in this file name.
    assert "squeezenet1_1-b8a52dc0.pth" in message and str(tmp_path / "hub" / "checkpoints") in message


# ---------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    near = np.clip(ref.astype(int) + rng.integers(-20, 21, ref.shape), 0, 255).astype(np.uint8)
    far = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    paths = []
    for name, arr in (("ref", ref), ("near", near), ("far", far)):
        Image.fromarray(arr).save(folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
    return paths


def test_cli_distance_vgg_and_score_baseline(image_files):
    pretrained_lpips("vgg")
    ref, near, far = image_files
    out = run_cli_subprocess("distance", ref, near, "--metric", "lpips", "--net", "vgg")
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("lpips(") and "net=vgg" in line and float(line.split()[-1]) > 0
    out = run_cli_subprocess("score", ref, far, near, "-m", "lpips", "--variant", "baseline", "-o", "input_range=0,1")
    assert out.returncode == 0, out.stderr
    assert "variant=baseline" in out.stdout and out.stdout.strip().splitlines()[-1].split()[-1] == "B"


def test_cli_weights_file_and_errors(image_files, tmp_path):
    ref, near, _ = image_files
    path = save_lpips_checkpoint(LPIPS.untrained("squeeze", "scratch", seed=1), tmp_path / "sq.pt")
    out = run_cli_subprocess("distance", ref, near, "-m", "lpips", "--weights", path)
    assert out.returncode == 0, out.stderr
    assert "net=squeeze" in out.stdout and "sha256:" in out.stdout
    out = run_cli_subprocess("distance", ref, near, "-m", "lpips", "--variant", "tune")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "percepmetric train --variant tune" in out.stderr


def test_cli_weights_listing():
    from percepmetric.weights import locate, lpips_calibration_file

    out = run_cli_subprocess("weights")
    assert out.returncode == 0, out.stderr
    # Each folder on a line of its own, then one indented row per file: net, kind, status, where
    # it was found (words; none when missing), name.
    nets = ("alex", "vgg", "squeeze")
    # A carrier's folder is shown from site-packages on, under a line naming that folder.
    files: dict[tuple[str, str], tuple[str, str, str]] = {}
    folder = site = ""
    for line in out.stdout.splitlines():
        if line.startswith("site-packages/ is "):
            site = line.removeprefix("site-packages/ is ")
        elif line.endswith("/") and not line.startswith(" "):
            folder = site + line.removeprefix("site-packages/") if line.startswith("site-packages/") else line
        elif line.startswith("  ") and line.split()[0] in nets:
            net, kind, status, *source, name = line.split()
            files[(net, kind)] = (status, folder + name, " ".join(source))
    assert len(files) == 2 * len(nets)  # a trunk and a calibration file per net
    for net in nets:
        status, path, source = files[(net, "trunk")]
        assert path == str(trunk_weights_path(net))
        assert (status == "present") == trunk_weights_path(net).is_file()
        status, path, source = files[(net, "calibration")]
        found = locate(lpips_calibration_file(net))
        assert status == "present" and path == str(found.path) and source == found.source


@requires_cuda()
def test_cuda_follows_input(pair):
    x, y = pair
    cpu = LPIPS.untrained("alex", "scratch", seed=0, calibration="v0.1")
    expected = cpu(x, y)
    d = cpu(x.cuda(), y.cuda())  # the metric moves itself to the input's device
    assert d.device.type == "cuda"
    torch.testing.assert_close(d.cpu(), expected, rtol=1e-4, atol=1e-5)


@requires_weights("alex")
def test_triplet_values_share_the_reference_and_equal_two_forwards():
    # The benchmark asks d(ref, p0) and d(ref, p1): one trunk pass of 3N images must give
    # exactly what two pair forwards give, identical pairs included (exactly 0). Both share
    # the trunk and the distance code; test_lpips_parity.py checks the triplet path against
    # the reference implementation, an independent computation.
    m = create_metric("lpips", net="alex", variant="baseline")
    g = torch.Generator().manual_seed(3)
    ref, p0, p1 = (torch.rand(4, 3, 48, 48, generator=g) for _ in range(3))
    p0[2] = ref[2]
    v0, v1 = m.triplet_values(ref, p0, p1)
    assert torch.allclose(v0, m(ref, p0), atol=1e-6) and torch.allclose(v1, m(ref, p1), atol=1e-6)
    assert v0[2] == 0
