"""``as_torchmetric``: a percepmetric metric as a real ``torchmetrics.Metric``.

What a torchmetrics or Lightning user relies on: it is a ``torchmetrics.Metric``; inside a
``MetricCollection`` each adapter reports the mean of its own metric's per-image values (what
``create_metric(name)(x, y)`` gives) over every batch; ``reset``, ``state_dict`` and
``persistent`` behave as torchmetrics' own metrics; ``.to(dtype)`` makes the wrapped metric
compute in that dtype; and across two processes in a gloo group ``compute()`` is the
one-process value (torchmetrics syncs the sum and count states itself).
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import pytest
import torch
import torchmetrics

import percepmetric
from percepmetric import create_metric
from percepmetric.errors import InputError
from percepmetric.torchmetric import as_torchmetric

from helpers import RANK_BATCHES, metric_params, requires_weights, run_alone, run_ranks

#: Batch sizes of the several ``update`` calls; the first batch has ``y == x`` (see :func:`batches`).
SIZES = (2, 3, 1, 4)


def batches(seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs of ``(N,3,32,32)`` batches in [0, 1]; in the first, ``y`` is ``x`` (every distance 0)."""
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for i, size in enumerate(SIZES):
        x = torch.rand(size, 3, 32, 32, generator=generator)
        noise = 0.05 * (i + 1) * torch.randn(x.shape, generator=generator)
        pairs.append((x, x.clone() if i == 0 else (x + noise).clamp(0, 1)))
    return pairs


def own_mean(name: str, pairs: list[tuple[torch.Tensor, torch.Tensor]], **options: object) -> float:
    """The mean of percepmetric's own per-image values over every pair, in float64."""
    metric = create_metric(name, **options)
    with torch.no_grad():
        values = torch.cat([metric(x, y) for x, y in pairs])
    return float(values.double().mean())


def test_it_is_a_torchmetrics_metric_with_the_metrics_direction():
    ssim, l1 = as_torchmetric("ssim"), as_torchmetric("l1")
    assert isinstance(ssim, torchmetrics.Metric) and isinstance(l1, torchmetrics.Metric)
    assert ssim.higher_is_better is True and l1.higher_is_better is False
    assert ssim.is_differentiable is True
    assert ssim.full_state_update is False
    assert (ssim.plot_lower_bound, ssim.plot_upper_bound) == (None, 1.0)
    assert (l1.plot_lower_bound, l1.plot_upper_bound) == (0.0, None)
    assert isinstance(ssim.metric, torch.nn.Module) and "metric" in dict(ssim.named_children())
    assert type(percepmetric.as_torchmetric("ssim")) is type(ssim)  # the package's export


@pytest.mark.parametrize("names", [
    ("ssim", "psnr", "l1", "l2"),
    pytest.param(("ssim", "psnr", "lpips"), marks=requires_weights("alex")),
])
def test_a_metric_collection_reports_percepmetrics_own_means(names):
    pairs = batches()[1:]  # PSNR is infinite for y == x
    collection = torchmetrics.MetricCollection({name: as_torchmetric(name) for name in names})
    for x, y in pairs:
        collection.update(x, y)
    got = collection.compute()
    assert set(got) == set(names)
    for name in names:
        assert got[name].dtype == torch.float64
        assert float(got[name]) == pytest.approx(own_mean(name, pairs), rel=1e-6, abs=1e-6), name


def test_collection_members_stay_apart_when_their_first_states_agree():
    """MetricCollection merges metrics whose states are equal after the first update into one
    compute group: L1 and L2 are both 0 on a first batch with ``y == x``, yet must go on
    reporting each its own mean."""
    pairs = batches()
    assert torch.equal(*pairs[0])
    collection = torchmetrics.MetricCollection({"l1": as_torchmetric("l1"), "l2": as_torchmetric("l2")})
    for x, y in pairs:
        collection.update(x, y)
    got = collection.compute()
    want = {name: own_mean(name, pairs) for name in ("l1", "l2")}
    assert want["l1"] != pytest.approx(want["l2"], rel=1e-3)
    for name in ("l1", "l2"):
        assert float(got[name]) == pytest.approx(want[name], rel=1e-6), name


