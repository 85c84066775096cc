"""Metric families, one module each: ``pixel`` (l2, l1, psnr), ``ssim`` (ssim, ms_ssim),
``fsim`` (fsim; FSIMc with chromatic=True), ``lpips`` (the LPIPS family). ``base`` holds the :class:`Metric`
interface. The registry imports the families on first use (their ``@register`` decorators
fill it), so importing this package stays cheap.
"""

from .base import Metric, check_pair

FAMILIES = ("pixel", "ssim", "fsim", "lpips")

__all__ = ["Metric", "check_pair", "FAMILIES"]
