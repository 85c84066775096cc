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
``colour_doc``         what it does with RGB and grey, in words, for listings
``symmetric``          m(x, y) == m(y, x); False means x is the reference (or not known)
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

import functools
import math
import typing
from collections.abc import Callable
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
    check_values: bool = True,
) -> None:
    """Raise :class:`InputError` unless ``x`` and ``y`` are a valid pair of image batches.

    Checks: tensors, floating dtype, 4 dimensions, equal shapes, accepted channel count,
    ``H, W >= min_size`` (metadata only, no device work); with ``check_values``, also finite
    values inside ``value_range`` (a relative slack of 1e-5 absorbs float rounding of e.g.
    ``x * 2 - 1``; anything beyond is refused rather than silently giving a wrong number).
    The value check reads the data (a device sync per call on a GPU); a metric built with
    ``validate_args=False`` skips it.
    """
    _check_batches(x, y, channels=channels, min_size=min_size, metric=metric, eight_bit=False)
    if not check_values:
        return
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


def cached_table(maxsize: int | None = 16):
    """``functools.lru_cache`` for the functions that build a metric's constant tensors (filter
    banks, resize and pyramid matrices): each is built outside inference mode and without
    autograd, because the cache outlives the call, and a tensor first made under
    ``torch.inference_mode()`` (an evaluation loop) could not enter a later autograd graph (a
    training loop)."""
    def decorate(build):
        @functools.wraps(build)
        def outside_inference(*args):
            with torch.inference_mode(False), torch.no_grad():
                return build(*args)
        return functools.lru_cache(maxsize=maxsize)(outside_inference)
    return decorate


