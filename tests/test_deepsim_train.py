"""DeePSiM training and evaluation: resume round trip, reload, normalised error, bench, CLI."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from percepmetric import create_metric
from percepmetric.deepsim import evaluate as E
from percepmetric.deepsim.train import (
    DeepSimConfig,
    ImageCrops,
    load_deepsim_checkpoint,
    model_from_checkpoint,
    train_generator,
)
from percepmetric.devices import resolve_device
from percepmetric.errors import InputError
from percepmetric.metrics.base import Metric

from helpers import alexnet_torch_home, requires_weights, run_cli_subprocess


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A train folder of three 48x48 photo crops and a test folder of four 32x32 ones."""
    from skimage import data

    root = tmp_path_factory.mktemp("deepsim_data")
    photo = data.astronaut()
    (root / "train").mkdir()
    (root / "test").mkdir()
    for i in range(3):
        Image.fromarray(photo[100 * i: 100 * i + 48, 200: 248]).save(root / "train" / f"t{i}.png")
    for i in range(4):
        Image.fromarray(photo[300: 332, 40 * i: 40 * i + 32]).save(root / "test" / f"v{i}.png")
    Image.fromarray(photo[:40, :40, 0]).save(root / "test" / "grey.png")  # grey is repeated to RGB
    return root


def _config(folders, out, **kw):
    base = dict(task="autoencoder", size=32, data=str(folders / "train"), out=str(out), iterations=4, batch_size=2,
                width=0.125, discriminator_width=0.125, comparator_pretrained=False, checkpoint_every=2, seed=3)
    base.update(kw)
    return DeepSimConfig(**base)


@pytest.fixture(scope="module")
def two_runs(folders, tmp_path_factory):
    """An image-loss and a DeePSiM autoencoder, 4 iterations each."""
    root = tmp_path_factory.mktemp("runs")
    a = train_generator(_config(folders, root / "image_loss", loss="image"), progress=False)
    b = train_generator(_config(folders, root / "deepsim", loss="full"), progress=False)
    return a, b


def test_train_save_resume_reload_round_trip(folders, tmp_path, two_runs):
    straight = load_deepsim_checkpoint(two_runs[1])  # 4 iterations in one go (same config as below)
    train_generator(_config(folders, tmp_path / "r", loss="full", iterations=2), progress=False)
    assert load_deepsim_checkpoint(tmp_path / "r" / "last.pt")["step"] == 2
    resumed_path = train_generator(_config(folders, tmp_path / "r", loss="full", iterations=4), resume=True,
                                   progress=False)
    resumed = load_deepsim_checkpoint(resumed_path)
    assert resumed["step"] == 4 and len(resumed["history"]) == 4
    for key in ("model_state", "discriminator_state"):
        for name, tensor in straight[key].items():
            torch.testing.assert_close(resumed[key][name], tensor, rtol=0, atol=0, msg=f"{key}.{name}")
    # what the checkpoint records
    assert resumed["config"]["task"] == "autoencoder" and resumed["model_config"]["size"] == 32
    # DeePSiM paper (Dosovitskiy & Brox 2016), Sec. 3.2 "Training details": lambda_adv = 100,
    # lambda_img = 2e-6, lambda_feat = 0.01 for the AlexNet CONV5 comparator; no KL term (the
    # autoencoder here is not variational, Sec. 4.2's lambda_KL = 20 is for the VAE).
    assert resumed["loss_weights"] == {"feat": 0.01, "adv": 100.0, "img": 2e-6, "kl": 0.0, "metric": 0.0}
    assert resumed["comparator"] == {"spec": "alex:conv5", "pretrained": False}
    assert {"opt_g", "opt_d", "rng"} <= set(resumed)
    assert not list(tmp_path.joinpath("r").glob("*.tmp"))  # atomic writes leave no temp files
    # reload: the model of the checkpoint reconstructs as the trained one did
    model = model_from_checkpoint(resumed)
    x = ImageCrops.from_folder(folders / "test", 32).center_crops()
    again, _ = E.load_model(f"deepsim:{resumed_path}")
    torch.testing.assert_close(E.reconstruct(model, x), E.reconstruct(again, x))
    assert (tmp_path / "r" / "log.csv").read_text().startswith("step,")


