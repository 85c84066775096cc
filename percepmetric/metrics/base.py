"""The one interface every metric implements.

A metric is a ``torch.nn.Module`` that maps two batches ``x, y`` of shape ``(N,C,H,W)``
to an ``(N,)`` tensor of its own value (PSNR in dB, SSIM in [-1, 1], LPIPS distance, ...).
Each carries its metadata as class attributes, so the registry, the CLI and the benchmark
can treat all of them alike:

``name``               registry name, e.g. ``"ssim"``
``lower_is_better``    direction of the metric's own value
``differentiable``     gradients flow to the inputs
``min_size``           smallest H and W the metric accepts
``channels``           accepted channel counts
``input_range_doc``    the input range, in words, for listings

Subclasses write their formula as ``formula(self, x, y)`` (inputs already validated) and,
when higher is better, :meth:`to_distance` and :attr:`distance_name`. ``compute()`` is the
evaluation-loop summary every metric has (``update(x, y)``, ``compute()``, ``reset()``, as
torchmetrics users expect). Validation happens once,
in :meth:`values`, which also takes what :func:`~percepmetric.io.as_batch` reads (NumPy arrays,
PIL images, paths) and brings two float dtypes to their common one (float16 with float32 gives
float32, float32 with float64 gives float64, as PyTorch's own arithmetic does).
:meth:`forward` is :meth:`values` reduced as the ``reduction`` option says; :meth:`as_loss`
wraps a metric into a :class:`MetricLoss` whose value is the distance to minimise.

8-bit images as decoded (uint8, channels last), the benchmark's input, reach a metric through
:mod:`percepmetric.metrics.eight_bit`, which converts them to float or, for the formulas that
run on the integer codes, takes a faster path of its own; a metric itself only validates,
computes and maps its value to a distance. :func:`check_8bit_pair` validates such batches.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import InputError
from ..options import Reduction, check_reduction, reduce_values
from .budget import wants_grad


def check_pair(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    value_range: tuple[float, float] = (0.0, 1.0),
    channels: tuple[int, ...] = (1, 3),
    min_size: int = 1,
    metric: str = "metric",
) -> None:
    """Raise :class:`InputError` unless ``x`` and ``y`` are a valid pair of image batches.

    Checks: tensors, floating dtype, 4 dimensions, equal shapes, accepted channel count,
    ``H, W >= min_size``, finite values inside ``value_range`` (a relative slack of 1e-5
    absorbs float rounding of e.g. ``x * 2 - 1``; anything beyond is refused rather than
    silently giving a wrong number).
    """
    _check_batches(x, y, channels=channels, min_size=min_size, metric=metric, eight_bit=False)
    lo, hi = value_range
    slack = 1e-5 * (hi - lo)
    for label, t in (("x", x), ("y", y)):
        t = t.detach()
        t_min, t_max = torch.aminmax(t)
        if not (torch.isfinite(t_min) and torch.isfinite(t_max)):
            raise InputError(f"{metric}: {label} contains NaN or infinite values")
        if t_min < lo - slack or t_max > hi + slack:
            raise InputError(
                f"{metric}: {label} has values in [{t_min.item():.4g}, {t_max.item():.4g}], "
                f"outside the declared input range [{lo:g}, {hi:g}] (set data_range / input_range to match your data)"
            )


def promote_to_common_dtype(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors in their common dtype (``torch.promote_types``), so that every metric takes a
    float32 image with a float64 one, as PyTorch's arithmetic does, instead of some failing in
    a convolution or matrix product. Tensors already in that dtype are returned as they are;
    gradients flow through the cast."""
    common = tensors[0].dtype
    for t in tensors[1:]:
        common = torch.promote_types(common, t.dtype)
    return tuple(t if t.dtype == common else t.to(common) for t in tensors)


def check_8bit_pair(
    x: torch.Tensor, y: torch.Tensor, *, channels: tuple[int, ...] = (1, 3), min_size: int = 1, metric: str = "metric"
) -> None:
    """:func:`check_pair` for 8-bit batches: uint8 ``(N,H,W,C)`` (channels last, as image files
    decode). Their values cannot leave the range, so only types and shapes are checked."""
    _check_batches(x, y, channels=channels, min_size=min_size, metric=metric, eight_bit=True)


