"""LPIPS against the reference implementation (the ``lpips`` package) and its published numbers."""

from __future__ import annotations

import csv

import pytest
import torch

from percepmetric import load_image
from percepmetric.metrics.lpips import LPIPS
from percepmetric.nets.backbones import backbone_spec

from helpers import pretrained_lpips, run_cli_subprocess

lpips_ref = pytest.importorskip("lpips", reason="the lpips package (test extra) is needed for parity tests")

NETS = ("alex", "vgg", "squeeze")


def reference_model(net: str, trunk_state: dict, lin: bool = True):
    """``lpips.LPIPS`` with our trunk tensors copied in (no download: pnet_rand=True)."""
    ref = lpips_ref.LPIPS(net=net, lpips=lin, pnet_rand=True, verbose=False)
    spec = backbone_spec(net)
    state = {}
    for key, value in trunk_state.items():
        index = int(key.split(".")[1])  # features.<index>.<param>
        slice_no = next(k for k, end in enumerate(spec.tap_ends) if index < end) + 1
        state[f"slice{slice_no}.{key.split('.', 1)[1]}"] = value
    ref.net.load_state_dict(state, strict=True)
    return ref.eval()


@pytest.fixture(scope="module", params=NETS)
def seeded_pair(request):
    """(ours, reference) sharing one seeded random trunk and the official v0.1 lin weights."""
    ours = LPIPS.untrained(request.param, "scratch", seed=1234, calibration="v0.1")
    return ours, reference_model(request.param, ours.trunk.state_dict())


def _images(n, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, h, w, generator=g)
    y = (x + 0.15 * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)
    return x, y


def test_parity_64x64_with_layers(seeded_pair):
    ours, ref = seeded_pair
    x, y = _images(2, 64, 64, seed=7)
    with torch.no_grad():
        expected, layers = ref(x * 2 - 1, y * 2 - 1, retPerLayer=True)
    torch.testing.assert_close(ours(x, y), expected.flatten(), rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.layer_distances(x, y), torch.cat(layers, dim=1).flatten(1), rtol=0, atol=1e-6)


def test_parity_larger_and_spatial(seeded_pair):
    ours, ref = seeded_pair
    x, y = _images(2, 72, 96, seed=8)
    with torch.no_grad():
        expected = ref(x * 2 - 1, y * 2 - 1).flatten()
        ref.spatial = True  # the reference reads this flag in forward
        try:
            expected_map = ref(x * 2 - 1, y * 2 - 1)
        finally:
            ref.spatial = False
    torch.testing.assert_close(ours(x, y), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.distance_map(x, y), expected_map, rtol=0, atol=1e-6)
    assert expected_map.shape == (2, 1, 72, 96)


def test_triplet_values_match_the_reference_pair_by_pair(seeded_pair):
    # The benchmark's triplet path (one trunk pass for ref, p0 and p1) against two separate
    # calls of the reference implementation, identical pairs included.
    ours, ref = seeded_pair
    x, p0 = _images(3, 64, 64, seed=9)
    _, p1 = _images(3, 64, 64, seed=10)
    p1[1] = x[1]
    with torch.no_grad():
        expected0 = ref(x * 2 - 1, p0 * 2 - 1).flatten()
        expected1 = ref(x * 2 - 1, p1 * 2 - 1).flatten()
    v0, v1 = ours.triplet_values(x, p0, p1)
    torch.testing.assert_close(v0, expected0, rtol=0, atol=1e-6)
    torch.testing.assert_close(v1, expected1, rtol=0, atol=1e-6)
    assert v1[1] == 0


def test_parity_baseline_variant():
    ours = LPIPS.untrained("alex", "scratch", seed=5, calibration="ones")
    ref = reference_model("alex", ours.trunk.state_dict(), lin=False)
    x, y = _images(2, 64, 80, seed=3)
    with torch.no_grad():
        expected = ref(x * 2 - 1, y * 2 - 1).flatten()
    torch.testing.assert_close(ours(x, y), expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- pretrained trunks


def _expected_rows(reference_dir):
    folder = reference_dir / "lpips-example-triplet"
    with open(folder / "expected.csv", newline="") as f:
        return folder, list(csv.DictReader(f))


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_reference_triplet(reference_dir, net):
    folder, rows = _expected_rows(reference_dir)
    m = pretrained_lpips(net)
    rows = [r for r in rows if r["metric"] == f"lpips-{net}-v0.1"]
    assert len(rows) == 3
    a = torch.cat([load_image(folder / r["img_a"]) for r in rows])
    b = torch.cat([load_image(folder / r["img_b"]) for r in rows])
    expected = torch.tensor([float(r["value"]) for r in rows])
    torch.testing.assert_close(m(a, b), expected, rtol=0, atol=1e-5)
    # LPIPS's own [-1, 1] convention gives the same numbers.
    m11 = pretrained_lpips(net, input_range="-1,1")
    torch.testing.assert_close(m11(a * 2 - 1, b * 2 - 1), expected, rtol=0, atol=1e-5)


def test_squeeze_pretrained():
    m = pretrained_lpips("squeeze")  # skips where torchvision's cache lacks SqueezeNet 1.1's file
    x, y = _images(2, 64, 64, seed=0)
    d = m(x, y)
    assert d.shape == (2,) and torch.all(d > 0)


def test_cli_score_says_b_is_closer(reference_dir):
    folder, rows = _expected_rows(reference_dir)
    expected = {(r["img_a"], r["img_b"]): float(r["value"]) for r in rows if r["metric"] == "lpips-alex-v0.1"}
    to_p0, to_p1 = expected[("ex_ref.png", "ex_p0.png")], expected[("ex_ref.png", "ex_p1.png")]
    pretrained_lpips("alex")
    out = run_cli_subprocess("score", folder / "ex_ref.png", folder / "ex_p0.png", folder / "ex_p1.png",
                             "--metric", "lpips", check_rc=0).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("lpips("))
    assert line.split()[1:3] == [f"{to_p0:.6f}", f"{to_p1:.6f}"]  # the CLI prints six decimals
    assert to_p1 < to_p0 and line.split()[-1] == "B"
