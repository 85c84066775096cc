"""Device and dtype belong to the user: a metric moved with ``.to()`` stays there and computes there.

The rule (percepmetric.metrics.base.Metric): a metric the user moved (``.to(device)``,
``.to(dtype)``, ``.double()``, directly or as part of a parent module) never moves itself; floating
inputs are cast to the dtype it was moved to, and an input on another device is refused in one
line naming both devices. A metric never moved follows its inputs. The meta device stands in for
a second GPU here (``cuda:1`` against ``cuda:0``): a metric there cannot run on a CPU input.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from percepmetric import create_metric
from percepmetric.errors import InputError
from percepmetric.registry import list_metrics

from helpers import metric_params, requires_weights


def _stlpips_installed() -> bool:
    from percepmetric.weights import locate, stlpips_network_file

    return locate(stlpips_network_file("alex")).found


requires_stlpips = pytest.mark.skipif(not _stlpips_installed(),
                                      reason="ST-LPIPS weights absent: pip install stlpips-pytorch==0.0.2")

#: The deep metrics, whose modules used to move themselves to each input's dtype.
DEEP = [
    pytest.param("lpips", marks=requires_weights("alex"), id="lpips"),
    pytest.param("dists", marks=requires_weights("vgg"), id="dists"),
    pytest.param("stlpips", marks=requires_stlpips, id="stlpips"),
]


def _pair(size: int = 64, n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    y = (x + 0.1 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    return x, y


def _floating_dtypes(module: nn.Module) -> set[torch.dtype]:
    return {t.dtype for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()
            and t.ndim > 0}  # the evaluation-loop states (0-d, float64 always) aside


@pytest.mark.parametrize("name", DEEP)
def test_a_float64_metric_stays_float64_after_float32_calls(name):
    x, y = _pair()
    metric = create_metric(name).to(torch.float64)
    from_float32 = metric(x, y)
    assert _floating_dtypes(metric) == {torch.float64}, name  # not moved back to float32
    assert from_float32.dtype == torch.float64
    from_float64 = metric(x.double(), y.double())
    assert _floating_dtypes(metric) == {torch.float64}
    torch.testing.assert_close(from_float32, from_float64, rtol=0, atol=0)
    # and those are the float64 numbers, not float32 ones cast up
    float32_values = create_metric(name)(x, y)
    assert (from_float64 - float32_values.double()).abs().max() > 0


@pytest.mark.parametrize("name", DEEP)
def test_double_and_a_parent_module_count_as_moved(name):
    x, y = _pair()
    doubled = create_metric(name).double()
    doubled(x, y)
    assert _floating_dtypes(doubled) == {torch.float64}
    for parent in (nn.Sequential(create_metric(name)), nn.ModuleDict({"m": create_metric(name)})):
        parent.to(torch.float64)
        metric = parent[0] if isinstance(parent, nn.Sequential) else parent["m"]
        assert metric.moved_by_user and metric.placement == (None, torch.float64)
        assert metric(x, y).dtype == torch.float64
        assert _floating_dtypes(metric) == {torch.float64}


@pytest.mark.parametrize("name", DEEP)
def test_a_metric_on_another_device_refuses_the_input_in_one_line(name):
    x, y = _pair()
    metric = create_metric(name).to("meta")
    with pytest.raises(InputError) as info:
        metric(x, y)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "meta" in message and "cpu" in message, message
    assert {t.device.type for t in metric.parameters()} == {"meta"}  # it did not move itself either


@pytest.mark.parametrize("name", DEEP)
def test_an_unplaced_metric_follows_a_float64_input(name):
    x, y = _pair()
    metric = create_metric(name)
    assert not metric.moved_by_user
    values = metric(x.double(), y.double())
    assert values.dtype == torch.float64
    assert not metric.moved_by_user  # following is not placing: the next input may move it again
    metric(x, y)
    assert metric(x, y).dtype == torch.float32


@requires_weights("alex")
def test_a_user_dtype_overrides_lpips_precision():
    """``precision`` chooses the trunk's dtype of a metric the user did not place; a dtype the user
    moved the metric to wins (the module computes where the user put it)."""
    x, y = _pair()
    half = create_metric("lpips", precision="float16")
    half(x, y)
    assert {p.dtype for p in half.trunk.parameters()} == {torch.float16}
    doubled = create_metric("lpips", precision="float16").double()
    values = doubled(x, y)
    assert {p.dtype for p in doubled.trunk.parameters()} == {torch.float64} and values.dtype == torch.float64
    torch.testing.assert_close(values, create_metric("lpips").double()(x.double(), y.double()), rtol=0, atol=0)


@requires_weights("alex")
def test_lpips_features_and_layer_distances_keep_the_placement():
    x, y = _pair()
    metric = create_metric("lpips").double()
    assert all(f.dtype == torch.float64 for f in metric.features(x))
    assert metric.layer_distances(x, y).dtype == torch.float64
    assert _floating_dtypes(metric) == {torch.float64}
    with pytest.raises(InputError, match="moved to meta"):
        create_metric("lpips").to("meta").features(x)


def _size_for(metric) -> int:
    return max(64, int(getattr(metric, "min_size", 1)))


@pytest.mark.parametrize("name", metric_params(list_metrics()))
def test_every_metric_moved_to_float64_computes_in_float64(name):
    if name == "stlpips" and not _stlpips_installed():
        pytest.skip("ST-LPIPS weights absent: pip install stlpips-pytorch==0.0.2")
    metric = create_metric(name).to(torch.float64)
    x, y = _pair(_size_for(metric), seed=3)
    from_float32 = metric(x, y)
    from_float64 = metric(x.double(), y.double())
    assert from_float32.dtype == torch.float64, name
    torch.testing.assert_close(from_float32, from_float64, rtol=0, atol=0)
