"""``torch.compile`` of the metrics: no graph break in the formula path, the eager numbers.

A metric built with ``validate_args=False`` (torchmetrics' name for it) skips the per-call checks
that read the input's values, the only part of a call that needs the data on the host; what is
left (shape and type checks, the formula) must trace as one graph, so that users on GPUs can
compile a metric inside their training step. Window types and special cases are decided from
options and shapes, never from tensor values.

The numbers are compared under the ``aot_eager`` backend: it runs the same graph capture
(dynamo) and the autograd decomposition that inductor runs, without generating and compiling
C++ (inductor takes tens of seconds per metric on a 2-core CPU; benchmarks/compile_speed.py
measures it).
"""

from __future__ import annotations

import pytest
import torch

from percepmetric import create_metric
from percepmetric.errors import InputError

from helpers import requires_weights

#: (registry name, options): the metrics whose formula path must compile in one graph.
CASES = [
    pytest.param("ssim", {}, id="ssim"),
    pytest.param("ssim", {"convention": "lpips"}, id="ssim-lpips"),
    pytest.param("ssim", {"convention": "lpips", "quantize": False}, id="ssim-lpips-float"),
    pytest.param("ssim", {"color": "rgb"}, id="ssim-rgb"),
    pytest.param("ssim", {"color": "y", "shave": 4}, id="ssim-y-shave"),
    pytest.param("ms_ssim", {}, id="ms_ssim"),
    pytest.param("psnr", {}, id="psnr"),
    pytest.param("psnr", {"color": "y", "shave": 4}, id="psnr-y-shave"),
    pytest.param("l2", {}, id="l2"),
    pytest.param("l1", {}, id="l1"),
    pytest.param("lpips", {}, id="lpips", marks=requires_weights("alex")),
    pytest.param("dists", {}, id="dists", marks=requires_weights("vgg")),
]


def _pair(size: int = 64, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, size, size, generator=g)
    y = (x + 0.1 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)
    return x, y


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Each test traces from scratch (dynamo's caches are process-wide)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize(("name", "options"), CASES)
def test_no_graph_break(name: str, options: dict) -> None:
    metric = create_metric(name, validate_args=False, **options)
    x, y = _pair()
    explanation = torch._dynamo.explain(metric)(x, y)
    reasons = "\n".join(f"- {b.reason} at {b.user_stack[-1] if b.user_stack else '?'}"
                        for b in explanation.break_reasons)
    assert explanation.graph_break_count == 0, f"{name}{options}: {explanation.graph_break_count} breaks\n{reasons}"
    assert explanation.graph_count == 1
    # explain() does not count a break inside a loop (dynamo then runs that whole function
    # eagerly, as the default value checks over (x, y) would be): fullgraph=True refuses any.
    torch._dynamo.reset()
    torch.compile(metric, backend="eager", fullgraph=True)(x, y)


@pytest.mark.parametrize(("name", "options"), CASES)
def test_compiled_gives_eager_numbers(name: str, options: dict) -> None:
    metric = create_metric(name, validate_args=False, **options)
    x, y = _pair()
    eager = metric(x, y)
    compiled = torch.compile(metric, backend="aot_eager", fullgraph=True)(x, y)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def test_compiled_gradient_matches_eager() -> None:
    """A compiled metric in a loss: the same gradient as eager."""
    metric = create_metric("ssim", validate_args=False)
    x, y = _pair()
    grads = []
    for fn in (metric, torch.compile(metric, backend="aot_eager", fullgraph=True)):
        xg = x.clone().requires_grad_(True)
        fn(xg, y).sum().backward()
        grads.append(xg.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["ssim", "ms_ssim", "psnr", "l2", "l1"])
def test_validate_args_false_skips_only_the_value_checks(name: str) -> None:
    x, y = _pair()
    unchecked = create_metric(name, validate_args=False)
    # Out of range and non-finite values go through (the caller vouched for them) ...
    values = unchecked(x * 2.0, y)
    assert values.shape == (2,)
    unchecked(x - 0.5, y)
    # ... but what is not an image batch at all is still refused, in one line.
    with pytest.raises(InputError, match="shape"):
        unchecked(x[0], y[0])
    with pytest.raises(InputError, match="float tensor"):
        unchecked((x * 255).to(torch.uint8), (y * 255).to(torch.uint8))
    with pytest.raises(InputError, match="differ in shape"):
        unchecked(x, y[:, :, :-1])
    # The default keeps refusing values outside the declared range.
    with pytest.raises(InputError, match="outside the declared input range"):
        create_metric(name)(x * 2.0, y)
    with pytest.raises(InputError, match="NaN or infinite"):
        create_metric(name)(x.masked_fill(x > 0.9, float("nan")), y)


def test_validate_args_false_keeps_the_numbers() -> None:
    x, y = _pair()
    for name in ("ssim", "ms_ssim", "psnr", "l2", "l1"):
        torch.testing.assert_close(create_metric(name, validate_args=False)(x, y), create_metric(name)(x, y),
                                   rtol=0, atol=0)


def test_validate_args_must_be_a_bool() -> None:
    with pytest.raises(InputError, match="validate_args"):
        create_metric("ssim", validate_args="maybe")


@pytest.mark.parametrize("name", ["ssim", "ms_ssim"])
def test_module_functions_take_validate_args(name: str) -> None:
    """``percepmetric.metrics.ssim.ssim`` / ``ms_ssim``: the same flag as the classes, the same
    single graph."""
    from percepmetric.metrics import ssim as module

    fn = getattr(module, name)
    x, y = _pair()
    with pytest.raises(InputError, match="outside the declared input range"):
        fn(x * 2.0, y)
    assert fn(x * 2.0, y, validate_args=False).shape == (2,)
    explanation = torch._dynamo.explain(fn)(x, y, validate_args=False)
    assert explanation.graph_break_count == 0, [str(b.reason) for b in explanation.break_reasons]
    torch.testing.assert_close(fn(x, y, validate_args=False), fn(x, y), rtol=0, atol=0)
