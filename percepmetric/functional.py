"""One function per metric, for those who prefer ``psnr(x, y)`` to building a module.

Each function takes the options of its metric class (same names, defaults and meaning: a test
holds the signatures to the classes'), plus ``reduction``, and returns what the class's
``forward`` returns: one value per image pair ``(N,)``, or one number with
``reduction="mean"``/``"sum"``. Inputs are validated as the class validates them (an
:class:`~percepmetric.errors.InputError` for anything out of shape, type or range).

There is one implementation: each call runs the metric object :func:`cached_metric` keeps for
its options and device. Building LPIPS reads its weight files, so ``lpips(x, y)`` in a loop
builds it once and reuses it; the cache keys on the option values as given, so after changing
a weight file on disk, call :func:`clear_cache`. Gradients flow to inputs that require grad, as
through the classes.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import torch

from .io import ImageLike
from .metrics.base import Metric
from .metrics.stlpips import STNet
from .options import (
    Color,
    L2Convention,
    LumaColor,
    MatlabConvention,
    Net,
    Precision,
    PSNRColor,
    Reduction,
    SSIMConvention,
    Variant,
    check_reduction,
    reduce_values,
)
from .registry import canonical_name, create_metric

__all__ = ["l2", "l1", "psnr", "ssim", "ms_ssim", "fsim", "lpips", "dists", "stlpips", "cached_metric", "clear_cache"]

_CACHE: dict[tuple[str, tuple[tuple[str, str], ...], str], Metric] = {}
_CACHE_LOCK = threading.Lock()


def cached_metric(name: str, options: dict[str, Any], device: torch.device | str = "cpu") -> Metric:
    """The metric ``create_metric(name, **options)`` on ``device``, built once per (name,
    options, device) in this process and reused by every later call."""
    key = (canonical_name(name), tuple(sorted((k, repr(v)) for k, v in options.items())), str(torch.device(device)))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = create_metric(name, **options).to(device)
        return _CACHE[key]


def clear_cache() -> None:
    """Forget the metrics :func:`cached_metric` built (e.g. after a weight file changed on disk)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _run(name: str, x: ImageLike, y: ImageLike, reduction: Reduction, options: dict[str, Any]) -> torch.Tensor:
    reduction = check_reduction(reduction)
    device = next((t.device for t in (x, y) if isinstance(t, torch.Tensor)), torch.device("cpu"))
    return reduce_values(cached_metric(name, options, device).values(x, y), reduction)


def l2(x: ImageLike, y: ImageLike, *, data_range: float = 1.0, color: Color = "rgb",
       convention: L2Convention = "plain", reduction: Reduction = "none") -> torch.Tensor:
    """Mean squared error per image pair (:class:`~percepmetric.metrics.pixel.L2`)."""
    return _run("l2", x, y, reduction, {"data_range": data_range, "color": color, "convention": convention})


def l1(x: ImageLike, y: ImageLike, *, data_range: float = 1.0, color: Color = "rgb",
       reduction: Reduction = "none") -> torch.Tensor:
    """Mean absolute error per image pair (:class:`~percepmetric.metrics.pixel.L1`)."""
    return _run("l1", x, y, reduction, {"data_range": data_range, "color": color})


def psnr(x: ImageLike, y: ImageLike, *, data_range: float = 1.0, color: PSNRColor = "rgb", shave: int = 0,
         quantize: bool = False, reduction: Reduction = "none") -> torch.Tensor:
    """PSNR in dB per image pair (:class:`~percepmetric.metrics.pixel.PSNR`); +inf for identical images.
    ``reduction="mean"`` averages the per-image dB values (not the PSNR of the pooled MSE).
    ``color="y", shave=N``: the super-resolution convention (BT.601 luma, N border pixels removed)."""
    return _run("psnr", x, y, reduction, {"data_range": data_range, "color": color, "shave": shave,
                                          "quantize": quantize})


def ssim(x: ImageLike, y: ImageLike, *, data_range: float = 1.0, convention: SSIMConvention = "matlab",
         color: Color | LumaColor | None = None, downsample: bool = True, quantize: bool | str = "auto",
         shave: int = 0, reduction: Reduction = "none") -> torch.Tensor:
    """SSIM per image pair (:class:`~percepmetric.metrics.ssim.SSIM`): ``convention="matlab"``
    (ssim.m, the default) or ``"lpips"`` (scikit-image, as the LPIPS code uses it); ``color="y",
    shave=N``: the super-resolution convention (BT.601 luma, N border pixels removed)."""
    return _run("ssim", x, y, reduction, {"data_range": data_range, "convention": convention, "color": color,
                                          "downsample": downsample, "quantize": quantize, "shave": shave})


def ms_ssim(x: ImageLike, y: ImageLike, *, data_range: float = 1.0, convention: MatlabConvention = "matlab",
            color: Color = "grey", quantize: bool | str = "auto", scales: int = 5,
            reduction: Reduction = "none") -> torch.Tensor:
    """Multi-scale SSIM per image pair (:class:`~percepmetric.metrics.ssim.MSSSIM`)."""
    return _run("ms_ssim", x, y, reduction, {"data_range": data_range, "convention": convention, "color": color,
                                             "quantize": quantize, "scales": scales})


def fsim(x: ImageLike, y: ImageLike, *, data_range: float = 1.0, chromatic: bool = False,
         convention: MatlabConvention = "matlab", precision: Precision = "input",
         reduction: Reduction = "none") -> torch.Tensor:
    """FSIM per image pair, FSIMc with ``chromatic=True`` (:class:`~percepmetric.metrics.fsim.FSIM`)."""
    return _run("fsim", x, y, reduction, {"data_range": data_range, "chromatic": chromatic,
                                          "convention": convention, "precision": precision})


def lpips(x: ImageLike, y: ImageLike, *, net: Net | None = None, variant: Variant | None = None,
          weights: str | os.PathLike[str] | None = None, input_range: str | tuple[float, float] = "0,1",
          spatial: bool = False, precision: Precision = "auto", data_range: float | None = None,
          reduction: Reduction = "none") -> torch.Tensor:
    """LPIPS distance per image pair (:class:`~percepmetric.metrics.lpips.LPIPS`; AlexNet, lin,
    v0.1 weights by default). The model is built once per options and device and reused."""
    return _run("lpips", x, y, reduction, {"net": net, "variant": variant, "weights": weights,
                                           "input_range": input_range, "spatial": spatial,
                                           "precision": precision, "data_range": data_range})


def dists(x: ImageLike, y: ImageLike, *, resize: bool = False, data_range: float = 1.0,
          reduction: Reduction = "none") -> torch.Tensor:
    """DISTS distance per image pair (:class:`~percepmetric.metrics.dists.DISTS`); ``resize=True``
    shrinks images whose shorter side exceeds 256 as piq does. Built once per options and device."""
    return _run("dists", x, y, reduction, {"resize": resize, "data_range": data_range})


def stlpips(x: ImageLike, y: ImageLike, *, net: STNet = "alex", input_range: str | tuple[float, float] = "0,1",
            spatial: bool = False, precision: Precision = "auto", data_range: float | None = None,
            reduction: Reduction = "none") -> torch.Tensor:
    """Shift-tolerant LPIPS distance per image pair (:class:`~percepmetric.metrics.stlpips.STLPIPS`;
    AlexNet by default, ``net="vgg"``). The model is built once per options and device and reused."""
    return _run("stlpips", x, y, reduction, {"net": net, "input_range": input_range, "spatial": spatial,
                                             "precision": precision, "data_range": data_range})
