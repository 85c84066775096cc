"""Name -> metric class, the single way in to every metric.

Metric families register their classes with :func:`register`; users call
:func:`create_metric` / :func:`list_metrics` (re-exported by ``percepmetric``).
"""

from __future__ import annotations

import inspect
from typing import Any

from .errors import InputError
from .metrics.base import Metric

_REGISTRY: dict[str, type[Metric]] = {}


def register(cls: type[Metric]) -> type[Metric]:
    """Class decorator: make ``cls`` reachable as ``create_metric(cls.name)``."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise RuntimeError(f"metric name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_families() -> None:
    # Importing the metric modules runs their @register decorators (cached by Python).
    import importlib

    from .metrics import FAMILIES

    for family in FAMILIES:
        importlib.import_module(f"{__package__}.metrics.{family}")


def list_metrics() -> list[str]:
    """Names of all registered metrics, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def metric_class(name: str) -> type[Metric]:
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown metric {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None


def metric_options(name: str) -> dict[str, Any]:
    """The options ``create_metric(name, ...)`` accepts, with their defaults."""
    params = inspect.signature(metric_class(name).__init__).parameters
    return {
        p.name: p.default
        for p in params.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def create_metric(name: str, **options: Any) -> Metric:
    """Build the metric ``name`` with ``options``; unknown options raise :class:`InputError`.

    The result is a ``torch.nn.Module``: ``m(x, y)`` maps two ``(N,C,H,W)`` batches (or arrays,
    PIL images, paths: see :meth:`Metric.forward`) to ``(N,)``, with ``m.lower_is_better``,
    ``m.value_range``, ``m.differentiable`` and ``m.spec``.
    """
    accepted = metric_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InputError(
            f"metric {name!r} has no option {unknown[0]!r} (options: {', '.join(sorted(accepted)) or 'none'})"
        )
    return metric_class(name)(**options)


def describe_metric(name: str) -> dict[str, Any]:
    """Metadata of a registered metric, for listings (``percepmetric metrics``)."""
    cls = metric_class(name)
    doc = (inspect.getdoc(cls) or "").strip().splitlines()
    return {
        "name": name,
        "summary": doc[0] if doc else "",
        "lower_is_better": cls.lower_is_better,
        "differentiable": cls.differentiable,
        "input_range": cls.input_range_doc,
        "options": {k: v for k, v in metric_options(name).items()},
    }


def metric_label(metric: Metric) -> str:
    """Short name for tables: the metric's name and the options that differ from their defaults,
    e.g. ``ssim(convention=lpips)``; ``metric.spec`` stays the full identity.

    It names the metric's own value (``metric(x, y)``: PSNR in dB, SSIM, ...); a column of
    ``metric.to_distance`` values is labelled by :func:`distance_label` instead.

    Options defaulting to "auto" resolve from the others and are not shown; those defaulting
    to None (e.g. LPIPS's net, variant, weights: "decided by the weight file") show what they
    resolved to.
    """
    try:
        defaults = metric_options(metric.name)
    except InputError:  # not a registry metric: its full spec identifies it
        return metric.spec
    changed = {k: v for k, v in sorted(metric.options.items())
               if k not in defaults or (defaults[k] != v and defaults[k] != "auto")}
    if not changed:
        return metric.name
    return f"{metric.name}(" + ",".join(f"{k}={v}" for k, v in changed.items()) + ")"


def distance_label(metric: Metric | str) -> str:
    """Label of ``metric.to_distance`` values (what :func:`percepmetric.distance` returns), for a
    metric or a registry name: :func:`metric_label` when the metric's value is its distance (l2,
    lpips); otherwise that label and what the distance is, e.g. ``psnr as mse`` (MSE of the
    images scaled to [0, 1], ``10^(-PSNR/10)``), ``ssim as dssim`` (``(1 - SSIM) / 2``),
    ``fsim as 1-fsim``, so that a column of MSE values is never headed "psnr".
    """
    if isinstance(metric, str):
        label, name = metric, metric_class(metric).distance_name
    else:
        label, name = metric_label(metric), getattr(metric, "distance_name", None)
    return label if name is None else f"{label} as {name}"
