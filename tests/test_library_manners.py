"""A metric inside someone else's loop: no process-wide side effects, thread safety, constant-memory
states like torchmetrics', and a functional API no user object can change."""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import textwrap
import threading
import tracemalloc

import numpy as np
import pytest
import torch
from scipy import stats

import percepmetric
from percepmetric import create_metric, functional
from percepmetric.registry import list_metrics
from percepmetric.threads import side_by_side_pool, single_threaded_ops_available

from helpers import METRIC_TRUNKS, metric_params, requires_weights, skip_without_weights

# ----------------------------------------------------------------------------- process state

# Runs in a fresh interpreter: records every glibc mallopt lookup and every torch thread-count
# change made while percepmetric is imported and each registry metric is built and called, and
# compares the environment and the thread counts before and after.
SIDE_EFFECT_PROBE = textwrap.dedent("""
    import ctypes, json, os, sys
    calls = []
    class RecordingCDLL(ctypes.CDLL):
        def __getattr__(self, name):
            if name == "mallopt":
                calls.append("mallopt")
            return super().__getattr__(name)
    ctypes.CDLL = RecordingCDLL
    import torch
    for fn in ("set_num_threads", "set_num_interop_threads"):
        original = getattr(torch, fn)
        def recorder(*args, _fn=fn, _original=original):
            calls.append(_fn)
            return _original(*args)
        setattr(torch, fn, recorder)
    import torch._dynamo  # importing it (as torchvision's models do) sets TORCHINDUCTOR_CACHE_DIR: torch's doing
    environ, threads = dict(os.environ), torch.get_num_threads()
    import percepmetric
    from percepmetric.errors import WeightsNotFoundError
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(24, 3, 64, 64, generator=gen)
    y = (x + 0.1 * torch.rand(x.shape, generator=gen)).clamp(0, 1)
    used = []
    for name in percepmetric.list_metrics():
        try:
            metric = percepmetric.create_metric(name)
        except WeightsNotFoundError:
            continue
        side = max(64, metric.min_size)  # IW-SSIM needs 176x176: a larger crop of the same kind
        a = torch.nn.functional.interpolate(x, size=(side, side)) if side > 64 else x
        b = torch.nn.functional.interpolate(y, size=(side, side)) if side > 64 else y
        metric(a, b)
        metric.update(a, b)
        metric.compute()
        getattr(percepmetric.functional, name)(a[:2], b[:2])
        used.append(name)
    print(json.dumps({"calls": calls, "env_changed": dict(os.environ) != environ,
                      "threads": [threads, torch.get_num_threads()], "used": used}))
""")


@pytest.mark.slow
def test_import_build_and_call_change_no_process_state():
    done = subprocess.run([sys.executable, "-c", SIDE_EFFECT_PROBE], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"fsim", "ssim", "psnr"} <= set(report["used"])
    assert report["calls"] == [], f"process-wide settings changed: {report['calls']}"
    assert not report["env_changed"]
    assert report["threads"][0] == report["threads"][1]


def test_worker_threads_set_only_their_own_op_count():
    if not single_threaded_ops_available():
        pytest.skip("torch here is not built with GNU OpenMP: the pool runs parts one by one")
    before = torch.get_num_threads()
    seen: list[int] = []
    during: list[int] = []
    gate = threading.Event()

    def work() -> None:
        seen.append(torch.get_num_threads())
        gate.wait(10)

    with side_by_side_pool(1) as pool:
        future = pool.submit(work)
        for _ in range(5):
            during.append(torch.get_num_threads())
        gate.set()
        future.result()
    assert seen == [1]
    assert during == [before] * 5 and torch.get_num_threads() == before


