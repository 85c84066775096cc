"""`percepmetric train` under faults and hostile files (issue 11): nothing runs from a checkpoint,
no run is silently mixed with other data or settings, bad input is one line with nothing left
behind, and every file the trainer writes is safe to load and follows the umask.

Runs are tiny (10 sentinel triplets, one or two steps) so each test takes a second or two.
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from percepmetric.data.bapps import TwoAFCSplit
from percepmetric.data.fixtures import sentinel_triplets
from percepmetric.errors import InputError
from percepmetric.train.data import join_splits
from percepmetric.train.loop import CHECKPOINT_FORMAT, LpipsTrainConfig, load_training_checkpoint, train_lpips

from helpers import QUIET, requires_weights
from helpers import calibration_split as _calibration_split
from helpers import write_split_folder as _write_folder

LIN = LpipsTrainConfig(net="alex", variant="lin", epochs=2, decay_epochs=1, batch_size=5, lr=1e-2, seed=0)
# cache_features=False: a run stopped after one step then costs one batch through the trunk.
ONE_STEP = dict(stop_after=1, cache_features=False, **QUIET)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPMETRIC_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def folder(tmp_path):
    """A 4-triplet folder in BAPPS layout for the command line."""
    return _write_folder(tmp_path / "mine", _calibration_split(2, seed=8))


def _train_exits_2(capsys, *args) -> str:
    """Run `percepmetric train ARGS`; assert exit code 2 and one error line; return that line."""
    from percepmetric.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--no-progress", *map(str, args)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("percepmetric:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


class _TouchOnLoad:
    """Unpickling this calls ``Path(marker).touch()``: stands in for a payload that runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


# ---------------------------------------------------------------------------- item: weights_only

def test_resume_refuses_a_pickled_payload_without_running_it(tmp_path, capsys, folder):
    run, marker = tmp_path / "run", tmp_path / "MARKER"
    run.mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "version": 2, "config": _TouchOnLoad(marker)}, run / "latest.pt")
    line = _train_exits_2(capsys, "--data", folder, "--out", run, "--resume")
    assert "pickled" in line and "latest.pt" in line
    with pytest.raises(InputError, match="pickled"):
        load_training_checkpoint(run / "latest.pt")
    assert not marker.exists()


def test_resume_from_a_checkpoint_missing_fields_is_one_line(tmp_path, capsys, folder):
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": CHECKPOINT_FORMAT, "version": 2}, run / "latest.pt")
    line = _train_exits_2(capsys, "--data", folder, "--out", run, "--resume")
    assert "latest.pt" in line and "'config'" in line


@requires_weights("alex")
def test_resume_from_a_checkpoint_with_damaged_fields_is_one_line(tmp_path, small_triplets):
    run = tmp_path / "run"
    train_lpips(LIN, small_triplets, run, **ONE_STEP)
    ck = torch.load(run / "latest.pt", weights_only=True)
    ck["rng"]["numpy"] = "not a state"
    torch.save(ck, run / "latest.pt")
    with pytest.raises(InputError, match="damaged"):
        train_lpips(LIN, small_triplets, run, resume=True, **ONE_STEP)


@requires_weights("alex")
def test_every_file_of_a_run_loads_without_pickle_and_follows_the_umask(tmp_path, small_triplets):
    from percepmetric.registry import create_metric

    run = tmp_path / "run"
    old = os.umask(0o002)
    try:
        train_lpips(LIN, small_triplets, run, stop_after=1, **QUIET)      # latest.pt in the middle of an epoch
        train_lpips(LIN, small_triplets, run, resume=True, **QUIET)       # epoch_NNN.pt, log.jsonl, final.pt
    finally:
        os.umask(old)
    written = sorted(p.name for p in run.iterdir())
    assert written == ["epoch_001.pt", "epoch_002.pt", "final.pt", "latest.pt", "log.jsonl"], written
    for name in written:
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o664, name
        if name.endswith(".pt"):
            torch.load(run / name, map_location="cpu", weights_only=True)
    assert create_metric("lpips", weights=str(run / "final.pt")).variant == "lin"


