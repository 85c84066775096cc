"""percepmetric: perceptual image distances and the harness that checks them against people.

Public surface::

    percepmetric.distance(x, y, metric="lpips", net="alex")   # lower = more alike
    percepmetric.pairwise(x, y=None, metric="lpips")           # (N, M) distance matrix
    percepmetric.distance_label("psnr")                        # "psnr as mse": what distance() gave
    percepmetric.create_metric("ssim", convention="matlab")    # a torch.nn.Module, (N,C,H,W) x2 -> (N,)
    percepmetric.list_metrics()
    percepmetric.functional.ssim(x, y)                         # one function per metric
    percepmetric.create_metric("ssim", as_loss=True)           # the distance as a loss (mean)
    m.update(x, y); m.compute()                                # evaluation loop: mean and 95% interval
    percepmetric.compare_folders("gt/", "out/", ["psnr", "ssim", "lpips"])  # DataFrame, a row per pair
    float(percepmetric.fid("generated/", "real/"))            # FID (clean-fid's "clean" mode)
    percepmetric.kid("generated/", "real/").mean               # KID; .std over its subsets
    percepmetric.precision_recall("generated/", "real/")       # .precision, .recall (k = 3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from . import functional
from .errors import InputError, PercepmetricError, WeightsNotFoundError
from .io import ImageLike, as_batch, load_image
from .metrics.base import Metric, MetricLoss
from .options import Reduction
from .pairwise import pairwise
from .registry import create_metric, describe_metric, distance_label, list_metrics

if TYPE_CHECKING:
    from .compare import compare_folders
    from .metrics.distribution import fid, kid, precision_recall

__version__ = "0.1.0"

__all__ = [
    "distance",
    "distance_label",
    "pairwise",
    "create_metric",
    "list_metrics",
    "describe_metric",
    "load_image",
    "functional",
    "Metric",
    "MetricLoss",
    "ImageLike",
    "Reduction",
    "PercepmetricError",
    "InputError",
    "WeightsNotFoundError",
    "compare_folders",
    "as_torchmetric",
    "fid",
    "kid",
    "precision_recall",
]

#: Names read on first use (:func:`__getattr__`): their modules import what plain metric users
#: do not need (pandas and tqdm; the FID network's loader).
_LAZY = {"compare_folders": "compare", "fid": "metrics.distribution", "kid": "metrics.distribution",
         "precision_recall": "metrics.distribution"}


def __getattr__(name: str) -> Any:
    """The names of :data:`_LAZY` on first use: ``import percepmetric`` stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def distance(x: ImageLike, y: ImageLike, metric: str = "lpips", **options: Any) -> torch.Tensor:
    """Perceptual distance between ``x`` and ``y``: an ``(N,)`` tensor, lower = more alike, 0 for x == y.

    ``x`` and ``y`` may be tensors ``(N,C,H,W)``/``(C,H,W)``/``(H,W)``, NumPy arrays or PIL
    images (channel-last) or image paths, whose integer codes span the metric's input range
    (``data_range=255`` reads a file as 0..255, so the value does not change). ``options`` go to
    :func:`create_metric` (e.g. ``net="vgg"``, ``data_range=255``, ``convention="matlab"``).

    Metrics whose value is a similarity are turned into distances by the metric's
    ``to_distance``: SSIM and MS-SSIM give ``(1 - s) / 2`` (the LPIPS paper's DSSIM),
    FSIM gives ``1 - s``, and ``metric="psnr"`` gives the **MSE** of the images scaled to
    [0, 1] (``MSE / data_range^2 = 10^(-PSNR/10)``), not PSNR in dB: label such numbers
    with :func:`distance_label` (``"psnr as mse"``), and call ``create_metric("psnr")(x, y)``
    for PSNR itself.

    Gradients flow when an input requires grad, so the result can serve as a loss. The metric
    is built once per (options, device, dtype) and reused, privately: see :mod:`percepmetric.functional`.
    """
    # Integer codes (files, uint8 arrays and tensors) span the metric's declared input range; a
    # non-tensor input beside a tensor goes to the tensor's device and dtype.
    tensors = [t for t in (x, y) if isinstance(t, torch.Tensor)]
    if len(tensors) == 1:
        like = tensors[0]
        value_range = functional.private_metric(metric, options, like.device, like.dtype).value_range
        x, y = (t if isinstance(t, torch.Tensor) else as_batch(t, label, value_range).to(like.device, like.dtype)
                for t, label in ((x, "x"), (y, "y")))
    return functional.values_for(metric, options, x, y, distance=True)


def as_torchmetric(metric: str | Metric, **options: Any) -> Any:
    """A ``torchmetrics.Metric`` of the mean per-image value of ``metric`` (a registry name with
    its ``options``, or a metric object): for ``MetricCollection`` and Lightning's ``self.log``.
    See :func:`percepmetric.torchmetric.as_torchmetric`."""
    from .torchmetric import as_torchmetric as adapter

    return adapter(metric, **options)
