"""The Python API of issue 12: functional forms, reduction, the loss form, the evaluation-loop
state (update/compute/reset, also across 2 gloo processes), results usable in autograd,
consistent option names and parsing, one table of metrics, and the option types."""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import pkgutil
import socket
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import percepmetric
from percepmetric import InputError, create_metric, functional
from percepmetric.cli_options import parse_option_value
from percepmetric.metrics.base import Metric, MetricLoss
from percepmetric.registry import METRICS, list_metrics, metric_options, option_choices

from helpers import metric_params, requires_weights

ROOT = Path(__file__).resolve().parents[1]

# Options that keep each metric small and fast on 32x32 images (or the smallest a metric takes).
SMALL = {"l2": {}, "l1": {}, "psnr": {}, "ssim": {}, "ms_ssim": {}, "fsim": {}, "lpips": {"variant": "baseline"},
         "dists": {}, "stlpips": {}, "gmsd": {}, "ms_gmsd": {}, "haarpsi": {}, "mdsi": {}, "srsim": {}, "vsi": {},
         "nlpd": {}, "vif": {}, "vifp": {}, "dss": {}, "mad": {}, "iw_ssim": {}, "cw_ssim": {},
         "butteraugli": {}, "ssimulacra2": {}, "cvvdp": {}, "flip": {}}


def _pair(n: int = 3, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=gen)
    return x, (x + 0.1 * torch.rand(n, 3, size, size, generator=gen)).clamp(0, 1)


# ------------------------------------------------------------------ 1. percepmetric.functional


def test_a_function_for_every_metric_with_the_class_options():
    for name in list_metrics():
        function = getattr(functional, name)
        params = inspect.signature(function).parameters
        api = ("reduction", "validate_args")
        options = {p.name: p.default for p in params.values() if p.kind is p.KEYWORD_ONLY and p.name not in api}
        assert options == metric_options(name), name
        assert params["reduction"].default == "none"
        assert params["validate_args"].default is True


@pytest.mark.parametrize("name", metric_params(sorted(SMALL)))
def test_function_equals_class_and_refuses_bad_input(name):
    x, y = _pair(size=max(32, create_metric(name, **SMALL[name]).min_size))  # e.g. MAD: 34, VIF: 72
    want = create_metric(name, **SMALL[name])(x, y)
    torch.testing.assert_close(getattr(functional, name)(x, y, **SMALL[name]), want)
    torch.testing.assert_close(getattr(functional, name)(x, y, reduction="mean", **SMALL[name]), want.mean())
    for bad in (x[:2], x * 3, x.double()[..., :16], x.to(torch.int32)):
        with pytest.raises(InputError):
            getattr(functional, name)(bad, y, **SMALL[name])
    with pytest.raises(InputError, match="reduction"):
        getattr(functional, name)(x, y, reduction="avg", **SMALL[name])


@requires_weights("alex")
def test_functional_lpips_builds_its_model_once():
    x, y = _pair()
    functional.clear_cache()
    functional.lpips(x, y, variant="baseline")
    first = functional.private_metric("lpips", {"variant": "baseline"}, x.device, x.dtype)
    functional.lpips(x, y, variant="baseline")
    assert functional.private_metric("lpips", {"variant": "baseline"}, x.device, x.dtype) is first
    assert len(functional._CACHE) == 1


# ------------------------------------------------------------------ 2. reduction


@pytest.mark.parametrize("name", ["l2", "psnr", "ssim", "fsim"])
def test_reduction_on_metrics(name):
    x, y = _pair()
    values = create_metric(name)(x, y)
    assert values.shape == (3,)
    torch.testing.assert_close(create_metric(name, reduction="mean")(x, y), values.mean())
    torch.testing.assert_close(create_metric(name, reduction="SUM")(x, y), values.sum())
    torch.testing.assert_close(type(create_metric(name))(reduction="mean")(x, y), values.mean())
    # reduction is not part of the identity that keys cached distances
    assert create_metric(name, reduction="sum").spec == create_metric(name).spec
    with pytest.raises(InputError, match="reduction"):
        create_metric(name, reduction="max")


@requires_weights("alex")
def test_default_specs_unchanged():
    # The identities that key the benchmark's cached distances, as they were before issue 12.
    assert create_metric("l2").spec == "l2(color=rgb,convention=plain,data_range=1.0)"
    assert create_metric("ssim").spec == (
        "ssim(color=grey,convention=matlab,data_range=1.0,downsample=True,quantize=auto)")
    assert create_metric("fsim").spec == "fsim(chromatic=False,convention=matlab,data_range=1.0,precision=input)"
    assert create_metric("lpips").spec == (
        "lpips(input_range=0,1,net=alex,precision=auto,spatial=False,variant=lin,weights=v0.1)")
    assert "reduction" not in percepmetric.describe_metric("ssim")["options"]


