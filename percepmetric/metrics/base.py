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

Subclasses implement :meth:`compute` (inputs already validated) and, when higher is
better, :meth:`to_distance` and :attr:`distance_name`. Validation happens once, in
:meth:`forward`, which also takes what :func:`~percepmetric.io.as_batch` reads (NumPy arrays,
PIL images, paths) and brings two float dtypes to their common one (float16 with float32 gives
float32, float32 with float64 gives float64, as PyTorch's own arithmetic does).

The benchmark hands metrics 8-bit images as decoded (uint8, channels last) through
:meth:`Metric.values_8bit` / :meth:`Metric.triplet_values_8bit`. By default they convert
to float and run :meth:`compute`; metrics whose formula can run on the integer codes
(L2 with a colour table, SSIM's box sums) override ``compute_8bit`` /
``compute_triplet_8bit``, tested equal to the float path.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import InputError


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
        raise InputError(f"{metric}: expected {' or '.join(map(str, channels))} channels, got {c} (shape {tuple(x.shape)})")
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
    min_size: ClassVar[int] = 1
    channels: ClassVar[tuple[int, ...]] = (1, 3)
    input_range_doc: ClassVar[str] = "[0, data_range], data_range=1 by default"
    #: Unit of the metric's own value, for tables ("dB" for PSNR); empty when it has none.
    unit: ClassVar[str] = ""
    #: What :meth:`to_distance` gives, in short, for labels ("mse" for PSNR, "dssim" for SSIM);
    #: None when the value already is the distance. See ``registry.distance_label``.
    distance_name: ClassVar[str | None] = None

    def __init__(self, data_range: float = 1.0) -> None:
        super().__init__()
        if not isinstance(data_range, (int, float)) or not data_range > 0:
            raise InputError(f"{self.name}: data_range must be a positive number, got {data_range!r}")
        self.data_range = float(data_range)
        # Resolved options, defaults included: they make ``spec``, the metric's identity.
        self.options: dict[str, Any] = {"data_range": self.data_range}

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
        return torch.is_grad_enabled() and (
            any(t.requires_grad for t in tensors) or any(p.requires_grad for p in self.parameters())
        )

    def forward(self, x: Any, y: Any) -> torch.Tensor:
        """The metric's value ``(N,)`` for two image batches.

        ``x``, ``y``: float tensors ``(N,C,H,W)``, used as they are; or anything
        :func:`~percepmetric.io.as_batch` reads (NumPy arrays and PIL images, channel-last,
        uint8 scaled to [0, 1]; image paths), put on the other input's device when that one
        is a tensor. Two float dtypes are brought to their common one.
        """
        x, y = _as_tensors(("x", x), ("y", y))
        self.check(x, y)
        x, y = promote_to_common_dtype(x, y)
        if self._wants_grad(x, y):
            return self.compute(x, y)
        with torch.inference_mode():
            return self.compute(x, y)

    def triplet_values(self, ref: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(value(ref, p0), value(ref, p1))``, each ``(N,)``: the 2AFC benchmark's question.

        Validated like :meth:`forward`. Metrics that can reuse work on ``ref`` (its colour
        conversion, its network features) override :meth:`compute_triplet`.
        """
        ref, p0, p1 = _as_tensors(("ref", ref), ("p0", p0), ("p1", p1))
        self.check(ref, p0)
        self.check(ref, p1)
        ref, p0, p1 = promote_to_common_dtype(ref, p0, p1)
        if self._wants_grad(ref, p0, p1):
            return self.compute_triplet(ref, p0, p1)
        with torch.inference_mode():
            return self.compute_triplet(ref, p0, p1)

    def compute_triplet(self, ref: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = ref.shape[0]
        values = self.compute(torch.cat((ref, ref)), torch.cat((p0, p1)))
        return values[:n], values[n:]

    # -- 8-bit images: the benchmark's input (decoded image files, never leaving uint8 until here)

    def values_8bit(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The metric's values ``(N,)`` for uint8 batches ``(N,H,W,C)`` (channels last, as image
        files decode), where 0..255 spans :attr:`value_range`: the same numbers as
        ``forward`` on ``from_8bit(x), from_8bit(y)``, to float rounding. No gradient."""
        check_8bit_pair(x, y, channels=self.channels, min_size=self.min_size, metric=self.name)
        with torch.inference_mode():
            return self.compute_8bit(x, y)

    def triplet_values_8bit(self, ref: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor):
        """:meth:`triplet_values` for uint8 batches ``(N,H,W,C)``, as :meth:`values_8bit`."""
        check_8bit_pair(ref, p0, channels=self.channels, min_size=self.min_size, metric=self.name)
        check_8bit_pair(ref, p1, channels=self.channels, min_size=self.min_size, metric=self.name)
        with torch.inference_mode():
            return self.compute_triplet_8bit(ref, p0, p1)

    def from_8bit(self, codes: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N,H,W,C)`` -> float32 ``(N,C,H,W)`` in :attr:`value_range` (``code / 255``
        mapped linearly), with channels-last strides (no copy to change the layout)."""
        lo, hi = self.value_range
        x = codes.permute(0, 3, 1, 2).float().div_(255.0)
        return x if (lo, hi) == (0.0, 1.0) else x.mul_(hi - lo).add_(lo)

    def compute_8bit(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Override with an integer path where the formula allows one (see ``pixel``, ``ssim``)."""
        return self.compute(self.from_8bit(x), self.from_8bit(y))

    def compute_triplet_8bit(self, ref: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor):
        return self.compute_triplet(*(self.from_8bit(t) for t in (ref, p0, p1)))

    def compute(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The formula, on validated inputs. Returns ``(N,)``."""
        raise NotImplementedError

    def to_distance(self, value: torch.Tensor) -> torch.Tensor:
        """Map the metric's own value to a distance: lower means more alike, 0 for x == y.

        Identity for metrics whose value already is a distance; similarity metrics override it.
        """
        if self.lower_is_better:
            return value
        raise NotImplementedError(f"{self.name} must define to_distance")


def _as_tensors(*named: tuple[str, Any]) -> list[torch.Tensor]:
    """Each input as a tensor: tensors untouched (the checks judge them), anything else read by
    :func:`~percepmetric.io.as_batch` and put on the device of the first input that is a tensor."""
    from ..io import as_batch

    device = next((value.device for _, value in named if isinstance(value, torch.Tensor)), None)
    tensors = []
    for label, value in named:
        if not isinstance(value, torch.Tensor):
            value = as_batch(value, label)
            value = value if device is None else value.to(device)
        tensors.append(value)
    return tensors