def check_choice(metric: str, option: str, value: Any, choices) -> None:
    """Raise :class:`InputError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InputError(f"{metric}: option {option} must be one of {', '.join(map(str, choices))}, got {value!r}")


#: The evaluation loop's states (:meth:`Metric.update`): what the mean and its t-interval need.
STATE_NAMES = ("values_sum", "values_sum_sq", "values_count")


class Metric(nn.Module):
    """Base class: validated ``forward(x, y) -> (N,)``; subclasses implement ``formula``.

    **Device and dtype.** A metric moved with ``.to(device)``, ``.to(dtype)``, ``.double()``,
    ``.cuda()``, ... (directly or as part of a larger module) stays there and computes there:
    floating inputs are cast to the dtype it was moved to, and an input on another device is
    refused with one line naming both devices. A metric never moved follows its inputs.

    **Evaluation loop.** ``update(x, y)`` adds each batch's values to three tensor states on the
    metric's device (float64 sum, sum of squares, int64 count: constant memory, no host sync);
    ``compute()`` summarises them (mean and 95% t-interval), summed across the ranks of an
    initialised ``torch.distributed`` group with ``all_reduce``; ``reset()`` zeroes them. As in
    torchmetrics, the states are not in ``state_dict`` unless :meth:`persistent` says so.

    ``validate_args=False`` skips the per-call checks that read the input's values (finite, in
    range: a device sync per call); shapes and types are still checked, and files are still
    read into the declared range.
    """

    name: ClassVar[str] = "metric"
    lower_is_better: ClassVar[bool] = True
    differentiable: ClassVar[bool] = True
    # Not a ClassVar: a metric may set its own per instance (LPIPS per net, SSIM per convention).
    min_size: int = 1
    channels: ClassVar[tuple[int, ...]] = (1, 3)
    input_range_doc: ClassVar[str] = "[0, data_range], data_range=1"
    #: What the metric does with RGB and grey input, in words, for listings.
    colour_doc: ClassVar[str] = "RGB or grey"
    #: ``m(x, y) == m(y, x)`` (to rounding): a distance matrix of a set against itself then
    #: computes one triangle. False for metrics where ``x`` is the reference, and by default.
    symmetric: ClassVar[bool] = False
    #: Unit of the metric's own value, for tables ("dB" for PSNR); empty when it has none.
    unit: ClassVar[str] = ""
    #: What :meth:`to_distance` gives, in short, for labels ("mse" for PSNR, "dssim" for SSIM);
    #: None when the value already is the distance. See ``registry.distance_label``.
    distance_name: ClassVar[str | None] = None
    #: ``(role, path, stat key when read)`` of each weight file the metric was built from; what a
    #: cache of its results is keyed on besides :attr:`spec` (``percepmetric.weights.content_identity``).
    weight_files: tuple[tuple[str, str, tuple], ...] = ()

    def __init__(self, data_range: float = 1.0, reduction: Reduction = "none", validate_args: bool = True) -> None:
        super().__init__()
        if not isinstance(data_range, (int, float)) or not data_range > 0:
            raise InputError(f"{self.name}: data_range must be a positive number, got {data_range!r}")
        if not isinstance(validate_args, bool):
            raise InputError(f"{self.name}: validate_args must be True or False, got {validate_args!r}")
        self.data_range = float(data_range)
        # Resolved options, defaults included: they make ``spec``, the metric's identity.
        # ``reduction`` and ``validate_args`` are not among them: they change what forward
        # returns or refuses, not the values.
        self.options: dict[str, Any] = {"data_range": self.data_range}
        self.reduction: Reduction = check_reduction(reduction)
        self.validate_args = validate_args
        # (device, dtype) the user moved the metric to; None where they did not say.
        self._placement: tuple[torch.device | None, torch.dtype | None] = (None, None)
        self._moving_itself = False
        with torch.inference_mode(False):  # plain tensors, whatever mode the metric is built in
            for state, dtype in zip(STATE_NAMES, (torch.float64, torch.float64, torch.int64)):
                self.register_buffer(state, torch.zeros((), dtype=dtype), persistent=False)

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

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items()))

    # -- where the metric computes: the user's .to() is kept

    @property
    def placement(self) -> tuple[torch.device | None, torch.dtype | None]:
        """``(device, dtype)`` the user moved this metric to with ``.to()`` & co. (None for what
        they never set): there it stays, whatever the inputs."""
        return self._placement

    @property
    def moved_by_user(self) -> bool:
        return self._placement != (None, None)

    def follow_input(self, device: torch.device, dtype: torch.dtype | None = None) -> None:
        """Move the metric's parameters and buffers to ``device`` (and ``dtype``) for an input
        there, unless the user placed the metric (then nothing moves). Not a placement: the
        next input may move it again. Outside inference mode, so that the moved parameters are
        plain tensors that may take part in a backward pass later."""
        placed_device, placed_dtype = self._placement
        device = placed_device if placed_device is not None else device
        dtype = placed_dtype if placed_dtype is not None else dtype
        self._moving_itself = True
        try:
            with torch.inference_mode(False), torch.no_grad():
                self.to(device) if dtype is None else self.to(device=device, dtype=dtype)
        finally:
            self._moving_itself = False

    def _apply(self, fn, recurse=True):
        # The states keep float64/int64 whatever dtype the metric is moved to (a float16 sum
        # would lose the values); they follow the device.
        states = {name: self._buffers.pop(name) for name in STATE_NAMES if name in self._buffers}
        try:
            result = super()._apply(fn, recurse)
        finally:
            device, dtype = _conversion_target(fn)
            for name, state in states.items():
                self._buffers[name] = state if device is None or state is None else state.to(_state_device(device))
        if not self._moving_itself:
            old_device, old_dtype = self._placement
            self._placement = (device if device is not None else old_device,
                               dtype if dtype is not None else old_dtype)
        return result

    def _placed(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The inputs where a placed metric computes: cast to its dtype; on another device, refused."""
        device, dtype = self._placement
        if device is not None:
            for t in tensors:
                if t.device.type != device.type or (device.index is not None and t.device.index != device.index):
                    raise InputError(f"{self.name}: the metric was moved to {device} but an input is on {t.device} "
                                     f"(move the input with .to({str(device)!r}), or the metric)")
        if dtype is not None:
            tensors = tuple(t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t for t in tensors)
        return tensors

    # -- validation and the values

    def check(self, x: torch.Tensor, y: torch.Tensor) -> None:
        check_pair(x, y, value_range=self.value_range, channels=self.channels, min_size=self.min_size, metric=self.name,
                   check_values=self.validate_args)

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
        Two float dtypes are brought to their common one, or to the dtype the metric was
        moved to.

        Without inputs or parameters that require grad the formula runs under ``no_grad``
        (not ``inference_mode``): the result is an ordinary tensor that may enter an autograd
        graph later, e.g. ``(metric(x, y) * w).sum().backward()`` with ``w`` requiring grad.
        """
        return self.validated_call(self.formula, x, y)

    def validated_call(self, compute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: Any,
                       y: Any) -> torch.Tensor:
        """``compute(x, y)`` on the inputs as :meth:`values` takes them: read, checked, placed on
        the metric's device and common dtype, under ``no_grad`` unless a graph is wanted. For a
        metric's other outputs, e.g. a ``distance_map``."""
        x, y = _as_tensors(("x", x), ("y", y), coded_range=lambda: self.value_range)
        self.check(x, y)
        x, y = self._placed(*promote_to_common_dtype(x, y))
        if self._wants_grad(x, y):
            return compute(x, y)
        with torch.no_grad():
            return compute(x, y)

    def triplet_values(self, ref: torch.Tensor, p0: torch.Tensor,
                       p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(value(ref, p0), value(ref, p1))``, each ``(N,)``: the 2AFC benchmark's question.

        Validated like :meth:`forward`. Metrics that can reuse work on ``ref`` (its colour
        conversion, its network features) override :meth:`compute_triplet`.
        """
        ref, p0, p1 = _as_tensors(("ref", ref), ("p0", p0), ("p1", p1), coded_range=lambda: self.value_range)
        self.check(ref, p0)
        self.check(ref, p1)
        ref, p0, p1 = self._placed(*promote_to_common_dtype(ref, p0, p1))
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
        ref, others = _as_tensors(("ref", ref), ("others", others), coded_range=lambda: self.value_range)
        if ref.shape[0] != 1:
            raise InputError(f"{self.name}: ref must be one image (1,C,H,W), got shape {tuple(ref.shape)}")
        expanded = ref.expand(others.shape[0], *ref.shape[1:])
        self.check(expanded, others)
        expanded, others = self._placed(*promote_to_common_dtype(expanded, others))
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
        """Add this batch's values (:meth:`values`, detached) to the states: their float64 sum
        and sum of squares and their count, on the metric's device. Constant memory, and no
        host synchronisation beyond what :meth:`values` does."""
        values = self.values(x, y).detach()
        if values.ndim != 1:
            raise InputError(f"{self.name}: update needs one value per image, got shape {tuple(values.shape)} "
                             "(spatial maps have no single value: use spatial=False)")
        states = self._states()
        if not self.moved_by_user and states[0].device != _state_device(values.device):
            # A metric the user never placed keeps its states where its values are computed.
            with torch.inference_mode(False):
                for name, state in zip(STATE_NAMES, states):
                    self._buffers[name] = state.to(_state_device(values.device))
            states = self._states()
        v = values.to(device=states[0].device, dtype=torch.float64)
        with torch.no_grad():
            states[0].add_(v.sum())
            states[1].add_((v * v).sum())
            states[2].add_(v.numel())

    def _states(self) -> list[torch.Tensor]:
        """The evaluation-loop states, in :data:`STATE_NAMES` order."""
        return [typing.cast(torch.Tensor, self._buffers[name]) for name in STATE_NAMES]

    def reset(self) -> None:
        """Zero the states :meth:`update` added to."""
        with torch.no_grad():
            for state in self._states():
                state.zero_()

    def persistent(self, mode: bool = True) -> None:
        """Whether the evaluation-loop states go into ``state_dict`` (not by default, as in
        torchmetrics). A ``state_dict`` without them (an older checkpoint, or saved with
        ``persistent(False)``) still loads: the states are then left as they are."""
        for name in STATE_NAMES:
            if mode:
                self._non_persistent_buffers_set.discard(name)
            else:
                self._non_persistent_buffers_set.add(name)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        before = set(missing_keys)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        optional = {prefix + name for name in STATE_NAMES}
        missing_keys[:] = [k for k in missing_keys if k in before or k not in optional]

    def compute(self) -> dict[str, float]:
        """The summary of every value :meth:`update` added (``mean``, ``ci_low``, ``ci_high``,
        ``n``; see :func:`summarize_moments`); under an initialised ``torch.distributed`` process
        group, of the values of every rank (the states are summed with ``all_reduce``), so each
        rank gets the same numbers."""
        total, total_sq, count = self._states()
        totals = torch.stack([total, total_sq, count.to(torch.float64)])
        summed = _sum_across_ranks(totals).tolist()
        return summarize_moments(summed[0], summed[1], int(summed[2]), what=self.name)

    def as_loss(self, reduction: Reduction = "mean") -> MetricLoss:
        """This metric as a loss: a module whose value is :meth:`to_distance` of the metric's
        values (lower = more alike, 0 for x == y), reduced by ``reduction`` (``"mean"``)."""
        return MetricLoss(self, reduction)

    def to_distance(self, value: torch.Tensor) -> torch.Tensor:
        """Map the metric's own value to a distance: lower means more alike, 0 for x == y.

        Identity for metrics whose value already is a distance; similarity indices in [0, 1]
        derive from :class:`SimilarityIndex` (``1 - value``), others override it.
        """
        if self.lower_is_better:
            return value
        raise NotImplementedError(f"{self.name} must define to_distance")


class SimilarityIndex(Metric):
    """A similarity index that is 1 for identical images (FSIM, HaarPSI, SR-SIM, VSI, VIF,
    VIF-P, IW-SSIM, CW-SSIM, DSS): higher is better, and its distance is ``1 - value`` (0 for
    identical images; negative where an index exceeds 1, as VIF does for a contrast
    enhancement). Subclasses name it in ``distance_name`` (``"1-fsim"``)."""

    lower_is_better = False

    def to_distance(self, value: torch.Tensor) -> torch.Tensor:
        return 1.0 - value


def _conversion_target(fn: Any) -> tuple[torch.device | None, torch.dtype | None]:
    """What a conversion ``Module._apply`` runs (``.to(...)``, ``.cuda()``, ``.double()``, ...)
    does to tensors: the device it moves them to and the floating dtype it casts them to, each
    None when the conversion leaves it alone. Found by converting empty probes: a tensor on
    the meta device keeps its device under a pure dtype change and cannot be copied to a real
    one; two probes of different dtypes end in one dtype only under a cast."""
    moved = fn(torch.empty(0))
    if not isinstance(moved, torch.Tensor):
        return None, None
    if moved.device.type != "cpu":
        device: torch.device | None = moved.device
    else:
        try:
            device = None if fn(torch.empty(0, device="meta")).device.type == "meta" else moved.device
        except (NotImplementedError, RuntimeError):
            device = moved.device
    try:
        single, double = fn(torch.empty(0, dtype=torch.float32)), fn(torch.empty(0, dtype=torch.float64))
    except (NotImplementedError, RuntimeError, TypeError):
        return device, None
    dtype = single.dtype if single.dtype == double.dtype else None
    return device, dtype


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


def summarize_moments(total: float, total_sq: float, n: int, what: str = "metric") -> dict[str, float]:
    """Mean of ``n`` values from their sum and sum of squares, with its 95% t-interval:
    ``{"mean", "ci_low", "ci_high", "n"}``.

    The interval is Student's t (``mean +- t_{0.975, n-1} * sd / sqrt(n)``, ``sd`` the sample
    standard deviation ``sqrt((S2 - S^2/n) / (n - 1))``): exact under normal values and close
    for evaluation-set means by the central limit theorem; deterministic and closed-form, so
    every rank of a distributed run and every rerun gives the same numbers without a
    resampling seed. NaN when ``n < 2`` (no spread to estimate) or when a value is not finite
    (PSNR of identical images is +inf, so the mean is +inf).
    """
    from ..student_t import t_quantile

    if n == 0:
        raise InputError(f"{what}: compute() before any update(x, y): there are no values to summarise")
    mean = total / n
    if n < 2 or not math.isfinite(mean) or not math.isfinite(total_sq):
        return {"mean": mean, "ci_low": math.nan, "ci_high": math.nan, "n": n}
    variance = max(total_sq - total * mean, 0.0) / (n - 1)
    half = t_quantile(0.975, n - 1) * math.sqrt(variance / n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def _state_device(device: torch.device | str) -> torch.device:
    """Where the evaluation-loop states live for a metric on ``device``: there, except on
    Apple's MPS, which has no float64 (the states then stay on the CPU)."""
    device = torch.device(device)
    return torch.device("cpu") if device.type == "mps" else device


def _sum_across_ranks(totals: torch.Tensor) -> torch.Tensor:
    """``totals`` summed over the ranks of an initialised process group (``all_reduce``, a copy:
    the local states are left as they are), else ``totals``."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return totals
    reduced = totals.clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced


def _as_tensors(*named: tuple[str, Any], coded_range: Callable[[], tuple[float, float]]) -> list[torch.Tensor]:
    """Each input as a tensor: tensors untouched (the checks judge them), anything else read by
    :func:`~percepmetric.io.as_batch` (integer codes spanning the range ``coded_range()`` gives,
    the metric's ``value_range``, asked only then: a metric that takes no coded images, such as
    HDR-FLIP, refuses there) and put on the device of the first input that is a tensor."""
    from ..io import as_batch

    device = next((value.device for _, value in named if isinstance(value, torch.Tensor)), None)
    tensors = []
    for label, value in named:
        if not isinstance(value, torch.Tensor):
            value = as_batch(value, label, coded_range())
            value = value if device is None else value.to(device)
        tensors.append(value)
    return tensors