def test_vae_and_inverter_train_one_step(folders, tmp_path):
    vae_config = _config(folders, tmp_path / "vae", task="vae", size=64, latent=16, iterations=1, pretrained=False,
                         loss="image")
    vae = load_deepsim_checkpoint(train_generator(vae_config, progress=False))
    assert "kl" in vae["history"][0] and vae["loss_weights"]["kl"] == 20.0  # lambda_KL, DeePSiM paper Sec. 4.2
    inv_config = _config(folders, tmp_path / "inv", task="invert", layer="conv5", size=64, iterations=1,
                         pretrained=False, discriminator_features=True)
    inv = load_deepsim_checkpoint(train_generator(inv_config, progress=False))
    assert inv["model_config"]["layer"] == "conv5" and inv["step"] == 1


def test_normalized_error_known_answers():
    b = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 8.0]])  # pair distances 6, 8, 10: N = 8
    a = b + torch.tensor([0.0, 4.0])  # every error 4
    assert E.normalized_error(a, b) == pytest.approx(0.5)
    assert E.normalized_error(b, b) == 0.0
    b2 = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    assert E.normalized_error(b2.flip(0), b2) == pytest.approx(1.0)  # swapped samples: 100%
    with pytest.raises(InputError, match="at least two"):
        E.normalized_error(b[:1], b[:1])


def test_reencode_interpolate_and_grids(two_runs, folders, tmp_path):
    model, _ = E.load_model(f"deepsim:{two_runs[1]}")
    x = ImageCrops.from_folder(folders / "test", 32).center_crops()
    rows = E.reencode(model, x[:3], iterations=2)
    assert len(rows) == 3 and all(r.shape == (3, 3, 32, 32) for r in rows)
    path = tmp_path / "g.png"
    E.save_grid(rows, path, pad=2)
    assert Image.open(path).size == (3 * 34 + 2, 3 * 34 + 2)
    steps = E.interpolate(model, x[:1], x[1:2], steps=5)
    torch.testing.assert_close(steps[0], E.reconstruct(model, x[:1])[0].clamp(0, 1))
    errors = E.evaluate_run(f"deepsim:{two_runs[1]}", folders / "test", tmp_path / "eval", comparator="alex:conv2")
    assert set(errors) >= {"image", "code", "comparator"} and errors["n_images"] == 5
    assert errors["comparator_spec"] == "alex:conv2" and 0 <= errors["comparator"] < 5
    assert {p.name for p in (tmp_path / "eval").iterdir()} >= {"errors.json", "reencode.png", "interpolation.png",
                                                                  "reconstructions.png"}


class TooBig(Metric):
    name = "too_big"
    min_size = 1000

    def formula(self, x, y):
        return (x - y).abs().mean(dim=(1, 2, 3))


def test_bench_models_two_models(two_runs, folders, tmp_path):
    specs = [f"deepsim:{p}" for p in two_runs]
    metrics = [create_metric("l2"), create_metric("psnr"), TooBig()]
    table = E.bench_models(specs, str(folders / "test"), metrics, tmp_path, plot=True)
    assert len(table) == 6 and list(table["model"][:2]) == ["image_loss", "deepsim"]
    ok = table[table["metric_name"] != "too_big"]
    assert (ok["ci_low"] <= ok["mean_distance"]).all() and (ok["mean_distance"] <= ok["ci_high"]).all()
    for _, sub in ok.groupby("metric_name"):
        assert sub["closer_fraction"].sum() == pytest.approx(1.0)
    # PSNR's distance is MSE, so L2 and PSNR agree on which reconstructs closer
    l2 = ok[ok["metric_name"] == "l2"]["closer_fraction"].to_numpy()
    ps = ok[ok["metric_name"] == "psnr"]["closer_fraction"].to_numpy()
    np.testing.assert_allclose(l2, ps)
    skipped = table[table["metric_name"] == "too_big"]
    assert skipped["note"].str.contains("smaller than").all() and skipped["mean_distance"].isna().all()
    assert (tmp_path / "deepsim_bench.csv").is_file() and (tmp_path / "deepsim_bench.png").is_file()
    # the mean distance is the metric's own distance averaged over the test images
    model, _ = E.load_model(specs[0])
    x = ImageCrops.from_folder(folders / "test", 32).center_crops()
    expected = ((E.reconstruct(model, x).clamp(0, 1) - x) ** 2).mean(dim=(1, 2, 3)).mean().item()
    assert table["mean_distance"][0] == pytest.approx(expected, rel=1e-5)


