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

The official v0.1 calibration weights are read at run time from the installed ``lpips``
distribution (``lpips/weights/v0.1/{alex,vgg,squeeze}.pth``, BSD-2-Clause, (c) Richard Zhang,
Phillip Isola, Alexei A. Efros, Eli Shechtman, Oliver Wang); its Python code is never imported.

Cached results are keyed by :attr:`LPIPS.cache_identity`: ``spec`` (readable, it names
``weights=v0.1``) plus a BLAKE2b hash of the content of every weight file the model was built
from (the trunk under ``$TORCH_HOME``, the calibration file, a ``weights=`` checkpoint), so
swapping any of them never reuses a distance computed with the old one. The hashes are taken
when first asked for (bench asks; ``distance`` never does), once per file and process
(:func:`weight_file_digest`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
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
from .base import Metric, check_choice
from .budget import layer_output_shapes, memory_guard, network_activation_bytes

__all__ = [
    "LPIPS",
    "ChannelNormalizedDistance",
    "VARIANTS",
    "LPIPS_SHIFT",
    "LPIPS_SCALE",
    "normalize_channels",
    "official_calibration_path",
    "load_official_calibration",
    "save_lpips_checkpoint",
    "load_lpips_checkpoint",
    "file_digest",
    "weight_file_digest",
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


def official_calibration_path(net: str, version: str = OFFICIAL_VERSION) -> Path:
    """Path of the official calibration file ``lpips/weights/<version>/<net>.pth``.

    Looked up in ``$PERCEPMETRIC_LPIPS_WEIGHTS/<version>/<net>.pth`` if that variable is set,
    else in the installed ``lpips`` distribution (located with :mod:`importlib.metadata`;
    its code is not imported). The file may not exist: see :func:`load_official_calibration`.
    """
    net = canonical_net(net)
    override = os.environ.get("PERCEPMETRIC_LPIPS_WEIGHTS")
    if override:
        return Path(override) / version / f"{net}.pth"
    from importlib import metadata

    try:
        dist = metadata.distribution("lpips")
    except metadata.PackageNotFoundError:
        return Path("<lpips package not installed>") / "lpips" / "weights" / version / f"{net}.pth"
    # str(): typeshed types locate_file's result as a SimplePath protocol, which Path() does not take.
    return Path(str(dist.locate_file(f"lpips/weights/{version}/{net}.pth")))


def load_official_calibration(net: str, version: str = OFFICIAL_VERSION) -> list[torch.Tensor]:
    """The official LPIPS calibration weights ``w_l`` of ``net``: a list of ``(C_l,)`` float32 tensors.

    The reference files hold ``lin<l>.model.1.weight`` tensors of shape ``(1, C_l, 1, 1)``
    (1x1 convolutions). Raises :class:`WeightsNotFoundError` when the file is absent.
    """
    net = canonical_net(net)
    path = official_calibration_path(net, version)
    from ..checkpoints import load_weight_file  # weights_only: a pickled payload is refused, not run

    state = load_weight_file(path, what="LPIPS calibration file", missing=(
        f"LPIPS {version} calibration weights for {net} not found at {path}: they ship with the "
        f"`lpips` package (BSD-2-Clause): pip install lpips==0.1.4, or set PERCEPMETRIC_LPIPS_WEIGHTS "
        f"to a folder holding {version}/{net}.pth"))
    channels = tap_channels(net)
    weights = []
    for layer, c in enumerate(channels):
        w = state.get(f"lin{layer}.model.1.weight") if isinstance(state, dict) else None
        if w is None or w.numel() != c:
            raise InputError(f"{path}: no lin{layer}.model.1.weight of {c} channels for {net}")
        weights.append(w.detach().reshape(c).float().clone())
    return weights


def file_digest(path: str | os.PathLike, length: int = 12) -> str:
    """First ``length`` hex digits of the file's SHA-256 (identifies a weight file in ``spec``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]


_digests: dict[tuple, str] = {}  # file identity (see _stat_key) -> content digest, for this process
_digests_lock = threading.Lock()


def _stat_key(path: str | os.PathLike) -> tuple:
    """What identifies a file's version without reading it: path, size, mtime, inode (and device,
    change time). A file rewritten in place changes at least the change time."""
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns)


def content_identity(spec: str, weight_files: Iterable[tuple[str, str | Path, tuple]]) -> str:
    """``spec`` plus ``role=hash`` of each ``(role, path, stat key when read)`` weight file.

    A file changed on disk since the model read it is not hashed (its bytes are not the ones in
    memory): the identity then names that file as changed and matches no cached result.
    """
    parts = []
    for role, path, loaded in weight_files:
        try:
            current = _stat_key(path)
        except OSError:
            current = None
        if current == loaded:
            parts.append(f"{role}={weight_file_digest(path)}")
        else:
            parts.append(f"{role}=changed-since-read:{path}:{loaded[1:]}")
    return spec + ("|" + ",".join(parts) if parts else "")


def weight_file_digest(path: str | os.PathLike) -> str:
    """``"blake2b:<32 hex>"``: a hash of the file's content, for cache keys.

    Memoised by the file's (path, size, mtime, inode) (:func:`_stat_key`): each file is read once
    per process (AlexNet's 233 MB in about 0.3 s, a 10 MB features-only file in 15 ms), and a
    file changed at the same path is read again.
    """
    key = _stat_key(path)
    with _digests_lock:
        if key in _digests:
            return _digests[key]
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    digest = f"blake2b:{h.hexdigest()}"
    with _digests_lock:
        _digests[key] = digest
    return digest


def _loaded_file(role: str, path: str | os.PathLike) -> tuple[str, str, tuple]:
    """``(role, path, stat key)`` of a weight file as it was when the model read it."""
    return role, str(path), _stat_key(path)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def save_lpips_checkpoint(metric: LPIPS, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``metric``'s weights to ``path`` atomically (temporary file + rename); returns the path.

    Format (a ``torch.save``'d dict)::

        {"format": "percepmetric-lpips", "version": 1, "net": "alex", "variant": "lin",
         "calibration": state dict of metric.calibration ({"0": (C_0,), "1": (C_1,), ...}),
         "trunk": state dict of metric.trunk, or None for lin/baseline on torchvision's ImageNet trunk,
         "options": {...}, "meta": meta or {}}

    ``meta`` should hold plain Python values (str, numbers, bools, lists, dicts) so the file
    loads with ``torch.load(weights_only=True)``.
    """
    path = Path(path)
    # Only lin and baseline keep torchvision's ImageNet trunk unchanged; tune trains it.
    imagenet_trunk = metric.variant in ("lin", "baseline") and metric.trunk_source == "torchvision"
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "net": metric.net,
        "variant": metric.variant,
        "calibration": {k: v.float() for k, v in _cpu_state(metric.calibration).items()},
        "trunk": None if imagenet_trunk else {k: v.float() for k, v in _cpu_state(metric.trunk).items()},
        "options": {"eps": metric.distance.eps, "trunk_source": metric.trunk_source},
        "meta": dict(meta or {}),
    }
    from ..checkpoints import save_checkpoint  # atomic, and the file follows the umask (mkstemp's is 0600)

    return save_checkpoint(state, path)


def load_lpips_checkpoint(path: str | os.PathLike) -> dict:
    """Read and validate a file written by :func:`save_lpips_checkpoint`; returns its dict.

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


class LPIPS(Metric):
    """LPIPS distance (Zhang et al. 2018), v0.1: nets alex/vgg/squeeze, variants baseline/lin/tune/scratch.

    ``LPIPS(net=None, variant=None, weights=None, input_range="0,1", spatial=False,
    precision="auto", data_range=None)``

    - ``net``: ``alex`` (default), ``vgg`` or ``squeeze``; ``variant``: ``lin`` (default),
      ``baseline``, ``tune`` or ``scratch``. Left out, they come from ``weights``' file.
    - ``weights``: ``None``/``"v0.1"`` = the official v0.1 calibration (``lin``); or the path
      of a percepmetric checkpoint (:func:`save_lpips_checkpoint`), needed by tune/scratch.
    - ``data_range``: inputs lie in ``[0, data_range]`` (1 when left out), the option every
      metric shares. ``input_range`` is LPIPS's own: ``"0,1"`` (default), ``"-1,1"`` (the
      convention of the LPIPS code) or ``(lo, hi)``; give one of the two. Inputs outside the
      range are refused. ``.data_range`` is the width of the range (``hi - lo``).
    - ``spatial=True``: ``forward`` returns the ``(N,1,H,W)`` distance map at input resolution
      instead of ``(N,)`` (its mean is close to, not equal to, the scalar distance).
    - ``precision``: ``"auto"`` (or ``"input"``, its name in FSIM) computes the trunk in the
      input's dtype; ``"float32"``, ``"float16"`` or ``"bfloat16"`` runs the trunk in that dtype
      (the distance itself is summed in float32 at least).

    Attributes: ``trunk`` (:class:`~percepmetric.nets.backbones.Trunk`, ``trunk(z)`` -> list of
    taps for LPIPS-scaled ``z``), ``calibration`` (``nn.ParameterList`` of ``(C_l,)`` channel
    weights ``w_l``; all ones for baseline), ``distance`` (:class:`ChannelNormalizedDistance`).
    All parameters are frozen; training sets ``requires_grad`` on what it trains.
    """

    name = "lpips"
    lower_is_better = True
    differentiable = True
    min_size = 31  # AlexNet's; VGG needs 16, SqueezeNet 17 (per instance: ``self.min_size``)
    channels = (1, 3)
    input_range_doc = "[0, 1] by default; input_range='-1,1' for LPIPS's own [-1, 1]"
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
    ) -> None:
        super().__init__(reduction=reduction)
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
            files = [_loaded_file("trunk", trunk_weights_path(net))]
            calibration = load_official_calibration(net) if variant == "lin" else None
            if variant == "lin":
                files.append(_loaded_file("calibration", official_calibration_path(net)))
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
            files = [_loaded_file("weights", weights)]
            if ckpt["trunk"] is None:
                trunk, trunk_source = build_backbone(net, pretrained=True), "torchvision"
                files.append(_loaded_file("trunk", trunk_weights_path(net)))
            else:
                trunk, trunk_source = load_trunk(net, ckpt["trunk"]), "file"
            calibration = [ckpt["calibration"][str(i)].reshape(-1).float() for i in range(len(tap_channels(net)))]
            weights_id = f"sha256:{file_digest(weights)}"
        self._setup(net, variant, trunk, calibration, trunk_source, (lo, hi), bool(spatial), precision, weights_id,
                    files)

    # -- construction helpers

    def _setup(self, net, variant, trunk: Trunk, calibration, trunk_source, input_range, spatial, precision, weights_id,
               weight_files):
        self.net = net
        self.weight_files = tuple(weight_files)  # (role, path, stat key when read): what cache_identity hashes
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
        if PRECISIONS[precision] is not None:
            self.trunk.to(PRECISIONS[precision])
        self.requires_grad_(False)
        self.eval()

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
            files = [_loaded_file("trunk", trunk_weights_path(net))]
        channels = tap_channels(net)
        if calibration == "ones":
            weights = None
        elif calibration == "v0.1":
            weights = load_official_calibration(net)
            files.append(_loaded_file("calibration", official_calibration_path(net)))
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

    @property
    def cache_identity(self) -> str:
        """``spec`` plus the content hash of each weight file the model was built from, e.g.
        ``lpips(...,weights=v0.1)|trunk=blake2b:...,calibration=blake2b:...``.

        A file changed on disk since the model read it is not hashed (its bytes are not the ones
        in memory): the identity then names that file as changed and matches no cached result.
        """
        return content_identity(self.spec, self.weight_files)

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

    def _follow_input(self, x: torch.Tensor) -> torch.dtype:
        """Move to ``x``'s device; run the trunk in ``precision`` or ``x``'s dtype. Returns that dtype."""
        trunk_dtype = PRECISIONS[self.precision] or x.dtype
        first = next(self.trunk.parameters())
        if self.shift.device != x.device or first.dtype != trunk_dtype:
            # Outside inference mode, or the moved parameters would be inference tensors
            # that can never take part in a backward pass afterwards.
            with torch.inference_mode(False), torch.no_grad():
                self.to(x.device)
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
        trunk_dtype = PRECISIONS[self.precision] or dtype
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
        if bool(identical.any()):
            term = torch.where(identical.view(-1, *[1] * (term.ndim - 1)), torch.zeros_like(term), term)
        return term

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