@pytest.mark.parametrize("name", metric_params(["fsim", "ssim", "ms_ssim", "psnr", "lpips"]))
def test_two_threads_at_once_give_the_numbers_of_one(name):
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 64, 64, generator=gen)
    y = (x + 0.2 * torch.rand(x.shape, generator=gen)).clamp(0, 1)
    metric = create_metric(name)
    alone = metric(x, y)
    results: dict[str, list[torch.Tensor]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def run(key: str, fn) -> None:
        try:
            for _ in range(3):
                results[key].append(fn())
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=("a", lambda: metric(x, y))),
               threading.Thread(target=run, args=("b", lambda: getattr(functional, name)(x, y)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not errors, errors
    for value in results["a"] + results["b"]:
        torch.testing.assert_close(value, alone, rtol=0, atol=0)


# ----------------------------------------------------------------------------- stateful API

def _batches(count: int, n: int = 3, side: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(count):
        x = torch.rand(n, 3, side, side, generator=gen)
        yield x, (x + 0.3 * torch.rand(x.shape, generator=gen)).clamp(0, 1)


def _tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes of every tensor the module holds, also in plain attributes, lists and dicts."""
    total = 0
    for sub in module.modules():
        for value in vars(sub).values():
            items = value.values() if isinstance(value, dict) else (
                value if isinstance(value, (list, tuple)) else [value])
            total += sum(t.numel() * t.element_size() for t in items if isinstance(t, torch.Tensor))
    return total


def test_ten_thousand_updates_hold_constant_memory():
    metric = create_metric("l2")
    batches = list(_batches(2))
    for x, y in batches * 50:
        metric.update(x, y)
    held = _tensor_bytes(metric)
    tracemalloc.start()
    try:
        # Collect before each reading: garbage awaiting the cyclic collector is not memory the metric keeps.
        gc.collect()
        start, _ = tracemalloc.get_traced_memory()
        for i in range(9_900):
            metric.update(*batches[i % 2])
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert _tensor_bytes(metric) == held
    assert end - start < 64 * 1024, f"{end - start} bytes of Python objects kept by 10,000 updates"
    assert metric.compute()["n"] == 3 * 10_000
    expected = sum(float(create_metric("l2")(x, y).double().sum()) for x, y in batches) / 6
    assert metric.compute()["mean"] == pytest.approx(expected, rel=1e-9)


def test_compute_is_the_mean_and_t_interval_of_every_value():
    metric = create_metric("psnr")
    values = []
    for x, y in _batches(7, n=5):
        metric.update(x, y)
        values.append(create_metric("psnr")(x, y))
    v = torch.cat(values).double().numpy()
    summary = metric.compute()
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    assert summary["n"] == len(v)
    assert summary["mean"] == pytest.approx(v.mean(), rel=1e-12)
    assert summary["ci_low"] == pytest.approx(v.mean() - half, rel=1e-9)
    assert summary["ci_high"] == pytest.approx(v.mean() + half, rel=1e-9)
    metric.reset()
    with pytest.raises(percepmetric.InputError, match="before any update"):
        metric.compute()


def test_states_are_tensors_registered_as_torchmetrics_registers_them():
    metric = create_metric("ssim")
    x, y = next(_batches(1, side=16))
    metric.update(x, y)
    assert not any(k.startswith("values_") for k in metric.state_dict())  # not persistent by default
    old_checkpoint = metric.state_dict()
    metric.persistent(True)
    saved = metric.state_dict()
    assert {"values_sum", "values_sum_sq", "values_count"} <= set(saved)
    restored = create_metric("ssim")
    restored.persistent(True)
    restored.load_state_dict(saved)
    assert restored.compute() == metric.compute()
    fresh = create_metric("ssim")
    fresh.persistent(True)
    fresh.load_state_dict(old_checkpoint)  # a checkpoint without the states still loads, strictly
    loss = create_metric("ssim", as_loss=True)
    loss.metric.persistent(True)
    assert "metric.values_sum" in loss.state_dict()


def test_states_follow_the_device_and_keep_their_dtype():
    metric = create_metric("l2")
    x, y = next(_batches(1))
    metric.update(x, y)
    metric.half()
    assert metric.values_sum.dtype == torch.float64 and metric.values_count.dtype == torch.int64
    metric.to("meta")
    assert metric.values_sum.device.type == "meta"


def test_update_inside_and_outside_inference_mode():
    metric = create_metric("psnr")
    batches = list(_batches(2))
    with torch.inference_mode():
        metric.update(*batches[0])
    metric.update(*batches[1])
    with torch.inference_mode():
        metric.reset()
    metric.update(*batches[1])
    assert metric.compute()["n"] == 3


# ----------------------------------------------------------------------------- device and dtype

def test_a_placed_metric_keeps_its_place_and_refuses_other_devices():
    metric = create_metric("ssim").double()
    x, y = next(_batches(1, side=16))
    assert metric(x, y).dtype == torch.float64
    torch.testing.assert_close(metric(x, y), create_metric("ssim")(x.double(), y.double()), rtol=0, atol=0)
    parent = torch.nn.ModuleDict({"psnr": create_metric("psnr")}).to("meta")
    with pytest.raises(percepmetric.InputError, match="moved to meta.*on cpu"):
        parent["psnr"](x, y)
    assert create_metric("ssim")(x.double(), y.double()).dtype == torch.float64  # unplaced: follows the input


# ----------------------------------------------------------------------------- functional API

@requires_weights(*METRIC_TRUNKS["lpips"])
def test_functional_results_do_not_change_with_what_users_do_to_modules():
    skip_without_weights("alex")
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 64, 64, generator=gen)
    y = torch.rand(2, 3, 64, 64, generator=gen)
    before = functional.lpips(x, y).clone()
    obtained = [create_metric("lpips")]
    shared = getattr(functional, "cached_metric", None)  # a module handed out by older versions
    if shared is not None:
        obtained.append(shared("lpips", {}, "cpu"))
    for module in obtained:
        module.train()
        module.register_forward_hook(lambda *_: torch.zeros(2))
        with torch.no_grad():
            for p in module.parameters():
                p.zero_()
    torch.testing.assert_close(functional.lpips(x, y), before, rtol=0, atol=0)
    torch.testing.assert_close(percepmetric.distance(x, y), before, rtol=0, atol=0)


def test_functional_has_one_function_per_registry_metric_with_its_class_options():
    import inspect

    from percepmetric.registry import metric_options

    for name in list_metrics():
        fn = getattr(functional, name)
        params = inspect.signature(fn).parameters
        assert list(params)[:2] == ["x", "y"]
        for option, default in metric_options(name).items():
            assert params[option].default == default
        assert params["reduction"].default == "none" and params["validate_args"].default is True


def test_functional_validate_args_false_skips_the_value_check():
    x = torch.full((1, 1, 16, 16), 2.0)
    y = torch.zeros(1, 1, 16, 16)
    with pytest.raises(percepmetric.InputError, match="outside the declared input range"):
        functional.l2(x, y)
    assert float(functional.l2(x, y, validate_args=False)) == pytest.approx(4.0)


def test_distance_reads_files_beside_a_tensor_on_its_dtype(tmp_path):
    from PIL import Image

    array = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / "a.png")
    x = torch.from_numpy(array).permute(2, 0, 1)[None].double() / 255
    value = percepmetric.distance(tmp_path / "a.png", x, metric="l2")
    assert value.dtype == torch.float64 and float(value) < 1e-12


@pytest.mark.parametrize("name", [n for n in list_metrics() if n not in METRIC_TRUNKS and n != "stlpips"])
def test_every_weightless_metric_keeps_a_float64_placement(name):
    x, y = next(_batches(1, n=2, side=max(64, create_metric(name).min_size)))
    metric = create_metric(name).to(torch.float64)
    first = metric(x, y)
    assert first.dtype == torch.float64
    torch.testing.assert_close(first, create_metric(name)(x.double(), y.double()), rtol=0, atol=0)
