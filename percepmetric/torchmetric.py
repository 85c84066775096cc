"""A percepmetric metric as a ``torchmetrics.Metric``: :func:`as_torchmetric`.

PyTorch Lightning logs ``torchmetrics.Metric`` objects (``self.log("val/lpips", metric)``) and
``torchmetrics.MetricCollection`` groups them; :func:`as_torchmetric` makes any percepmetric
metric one of them. The torchmetrics metric reports the **mean of the metric's own per-image
value** (what ``metric(x, y)`` gives: PSNR in dB, SSIM, the LPIPS distance; not
``to_distance``) over every image passed to ``update``, from two states, the float64 sum of the
values and their int64 count. They are registered with ``add_state(..., dist_reduce_fx="sum")``,
so torchmetrics syncs them across ranks as it syncs its own states (a gather of two scalars per
rank, then a sum), and memory stays constant however many batches are added.

torchmetrics is imported when :func:`as_torchmetric` is first called, so ``import
percepmetric`` does not load it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, cast

import torch

from .errors import InputError
from .metrics.base import Metric, MetricLoss
from .registry import create_metric, metric_label

if TYPE_CHECKING:
    import torchmetrics

__all__ = ["as_torchmetric"]

#: Keyword arguments of ``torchmetrics.Metric`` itself: :func:`as_torchmetric` passes them to it,
#: and every other option to the percepmetric metric.
TORCHMETRICS_KWARGS = ("compute_on_cpu", "dist_sync_on_step", "process_group", "dist_sync_fn",
                       "distributed_available_fn", "sync_on_compute", "compute_with_cache")


def as_torchmetric(metric: str | Metric, **options: Any) -> torchmetrics.Metric:
    """``metric`` as a ``torchmetrics.Metric`` whose ``compute()`` is the mean of the metric's own
    per-image values over every ``update(x, y)``.

    ``metric``: a registry name with its options, as :func:`~percepmetric.create_metric` takes
    them (``as_torchmetric("lpips", net="alex")``), or a metric object (then no metric options);
    the object becomes a submodule of the torchmetrics metric, so moving one moves the other.
    ``options`` named like torchmetrics' own keyword arguments (``process_group``,
    ``sync_on_compute``, ``dist_sync_on_step``, ...: :data:`TORCHMETRICS_KWARGS`) go to
    ``torchmetrics.Metric``.

    The result's ``higher_is_better`` is ``not metric.lower_is_better``, ``is_differentiable`` is
    ``metric.differentiable``; ``update`` takes what ``metric(x, y)`` takes. Dtype follows
    torchmetrics' rule: ``.to(dtype)`` and ``set_dtype(dtype)`` convert the wrapped metric,
    ``.double()``, ``.float()`` and ``.half()`` called on the torchmetrics metric itself do
    nothing; the sum stays float64 and the count int64 in every case, and both follow ``.to(device)``.
    Spatial maps (LPIPS with ``spatial=True``) have no per-image value and are refused.
    """
    adapter_class = _adapter_class()  # first: a missing torchmetrics is said before a model loads
    torchmetrics_kwargs = {k: options.pop(k) for k in TORCHMETRICS_KWARGS if k in options}
    if isinstance(metric, MetricLoss):
        raise InputError("as_torchmetric: got a loss (MetricLoss); pass its metric (loss.metric) or the metric's name")
    if isinstance(metric, Metric):
        if options:
            raise InputError(f"as_torchmetric: options {', '.join(sorted(options))} are for a metric name; "
                             f"{metric.name} is already built (pass the name with its options instead)")
        wrapped = metric
    elif isinstance(metric, str):
        for api_option in ("reduction", "as_loss"):
            if api_option in options:
                raise InputError(f"as_torchmetric: option {api_option} does not apply: the torchmetrics metric "
                                 "reports the mean of the metric's own per-image values")
        wrapped = create_metric(metric, **options)
    else:
        raise InputError(f"as_torchmetric: metric must be a metric name or a percepmetric Metric, "
                         f"got {type(metric).__name__}")
    if wrapped.options.get("spatial"):
        raise InputError(f"as_torchmetric: {wrapped.name} with spatial=True gives maps, not one value per image; "
                         "use spatial=False")
    adapter: torchmetrics.Metric = adapter_class(wrapped, **torchmetrics_kwargs)
    return adapter


def state_prefix(metric: Metric) -> str:
    """The start of the state names of ``metric``'s torchmetrics metric: its name (``psnr``), and
    a digest of its label (:func:`~percepmetric.registry.metric_label`) where the label shows
    options (``ssim(color=grey)`` gives ``ssim_bf30f109``).

    Names differ per metric because ``MetricCollection`` merges metrics whose states have equal
    names and values after the first update into one compute group (updating one, copying its
    states to the others): states named alike would merge, say, ``l1`` and ``l2`` whenever the
    first batch has ``x == y``, and report L1's mean as L2's from then on.
    """
    name = re.sub(r"\W", "_", metric.name)
    label = metric_label(metric)
    if label == metric.name:
        return name
    return f"{name}_{hashlib.sha256(label.encode()).hexdigest()[:8]}"


def __getattr__(name: str) -> Any:
    """``TorchMetricAdapter``, the class, on first use (pickle finds instances' class here)."""
    if name == "TorchMetricAdapter":
        return _adapter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _adapter_class() -> Callable[..., torchmetrics.Metric]:
    """The ``torchmetrics.Metric`` subclass of :func:`as_torchmetric`, defined once torchmetrics
    is imported."""
    try:
        import torchmetrics
    except ImportError:
        raise InputError("as_torchmetric needs torchmetrics: pip install torchmetrics") from None

    class TorchMetricAdapter(torchmetrics.Metric):
        """The mean per-image value of a percepmetric metric (the submodule ``metric``), kept as
        a float64 sum and an int64 count (:func:`as_torchmetric`)."""

        full_state_update = False  # the states of a batch add to the states before it

        def __init__(self, metric: Metric, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.metric = metric
            prefix = state_prefix(metric)
            self.sum_state, self.count_state = f"{prefix}_sum", f"{prefix}_count"
            self.add_state(self.sum_state, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(self.count_state, default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

        @property
        def higher_is_better(self) -> bool:  # type: ignore[override]
            return not self.metric.lower_is_better

        @property
        def is_differentiable(self) -> bool:  # type: ignore[override]
            return self.metric.differentiable

        @property
        def plot_lower_bound(self) -> float | None:  # type: ignore[override]
            # A metric whose value is a distance is 0 for identical images and never below.
            return 0.0 if self.metric.lower_is_better else None

        @property
        def plot_upper_bound(self) -> float | None:  # type: ignore[override]
            # Similarities without a unit (SSIM, MS-SSIM, FSIM) are 1 for identical images; PSNR (dB) has no top.
            return 1.0 if not self.metric.lower_is_better and not self.metric.unit else None

        def update(self, x: Any, y: Any) -> None:
            """Add the values ``metric.values(x, y)`` of this batch to the sum and the count."""
            values = self.metric.values(x, y)
            if values.ndim != 1:
                raise InputError(f"{self.metric.name}: the torchmetrics metric needs one value per image, got shape "
                                 f"{tuple(values.shape)}")
            total, count = getattr(self, self.sum_state), getattr(self, self.count_state)
            if values.device != total.device:
                raise InputError(f"{self.metric.name}: the inputs are on {values.device} but the torchmetrics "
                                 f"metric is on {total.device}: move it with .to({str(values.device)!r})")
            setattr(self, self.sum_state, total + values.sum(dtype=torch.float64))
            setattr(self, self.count_state, count + values.shape[0])

        def compute(self) -> torch.Tensor:
            """The mean value over every image added (summed across ranks by torchmetrics), float64."""
            return getattr(self, self.sum_state) / getattr(self, self.count_state)

        def _apply(self, fn: Any, exclude_state: Any = ()) -> TorchMetricAdapter:
            # The states follow the device, never a dtype: a float16 sum would lose the values.
            super()._apply(fn, exclude_state=(*exclude_state, self.sum_state, self.count_state))
            for name in (self.sum_state, self.count_state):
                setattr(self, name, getattr(self, name).to(self.device))
                self._defaults[name] = cast(torch.Tensor, self._defaults[name]).to(self.device)
            return self

    TorchMetricAdapter.__qualname__ = "TorchMetricAdapter"
    return TorchMetricAdapter
