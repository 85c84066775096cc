"""The evaluation loop across processes: ``update`` on each rank, ``compute()`` equal to one process's.

Two CPU processes in a real gloo group (helpers.run_ranks) each add their share of the batches
to ``create_metric(name)``; every rank's ``compute()`` must be the summary one process gives
over all the batches. The batches are the same tensors in both runs (same shapes, same thread
count), so the per-image values agree bit for bit and only the summing across ranks differs.
"""

from __future__ import annotations

import math

import pytest

from helpers import RANK_BATCHES, run_alone, run_ranks

#: Each rank adds batches rank, rank + world, ...: 3 batches (8 images) on rank 0 and 2 (4
#: images) on rank 1, so the ranks hold different numbers of images.
PART = RANK_BATCHES + """
import torch.distributed as dist

from percepmetric import create_metric


def pickled_collective(*args, **kwargs):
    raise AssertionError("compute() pickled its states: tensor collectives (all_reduce) are expected")


def part(rank, world):
    # States are tensors, summed by all_reduce: the object collectives, which pickle, are never needed.
    dist.all_gather_object = dist.gather_object = dist.broadcast_object_list = pickled_collective
    summaries = {}
    for name in ("psnr", "ssim"):
        metric = create_metric(name)
        for i, (x, y) in enumerate(batches()):
            if i % world == rank:
                metric.update(x, y)
        summaries[name] = metric.compute()
    return summaries
"""


def test_two_processes_compute_the_summary_of_one(tmp_path):
    alone = run_alone(PART, tmp_path / "alone")
    ranks = run_ranks(PART, tmp_path / "ranks", world=2)
    assert len(ranks) == 2
    for rank, summaries in enumerate(ranks):
        for name in ("psnr", "ssim"):
            got, want = summaries[name], alone[name]
            assert want["n"] == 12 and got["n"] == want["n"], (rank, name)
            assert got["mean"] == pytest.approx(want["mean"], rel=1e-12, abs=0), (rank, name)
            for bound in ("ci_low", "ci_high"):
                assert math.isfinite(want[bound])
                assert got[bound] == pytest.approx(want[bound], rel=1e-9, abs=1e-9), (rank, name, bound)