def test_two_variants_of_one_metric_in_a_collection_stay_apart():
    pairs = batches()
    collection = torchmetrics.MetricCollection({"grey": as_torchmetric("ssim"),
                                                "rgb": as_torchmetric("ssim", color="rgb")})
    for x, y in pairs:
        collection.update(x, y)
    got = collection.compute()
    assert float(got["grey"]) == pytest.approx(own_mean("ssim", pairs), rel=1e-6)
    assert float(got["rgb"]) == pytest.approx(own_mean("ssim", pairs, color="rgb"), rel=1e-6)


def test_forward_gives_the_batch_mean_and_keeps_the_running_mean():
    pairs = batches()[1:]
    metric = as_torchmetric("ssim")
    for x, y in pairs:
        assert float(metric(x, y)) == pytest.approx(own_mean("ssim", [(x, y)]), rel=1e-6)
    assert float(metric.compute()) == pytest.approx(own_mean("ssim", pairs), rel=1e-6)


def test_forward_carries_gradients_and_the_states_do_not():
    x, y = batches()[1]
    x = x.clone().requires_grad_(True)
    metric = as_torchmetric("ssim")
    metric(x, y).backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    assert not any(getattr(metric, name).requires_grad for name in metric._defaults)


def test_reset_forgets_every_batch():
    first, *rest = batches()[1:]
    metric = as_torchmetric("psnr")
    metric.update(*first)
    metric.reset()
    for x, y in rest:
        metric.update(x, y)
    assert float(metric.compute()) == pytest.approx(own_mean("psnr", rest), rel=1e-6)


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric:UserWarning")  # restored: no update
def test_state_dict_holds_the_states_only_when_persistent():
    pairs = batches()
    metric = as_torchmetric("l1")
    for x, y in pairs:
        metric.update(x, y)
    assert metric.state_dict() == {}  # torchmetrics' default: states are not persistent
    metric.persistent(True)
    saved = metric.state_dict()
    assert len(saved) == 2 and any(k.endswith("_sum") for k in saved) and any(k.endswith("_count") for k in saved)
    assert int(next(v for k, v in saved.items() if k.endswith("_count"))) == sum(SIZES)

    restored = as_torchmetric("l1")
    restored.persistent(True)
    restored.load_state_dict(saved)
    assert float(restored.compute()) == pytest.approx(own_mean("l1", pairs), rel=1e-12)
    as_torchmetric("l1").load_state_dict({})  # a checkpoint without states still loads


@requires_weights("alex")
def test_to_float64_makes_the_wrapped_metric_compute_in_float64():
    pairs = batches()[1:]
    metric = as_torchmetric("lpips", net="alex").to(torch.float64)
    for x, y in pairs:
        metric.update(x, y)  # float32 inputs
    assert {p.dtype for p in metric.metric.parameters()} == {torch.float64}
    reference = create_metric("lpips", net="alex").to(torch.float64)
    with torch.no_grad():
        want = float(torch.cat([reference(x, y) for x, y in pairs]).mean())
    assert float(metric.compute()) == pytest.approx(want, rel=1e-12)
    states = {name: getattr(metric, name).dtype for name in metric._defaults}
    assert sorted(states.values(), key=str) == [torch.float64, torch.int64]


def test_states_keep_their_dtypes_whatever_the_metric_computes_in():
    pairs = batches()[1:]
    metric = as_torchmetric("ssim").to(torch.float16)
    metric.set_dtype(torch.float64)
    for x, y in pairs:
        metric.update(x, y)
    assert sorted((getattr(metric, n).dtype for n in metric._defaults), key=str) == [torch.float64, torch.int64]
    assert float(metric.compute()) == pytest.approx(own_mean("ssim", pairs), rel=1e-6)


