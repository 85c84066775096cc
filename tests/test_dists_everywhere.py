"""DISTS wherever a metric goes: distance matrices (each image's features once, tiles from
per-channel statistics and covariances, torchrun's split), the ``distance``, ``score``,
``matrix`` and ``bench`` commands (BAPPS 2AFC and JND, DeePSiM generators), as a training loss,
and the 2AFC triplet sharing the reference's trunk pass.

Values are checked against ``create_metric("dists")`` on each pair (within 1e-6)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import percepmetric
from percepmetric import create_metric, pairwise
from percepmetric.distributed import Group
from percepmetric.io import as_batch, load_image
from percepmetric.metrics.dists import DISTS

from helpers import requires_weights, run_cli_subprocess, skip_without_weights

pairwise_module = sys.modules["percepmetric.pairwise"]


@pytest.fixture(scope="module")
def metric() -> DISTS:
    skip_without_weights("vgg")
    return create_metric("dists")  # type: ignore[return-value]


def _images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    """Random images, the second half a mild distortion of the first (close pairs as well as far ones)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=gen)
    half = n // 2
    x[half:2 * half] = (x[:half] + 0.05 * torch.randn(half, 3, size, size, generator=gen)).clamp(0, 1)
    return x


def _every_pair(m: DISTS, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(len(x)), torch.arange(len(y)), indexing="ij")
    return m(x[i.flatten()], y[j.flatten()]).reshape(len(x), len(y))


def _count_trunk_images(m: DISTS) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    """Images through the trunk's first stage, one entry per call."""
    seen: list[int] = []
    handle = m.stages[0].register_forward_pre_hook(lambda _module, args: seen.append(args[0].shape[0]))
    return seen, handle


def _save_png(image: torch.Tensor, path: Path) -> Path:
    array = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(array).save(path)
    return path


# ------------------------------------------------------------------ distance matrices


def test_feature_rows_fit_the_layout_for_odd_sizes_and_resize(metric):
    for shape in ((2, 3, 37, 53), (1, 3, 64, 64)):
        rows = metric.pair_features(torch.rand(*shape))
        assert rows.shape == (shape[0], metric.pair_feature_length(*shape[2:]))
    assert metric.pair_feature_length(64, 64) == 2 * 1475 + 512_000
    resized = create_metric("dists", resize=True)
    assert resized.pair_features(torch.rand(1, 3, 300, 270)).shape[1] == resized.pair_feature_length(300, 270)


def test_matrix_of_a_set_equals_the_metric_on_every_pair(metric):
    x = _images(7, seed=1)
    seen, handle = _count_trunk_images(metric)
    try:
        matrix = pairwise(x, metric=metric, batch_size=3)
    finally:
        handle.remove()
    assert sum(seen) == 7  # each image once (the per-pair path would run 2 x 21 images)
    assert matrix.shape == (7, 7) and matrix.dtype == torch.float32
    off_diagonal = ~torch.eye(7, dtype=torch.bool)
    assert (matrix - _every_pair(metric, x, x))[off_diagonal].abs().max() <= 1e-6
    assert torch.equal(matrix, matrix.T) and torch.equal(matrix.diagonal(), torch.zeros(7))
    tiled = pairwise(x, metric="dists", tile_size=2, batch_size=3)  # tiles change nothing but rounding
    torch.testing.assert_close(tiled, matrix, rtol=0, atol=1e-6)
    assert torch.equal(tiled, tiled.T)


def test_matrix_of_two_sets_n_by_m(metric):
    x, y = _images(5, seed=2), _images(3, seed=3)
    y[1] = x[2]
    seen: list[tuple[int, int]] = []
    matrix = pairwise(x, y, metric="dists", tile_size=2, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1] and len(seen) == seen[-1][1]  # one call per trunk batch and per tile
    assert matrix.shape == (5, 3)
    assert (matrix - _every_pair(metric, x, y)).abs().max() <= 1e-6
    assert matrix[2, 1] == 0.0  # identical images: exactly 0, as the metric gives
    assert (pairwise(y, x, metric="dists") - matrix.T).abs().max() <= 1e-6