def test_bench_models_bad_input(two_runs, folders, tmp_path):
    with pytest.raises(InputError, match="no such checkpoint"):
        E.bench_models(["deepsim:/nonexistent/final.pt"], str(folders / "test"), [create_metric("l2")], None, False)
    with pytest.raises(InputError, match="expected deepsim:"):
        E.bench_models(["lpips:x"], str(folders / "test"), [create_metric("l2")], None, False)
    with pytest.raises(InputError, match="no such folder"):
        E.bench_models([f"deepsim:{two_runs[0]}"], str(tmp_path / "none"), [create_metric("l2")], None, False)
    junk = tmp_path / "junk.pt"
    torch.save({"a": 1}, junk)
    with pytest.raises(InputError, match="not a percepmetric DeePSiM checkpoint"):
        E.load_model(str(junk))


def _env():
    # One thread, as conftest sets for this process: on tiny batches more threads only wait for each other.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _cli(*args):
    """``percepmetric deepsim ARGS`` in a fresh interpreter."""
    return run_cli_subprocess("deepsim", *args, env=_env())


def test_cli_train_and_resume(folders, tmp_path):
    out = tmp_path / "cli_run"
    common = ["--task", "autoencoder", "--size", "32", "--data", str(folders / "train"), "--out", str(out),
              "--batch-size", "2", "--width", "0.125", "--loss", "image", "--no-progress", "--checkpoint-every", "1",
              "--random-comparator", "--device", "cpu"]
    # the first iteration in-process (one subprocess less), the resumed one through the CLI
    train_generator(_config(folders, out, loss="image", iterations=1, checkpoint_every=1), progress=False)
    second = _cli("train", *common, "--iterations", "2", "--resume")
    assert second.returncode == 0, second.stderr
    assert "final.pt" in second.stdout and load_deepsim_checkpoint(out / "final.pt")["step"] == 2


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    result = _cli("train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--no-progress")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no such folder" in result.stderr


def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device(None) == torch.device("cpu")
    for bad in ("gpu", "mps", "cuda:x", "cpu:3"):  # "" means auto (percepmetric.devices)
        with pytest.raises(InputError, match="--device .*expected auto, cpu, cuda or cuda:N"):
            resolve_device(bad)
    for spec in ("cuda", "cuda:1"):
        with pytest.raises(InputError, match="--device cuda.*CUDA is not available"):
            resolve_device(spec)
    # fails before the (missing) data or checkpoint is read
    with pytest.raises(InputError, match="--device"):
        train_generator(DeepSimConfig(data="unused", device="cuda"), progress=False)
    with pytest.raises(InputError, match="--device"):
        E.evaluate_run("missing.pt", "unused", "unused", device="cuda:0")
    # generators follow parameter-free metrics to the automatic device
    assert E.metrics_device([create_metric("l2")]) == torch.device("cpu")


