"""Training LPIPS (percepmetric.train): head, schedule, lin/tune/scratch, checkpoints, resume, CLI.

Data: the harness's synthetic BAPPS fixtures (percepmetric.data.fixtures). On the plain fixture
the uncalibrated ``baseline`` already orders every triplet the way the simulated people do (its
2AFC equals the fixture's human ceiling), so no training can rise above it. The lin test therefore
uses a "calibration folder" in BAPPS layout built from the fixture's own photos and distortions:
half plain sentinel triplets, half blur-vs-noise triplets whose simulated people prefer the blurred
patch, which the baseline gets wrong more often than not -- what a user calibrating on their own
judgments would have.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from percepmetric.data.bapps import TwoAFCSplit, load_two_afc_folder
from percepmetric.data.fixtures import distort, photo_patches, sentinel_triplets
from percepmetric.errors import InputError
from percepmetric.data.bapps import to_tensor
from percepmetric.train.data import join_splits
from percepmetric.train.evaluate import two_afc
from percepmetric.train.loop import TrainConfig, load_checkpoint, train
from percepmetric.train.model import LPIPSTrainable
from percepmetric.train.ranking import RankingHead, learning_rate, ranking_loss, two_afc_agreement

from conftest import ROOT, TORCH_HOME

QUIET = dict(progress=False, log=lambda _msg: None)


def _calibration_split(n: int, seed: int) -> TwoAFCSplit:
    """``2n`` triplets: n fixture sentinels + n blur-vs-noise with "people" preferring blur."""
    rng = np.random.default_rng(seed)
    ref = photo_patches(n, 64, seed=seed)
    blur = distort(ref, "blur", rng.uniform(0.3, 1.0, n), seed)
    noise = distort(ref, "noise", rng.uniform(0.05, 0.4, n), seed + 1)
    p1_blur = rng.random(n) < 0.5
    p0 = np.where(p1_blur[:, None, None, None], noise, blur)
    p1 = np.where(p1_blur[:, None, None, None], blur, noise)
    s_ref, s_p0, s_p1, s_judge = sentinel_triplets(n, "traditional", seed=seed)
    cat = np.concatenate
    return TwoAFCSplit(f"calibration-{seed}", cat([ref, s_ref]), cat([p0, s_p0]), cat([p1, s_p1]),
                       cat([p1_blur.astype(np.float32), s_judge]), [f"{i:06d}" for i in range(2 * n)])


def _write_folder(folder: Path, split: TwoAFCSplit) -> Path:
    from PIL import Image

    for sub in ("ref", "p0", "p1", "judge"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(len(split.judge)):  # one file per item: that is the layout
        for sub in ("ref", "p0", "p1"):
            Image.fromarray(getattr(split, sub)[i]).save(folder / sub / f"{i:06d}.png")
        np.save(folder / "judge" / f"{i:06d}.npy", split.judge[i:i + 1])
    return folder


def _env(tmp_path: Path) -> dict:
    env = dict(os.environ, TORCH_HOME=str(TORCH_HOME), PERCEPMETRIC_CACHE=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPMETRIC_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def small_triplets():
    ref, p0, p1, judge = sentinel_triplets(10, "mix", seed=3)
    return join_splits([("mix", TwoAFCSplit("mix", ref, p0, p1, judge, []))])


# ---------------------------------------------------------------------------- pieces

def test_ranking_head_and_loss():
    torch.manual_seed(0)
    head = RankingHead()
    d0, d1 = torch.rand(7), torch.rand(7)
    logit = head(d0, d1)
    assert logit.shape == (7,)
    judge = torch.rand(7)
    expected = torch.nn.functional.binary_cross_entropy(torch.sigmoid(logit), judge)
    torch.testing.assert_close(ranking_loss(logit, judge), expected)
    # Paper architecture: 5 -> 32 -> 32 -> 1.
    assert [m.weight.shape for m in head.mlp if hasattr(m, "weight")] == [(32, 5), (32, 32), (1, 32)]


def test_two_afc_agreement_counts_ties_half():
    d0 = torch.tensor([0.1, 0.5, 0.3])
    d1 = torch.tensor([0.2, 0.4, 0.3])
    judge = torch.tensor([0.25, 0.25, 0.9])
    torch.testing.assert_close(two_afc_agreement(d0, d1, judge), torch.tensor([0.75, 0.25, 0.5]))


def test_learning_rate_schedule_matches_original():
    # 5 + 5 epochs: epochs 1-6 at base, then -20% per epoch (the original train.py).
    rates = [learning_rate(1.0, e, 10, 5) for e in range(1, 11)]
    np.testing.assert_allclose(rates, [1, 1, 1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2])
    assert learning_rate(1.0, 3, 3, 0) == 1.0
    assert TrainConfig(epochs=10).resolved().decay_epochs == 5


def test_config_rejects_bad_values():
    with pytest.raises(InputError, match="--variant"):
        TrainConfig(variant="baseline").resolved()
    with pytest.raises(InputError, match="--decay-epochs"):
        TrainConfig(epochs=2, decay_epochs=3).resolved()
    with pytest.raises(InputError, match="net"):
        TrainConfig(net="resnet").resolved()


@pytest.mark.parametrize("variant,w_init", [("lin", "ones"), ("tune", "torch")])
def test_training_distance_is_the_metric(small_triplets, variant, w_init):
    """The trainer's fast forms (pair statistics, one trunk pass per triplet) equal the LPIPS metric."""
    lp = LPIPSTrainable("alex", variant, w_init, seed=1)
    ref, p0, p1 = (to_tensor(x[:6], torch.device("cpu")) for x in
                   (small_triplets.ref, small_triplets.p0, small_triplets.p1))
    d0, d1 = lp.triplet_distances(ref, p0, p1)
    with torch.no_grad():
        lp.metric.requires_grad_(False)
        torch.testing.assert_close(d0.detach(), lp.metric(ref, p0), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(d1.detach(), lp.metric(ref, p1), rtol=1e-5, atol=1e-6)
    s0, _ = lp.pair_stats(ref, p0, p1)
    torch.testing.assert_close(lp.distance_from_stats(s0).detach(), d0.detach(), rtol=1e-5, atol=1e-7)
    assert all((w >= 0).all() for w in lp.metric.calibration)


# ---------------------------------------------------------------------------- variants

@pytest.fixture(scope="module")
def calibration_splits():
    return _calibration_split(40, seed=1), _calibration_split(40, seed=2)


def test_lin_beats_baseline_on_held_out_triplets(tmp_path, calibration_splits):
    from percepmetric.registry import create_metric

    train_split, held_out = calibration_splits
    baseline = two_afc(create_metric("lpips", net="alex", variant="baseline"), held_out)
    config = TrainConfig(net="alex", variant="lin", epochs=10, batch_size=5, lr=3e-2, seed=0)
    result = train(config, join_splits([("calibration", train_split)]), tmp_path / "run", **QUIET)
    trained = create_metric("lpips", weights=str(result["final"]))
    score = two_afc(trained, held_out)
    assert score > baseline + 0.03, (score, baseline)
    assert trained.variant == "lin" and trained.net == "alex"
    assert all((w >= 0).all() for w in trained.calibration)


@pytest.mark.parametrize("variant,net", [("tune", "alex"), ("scratch", "squeeze")])
def test_tune_and_scratch_lower_the_loss(tmp_path, small_triplets, variant, net):
    config = TrainConfig(net=net, variant=variant, epochs=3, decay_epochs=0, batch_size=5, lr=1e-3, seed=0)
    result = train(config, small_triplets, tmp_path / "run", **QUIET)
    losses = [row["loss"] for row in result["history"]]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    from percepmetric.metrics.lpips import load_lpips_checkpoint

    saved = load_lpips_checkpoint(result["final"])
    assert saved["variant"] == variant and saved["net"] == net and saved["trunk"] is not None
    assert saved["meta"]["training"]["variant"] == variant
    assert saved["meta"]["trained_on"]["triplets"] == len(small_triplets)


def test_scratch_trunk_is_gaussian_and_seeded():
    a = LPIPSTrainable("squeeze", "scratch", seed=4).metric.trunk.features[0].weight
    b = LPIPSTrainable("squeeze", "scratch", seed=4).metric.trunk.features[0].weight
    torch.testing.assert_close(a, b)
    fan_in = a.shape[1] * a.shape[2] * a.shape[3]
    assert abs(a.std().item() - (2 / fan_in) ** 0.5) < 0.02


# ---------------------------------------------------------------------------- checkpoints

def test_resume_continues_exactly_and_reload_gives_same_distances(tmp_path, small_triplets):
    from percepmetric.registry import create_metric

    config = TrainConfig(net="alex", variant="tune", epochs=2, decay_epochs=1, batch_size=5, lr=1e-3, seed=5)
    whole = train(config, small_triplets, tmp_path / "whole", **QUIET)
    # Interrupted in the middle of epoch 1 (step 1 of 2), resumed to the end.
    part = train(config, small_triplets, tmp_path / "part", stop_after=1, **QUIET)
    assert part["final"] is None and load_checkpoint(tmp_path / "part" / "latest.pt")["step"] == 1
    with pytest.raises(InputError, match="--resume"):
        train(config, small_triplets, tmp_path / "part", **QUIET)
    resumed = train(config, small_triplets, tmp_path / "part", resume=True, **QUIET)
    assert [r["loss"] for r in resumed["history"]] == [r["loss"] for r in whole["history"]]
    assert sorted(p.name for p in (tmp_path / "part").glob("epoch_*.pt")) == ["epoch_001.pt", "epoch_002.pt"]

    a = create_metric("lpips", weights=str(whole["final"]))
    b = create_metric("lpips", weights=str(resumed["final"]))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    ref, p0 = (to_tensor(x[:5], torch.device("cpu")) for x in (small_triplets.ref, small_triplets.p0))
    assert torch.equal(a(ref, p0), b(ref, p0))
    # The reloaded metric gives the distances the trainer computed with the same weights.
    lp = LPIPSTrainable("alex", "tune")
    state = load_checkpoint(tmp_path / "whole" / "latest.pt")["model"]
    lp.load_state_dict({k.removeprefix("lpips."): v for k, v in state.items() if k.startswith("lpips.")})
    with torch.no_grad():
        torch.testing.assert_close(lp.triplet_distances(ref, p0, p0)[0], a(ref, p0), rtol=1e-5, atol=1e-6)


def test_resume_refuses_other_options(tmp_path, small_triplets):
    config = TrainConfig(net="alex", variant="lin", epochs=1, batch_size=5)
    train(config, small_triplets, tmp_path / "run", stop_after=1, **QUIET)
    with pytest.raises(InputError, match="--batch-size was 5, now 20"):
        train(TrainConfig(net="alex", variant="lin", epochs=1, batch_size=20), small_triplets, tmp_path / "run",
              resume=True, **QUIET)
    with pytest.raises(InputError, match="nothing to resume"):
        train(config, small_triplets, tmp_path / "empty", resume=True, **QUIET)


def test_lin_cached_and_uncached_agree(tmp_path, small_triplets):
    config = TrainConfig(net="alex", variant="lin", epochs=2, batch_size=5, lr=1e-2)
    a = train(config, small_triplets, tmp_path / "a", cache_features=True, **QUIET)
    b = train(config, small_triplets, tmp_path / "b", cache_features=False, **QUIET)
    np.testing.assert_allclose([r["loss"] for r in a["history"]], [r["loss"] for r in b["history"]], rtol=1e-5)


# ---------------------------------------------------------------------------- command line

def _run(args, tmp_path, **kw):
    return subprocess.run(args, capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path, timeout=240, **kw)


def test_cli_train_own_folder_then_score_bench_and_wrong_net(tmp_path, capsys):
    # The folder sits where a BAPPS root keeps val/cnn, so `bench` can score on it too.
    folder = _write_folder(tmp_path / "bapps" / "2afc" / "val" / "cnn", _calibration_split(10, seed=7))
    out = tmp_path / "run"
    proc = _run([sys.executable, "-m", "percepmetric.cli", "train", "--data", str(folder), "--out", str(out),
                 "--epochs", "2", "--batch-size", "5", "--no-progress", "--val-data", str(folder)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 2/2" in proc.stderr and "loss" in proc.stderr and "train 2AFC" in proc.stderr
    assert (out / "final.pt").is_file() and (out / "log.jsonl").read_text().count("\n") == 2
    assert "2AFC" in proc.stdout and (out / "eval.json").is_file()

    images = [str(folder / sub / "000000.png") for sub in ("ref", "p0", "p1")]
    proc = _run([sys.executable, "-m", "percepmetric.cli", "score", *images, "--metric", "lpips",
                 "--weights", str(out / "final.pt"), "--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "lpips" in proc.stdout and "closer" in proc.stdout
    from percepmetric.cli import main

    main(["bench", "--metric", "lpips", "--weights", str(out / "final.pt"), "--root", str(tmp_path / "bapps"),
          "--split", "val/cnn"])
    table = capsys.readouterr().out
    assert "lpips(" in table and "weights=sha256:" in table and "complete" in table  # the label names the trained file
    # A file made for alex, asked for as vgg: one line saying so, exit 2.
    with pytest.raises(SystemExit) as exc:
        main(["score", *images, "--metric", "lpips", "--net", "vgg", "--weights", str(out / "final.pt")])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "'alex'" in err and "'vgg'" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("args,message", [
    (["--variant", "baseline"], "--variant"),
    (["--resume"], "nothing to resume"),
    (["--split", "val/nope"], "unknown split"),
    (["--split", "jnd/cnn"], "JND"),
])
def test_cli_train_bad_input_exits_2(tmp_path, capsys, args, message):
    from percepmetric.cli import main

    folder = _write_folder(tmp_path / "mine", _calibration_split(2, seed=8))
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(folder), "--out", str(tmp_path / "run"), "--no-progress", *args])
    assert exc.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("percepmetric:")]
    assert len(errors) == 1 and message in errors[0]


# ---------------------------------------------------------------------------- two processes

def test_torchrun_two_processes_match_one_process(tmp_path, small_triplets):
    """``torchrun --nproc_per_node=2`` (gloo, CPU) gives the single-process weights on the same data and seed.

    Same global batch (10 = 2 x 5), 10 triplets (a multiple of it, so DistributedSampler pads
    nothing). Gradients are averaged across the processes, so only float summation order differs.
    Stated tolerance: losses per epoch, w and G within 1e-5 relative (+1e-6 absolute); trunk
    weights: at least 99.9% of each tensor within 1e-5, and all within lr x steps -- Adam divides
    each gradient by its own magnitude, so a weight whose gradient is at rounding level (~0) may
    take a step of up to ~lr in a direction set by rounding.
    """
    folder = _write_folder(tmp_path / "mine", join_splits([("x", TwoAFCSplit("x", small_triplets.ref,
                           small_triplets.p0, small_triplets.p1, small_triplets.judge, []))]))
    args = ["--variant", "tune", "--net", "alex", "--data", str(folder), "--epochs", "2", "--decay-epochs", "1",
            "--batch-size", "10", "--lr", "1e-3", "--seed", "3", "--no-progress", "--no-eval"]
    proc = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                 "-m", "percepmetric.train", *args, "--out", str(tmp_path / "ddp")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = join_splits([("mine", load_two_afc_folder(folder))])
    single = train(TrainConfig(net="alex", variant="tune", epochs=2, decay_epochs=1, batch_size=10, lr=1e-3, seed=3),
                   data, tmp_path / "one", **QUIET)
    ddp = load_checkpoint(tmp_path / "ddp" / "latest.pt")
    one = load_checkpoint(tmp_path / "one" / "latest.pt")
    assert ddp["data"]["sha1"] == one["data"]["sha1"] and ddp["global_step"] == one["global_step"] == 2
    lr_steps = 1e-3 * 2
    for key, value in one["model"].items():
        if ".trunk." in key:
            close = (ddp["model"][key] - value).abs()
            assert (close <= 1e-5).float().mean() >= 0.999 and close.max() <= lr_steps, (key, close.max())
        else:
            torch.testing.assert_close(ddp["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    np.testing.assert_allclose([r["loss"] for r in ddp["history"]], [r["loss"] for r in single["history"]], rtol=1e-5)
