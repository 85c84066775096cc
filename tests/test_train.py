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
from conftest import ROOT

from percepmetric.data.bapps import TwoAFCSplit, load_two_afc_folder, to_tensor
from percepmetric.errors import InputError
from percepmetric.stats import two_afc_credit as two_afc_agreement  # merged into the one 2AFC credit
from percepmetric.train.data import join_splits
from percepmetric.train.evaluate import two_afc
from percepmetric.train.loop import LpipsTrainConfig, load_training_checkpoint, train_lpips
from percepmetric.train.model import LPIPSTrainable
from percepmetric.train.ranking import RankingHead, learning_rate, ranking_loss

from helpers import QUIET, calibration_split, requires_weights, write_split_folder


def _env(tmp_path: Path) -> dict:
    # TORCH_HOME comes with os.environ, as the in-process tests see it.
    env = dict(os.environ, PERCEPMETRIC_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEPMETRIC_CACHE", str(tmp_path / "cache"))


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
    assert LpipsTrainConfig(epochs=10).resolved().decay_epochs == 5


def test_config_rejects_bad_values():
    with pytest.raises(InputError, match="--variant"):
        LpipsTrainConfig(variant="baseline").resolved()
    with pytest.raises(InputError, match="--decay-epochs"):
        LpipsTrainConfig(epochs=2, decay_epochs=3).resolved()
    with pytest.raises(InputError, match="net"):
        LpipsTrainConfig(net="resnet").resolved()


def _eq1_written_out(lp: LPIPSTrainable, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS (Zhang et al. 2018) Eq. 1 as the v0.1 code computes it, in float64, on the
    activations of ``lp``'s trunk: per tap, unit-normalise each pixel's channel vector (divide
    by its norm + 1e-10, the eps of the reference code's ``normalize_tensor``), square the
    difference, weight the channels by w and sum them, average over the pixels; sum over the
    taps. Input scaling: the reference code's own ``ScalingLayer`` (x in [0, 1] -> [-1, 1] ->
    (x - shift) / scale), from the ``lpips`` package (the test extra)."""
    import copy

    import lpips

    scaling = lpips.ScalingLayer().double()
    trunk = copy.deepcopy(lp.metric.trunk).double()
    taps_x, taps_y = (trunk(scaling(2 * t.double() - 1)) for t in (x, y))
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for fx, fy, w in zip(taps_x, taps_y, lp.metric.calibration, strict=True):
        nx = fx / (fx.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
        ny = fy / (fy.square().sum(dim=1, keepdim=True).sqrt() + 1e-10)
        weighted = (nx - ny).square() * w.detach().double().reshape(1, -1, 1, 1)
        total += weighted.sum(dim=1).mean(dim=(1, 2))
    return total


@requires_weights("alex")
@pytest.mark.parametrize("variant,w_init", [("lin", "ones"), ("tune", "torch")])
def test_training_distance_is_the_metric(small_triplets, variant, w_init):
    """The trainer's fast forms (pair statistics for ``lin``, one trunk pass per triplet for
    ``tune``) and the LPIPS metric all equal Eq. 1 written out in the test."""
    lp = LPIPSTrainable("alex", variant, w_init, seed=1)
    ref, p0, p1 = (to_tensor(x[:6], torch.device("cpu")) for x in
                   (small_triplets.ref, small_triplets.p0, small_triplets.p1))
    with torch.no_grad():
        expected = _eq1_written_out(lp, ref, p0), _eq1_written_out(lp, ref, p1)
    d0, d1 = lp.triplet_distances(ref, p0, p1)
    s0, s1 = lp.pair_stats(ref, p0, p1)
    with torch.no_grad():
        lp.metric.requires_grad_(False)
        metric = lp.metric(ref, p0), lp.metric(ref, p1)
    for name, got in (("triplet_distances", (d0, d1)), ("pair_stats", tuple(map(lp.distance_from_stats, (s0, s1)))),
                      ("metric", metric)):
        for i in (0, 1):
            torch.testing.assert_close(got[i].detach().double(), expected[i], rtol=1e-5, atol=1e-6,
                                       msg=lambda m, name=name, i=i: f"{name} d{i}: {m}")
    assert all((w >= 0).all() for w in lp.metric.calibration)


# ---------------------------------------------------------------------------- variants

@pytest.fixture(scope="module")
def calibration_splits():
    return calibration_split(40, seed=1), calibration_split(40, seed=2)


@requires_weights("alex")
def test_lin_beats_baseline_on_held_out_triplets(tmp_path, calibration_splits):
    from percepmetric.registry import create_metric

    train_split, held_out = calibration_splits
    baseline = two_afc(create_metric("lpips", net="alex", variant="baseline"), held_out)
    config = LpipsTrainConfig(net="alex", variant="lin", epochs=10, batch_size=5, lr=3e-2, seed=0)
    result = train_lpips(config, join_splits([("calibration", train_split)]), tmp_path / "run", **QUIET)
    trained = create_metric("lpips", weights=str(result["final"]))
    score = two_afc(trained, held_out)
    # held_out has 80 triplets, the blur-vs-noise half judged 0 or 1 (helpers.calibration_split),
    # so each of those the metric turns to the people's side adds 1/80 = 0.0125: more than 0.03
    # means at least three of them, more than a tie or two moving. (With torchvision's AlexNet
    # convolutions the gain was 0.585 -> 0.71 when written.)
    assert score > baseline + 0.03, (score, baseline)
    assert trained.variant == "lin" and trained.net == "alex"
    assert all((w >= 0).all() for w in trained.calibration)


@pytest.mark.parametrize("variant,net", [pytest.param("tune", "alex", marks=requires_weights("alex")),
                                         ("scratch", "squeeze")])
def test_tune_and_scratch_lower_the_loss(tmp_path, small_triplets, variant, net):
    config = LpipsTrainConfig(net=net, variant=variant, epochs=3, decay_epochs=0, batch_size=5, lr=1e-3, seed=0)
    result = train_lpips(config, small_triplets, tmp_path / "run", **QUIET)
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

@requires_weights("alex")
def test_resume_continues_exactly_and_reload_gives_same_distances(tmp_path, small_triplets):
    from percepmetric.registry import create_metric

    config = LpipsTrainConfig(net="alex", variant="tune", epochs=2, decay_epochs=1, batch_size=5, lr=1e-3, seed=5)
    whole = train_lpips(config, small_triplets, tmp_path / "whole", **QUIET)
    # Interrupted in the middle of epoch 1 (step 1 of 2), resumed to the end.
    part = train_lpips(config, small_triplets, tmp_path / "part", stop_after=1, **QUIET)
    assert part["final"] is None and load_training_checkpoint(tmp_path / "part" / "latest.pt")["step"] == 1
    with pytest.raises(InputError, match="--resume"):
        train_lpips(config, small_triplets, tmp_path / "part", **QUIET)
    resumed = train_lpips(config, small_triplets, tmp_path / "part", resume=True, **QUIET)
    assert [r["loss"] for r in resumed["history"]] == [r["loss"] for r in whole["history"]]
    assert sorted(p.name for p in (tmp_path / "part").glob("epoch_*.pt")) == ["epoch_001.pt", "epoch_002.pt"]

    a = create_metric("lpips", weights=str(whole["final"]))
    b = create_metric("lpips", weights=str(resumed["final"]))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb), ka
    ref, p0 = (to_tensor(x[:5], torch.device("cpu")) for x in (small_triplets.ref, small_triplets.p0))
    assert torch.equal(a(ref, p0), b(ref, p0))
    # The reloaded metric gives the distances the trainer computed with the same weights.
    lp = LPIPSTrainable("alex", "tune")
    state = load_training_checkpoint(tmp_path / "whole" / "latest.pt")["model"]
    lp.load_state_dict({k.removeprefix("lpips."): v for k, v in state.items() if k.startswith("lpips.")})
    with torch.no_grad():
        torch.testing.assert_close(lp.triplet_distances(ref, p0, p0)[0], a(ref, p0), rtol=1e-5, atol=1e-6)


@requires_weights("alex")
def test_resume_refuses_other_options(tmp_path, small_triplets):
    config = LpipsTrainConfig(net="alex", variant="lin", epochs=1, batch_size=5)
    train_lpips(config, small_triplets, tmp_path / "run", stop_after=1, **QUIET)
    with pytest.raises(InputError, match="--batch-size was 5, now 20"):
        train_lpips(LpipsTrainConfig(net="alex", variant="lin", epochs=1, batch_size=20), small_triplets,
                    tmp_path / "run", resume=True, **QUIET)
    with pytest.raises(InputError, match="nothing to resume"):
        train_lpips(config, small_triplets, tmp_path / "empty", resume=True, **QUIET)


@requires_weights("alex")
def test_lin_cached_and_uncached_agree(tmp_path, small_triplets):
    config = LpipsTrainConfig(net="alex", variant="lin", epochs=2, batch_size=5, lr=1e-2)
    a = train_lpips(config, small_triplets, tmp_path / "a", cache_features=True, **QUIET)
    b = train_lpips(config, small_triplets, tmp_path / "b", cache_features=False, **QUIET)
    np.testing.assert_allclose([r["loss"] for r in a["history"]], [r["loss"] for r in b["history"]], rtol=1e-5)


# ---------------------------------------------------------------------------- command line

def _run(args, tmp_path, **kw):
    return subprocess.run(args, capture_output=True, text=True, env=_env(tmp_path), cwd=tmp_path, timeout=240,
                          check=False, **kw)


@requires_weights("alex")
def test_cli_train_own_folder_then_score_bench_and_wrong_net(tmp_path, capsys):
    # The folder sits where a BAPPS root keeps val/cnn, so `bench` can score on it too.
    folder = write_split_folder(tmp_path / "bapps" / "2afc" / "val" / "cnn", calibration_split(10, seed=7))
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

    folder = write_split_folder(tmp_path / "mine", calibration_split(2, seed=8))
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(folder), "--out", str(tmp_path / "run"), "--no-progress", *args])
    assert exc.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("percepmetric:")]
    assert len(errors) == 1 and message in errors[0]


# ---------------------------------------------------------------------------- two processes

@requires_weights("alex")
def test_torchrun_two_processes_match_one_process(tmp_path, small_triplets):
    """``torchrun --nproc_per_node=2`` (gloo, CPU) gives the single-process weights on the same data and seed.

    Same global batch (10 = 2 x 5), 10 triplets (a multiple of it, so DistributedSampler pads
    nothing). Gradients are averaged across the processes, so only float summation order differs.
    Stated tolerance: losses per epoch, w and G within 1e-5 relative (+1e-6 absolute); trunk
    weights: at least 99.9% of each tensor within 1e-5, and all within lr x steps -- Adam divides
    each gradient by its own magnitude, so a weight whose gradient is at rounding level (~0) may
    take a step of up to ~lr in a direction set by rounding.
    """
    folder = write_split_folder(tmp_path / "mine", join_splits([("x", TwoAFCSplit("x", small_triplets.ref,
                           small_triplets.p0, small_triplets.p1, small_triplets.judge, []))]))
    args = ["--variant", "tune", "--net", "alex", "--data", str(folder), "--epochs", "2", "--decay-epochs", "1",
            "--batch-size", "10", "--lr", "1e-3", "--seed", "3", "--no-progress", "--no-eval"]
    proc = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                 "-m", "percepmetric.train", *args, "--out", str(tmp_path / "ddp")], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = join_splits([("mine", load_two_afc_folder(folder))])
    single = train_lpips(LpipsTrainConfig(net="alex", variant="tune", epochs=2, decay_epochs=1, batch_size=10,
                                          lr=1e-3, seed=3), data, tmp_path / "one", **QUIET)
    ddp = load_training_checkpoint(tmp_path / "ddp" / "latest.pt")
    one = load_training_checkpoint(tmp_path / "one" / "latest.pt")
    assert ddp["data"]["sha1"] == one["data"]["sha1"] and ddp["global_step"] == one["global_step"] == 2
    lr_steps = 1e-3 * 2
    for key, value in one["model"].items():
        if ".trunk." in key:
            close = (ddp["model"][key] - value).abs()
            assert (close <= 1e-5).float().mean() >= 0.999 and close.max() <= lr_steps, (key, close.max())
        else:
            torch.testing.assert_close(ddp["model"][key], value, rtol=1e-5, atol=1e-6, msg=key)
    np.testing.assert_allclose([r["loss"] for r in ddp["history"]], [r["loss"] for r in single["history"]], rtol=1e-5)