def test_cli_device_without_gpu_is_one_line_exit_2(tmp_path):
    # CUDA_VISIBLE_DEVICES="" hides any GPU, so this holds on GPU machines too
    result = run_cli_subprocess("deepsim", "train", "--data", tmp_path, "--out", tmp_path / "o", "--no-progress",
                                "--device", "cuda", env={**_env(), "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "--device cuda" in result.stderr
    assert "CUDA is not available" in result.stderr and not (tmp_path / "o").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_train_two_iterations_on_cuda(folders, tmp_path):
    path = train_generator(_config(folders, tmp_path / "gpu", loss="full", iterations=2, device="cuda"), progress=False)
    ckpt = load_deepsim_checkpoint(path)
    assert ckpt["step"] == 2 and ckpt["rng"]["cuda"] is not None
    assert all(t.device.type == "cpu" for t in ckpt["model_state"].values())  # loaded with map_location="cpu"
    model, _ = E.load_model(f"deepsim:{path}", "cuda")
    assert next(model.parameters()).device.type == "cuda"
    x = ImageCrops.from_folder(folders / "test", 32).center_crops()
    assert torch.isfinite(E.reconstruct(model, x)).all()
    table = E.bench_models([f"deepsim:{path}"], str(folders / "test"), [create_metric("l2")], None, False,
                           device="cuda")
    assert np.isfinite(table["mean_distance"]).all()


@requires_weights("alex")  # the demo's comparator
def test_cli_demo_tiny(tmp_path):
    out = tmp_path / "demo"
    result = _cli("demo", "--out", str(out), "--iterations", "2", "--batch-size", "2", "--size", "32",
                  "--width", "0.125", "--n-test", "4", "-m", "l2", "-m", "psnr", "--no-progress", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    for name in ("deepsim_bench.csv", "deepsim_bench.png", "comparison.png", "summary.json", "summary.md",
                 "image_loss/final.pt", "deepsim/final.pt", "deepsim/eval/reencode.png"):
        assert (out / name).is_file(), name
    assert "image_loss" in result.stdout and "deepsim" in result.stdout
    # PSNR's column holds its distance, the MSE, and says so: in the text, the JSON and the CSV
    summary = json.loads((out / "summary.json").read_text())
    assert [row["distance"] for row in summary["bench"]] == ["l2", "l2", "psnr as mse", "psnr as mse"]
    assert "psnr as mse" in result.stdout and "psnr as mse" in (out / "deepsim_bench.csv").read_text()


def test_bench_command_with_two_models(two_runs, folders, tmp_path):
    result = run_cli_subprocess("bench", "--model", f"deepsim:{two_runs[0]}", "--model", f"deepsim:{two_runs[1]}",
                                "--data", folders / "test", "-m", "l2", "-m", "psnr", "--out", tmp_path, "--plot",
                                "--no-fid", env=_env())  # FID/KID: tests/test_bench_model_fid.py
    assert result.returncode == 0, result.stderr
    assert "image_loss" in result.stdout and "closer" in result.stdout and "95% CI" in result.stdout
    assert (tmp_path / "deepsim_bench.csv").is_file() and (tmp_path / "deepsim_bench.png").is_file()


@requires_weights("alex")
def test_zero_fc_features_warn(folders, tmp_path, monkeypatch):
    # An AlexNet file with zeroed fc layers gives nothing to invert: that must not pass silently.
    monkeypatch.setenv("TORCH_HOME", str(alexnet_torch_home(tmp_path / "weights", "zeros")))
    with pytest.warns(RuntimeWarning, match="all zero"):
        train_generator(_config(folders, tmp_path, task="invert", layer="fc8", size=64, iterations=1, loss="image"),
                        progress=False)


def test_training_images_leave_out_hidden_files_and_folders(tmp_path):
    """An interrupted atomic write (``.name.tmp``) or a hidden folder is not part of the training set."""
    from PIL import Image

    from percepmetric.deepsim.train import image_files

    image = Image.new("RGB", (8, 8))
    (tmp_path / ".partial").mkdir()
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.png", ".b.png.tmp.png", ".partial/c.png"):
        image.save(tmp_path / name)
    assert image_files(tmp_path) == [tmp_path / "b.png", tmp_path / "sub" / "a.png"]


# ---------------------------------------------------------------- what a user sees: warnings, interruptions

_RAW_WARNING = re.compile(r"\.py:\d+: \w*Warning|^\s+\w.*\(.*\)$", re.MULTILINE)  # file:line: XWarning, source


@requires_weights("alex")
@pytest.mark.parametrize("progress", [False, True])
def test_cli_zero_fc6_features_warn_in_one_clean_line(folders, tmp_path, progress):
    """`deepsim train --layer fc6` with an AlexNet file whose fully connected layers are zeroed
    (as a trimmed copy has them) says so in one line, never as a raw Python warning with its
    source line, and with a progress bar too."""
    home = alexnet_torch_home(tmp_path / "weights", "zeros")
    args = ["train", "--task", "invert", "--layer", "fc6", "--size", "64", "--width", "0.125", "--data",
            folders / "train", "--out", tmp_path / "run", "--iterations", "2", "--batch-size", "2", "--loss", "image",
            "--device", "cpu"] + ([] if progress else ["--no-progress"])
    result = run_cli_subprocess("deepsim", *args, env={**_env(), "TORCH_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    pieces = re.split(r"[\r\n]", result.stderr)  # a progress bar redraws with \r
    said = [p for p in pieces if p.startswith("percepmetric: warning: AlexNet fc6 features")]
    assert len(said) == 1 and "--layer conv5" in said[0], result.stderr
    assert "Warning" not in result.stderr and not _RAW_WARNING.search(result.stderr), result.stderr
    assert (tmp_path / "run" / "final.pt").is_file()


def _small_train_args(folders, out, *extra):
    return ["deepsim", "train", "--task", "autoencoder", "--size", "32", "--data", folders / "train", "--out", out,
            "--batch-size", "2", "--width", "0.125", "--loss", "image", "--random-comparator", "--device", "cpu",
            *extra]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_train_stopped_before_the_first_checkpoint_leaves_no_empty_folder(folders, tmp_path, signum):
    """Ctrl-C (SIGINT) or SIGTERM while training, before any checkpoint: the output folders the
    run created are gone again, the exit code is 130, and no traceback is shown."""
    out = tmp_path / "runs" / "first"  # both made by the run
    args = _small_train_args(folders, out, "--iterations", "1000000", "--checkpoint-every", "1000000")
    proc = subprocess.Popen([sys.executable, "-m", "percepmetric.cli", *map(str, args)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Wait for training to start (the progress bar's first draw comes once OUT exists and the
        # networks are built), however long a busy machine takes to get there.
        seen = b""
        deadline = time.monotonic() + 300
        while b"deepsim autoencoder" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen.decode(errors="replace")
            ready, _, _ = select.select([proc.stderr], [], [], 1.0)
            if ready:
                seen += os.read(proc.stderr.fileno(), 4096)
        assert out.is_dir()  # the run made it
        proc.send_signal(signum)
        rest_out, rest_err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    stderr = (seen + rest_err).decode(errors="replace")
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and b"wrote" not in rest_out, stderr
    assert not out.exists() and not (tmp_path / "runs").exists(), list(tmp_path.rglob("*"))
    assert tmp_path.is_dir()


def test_cli_train_error_before_the_first_checkpoint_leaves_no_empty_folder(folders, tmp_path):
    """An image that cannot be read stops the run after OUT was made: one error line, exit 2,
    and no empty OUT (nor the parent the run made for it) left behind."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("t0.png", "t1.png"):
        (data / name).write_bytes((folders / "train" / name).read_bytes())
    (data / "t2.png").write_bytes(b"not a png at all")
    out = tmp_path / "runs" / "first"
    args = _small_train_args(folders, out, "--iterations", "2", "--no-progress")
    args[args.index("--data") + 1] = data
    result = run_cli_subprocess(*args, env=_env())
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("percepmetric: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "t2.png" in result.stderr
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_train_interrupted_keeps_a_folder_it_did_not_make_and_one_with_files(folders, tmp_path, monkeypatch):
    """The clean-up removes only what this run made and left empty."""
    from percepmetric.deepsim.train import Trainer

    def interrupted(self, batch):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    mine = tmp_path / "made" / "here"
    with pytest.raises(KeyboardInterrupt):
        train_generator(_config(folders, mine, iterations=2), progress=False)
    assert not (tmp_path / "made").exists()
    existing = tmp_path / "existing"  # the user's empty folder: stays
    existing.mkdir()
    with pytest.raises(KeyboardInterrupt):
        train_generator(_config(folders, existing, iterations=2), progress=False)
    assert existing.is_dir() and not list(existing.iterdir())
    parent = tmp_path / "parent"  # made by the run, but someone else put a file in it meanwhile: stays
    monkeypatch.setattr(Trainer, "train_step", lambda self, batch: (parent / "note.txt").write_text("x") and
                        interrupted(self, batch))
    with pytest.raises(KeyboardInterrupt):
        train_generator(_config(folders, parent / "run", iterations=2), progress=False)
    assert not (parent / "run").exists() and (parent / "note.txt").is_file()