@pytest.mark.parametrize("same", [True, False])
def test_row_blocks_beyond_the_feature_budget(metric, same):
    """Rows that do not fit ``feature_budget`` are kept a row block at a time: the columns a
    block meets are computed again for it (N + ceil(N/B) M passes), the values are the same."""
    x = _images(9, seed=4)
    y = x if same else _images(4, seed=5)
    row = metric.pair_feature_length(32, 32) * 4
    seen, handle = _count_trunk_images(metric)
    try:
        matrix = pairwise(x, None if same else y, metric=metric, tile_size=2, batch_size=2,
                          feature_budget=6 * row)  # blocks of B = 4 rows: 0-3, 4-7, 8
    finally:
        handle.remove()
    want = _every_pair(metric, x, y)
    if same:
        want.fill_diagonal_(0.0)
        # rows 9, then the column chunks beyond each block: block 0-3 meets 4-5, 6-7, 8;
        # block 4-7 meets 8; block 8 none
        assert sum(seen) == 9 + 5 + 1
    else:
        assert sum(seen) == 9 + 3 * 4
    assert (matrix - want).abs().max() <= 1e-6


def test_bad_budgets_are_one_line():
    with pytest.raises(percepmetric.InputError, match="feature_budget must be a positive number of bytes"):
        pairwise(_images(2, seed=0), metric="dists", feature_budget=0)


class _SimulatedRanks:
    """``all_gather`` for ranks running in threads of this process: each gives its part and
    gets every rank's, in rank order (the torchrun test below covers the real exchange)."""

    def __init__(self, world: int) -> None:
        self.barrier = threading.Barrier(world, timeout=120)
        self.slots: list[object] = [None] * world

    def __call__(self, group: Group, part: object) -> list[object]:
        self.slots[group.rank] = part
        self.barrier.wait()
        gathered = list(self.slots)
        self.barrier.wait()  # nobody overwrites a slot before every rank has read them all
        return gathered


