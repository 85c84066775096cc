"""The LPIPS trainer as a class (issue 12): :class:`LpipsTrainer` built, stepped, saved and continued
by hand gives the run :func:`train_lpips` gives; and under torchrun the device comes from
:func:`percepmetric.devices.resolve_device`, then each process takes its own GPU.
"""

from __future__ import annotations

import pytest
import torch

from percepmetric.data.bapps import TwoAFCSplit
from percepmetric.data.fixtures import sentinel_triplets
from percepmetric.devices import resolve_device
from percepmetric.errors import InputError
from percepmetric.train import distributed
from percepmetric.train.distributed import Dist
from percepmetric.train.loop import LpipsTrainConfig, LpipsTrainer, load_training_checkpoint, train_lpips

from helpers import QUIET, requires_weights


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPMETRIC_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def triplets() -> TwoAFCSplit:
    ref, p0, p1, judge = sentinel_triplets(10, "mix", seed=3)
    return TwoAFCSplit("mix", ref, p0, p1, judge, [])


@requires_weights("alex")
def test_trainer_stepped_saved_and_continued_by_hand_is_the_train_lpips_run(tmp_path, triplets):
    # cache_features=False: each step computes its batch's statistics, as a step taken by hand does.
    config = LpipsTrainConfig(net="alex", variant="lin", epochs=1, batch_size=5, lr=1e-2).resolved()
    whole = train_lpips(config, triplets, tmp_path / "whole", cache_features=False, **QUIET)

    out = tmp_path / "by_hand"
    out.mkdir()
    first = LpipsTrainer(config, triplets, out, Dist(), cache_features=False, **QUIET)
    first.step(first.epoch_batches()[0])
    first.save()
    assert (first.epoch, first.epoch_step, first.global_step) == (1, 1, 1)

    second = LpipsTrainer(config, triplets, out, Dist(), cache_features=False, **QUIET)
    second.load_state(load_training_checkpoint(out / "latest.pt"), out / "latest.pt")
    assert (second.epoch, second.epoch_step, second.global_step) == (1, 1, 1)
    result = second.fit()
    assert result["final"] == out / "final.pt" and result["final"].is_file()
    assert [row["loss"] for row in result["history"]] == [row["loss"] for row in whole["history"]]
    assert result["data"] == whole["data"] and second.global_step == 2


def test_torchrun_device_is_resolve_device_then_each_process_its_gpu(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    joined: list[str] = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", joined.append)

    # A bad name is resolve_device's own line, before any process group is joined.
    with pytest.raises(InputError) as from_devices:
        resolve_device("foo")
    with pytest.raises(InputError) as from_setup:
        distributed.setup("foo")
    assert str(from_setup.value) == str(from_devices.value) and joined == []

    on_cpu = distributed.setup("cpu")
    assert (on_cpu.rank, on_cpu.world, on_cpu.local_rank, on_cpu.device) == (1, 2, 1, torch.device("cpu"))
    assert joined == ["gloo"]

    # With GPUs, whichever CUDA device was asked for, process LOCAL_RANK takes cuda:LOCAL_RANK.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for spec in ("auto", "cuda", "cuda:0"):
        assert distributed.setup(spec).device == torch.device("cuda", 1)
    assert joined[1:] == ["nccl"] * 3 and chosen == [torch.device("cuda", 1)] * 3
