"""ST-LPIPS: shift-tolerant LPIPS (Ghildyal & Liu, "Shift-tolerant Perceptual Similarity Metric", ECCV 2022).

The distance is LPIPS's Eq. 1 unchanged (:mod:`percepmetric.metrics.lpips`)::

    d(x, y) = sum_l  1/(H_l W_l) sum_{h,w}  || w_l * (n^l_x[h,w] - n^l_y[h,w]) ||_2^2,
    n^l = f^l / (||f^l||_2 + 1e-10) along channels,

with the same v0.1 input scaling (``[-1, 1]``, then ``(x - shift) / scale``), the same spatial
mean per layer (bilinear upsampling of each layer's map for ``spatial=True``) and the same
sum over layers. What is shift-tolerant is the trunk (:mod:`percepmetric.nets.antialiased`):
AlexNet or VGG16 whose every stride-2 step became stride 1 followed by a 3x3 binomial blur
sampled with stride 2 on a reflection padding of 2 pixels. The trunk's weights, like the channel
weights ``w_l``, are the authors' (they trained the network for the metric); no torchvision
ImageNet file is read: the whole network comes from one file per net.

Weights: ``stlpips_pytorch/weights/vST0.0/{alex,vgg}_shift_tolerant.pth`` of the
``stlpips-pytorch`` 0.0.2 distribution (BSD 2-Clause, Copyright (c) 2022, Abhijay Ghildyal,
Feng Liu), located and checked by SHA-256 in :mod:`percepmetric.weights` and read as data with
``torch.load(weights_only=True)``; its Python code is never imported. Unlike the authors'
loader (``strict=False``, where a tensor absent from the file would silently stay random),
:func:`load_stlpips_file` requires every parameter and buffer of the network (convolutions,
blur filters, input scaling, channel weights) to be in the file with its shape, and no other
tensor to be there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from ..errors import InputError
from ..nets.antialiased import ST_NETS, ShiftTolerantTrunk, build_shift_tolerant_trunk, shift_tolerant_spec
from ..options import Precision, Reduction
from ..weights import ST_VERSION, loaded_file, locate, stlpips_network_file, stlpips_weights_path
from .base import Metric
from .lpips import ChannelDistanceMetric, resolve_input_options

__all__ = ["STLPIPS", "STNet", "ST_VERSION", "stlpips_weights_path", "load_stlpips_file"]

STNet = Literal["alex", "vgg"]
ST_VARIANT = "shift_tolerant"
_NET_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}


def _canonical_st_net(net: Any) -> STNet:
    key = str(net).strip().lower()
    if key not in _NET_ALIASES:
        raise InputError(f"stlpips: unknown net {net!r} (choose one of: {', '.join(ST_NETS)})")
    return "alex" if _NET_ALIASES[key] == "alex" else "vgg"


def _file_key(trunk: ShiftTolerantTrunk, key: str) -> str:
    """``features.<i>.<tensor>`` of our trunk -> ``net.slice<k>.<i>.<tensor>`` of the authors' file,
    where ``k`` is the tap (1-based) whose stretch of layers holds layer ``i``."""
    _, index, tensor = key.split(".", 2)
    return f"net.slice{trunk.tap_of_layer(int(index)) + 1}.{index}.{tensor}"


def load_stlpips_file(net: str, path: str | os.PathLike | None = None
                      ) -> tuple[ShiftTolerantTrunk, list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """The complete ST-LPIPS network of ``net`` from its weight file (default: the one
    :func:`percepmetric.weights.locate` finds): ``(trunk, calibration, shift, scale)`` with ``calibration`` the
    five ``(C_l,)`` channel weights and ``shift``, ``scale`` the ``(1,3,1,1)`` input scaling.

    Every tensor of the network must be in the file with its shape (trunk ``net.slice<k>.<i>.*``,
    blur filters ``...filt``, ``lin<l>.model.1.weight``, ``scaling_layer.shift|scale``) and no other
    may be there: anything else raises one :class:`InputError` naming the file and the keys.
    :class:`WeightsNotFoundError` when the file is absent.
    """
    net = _canonical_st_net(net)
    located = locate(stlpips_network_file(net))
    path = Path(path) if path is not None else located.require()
    from ..checkpoints import load_weight_file  # weights_only: a pickled payload is refused, not run

    state = load_weight_file(path, what="ST-LPIPS weight file", missing=located.missing_message())
    trunk = build_shift_tolerant_trunk(net)
    spec = shift_tolerant_spec(net)
    # file key -> the shape our network needs there
    wanted: dict[str, tuple[int, ...]] = {_file_key(trunk, k): tuple(v.shape) for k, v in trunk.state_dict().items()}
    wanted.update({f"lin{layer}.model.1.weight": (1, c, 1, 1) for layer, c in enumerate(spec.channels)})
    wanted.update({"scaling_layer.shift": (1, 3, 1, 1), "scaling_layer.scale": (1, 3, 1, 1)})
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    misshapen = [f"{k} {tuple(state[k].shape)} (not {wanted[k]})" for k in wanted
                 if k in state and isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != wanted[k]]
    not_tensors = [k for k in wanted if k in state and not isinstance(state[k], torch.Tensor)]
    problems = [f"{label}: {', '.join(keys)}" for label, keys in (
        ("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen), ("not a tensor", not_tensors))
        if keys]
    if problems:
        raise InputError(f"{path}: not the complete ST-LPIPS {net} network ({'; '.join(problems)})")
    with torch.no_grad():
        trunk.load_state_dict({k: state[_file_key(trunk, k)].float() for k in trunk.state_dict()}, strict=True)
    calibration = [state[f"lin{layer}.model.1.weight"].detach().reshape(c).float().clone()
                   for layer, c in enumerate(spec.channels)]
    shift = state["scaling_layer.shift"].detach().float().clone()
    scale = state["scaling_layer.scale"].detach().float().clone()
    return trunk.eval(), calibration, shift, scale


class STLPIPS(ChannelDistanceMetric):
    """Shift-tolerant LPIPS (Ghildyal & Liu 2022): LPIPS on blur-pooled AlexNet/VGG16 trunks.

    ``STLPIPS(net="alex", input_range="0,1", spatial=False, precision="auto", data_range=None)``

    - ``net``: ``alex`` (default) or ``vgg``; the authors' complete network for each is read from
      the ``stlpips-pytorch`` wheel (:func:`load_stlpips_file`).
    - ``data_range`` / ``input_range``, ``spatial``, ``precision``: as :class:`~percepmetric.metrics.lpips.LPIPS`
      (``input_range="-1,1"`` is the authors' own convention; ``spatial=True`` returns the
      ``(N,1,H,W)`` map; ``precision`` sets the trunk's dtype).

    Everything LPIPS offers after construction works the same (``layer_distances``,
    ``distance_map``, ``features``, ``distance_from_features``, ``pair_embedding``,
    ``triplet_values``; :class:`~percepmetric.metrics.lpips.ChannelDistanceMetric`, their common
    base): the distance is LPIPS's Eq. 1, only the trunk differs. It is not an ``LPIPS``
    (no ``untrained`` form, no training-checkpoint file). ``variant`` is ``"shift_tolerant"``,
    the only one the wheel has weights for.
    """

    name = "stlpips"
    colour_doc = "RGB (grey -> three equal channels)"
    min_size = 21  # AlexNet's (VGG16: 18; per instance: ``self.min_size``)
    symmetric = True  # d(x, y) = d(y, x): distance matrices compute one triangle
    input_range_doc = "[0, 1], or [-1, 1] with input_range='-1,1'"
    #: Measured peak over the activation model of :meth:`~.lpips.LPIPS.memory_needed`, rounded up:
    #: alex 1.01-1.07; vgg 1.97-2.00, whose first tap (full size) is still held while the
    #: stride-1 max pooling and the blur's padded copy make two more full-size tensors.
    memory_factors: ClassVar[dict[str, float]] = {"alex": 1.15, "vgg": 2.2}

    def __init__(
        self,
        net: STNet = "alex",
        input_range: str | tuple[float, float] = "0,1",
        spatial: bool = False,
        precision: Precision = "auto",
        data_range: float | None = None,
        reduction: Reduction = "none",
        validate_args: bool = True,
    ) -> None:
        # Not LPIPS.__init__, which builds torchvision trunks: this network comes whole from one file.
        Metric.__init__(self, reduction=reduction, validate_args=validate_args)
        (lo, hi), precision = resolve_input_options(self.name, input_range, data_range, precision)
        net = _canonical_st_net(net)
        path = locate(stlpips_network_file(net)).require()
        trunk, calibration, shift, scale = load_stlpips_file(net, path)
        self._setup(net, ST_VARIANT, trunk, calibration, "file", (lo, hi), bool(spatial), precision, ST_VERSION,
                    [loaded_file("weights", path)])
        # The scaling constants the authors' file holds (LPIPS v0.1's, to the last bit).
        self.shift.copy_(shift)
        self.scale.copy_(scale)
        self.min_size = shift_tolerant_spec(net).min_size
        self.options = {"net": net, "input_range": f"{lo:g},{hi:g}", "spatial": bool(spatial),
                        "precision": precision}