@pytest.mark.parametrize("feature_budget", [None, "small"])
def test_two_simulated_ranks_share_trunk_passes_and_tiles(metric, monkeypatch, feature_budget):
    x = _images(9, seed=6)
    options = {"tile_size": 2, "batch_size": 2}
    if feature_budget == "small":
        options["feature_budget"] = 6 * metric.pair_feature_length(32, 32) * 4
    one = pairwise(x, metric=metric, **options)
    monkeypatch.setattr(pairwise_module, "all_gather", _SimulatedRanks(2))
    computed: dict[int, list[int]] = {0: [], 1: []}
    fill = pairwise_module._fill_gathered

    def record(matrix, blocks, split, parts, symmetric):
        computed[split.rank] = sorted(parts)
        fill(matrix, blocks, split, parts, symmetric)

    monkeypatch.setattr(pairwise_module, "_fill_gathered", record)
    trunk_images: dict[int, int] = {}
    features = DISTS.pair_features

    def counting(self, images):
        rank = int(threading.current_thread().name[-1])
        trunk_images[rank] = trunk_images.get(rank, 0) + images.shape[0]
        return features(self, images)

    monkeypatch.setattr(DISTS, "pair_features", counting)
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []

    def rank(r: int) -> None:
        try:
            results[r] = pairwise(x, metric=metric, split=Group(r, 2), **options)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=rank, args=(r,), name=f"rank{r}") for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for r in (0, 1):
        torch.testing.assert_close(results[r], one, rtol=0, atol=1e-6)
    assert not set(computed[0]) & set(computed[1])
    assert len(computed[0]) + len(computed[1]) == len(pairwise_module._tiles(9, 9, 2, True))
    assert computed[0] and computed[1]  # both ranks had tiles
    if feature_budget is None:
        assert trunk_images[0] + trunk_images[1] == 9  # the trunk batches are shared, not repeated


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_matrix_command_under_torchrun_gives_one_process_matrix(metric, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    x = _images(5, seed=7)
    for k in range(5):
        _save_png(x[k], folder / f"{k}.png")
    common = ("matrix", folder, "-m", "dists", "--batch-size", "2", "--no-progress")
    one = run_cli_subprocess(*common, "--out", tmp_path / "one.npy", check_rc=0)
    assert "matrix" in one.stdout
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                          "127.0.0.1", "--master-port", str(_free_port()), "-m", "percepmetric",
                          *map(str, common), "--out", str(tmp_path / "two.npy")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert two.returncode == 0, two.stderr
    matrix_one, matrix_two = np.load(tmp_path / "one.npy"), np.load(tmp_path / "two.npy")
    np.testing.assert_allclose(matrix_two, matrix_one, rtol=0, atol=1e-6)
    images = torch.cat([load_image(folder / f"{k}.png") for k in range(5)])
    want = _every_pair(metric, images, images).fill_diagonal_(0.0).numpy()
    np.testing.assert_allclose(matrix_one, want, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ the commands


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> list[Path]:
    """ref, a (mild noise) and b (strong noise), 48x40."""
    root = tmp_path_factory.mktemp("dists_pngs")
    gen = torch.Generator().manual_seed(8)
    ref = torch.rand(3, 40, 48, generator=gen)
    a = (ref + 0.05 * torch.randn(ref.shape, generator=gen)).clamp(0, 1)
    b = (ref + 0.3 * torch.randn(ref.shape, generator=gen)).clamp(0, 1)
    return [_save_png(image, root / f"{name}.png") for name, image in (("ref", ref), ("a", a), ("b", b))]


@pytest.mark.parametrize("spec", ["dists", "dists:resize=true"])
def test_distance_command(metric, pngs, spec):
    run = run_cli_subprocess("distance", pngs[0], pngs[1], "-m", spec, "--json", check_rc=0)
    want = metric(load_image(pngs[0]), load_image(pngs[1])).item()  # 48x40: resize leaves it alone
    text = run.stdout
    assert "dists" in text
    assert any(abs(v - want) <= 1e-6 for v in _numbers(json.loads(text))), text


@pytest.mark.parametrize("spec", ["dists", "dists:resize=true"])
def test_score_command(metric, pngs, spec):
    run = run_cli_subprocess("score", *pngs, "-m", spec, "--json", check_rc=0)
    values = _numbers(json.loads(run.stdout))
    ref, a, b = (load_image(p) for p in pngs)
    for want in (metric(ref, a).item(), metric(ref, b).item()):
        assert any(abs(v - want) <= 1e-6 for v in values), run.stdout
    assert metric(ref, a).item() < metric(ref, b).item()  # the mild distortion is closer


def _numbers(value: object) -> list[float]:
    """Every number in a JSON document."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return []


def test_bench_on_bapps_2afc_and_jnd(metric, tmp_path, tmp_path_factory, cache):
    from percepmetric.bench import compute_distances
    from percepmetric.data import bapps

    from helpers import synthetic_bapps_root

    root = synthetic_bapps_root(tmp_path_factory, size=3, seed=1)
    out = tmp_path / "out"
    run = run_cli_subprocess("bench", "--root", root, "-s", "val/cnn", "-s", "jnd/val/cnn", "-m", "dists",
                             "--no-progress", "--bootstrap", "50", "--out", out, check_rc=0)
    assert "dists" in run.stdout
    report = json.loads((out / "results.json").read_text())
    assert report["complete"] and report["metrics"] == ["dists"]
    rows = {(r["split"], r["kind"]): r for r in report["results"] if r["metric"] == "dists"}
    assert set(rows) == {("val/cnn", "2afc"), ("jnd/val/cnn", "jnd_map")}
    assert all(r["n"] == 3 and r["status"] == "complete" and 0 <= r["score"] <= 1 for r in rows.values())
    assert (out / "results.csv").is_file() and (out / "summary.csv").is_file()
    # the distances the benchmark computes are the metric's on each item
    two_afc = bapps.load_two_afc(root, "val/cnn")
    d0, d1 = compute_distances(metric, two_afc)
    np.testing.assert_allclose(d0, metric(as_batch(two_afc.ref), as_batch(two_afc.p0)).numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(d1, metric(as_batch(two_afc.ref), as_batch(two_afc.p1)).numpy(), rtol=0, atol=1e-6)
    jnd = bapps.load_jnd(root, "jnd/val/cnn")
    d = compute_distances(metric, jnd)
    np.testing.assert_allclose(d, metric(as_batch(jnd.p0), as_batch(jnd.p1)).numpy(), rtol=0, atol=1e-6)


def test_bench_of_a_deepsim_generator(metric, tmp_path):
    from percepmetric.deepsim.train import DeepSimConfig, train_generator

    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    photos = _images(5, seed=9, size=48)
    for k in range(2):
        _save_png(photos[k], train / f"t{k}.png")
    for k in range(3):
        _save_png(photos[2 + k, :, :32, :32], test / f"v{k}.png")
    config = DeepSimConfig(task="autoencoder", size=32, data=str(train), out=str(tmp_path / "run"), iterations=1,
                           batch_size=2, width=0.125, discriminator_width=0.125, comparator_pretrained=False,
                           checkpoint_every=1, seed=3, loss="image")
    checkpoint = train_generator(config, progress=False)
    out = tmp_path / "bench"
    run = run_cli_subprocess("bench", "--model", f"deepsim:{checkpoint}", "--data", test, "-m", "dists", "--out", out,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, check_rc=0)
    assert "dists" in run.stdout
    table = (out / "deepsim_bench.csv").read_text()
    assert "dists" in table, table


# ------------------------------------------------------------------ loss and triplets


@requires_weights("vgg")
def test_loss_has_finite_gradients_identical_pairs_included():
    loss_fn = create_metric("dists", as_loss=True)
    x = _images(3, seed=10)
    target = x.clone()
    target[1:] = _images(3, seed=11)[1:]  # item 0 is identical to its target
    image = x.clone().requires_grad_(True)
    loss = loss_fn(image, target)
    assert loss.ndim == 0 and bool(torch.isfinite(loss))
    loss.backward()
    assert image.grad is not None and bool(torch.isfinite(image.grad).all())
    assert bool(image.grad[1:].abs().sum() > 0)
    # the whole batch identical: loss 0, gradient 0 (DISTS's minimum), nothing NaN
    same = x.clone().requires_grad_(True)
    zero = loss_fn(same, x)
    zero.backward()
    assert zero.item() == 0.0 and same.grad is not None and bool(torch.isfinite(same.grad).all())
    # gradients reach both inputs when both require them
    a, b = x.clone().requires_grad_(True), target.clone().requires_grad_(True)
    loss_fn(a, b).backward()
    assert a.grad is not None and b.grad is not None and bool(torch.isfinite(b.grad).all())


def test_a_triplet_runs_the_trunk_over_three_batches_not_four(metric):
    ref, p0, p1 = _images(4, seed=12), _images(4, seed=13), _images(4, seed=14)
    seen, handle = _count_trunk_images(metric)
    try:
        d0, d1 = metric.triplet_values(ref, p0, p1)
    finally:
        handle.remove()
    assert sum(seen) == 3 * 4
    torch.testing.assert_close(d0, metric(ref, p0), rtol=0, atol=1e-6)
    torch.testing.assert_close(d1, metric(ref, p1), rtol=0, atol=1e-6)


def test_functional_distance_and_pairwise_agree(metric):
    x, y = _images(2, seed=15), _images(2, seed=16)
    torch.testing.assert_close(percepmetric.distance(x, y, metric="dists"), metric(x, y))
    torch.testing.assert_close(pairwise(x, y, metric="dists").diagonal(), metric(x, y), rtol=0, atol=1e-6)