# ------------------------------------------------------------------ 3. the loss form


@pytest.mark.parametrize("name", ["ssim", "ms_ssim"])
def test_loss_form_trains_an_image_towards_a_target(name):
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(2, 1, 48, 48, generator=gen) * 0.8 + 0.1
    # a start whose structure is still visible under heavy noise: MS-SSIM is 0 (and flat)
    # between unrelated noise images
    logits = (torch.logit(target) + 1.5 * torch.randn(2, 1, 48, 48, generator=gen)).requires_grad_(True)
    loss_fn = create_metric(name, as_loss=True)
    assert isinstance(loss_fn, MetricLoss) and loss_fn.reduction == "mean"
    optimiser = torch.optim.Adam([logits], lr=0.1)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        loss = loss_fn(torch.sigmoid(logits), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    # the distance form: (1 - SSIM) / 2, as the metric's to_distance
    metric = create_metric(name)
    x = torch.sigmoid(logits).detach()
    torch.testing.assert_close(metric.as_loss()(x, target), metric.to_distance(metric(x, target)).mean())
    # finite gradients where the loss is at its minimum
    same = target.clone().requires_grad_(True)
    value = loss_fn(same, target)
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-6) and torch.isfinite(same.grad).all()


def test_psnr_loss_is_the_mse():
    x, y = _pair()
    loss = create_metric("psnr").as_loss(reduction="none")
    torch.testing.assert_close(loss(x, y), (x - y).pow(2).flatten(1).mean(1))


# ------------------------------------------------------------------ 4. update / compute / reset


def _t_interval(values: np.ndarray) -> tuple[float, float, float]:
    mean = values.mean()
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half


@pytest.mark.parametrize("name", ["psnr", "ssim"])
def test_update_compute_reset(name):
    metric = create_metric(name)
    batches = [_pair(n, seed=i) for i, n in enumerate((2, 3, 4))]
    for x, y in batches:
        metric.update(x, y)
    values = torch.cat([create_metric(name)(x, y) for x, y in batches]).double().numpy()
    summary = metric.compute()
    mean, low, high = _t_interval(values)
    # the mean of the per-image values: for PSNR not the PSNR of the pooled MSE
    assert summary["n"] == 9 and summary["mean"] == pytest.approx(mean, rel=1e-6)
    assert summary["ci_low"] == pytest.approx(low, rel=1e-6) and summary["ci_high"] == pytest.approx(high, rel=1e-6)
    assert metric.compute() == summary  # deterministic
    metric.reset()
    with pytest.raises(InputError, match="update"):
        metric.compute()


@requires_weights("alex", "vgg")
def test_every_object_create_metric_returns_accumulates():
    for name in list_metrics():
        options = SMALL[name]
        x, y = _pair(size=max(32, create_metric(name, **options).min_size))
        for obj in (create_metric(name, **options), create_metric(name, as_loss=True, **options)):
            obj.update(x, y)
            assert obj.compute()["n"] == 3
            obj.reset()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DDP_WORKER = r"""
import datetime, json, sys
import torch, torch.distributed as dist
from percepmetric import create_metric

rank, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                        timeout=datetime.timedelta(seconds=60))
metric = create_metric("ssim")
gen = torch.Generator().manual_seed(rank)
for n in (2 + rank, 3):  # the ranks hold different numbers of items
    x = torch.rand(n, 3, 16, 16, generator=gen)
    metric.update(x, (x + 0.2 * torch.rand(n, 3, 16, 16, generator=gen)).clamp(0, 1))
json.dump(metric.compute(), open(out, "w"))
dist.destroy_process_group()
"""


def test_compute_gathers_across_two_gloo_processes(tmp_path):
    port = _free_port()
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), str(port), str(tmp_path / f"{rank}.json")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    try:
        outcomes = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], outcomes
    summaries = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    assert summaries[0] == summaries[1]
    # one process over the union of both ranks' items
    union = create_metric("ssim")
    for rank in (0, 1):
        gen = torch.Generator().manual_seed(rank)
        for n in (2 + rank, 3):
            x = torch.rand(n, 3, 16, 16, generator=gen)
            union.update(x, (x + 0.2 * torch.rand(n, 3, 16, 16, generator=gen)).clamp(0, 1))
    want = union.compute()
    assert summaries[0]["n"] == want["n"] == 11
    for key in ("mean", "ci_low", "ci_high"):
        assert summaries[0][key] == pytest.approx(want[key], rel=1e-12, abs=1e-12)


# ------------------------------------------------------------------ 5. results enter autograd later