# ---------------------------------------------------------------------------- item: --device

@pytest.mark.parametrize("device", ["foo", "cuda", "cuda:7"])
def test_bad_device_is_one_line_and_leaves_no_out_folder(tmp_path, capsys, folder, device):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = tmp_path / "run"
    line = _train_exits_2(capsys, "--data", folder, "--out", run, "--device", device)
    assert "--device" in line
    assert not run.exists()
    with pytest.raises(InputError, match="--device"):
        train_lpips(LIN, join_splits([("x", _calibration_split(2, seed=8))]), run, device=device, **QUIET)
    assert not run.exists()


@requires_weights("alex")
def test_device_auto_trains_and_evaluates(tmp_path, capsys, folder):
    from percepmetric.cli import main

    main(["train", "--no-progress", "--data", str(folder), "--out", str(tmp_path / "run"), "--epochs", "1",
          "--batch-size", "4", "--device", "auto", "--val-data", str(folder)])
    assert "2AFC" in capsys.readouterr().out and (tmp_path / "run" / "eval.json").is_file()


# ---------------------------------------------------------------------------- item: --out

def test_out_that_cannot_be_created_is_one_line(capsys, folder):
    line = _train_exits_2(capsys, "--data", folder, "--out", "/proc/x/run", "--no-eval")
    assert "--out" in line and "/proc/x/run" in line


def test_unwritable_out_is_one_line(tmp_path, capsys, folder, monkeypatch):
    # Permission bits do not stop root (which CI runs as), so the folder refuses writes by
    # having the probe file's creation fail as the kernel would (EACCES).
    import tempfile

    locked = tmp_path / "locked"
    real_mkstemp = tempfile.mkstemp

    def refusing_mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(locked.resolve()):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refusing_mkstemp)
    line = _train_exits_2(capsys, "--data", folder, "--out", locked / "run", "--no-eval")
    assert "--out" in line and "Permission denied" in line


def test_bad_input_leaves_no_out_folder(tmp_path, capsys, folder):
    run = tmp_path / "run"
    _train_exits_2(capsys, "--data", tmp_path / "absent", "--out", run)
    _train_exits_2(capsys, "--data", folder, "--out", run, "--variant", "baseline")
    _train_exits_2(capsys, "--data", folder, "--out", run, "--stop-after", "0")
    assert not run.exists()


# ---------------------------------------------------------------------------- item: other data on resume

@requires_weights("alex")
def test_resume_refuses_other_data_saying_what_differs(tmp_path, capsys, folder):
    run = tmp_path / "run"
    other = _write_folder(tmp_path / "other", _calibration_split(2, seed=9))
    common = ["--out", run, "--batch-size", "2", "--no-eval"]
    from percepmetric.cli import main

    main(["train", "--no-progress", "--data", str(folder), *map(str, common), "--stop-after", "1"])
    line = _train_exits_2(capsys, "--data", other, *common, "--resume")
    assert str(folder) in line and str(other) in line and "--out" in line


@requires_weights("alex")
def test_resume_notices_a_changed_patch_anywhere_in_the_data(tmp_path):
    """The fingerprint covers every patch, not a sample: one changed pixel in 200 triplets is seen."""
    ref, p0, p1, judge = sentinel_triplets(200, "mix", seed=4)
    data = join_splits([("mix", TwoAFCSplit("mix", ref, p0, p1, judge, []))])
    train_lpips(LIN, data, tmp_path / "run", **ONE_STEP)
    changed = p1.copy()
    changed[101, 5, 5, 0] ^= 1
    edited = join_splits([("mix", TwoAFCSplit("mix", ref, p0, changed, judge, []))])
    with pytest.raises(InputError, match=r"other data .mix .200 triplets. has changed"):
        train_lpips(LIN, edited, tmp_path / "run", resume=True, **(ONE_STEP | {"stop_after": 2}))


