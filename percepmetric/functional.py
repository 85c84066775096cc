"""One function per metric, for those who prefer ``psnr(x, y)`` to building a module.

``functional.<name>(x, y, **options)`` is ``create_metric(name, **options)(x, y)``: the same
options (names, defaults, meaning; each function's signature is its class's), plus
``reduction`` (``"none"``: one value per image pair ``(N,)``; ``"mean"``/``"sum"``: one number)
and ``validate_args``. There is one implementation, the metric classes: every function here is
made from the registry's table, so a metric added there has its function without a line here.

Building a metric may read weight files (LPIPS, DISTS), so the functions keep the metric they
built, per (options, device, dtype), and reuse it. That metric is private to this module: no
function hands it out, so nothing a user does to a metric object they hold (``.train()``, a
hook, ``.to()``, changed parameters) changes what these functions return, and two threads may
call them at once. The cache keys on the option values as given: after changing a weight file
on disk, call :func:`clear_cache`. Gradients flow to inputs that require grad, as through the
classes.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any, Protocol

import torch

from .io import ImageLike
from .metrics.base import Metric
from .options import Reduction, check_reduction, reduce_values
from .registry import METRICS, canonical_name, create_metric, metric_class

__all__ = ["clear_cache", *sorted(METRICS)]


class MetricFunction(Protocol):
    """``f(x, y, **options) -> Tensor``: a metric as a function (see the module's doc)."""

    def __call__(self, x: ImageLike, y: ImageLike, /, **options: Any) -> torch.Tensor: ...


_CacheKey = tuple[str, tuple[tuple[str, str], ...], str, str]


class _Entry:
    """A private metric and whether its first call has run. The first call may adapt the metric
    to its input (a deep metric's trunk dtype: see :meth:`Metric.follow_input`), so it runs
    alone; later calls on the same key find it adapted and change nothing."""

    def __init__(self, metric: Metric) -> None:
        self.metric = metric
        self.first_call = threading.Lock()
        self.warm = False

    def values(self, x: ImageLike, y: ImageLike) -> torch.Tensor:
        if self.warm:
            return self.metric.values(x, y)
        with self.first_call:
            values = self.metric.values(x, y)
            self.warm = True
            return values


_CACHE: dict[_CacheKey, _Entry] = {}
_CACHE_LOCK = threading.Lock()


def _private_metric(name: str, options: dict[str, Any], device: torch.device, dtype: torch.dtype | None) -> _Entry:
    """The metric ``create_metric(name, **options)`` placed on ``device``, built once per (name,
    options, device, input dtype) in this process, and never handed to callers.

    Placed on the device (so it never moves between devices), not in a dtype: a metric computes
    in its input's dtype by its own rules (LPIPS's ``precision``), and each input dtype has its
    own instance."""
    key = (canonical_name(name), tuple(sorted((k, repr(v)) for k, v in options.items())), str(device), str(dtype))
    with _CACHE_LOCK:
        entry = _CACHE.get(key)
        if entry is None:
            entry = _CACHE[key] = _Entry(create_metric(name, **options).to(device))
        return entry


def private_metric(name: str, options: dict[str, Any], device: torch.device,
                   dtype: torch.dtype | None = None) -> Metric:
    """The private metric for ``name`` and ``options`` on ``device`` (for inputs of ``dtype``),
    for this package's own callers that need more than its values (its ``value_range``,
    :func:`percepmetric.pairwise`'s features) and never return it."""
    floating = dtype if dtype is not None and dtype.is_floating_point else None
    return _private_metric(name, options, device, floating).metric


def clear_cache() -> None:
    """Forget the metrics these functions built (e.g. after a weight file changed on disk)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def values_for(name: str, options: dict[str, Any], x: ImageLike, y: ImageLike,
               distance: bool = False) -> torch.Tensor:
    """``create_metric(name, **options).values(x, y)`` (its ``to_distance`` with ``distance``),
    computed by the private metric for these inputs: on the device of the first tensor among
    them (the CPU when none is), one per input dtype. For this package's entry points
    (``functional.*``, :func:`percepmetric.distance`), which return values, never the metric."""
    first = next((t for t in (x, y) if isinstance(t, torch.Tensor)), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else None
    entry = _private_metric(name, options, device, dtype)
    values = entry.values(x, y)
    return entry.metric.to_distance(values) if distance else values


def _function(name: str) -> MetricFunction:
    """``functional.<name>``: ``create_metric(name, **options)(x, y)`` with its class's signature."""
    cls = metric_class(name)
    image = inspect.Parameter.POSITIONAL_ONLY
    params = [inspect.Parameter(label, image, annotation="ImageLike") for label in ("x", "y")]
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name in ("self", "reduction", "validate_args") or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    params.append(inspect.Parameter("reduction", inspect.Parameter.KEYWORD_ONLY, default="none",
                                    annotation="Reduction"))
    params.append(inspect.Parameter("validate_args", inspect.Parameter.KEYWORD_ONLY, default=True,
                                    annotation="bool"))
    signature = inspect.Signature(params, return_annotation="torch.Tensor")

    def metric_function(x: ImageLike, y: ImageLike, /, *, reduction: Reduction = "none", validate_args: bool = True,
                        **options: Any) -> torch.Tensor:
        reduced = check_reduction(reduction)
        if validate_args is not True:
            options["validate_args"] = validate_args
        return reduce_values(values_for(name, options, x, y), reduced)

    summary = (inspect.getdoc(cls) or name).splitlines()[0]
    metric_function.__name__ = metric_function.__qualname__ = name
    metric_function.__module__ = __name__
    metric_function.__doc__ = (
        f"{summary}\n\n``create_metric({name!r}, **options)(x, y)`` as a function: the options of "
        f":class:`{cls.__module__}.{cls.__name__}`, plus ``reduction`` and ``validate_args``. "
        "Returns ``(N,)`` values, or one number with ``reduction='mean'``/``'sum'``.")
    metric_function.__signature__ = signature  # type: ignore[attr-defined]
    return metric_function


l2 = _function("l2")
l1 = _function("l1")
psnr = _function("psnr")
ssim = _function("ssim")
ms_ssim = _function("ms_ssim")
fsim = _function("fsim")
gmsd = _function("gmsd")
ms_gmsd = _function("ms_gmsd")
haarpsi = _function("haarpsi")
butteraugli = _function("butteraugli")
ssimulacra2 = _function("ssimulacra2")
cvvdp = _function("cvvdp")
flip = _function("flip")
mdsi = _function("mdsi")
mad = _function("mad")
srsim = _function("srsim")
vsi = _function("vsi")
vif = _function("vif")
vifp = _function("vifp")
iw_ssim = _function("iw_ssim")
cw_ssim = _function("cw_ssim")
nlpd = _function("nlpd")
dss = _function("dss")
lpips = _function("lpips")
dists = _function("dists")
stlpips = _function("stlpips")