def _check_batches(x, y, *, channels, min_size, metric, eight_bit: bool) -> None:
    layout = "(N,H,W,C)" if eight_bit else "(N,C,H,W)"
    for label, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{metric}: {label} must be a torch.Tensor, got {type(t).__name__}")
        if eight_bit and t.dtype != torch.uint8:
            raise InputError(f"{metric}: {label} must be a uint8 tensor (8-bit images), got {t.dtype}")
        if not eight_bit and not t.is_floating_point():
            raise InputError(f"{metric}: {label} must be a float tensor, got {t.dtype}")
        if t.ndim != 4:
            raise InputError(f"{metric}: {label} must have shape {layout}, got {tuple(t.shape)}")
    if x.shape != y.shape:
        raise InputError(f"{metric}: x and y differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.device != y.device:
        raise InputError(f"{metric}: x and y are on different devices: {x.device} vs {y.device}")
    n, c, h, w = (x.shape[0], x.shape[3], x.shape[1], x.shape[2]) if eight_bit else x.shape
    if n == 0:
        raise InputError(f"{metric}: empty batch")
    if c not in channels:
        raise InputError(
            f"{metric}: expected {' or '.join(map(str, channels))} channels, got {c} (shape {tuple(x.shape)})")
    if h < min_size or w < min_size:
        raise InputError(f"{metric}: images of {h}x{w} are smaller than the {min_size}x{min_size} this metric needs")


def check_choice(metric: str, option: str, value: Any, choices) -> None:
    """Raise :class:`InputError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InputError(f"{metric}: option {option} must be one of {', '.join(map(str, choices))}, got {value!r}")


class Metric(nn.Module):
    """Base class: validated ``forward(x, y) -> (N,)``; subclasses implement ``compute``."""

    name: ClassVar[str] = "metric"
    lower_is_better: ClassVar[bool] = True
    differentiable: ClassVar[bool] = True
    # Not a ClassVar: a metric may set its own per instance (LPIPS per net, SSIM per convention).
    min_size: int = 1
    channels: ClassVar[tuple[int, ...]] = (1, 3)
    input_range_doc: ClassVar[str] = "[0, data_range], data_range=1 by default"
    #: Unit of the metric's own value, for tables ("dB" for PSNR); empty when it has none.
    unit: ClassVar[str] = ""
    #: What :meth:`to_distance` gives, in short, for labels ("mse" for PSNR, "dssim" for SSIM);
    #: None when the value already is the distance. See ``registry.distance_label``.
    distance_name: ClassVar[str | None] = None

    def __init__(self, data_range: float = 1.0, reduction: Reduction = "none") -> None:
        super().__init__()
        if not isinstance(data_range, (int, float)) or not data_range > 0:
            raise InputError(f"{self.name}: data_range must be a positive number, got {data_range!r}")
        self.data_range = float(data_range)
        # Resolved options, defaults included: they make ``spec``, the metric's identity.
        # ``reduction`` is not among them: it changes what forward returns, not the values.
        self.options: dict[str, Any] = {"data_range": self.data_range}
        self.reduction: Reduction = check_reduction(reduction)
        self._accumulated: list[torch.Tensor] = []

    @property
    def value_range(self) -> tuple[float, float]:
        """Range the inputs must lie in."""
        return (0.0, self.data_range)

    @property
    def spec(self) -> str:
        """Stable identity string, e.g. ``ssim(convention=matlab,data_range=1.0,downsample=True)``.

        Caches and report rows are keyed by it, so changing any option never reuses a stale result.
        """
        args = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.name}({args})"

    @property
    def cache_identity(self) -> str:
        """What keys cached results (the benchmark's distances): :attr:`spec`, extended by metrics
        built from weight files with a hash of those files' content (``spec`` only names them)."""
        return self.spec

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items()))

    def check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        check_pair(x, y, value_range=self.value_range, channels=self.channels, min_size=self.min_size, metric=self.name)

    def _wants_grad(self, *tensors: torch.Tensor) -> bool:
        return wants_grad(*tensors, *self.parameters())

    def forward(self, x: Any, y: Any) -> torch.Tensor:
        """The metric's values :meth:`values` reduced by ``reduction``: ``(N,)`` for ``"none"``
        (the default), one number for ``"mean"`` or ``"sum"``."""
        return reduce_values(self.values(x, y), self.reduction)

    def values(self, x: Any, y: Any) -> torch.Tensor:
        """The metric's value ``(N,)`` for two image batches, one per image pair.

        ``x``, ``y``: float tensors ``(N,C,H,W)``, used as they are; or anything
        :func:`~percepmetric.io.as_batch` reads (NumPy arrays and PIL images, channel-last;
        image paths; their integer codes span :attr:`value_range`, so ``data_range=255``
        reads a file as 0..255), put on the other input's device when that one is a tensor.
        Two float dtypes are brought to their common one.

        Without inputs or parameters that require grad the formula runs under ``no_grad``
        (not ``inference_mode``): the result is an ordinary tensor that may enter an autograd
        graph later, e.g. ``(metric(x, y) * w).sum().backward()`` with ``w`` requiring grad.
        """
        x, y = _as_tensors(("x", x), ("y", y), value_range=self.value_range)
        self.check(x, y)
        x, y = promote_to_common_dtype(x, y)
        if self._wants_grad(x, y):
            return self.formula(x, y)
        with torch.no_grad():
            return self.formula(x, y)

    def triplet_values(self, ref: torch.Tensor, p0: torch.Tensor,
                       p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(value(ref, p0), value(ref, p1))``, each ``(N,)``: the 2AFC benchmark's question.

        Validated like :meth:`forward`. Metrics that can reuse work on ``ref`` (its colour
        conversion, its network features) override :meth:`compute_triplet`.
        """
        ref, p0, p1 = _as_tensors(("ref", ref), ("p0", p0), ("p1", p1), value_range=self.value_range)
        self.check(ref, p0)
        self.check(ref, p1)
        ref, p0, p1 = promote_to_common_dtype(ref, p0, p1)
        if self._wants_grad(ref, p0, p1):
            return self.compute_triplet(ref, p0, p1)
        with torch.no_grad():
            return self.compute_triplet(ref, p0, p1)

    def compute_triplet(self, ref: torch.Tensor, p0: torch.Tensor,
                        p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = ref.shape[0]
        values = self.formula(torch.cat((ref, ref)), torch.cat((p0, p1)))
        return values[:n], values[n:]

    def values_to_reference(self, ref: Any, others: Any) -> torch.Tensor:
        """``value(ref, o)`` for each image ``o`` of ``others`` ``(K,C,H,W)``, ``ref`` one image
        ``(1,C,H,W)``: ``(K,)``, what a mean-opinion-score benchmark asks of a reference and its
        distortions. Validated like :meth:`forward`. Metrics that can reuse work on ``ref`` (its
        network features) override :meth:`compute_to_reference`.
        """
        ref, others = _as_tensors(("ref", ref), ("others", others), value_range=self.value_range)
        if ref.shape[0] != 1:
            raise InputError(f"{self.name}: ref must be one image (1,C,H,W), got shape {tuple(ref.shape)}")
        expanded = ref.expand(others.shape[0], *ref.shape[1:])
        self.check(expanded, others)
        expanded, others = promote_to_common_dtype(expanded, others)
        if self._wants_grad(expanded, others):
            return self.compute_to_reference(expanded, others)
        with torch.no_grad():
            return self.compute_to_reference(expanded, others)

    def compute_to_reference(self, ref: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        """:meth:`values_to_reference` on validated inputs; ``ref`` is the one reference expanded
        (a view, no copy) to ``others``'s batch size."""
        return self.formula(ref, others)

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The metric's formula on validated inputs, ``(N,)``: what each subclass defines."""
        raise NotImplementedError

    # -- the evaluation loop: update(x, y) per batch, compute() at the end, reset() to start over

    def update(self, x: Any, y: Any) -> None:
        """Keep the per-item values :meth:`values` gives for this batch (on the CPU, in float64,
        detached), for :meth:`compute`."""
        values = self.values(x, y).detach()
        if values.ndim != 1:
            raise InputError(f"{self.name}: update needs one value per image, got shape {tuple(values.shape)} "
                             "(spatial maps have no single value: use spatial=False)")
        self._accumulated.append(values.to("cpu", torch.float64))

    def reset(self) -> None:
        """Forget the values :meth:`update` kept."""
        self._accumulated = []

    def compute(self) -> dict[str, float]:
        """The summary of every value :meth:`update` kept, as :func:`summarize_values` gives it
        (``mean``, ``ci_low``, ``ci_high``, ``n``); under an initialised ``torch.distributed``
        process group, of the values of every rank, so each rank gets the same numbers."""
        local = torch.cat(self._accumulated) if self._accumulated else torch.empty(0, dtype=torch.float64)
        return summarize_values(_gather_across_ranks(local), what=self.name)

    def as_loss(self, reduction: Reduction = "mean") -> MetricLoss:
        """This metric as a loss: a module whose value is :meth:`to_distance` of the metric's
        values (lower = more alike, 0 for x == y), reduced by ``reduction`` (``"mean"``)."""
        return MetricLoss(self, reduction)

    def to_distance(self, value: torch.Tensor) -> torch.Tensor:
        """Map the metric's own value to a distance: lower means more alike, 0 for x == y.

        Identity for metrics whose value already is a distance; similarity metrics override it.
        """
        if self.lower_is_better:
            return value
        raise NotImplementedError(f"{self.name} must define to_distance")


class MetricLoss(nn.Module):
    """A metric's distance as a loss to minimise: ``loss(x, y) = reduce(metric.to_distance(metric.values(x, y)))``.

    For SSIM and MS-SSIM that is ``(1 - SSIM) / 2`` (DSSIM), for FSIM ``1 - FSIM``, for PSNR the
    MSE of the images scaled to [0, 1]; L2, L1 and LPIPS are their own distance. Gradients flow
    to inputs that require grad, and stay finite at ``x == y``. ``update``/``compute``/``reset``
    are the wrapped metric's (they summarise its own values).
    """

    def __init__(self, metric: Metric, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.metric = metric
        self.reduction: Reduction = check_reduction(reduction)

    def forward(self, x: Any, y: Any) -> torch.Tensor:
        return reduce_values(self.metric.to_distance(self.metric.values(x, y)), self.reduction)

    def update(self, x: Any, y: Any) -> None:
        self.metric.update(x, y)

    def compute(self) -> dict[str, float]:
        summary: dict[str, float] = self.metric.compute()
        return summary

    def reset(self) -> None:
        self.metric.reset()

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


def summarize_values(values: torch.Tensor, what: str = "metric") -> dict[str, float]:
    """Mean of per-item values ``(n,)`` with its 95% t-interval: ``{"mean", "ci_low", "ci_high", "n"}``.

    The interval is Student's t (``mean +- t_{0.975, n-1} * sd / sqrt(n)``): exact under normal
    values and close for evaluation-set means by the central limit theorem; deterministic and
    closed-form, so every rank of a distributed run and every rerun gives the same numbers
    without a resampling seed. NaN when ``n < 2`` (no spread to estimate) or when a value is
    not finite (PSNR of identical images is +inf, so the mean is +inf).
    """
    from scipy import stats

    n = int(values.numel())
    if n == 0:
        raise InputError(f"{what}: compute() before any update(x, y): there are no values to summarise")
    values = values.to(torch.float64)
    mean = float(values.mean())
    if n < 2 or not math.isfinite(mean):
        return {"mean": mean, "ci_low": math.nan, "ci_high": math.nan, "n": n}
    half = float(stats.t.ppf(0.975, n - 1)) * float(values.std(unbiased=True)) / math.sqrt(n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def _gather_across_ranks(local: torch.Tensor) -> torch.Tensor:
    """Every rank's values in rank order, on every rank (an initialised process group), else ``local``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local
    parts: list[Any] = [None] * dist.get_world_size()
    # Objects, not tensors: ranks may hold different numbers of items, and any backend takes them.
    dist.all_gather_object(parts, local)
    return torch.cat([torch.as_tensor(p, dtype=torch.float64) for p in parts])


def _as_tensors(*named: tuple[str, Any], value_range: tuple[float, float]) -> list[torch.Tensor]:
    """Each input as a tensor: tensors untouched (the checks judge them), anything else read by
    :func:`~percepmetric.io.as_batch` (integer codes spanning the metric's ``value_range``) and
    put on the device of the first input that is a tensor."""
    from ..io import as_batch

    device = next((value.device for _, value in named if isinstance(value, torch.Tensor)), None)
    tensors = []
    for label, value in named:
        if not isinstance(value, torch.Tensor):
            value = as_batch(value, label, value_range)
            value = value if device is None else value.to(device)
        tensors.append(value)
    return tensors