@pytest.mark.parametrize("name", metric_params(["l2", "ssim", "lpips"]))
def test_values_computed_without_grad_enter_a_graph_later(name):
    x, y = _pair()
    values = create_metric(name, **SMALL[name])(x, y)
    assert not values.requires_grad and not values.is_inference()
    weights = torch.ones(3, requires_grad=True)
    (values * weights).sum().backward()
    torch.testing.assert_close(weights.grad, values)
    a, b = create_metric(name, **SMALL[name]).triplet_values(x, y, y)
    (a * weights).sum().backward()


# ------------------------------------------------------------------ 6. option names and values


@requires_weights("alex")
def test_lpips_data_range_is_the_option_and_reports_the_truth():
    x, y = _pair()
    m255 = create_metric("lpips", variant="baseline", data_range=255)
    assert m255.data_range == 255.0 and m255.value_range == (0.0, 255.0)
    torch.testing.assert_close(m255(x * 255, y * 255), create_metric("lpips", variant="baseline")(x, y))
    assert create_metric("lpips", variant="baseline", input_range="-1,1").data_range == 2.0
    assert create_metric("lpips", variant="baseline").data_range == 1.0
    with pytest.raises(InputError, match="either data_range or input_range"):
        create_metric("lpips", data_range=255, input_range="-1,1")


@requires_weights("alex")
def test_precision_has_one_set_of_names():
    # "auto" and "input" both mean: compute in the input's dtype; each metric's spec keeps its name.
    assert create_metric("lpips", variant="baseline", precision="input").spec == create_metric(
        "lpips", variant="baseline").spec
    assert create_metric("fsim", precision="auto").spec == create_metric("fsim").spec
    assert {"auto", "input"} <= set(option_choices("fsim")["precision"]) == set(option_choices("lpips")["precision"])
    with pytest.raises(InputError, match="precision"):
        create_metric("lpips", precision="half")


def test_option_values_parse_as_typed():
    assert create_metric("SSIM", convention="MATLAB").spec == create_metric("ssim").spec
    assert create_metric("Ms-SSIM").name == "ms_ssim"
    for word in ("true", "True", "1", True):
        assert create_metric("fsim", chromatic=word).options["chromatic"] is True
    for word in ("false", "FALSE", "0"):
        assert create_metric("ssim", downsample=word).options["downsample"] is False
    assert create_metric("l2", color="LAB", convention="LPIPS").spec == "l2(color=lab,convention=lpips,data_range=1.0)"
    assert create_metric("fsim", as_loss="true").reduction == "mean"
    with pytest.raises(InputError, match="as_loss"):
        create_metric("fsim", as_loss="yes")
    with pytest.raises(InputError, match="chromatic"):
        create_metric("fsim", chromatic="yes")  # a Python string there is a mistake
    with pytest.raises(InputError, match="unknown metric"):
        create_metric("SSSIM")
    # the command line reads through the same parser, with its own words
    assert parse_option_value("yes", True) is True and parse_option_value("255") == 255
    assert parse_option_value("MATLAB") == "MATLAB"  # create_metric matches the case


# ------------------------------------------------------------------ 7. one table


@pytest.mark.parametrize("name", metric_params(sorted(SMALL)))
def test_metadata_says_what_a_metric_takes_and_whether_it_is_symmetric(name):
    """``symmetric`` (a distance matrix computes one triangle of a symmetric metric) is true of
    the values; ``colour_doc`` says what the metric does with RGB and grey."""
    m = create_metric(name, **SMALL[name])
    x, y = _pair(size=max(32, m.min_size))
    if m.symmetric:
        torch.testing.assert_close(m(x, y), m(y, x), rtol=1e-5, atol=1e-6)
    assert m.colour_doc and ("RGB" in m.colour_doc or "grey" in m.colour_doc)
    from percepmetric.registry import describe_metric

    described = describe_metric(name)
    assert described["symmetric"] is m.symmetric and described["accepts"] == m.colour_doc


def test_the_table_lists_every_metric_class():
    import percepmetric.metrics as package

    found: dict[str, type[Metric]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, Metric) and obj is not Metric and "name" in vars(obj):
                found[obj.name] = obj
    assert found == METRICS
    assert not hasattr(percepmetric.registry, "register")


# ------------------------------------------------------------------ 8. option types


def test_literal_option_types_and_image_like():
    from percepmetric.io import ImageLike
    from percepmetric.options import Reduction

    assert typing.get_args(Reduction) == ("none", "mean", "sum")
    assert option_choices("ssim")["convention"] == ("matlab", "lpips")
    assert option_choices("l2")["color"] == ("rgb", "grey", "lab")
    assert set(option_choices("lpips")["net"]) == {"alex", "vgg", "squeeze"}
    assert option_choices("fsim")["chromatic"] == (True, False)
    members = typing.get_args(ImageLike)
    assert torch.Tensor in members and np.ndarray in members and str in members and len(members) == 5