def test_a_metric_object_becomes_the_submodule():
    wrapped = create_metric("ssim")
    metric = as_torchmetric(wrapped)
    assert metric.metric is wrapped
    metric.to(torch.float64)
    assert wrapped.placement == (None, torch.float64)


def test_copies_and_pickles_keep_the_states():
    pairs = batches()
    metric = as_torchmetric("l2")
    for x, y in pairs:
        metric.update(x, y)
    want = float(metric.compute())
    assert float(copy.deepcopy(metric).compute()) == want
    assert float(pickle.loads(pickle.dumps(metric)).compute()) == want


@requires_weights("alex")
def test_spatial_maps_are_refused_in_one_line():
    with pytest.raises(InputError, match=r"spatial=True") as info:
        as_torchmetric("lpips", net="alex", spatial=True)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("metric", "options", "match"), [
    ("ssim", {"reduction": "mean"}, "reduction"),
    ("ssim", {"as_loss": True}, "as_loss"),
    (3, {}, "metric name"),
])
def test_misuse_is_an_input_error(metric, options, match):
    with pytest.raises(InputError, match=match):
        as_torchmetric(metric, **options)


def test_a_built_metric_takes_no_options_and_a_loss_is_refused():
    with pytest.raises(InputError, match="color"):
        as_torchmetric(create_metric("ssim"), color="rgb")
    with pytest.raises(InputError, match=r"loss\.metric"):
        as_torchmetric(create_metric("ssim", as_loss=True))


def test_torchmetrics_options_go_to_torchmetrics():
    metric = as_torchmetric("ssim", sync_on_compute=False, color="rgb")
    assert metric.sync_on_compute is False
    assert metric.metric.options["color"] == "rgb"


@pytest.mark.parametrize("name", metric_params(["ssim", "psnr", "lpips"]))
def test_every_registry_name_with_validate_args_off(name):
    pairs = batches()[1:]
    metric = as_torchmetric(name, validate_args=False)
    for x, y in pairs:
        metric.update(x, y)
    assert float(metric.compute()) == pytest.approx(own_mean(name, pairs), rel=1e-6)


def test_without_torchmetrics_the_error_names_the_install(monkeypatch):
    from percepmetric import torchmetric

    monkeypatch.setitem(sys.modules, "torchmetrics", None)  # import torchmetrics raises ImportError
    torchmetric._adapter_class.cache_clear()
    try:
        with pytest.raises(InputError, match="pip install torchmetrics"):
            as_torchmetric("ssim")
    finally:
        monkeypatch.undo()
        torchmetric._adapter_class.cache_clear()


def test_importing_percepmetric_does_not_import_torchmetrics():
    code = "import sys, percepmetric; print('torchmetrics' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- two processes

#: Each rank updates batches rank, rank + world, ...: 3 batches (8 images) on rank 0 and 2 (4
#: images) on rank 1; torchmetrics syncs the sum and count states on ``compute()``.
PART = RANK_BATCHES + """
import torchmetrics
from percepmetric.torchmetric import as_torchmetric


def part(rank, world):
    collection = torchmetrics.MetricCollection({name: as_torchmetric(name) for name in ("psnr", "ssim")})
    for i, (x, y) in enumerate(batches()):
        if i % world == rank:
            collection.update(x, y)
    return {name: float(value) for name, value in collection.compute().items()}
"""


def test_two_processes_compute_the_value_of_one(tmp_path):
    alone = run_alone(PART, tmp_path / "alone")
    ranks = run_ranks(PART, tmp_path / "ranks", world=2)
    assert len(ranks) == 2
    for rank, values in enumerate(ranks):
        assert set(values) == {"psnr", "ssim"}
        for name, value in values.items():
            assert value == pytest.approx(alone[name], rel=1e-12), (rank, name)