@requires_weights("alex")
def test_resume_accepts_the_same_data_under_another_name(tmp_path, small_triplets):
    """A moved or copied folder is the same data: the run continues."""
    train_lpips(LIN, small_triplets, tmp_path / "run", **ONE_STEP)
    renamed = join_splits([("moved", TwoAFCSplit("moved", small_triplets.ref, small_triplets.p0,
                                                 small_triplets.p1, small_triplets.judge, []))])
    result = train_lpips(LIN, renamed, tmp_path / "run", resume=True, cache_features=False, **QUIET)
    assert result["final"] is not None


# ---------------------------------------------------------------------------- item: stale temporaries

@requires_weights("alex")
def test_temporaries_of_a_killed_checkpoint_write_are_removed_at_the_next_start(tmp_path, small_triplets):
    run = tmp_path / "run"
    train_lpips(LIN, small_triplets, run, **ONE_STEP)
    stale = [run / ".latest.pt.k1ll3d.tmp", run / ".epoch_001.pt.x8y9z0.tmp", run / ".final.pt.a1b2c3.tmp",
             run / ".log.jsonl.q1w2e3.tmp"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)
    kept = [run / "notes.txt", run / ".mine.tmp"]
    for path in kept:
        path.write_text("the user's")
    train_lpips(LIN, small_triplets, run, resume=True, **(ONE_STEP | {"stop_after": 2}))
    assert not any(path.exists() for path in stale)
    assert all(path.read_text() == "the user's" for path in kept)


# ---------------------------------------------------------------------------- item: order of the checks

def test_run_folder_is_checked_before_the_data_loads(tmp_path, capsys, monkeypatch):
    import percepmetric.train.data as train_data

    def must_not_load(*_args, **_kw):
        raise AssertionError("the data was loaded before the run folder was checked")

    monkeypatch.setattr(train_data, "load_training_triplets", must_not_load)
    run = tmp_path / "run"
    run.mkdir()
    (run / "latest.pt").write_bytes(b"a run")
    line = _train_exits_2(capsys, "--data", tmp_path / "absent", "--out", run)
    assert "--resume" in line
    line = _train_exits_2(capsys, "--data", tmp_path / "absent", "--out", tmp_path / "empty", "--resume")
    assert "nothing to resume" in line
    line = _train_exits_2(capsys, "--data", tmp_path / "absent", "--out", run, "--device", "foo")
    assert "--device" in line


# ---------------------------------------------------------------------------- item: the refusal says what differs

@requires_weights("alex")
def test_resume_refusal_names_the_setting_both_values_and_what_to_do(tmp_path, small_triplets):
    train_lpips(LIN, small_triplets, tmp_path / "run", **ONE_STEP)
    with pytest.raises(InputError) as exc:
        train_lpips(replace(LIN, epochs=3), small_triplets, tmp_path / "run", resume=True, **QUIET)
    message = str(exc.value)
    assert "--epochs" in message and "2" in message and "3" in message
    assert "new --out" in message and "decay" not in message  # decay_epochs was given, and is unchanged
    assert len(message.splitlines()) == 1


# ---------------------------------------------------------------------------- item: --root

def test_root_is_a_folder_option_like_bench(tmp_path, capsys, folder):
    from click.testing import CliRunner

    from percepmetric.cli import cli

    assert "--root DIRECTORY" in CliRunner().invoke(cli, ["train", "--help"]).output
    not_a_folder = tmp_path / "bapps.txt"
    not_a_folder.write_text("x")
    line = _train_exits_2(capsys, "--root", not_a_folder, "--split", "train/cnn", "--out", tmp_path / "run")
    assert "--root" in line and "is a file" in line
    assert not (tmp_path / "run").exists()
