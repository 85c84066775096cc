"""Metric families, one module each: ``pixel`` (l2, l1, psnr), ``ssim`` (ssim, ms_ssim),
``fsim`` (fsim; FSIMc with chromatic=True), ``lpips`` (the LPIPS family). ``base`` holds the
:class:`Metric` interface. The table of names is ``percepmetric.registry.METRICS``.
"""

from .base import Metric, MetricLoss, check_pair

__all__ = ["Metric", "MetricLoss", "check_pair"]
