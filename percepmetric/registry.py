"""Name -> metric class: the one table of every metric, and the way in to each.

:data:`METRICS` lists every metric by name, explicitly: a metric is reachable exactly when it
is written there (``tests/test_api.py`` checks the table against the classes in
:mod:`percepmetric.metrics`). Users call :func:`create_metric` / :func:`list_metrics`
(re-exported by ``percepmetric``).
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Sequence
from typing import Any, Literal, overload

from .errors import InputError
from .metrics.base import Metric, MetricLoss
from .metrics.butteraugli import Butteraugli
from .metrics.cvvdp import CVVDP
from .metrics.cwssim import CWSSIM
from .metrics.dists import DISTS
from .metrics.dss import DSS
from .metrics.flip import FLIP
from .metrics.fsim import FSIM
from .metrics.gmsd import GMSD, MSGMSD
from .metrics.haarpsi import HaarPSI
from .metrics.iwssim import IWSSIM
from .metrics.lpips import LPIPS
from .metrics.mad import MAD
from .metrics.mdsi import MDSI
from .metrics.nlpd import NLPD
from .metrics.pixel import L1, L2, PSNR
from .metrics.srsim import SRSIM
from .metrics.ssim import MSSSIM, SSIM
from .metrics.ssimulacra2 import SSIMULACRA2
from .metrics.stlpips import STLPIPS
from .metrics.vif import VIF, VIFP
from .metrics.vsi import VSI
from .options import Reduction, check_reduction, literal_choices, parse_option_value

METRICS: dict[str, type[Metric]] = {
    "l2": L2,
    "l1": L1,
    "psnr": PSNR,
    "ssim": SSIM,
    "ms_ssim": MSSSIM,
    "fsim": FSIM,  # FSIMc is fsim with chromatic=True
    "gmsd": GMSD,
    "ms_gmsd": MSGMSD,  # MS-GMSDc is ms_gmsd with chromatic=True
    "haarpsi": HaarPSI,
    "mdsi": MDSI,  # x is the reference: asymmetric
    "mad": MAD,  # x is the reference: asymmetric
    "srsim": SRSIM,
    "vsi": VSI,
    "vif": VIF,  # x is the reference: asymmetric
    "vifp": VIFP,  # x is the reference: asymmetric
    "iw_ssim": IWSSIM,  # x is the reference: asymmetric
    "cw_ssim": CWSSIM,
    "nlpd": NLPD,
    "dss": DSS,
    "lpips": LPIPS,
    "dists": DISTS,
    "stlpips": STLPIPS,  # shift-tolerant LPIPS: its own anti-aliased trunks and weights
    "butteraugli": Butteraugli,  # x is the reference: asymmetric (libjxl's psychovisual distance)
    "ssimulacra2": SSIMULACRA2,  # x is the reference: asymmetric; 100 for identical images
    "cvvdp": CVVDP,  # ColorVideoVDP for images, in JOD (10 for identical images) on a named display
    "flip": FLIP,  # NVIDIA's FLIP: LDR (symmetric) or HDR (linear tensors; x is the reference)
}

# Options every metric takes through create_metric but that are not part of its identity
# (``spec``): how forward's per-item values are reduced, the loss form, and whether each call
# checks the input's values (torchmetrics' ``validate_args``).
API_OPTIONS = ("reduction", "as_loss", "validate_args")


def list_metrics() -> list[str]:
    """Names of all metrics, sorted."""
    return sorted(METRICS)


#: Names as the papers spell them, where the table's name (piq's and pyiqa's) drops a hyphen.
_PAPER_NAMES = {"sr_sim": "srsim", "haar_psi": "haarpsi"}


def canonical_name(name: str) -> str:
    """A metric name as users type it (``SSIM``, ``MS-SSIM``, ``SR-SIM``) -> its table name
    (``ssim``, ``ms_ssim``, ``srsim``)."""
    if not isinstance(name, str):
        return name
    typed = name.strip().lower().replace("-", "_")
    return _PAPER_NAMES.get(typed, typed)


def metric_class(name: str) -> type[Metric]:
    try:
        return METRICS[canonical_name(name)]
    except (KeyError, TypeError):
        raise InputError(f"unknown metric {name!r} (known: {', '.join(sorted(METRICS))})") from None


def _parameters(name: str) -> list[inspect.Parameter]:
    params = inspect.signature(metric_class(name).__init__).parameters
    return [p for p in params.values()
            if p.name != "self" and p.name not in API_OPTIONS and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def metric_options(name: str) -> dict[str, Any]:
    """The options ``create_metric(name, ...)`` accepts, with their defaults (``reduction``, which
    every metric takes and which does not change its values, is left out)."""
    return {p.name: p.default for p in _parameters(name)}


def option_choices(name: str) -> dict[str, tuple[object, ...]]:
    """For each option of metric ``name`` typed with a ``Literal`` (or ``bool``), the values it allows."""
    hints = typing.get_type_hints(metric_class(name).__init__)
    return {option: literal_choices(hints[option]) for option in metric_options(name) if option in hints}


def parse_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` for metric ``name`` parsed as :func:`~percepmetric.options.parse_option_value`
    reads them (``"True"`` -> True, ``"MATLAB"`` -> ``"matlab"``); unknown options raise
    :class:`InputError`."""
    accepted = metric_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InputError(
            f"metric {name!r} has no option {unknown[0]!r} (options: {', '.join(sorted(accepted)) or 'none'})"
        )
    choices = option_choices(name)
    return {k: parse_option_value(v, accepted[k], choices.get(k, ())) for k, v in options.items()}


@overload
def create_metric(name: str, *, reduction: Reduction | None = None, as_loss: Literal[False] = False,
                  validate_args: bool = True, **options: Any) -> Metric: ...


@overload
def create_metric(name: str, *, reduction: Reduction | None = None, as_loss: Literal[True],
                  validate_args: bool = True, **options: Any) -> MetricLoss: ...


def create_metric(name: str, *, reduction: Reduction | None = None, as_loss: bool = False,
                  validate_args: bool = True, **options: Any) -> Metric | MetricLoss:
    """Build the metric ``name`` (any case) with ``options``; unknown options raise :class:`InputError`.

    The result is a ``torch.nn.Module``: ``m(x, y)`` maps two ``(N,C,H,W)`` batches (or arrays,
    PIL images, paths: see :meth:`Metric.forward`) to ``(N,)``, or to one number with
    ``reduction="mean"``/``"sum"``; with ``m.lower_is_better``, ``m.value_range``,
    ``m.differentiable`` and ``m.spec``, and the evaluation-loop methods ``update``, ``compute``
    and ``reset``. Option values are read as users type them: ``"True"``/``"1"`` for booleans,
    choices in any case (``convention="MATLAB"``).

    ``as_loss=True`` returns ``m.as_loss(reduction)`` instead (reduction ``"mean"`` unless
    given): a module whose value is the metric's distance, to minimise.

    ``validate_args=False`` skips the per-call checks of the input's values (finite, inside
    the range: a device sync per call), for training loops and ``torch.compile``; shapes and
    types are still checked, and files are still read into the declared range.
    """
    parsed = parse_options(name, options)
    loss_form, checked = parse_option_value(as_loss, False), parse_option_value(validate_args, True)
    for option, value, given in (("as_loss", loss_form, as_loss), ("validate_args", checked, validate_args)):
        if not isinstance(value, bool):
            raise InputError(f"option {option} must be True or False, got {given!r}")
    checked = typing.cast(bool, checked)
    if loss_form:
        metric = metric_class(name)(**parsed, validate_args=checked)
        return metric.as_loss(check_reduction("mean" if reduction is None else reduction))
    return metric_class(name)(**parsed, reduction=check_reduction("none" if reduction is None else reduction),
                              validate_args=checked)


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
        "accepts": cls.colour_doc,
        "symmetric": cls.symmetric,
        "min_size": cls.min_size,  # with default options (LPIPS's depends on the net)
        "options": {k: v for k, v in metric_options(name).items()},
    }


# ---------------------------------------------------------------- labels
# The one policy for how tables, files, legends and reports name a metric: every command and
# function that shows metrics takes its labels from here.

def metric_label(metric: Metric) -> str:
    """Short name for tables: the metric's name and the options that differ from their defaults,
    e.g. ``ssim(convention=lpips)``; ``metric.spec`` stays the full identity.

    It names the metric's own value (``metric(x, y)``: PSNR in dB, SSIM, ...); a column of
    ``metric.to_distance`` values is labelled by :func:`distance_label` instead.

    Options defaulting to "auto" are shown when their value is another of the choices a user
    can give (``ssim(quantize=True)``, ``lpips(precision=float16)``), so that variants a user
    compares get labels of their own; a value only "auto" resolves to is not shown, as the
    options shown imply it (SSIM's ``quantize=lpips_code`` under ``convention=lpips``).
    Those defaulting to None (e.g. LPIPS's net, variant, weights: "decided by the weight
    file") show what they resolved to. Two metrics of different ``spec`` can still share a
    label: :func:`unique_labels` tells them apart in one table, and the command line refuses
    such a pair (:func:`percepmetric.cli_options.check_unique_labels`).
    """
    try:
        defaults = metric_options(metric.name)
    except InputError:  # not a registry metric: its full spec identifies it
        return metric.spec
    choices = option_choices(metric.name)

    def shown(option: str, value: Any) -> bool:
        if option not in defaults:
            return True
        if defaults[option] == "auto":
            return value != "auto" and any(value == c and type(value) is type(c) for c in choices.get(option, ()))
        return defaults[option] != value

    changed = {k: v for k, v in sorted(metric.options.items()) if shown(k, v)}
    if not changed:
        return metric.name
    return f"{metric.name}(" + ",".join(f"{k}={v}" for k, v in changed.items()) + ")"


def distance_label(metric: Metric | str, label: str | None = None) -> str:
    """Label of ``metric.to_distance`` values (what :func:`percepmetric.distance` returns), for a
    metric or a registry name, so that a column of MSE values is never headed "psnr".

    ``label`` names the metric (default: :func:`metric_label`, or the name as given; a table
    passes its :func:`unique_labels` or :func:`short_labels`). It stands alone when the
    metric's value is its distance (l2, lpips); otherwise it is followed by what the distance
    is, the metric's ``distance_name``: ``psnr as mse`` (MSE of the images scaled to [0, 1],
    ``10^(-PSNR/10)``), ``ssim as dssim`` (``(1 - SSIM) / 2``), ``fsim as 1-fsim``. A metric
    whose value is a similarity but that names no distance is ``... as distance``.
    """
    source: Metric | type[Metric] = metric_class(metric) if isinstance(metric, str) else metric
    if label is None:
        label = metric if isinstance(metric, str) else metric_label(metric)
    name = getattr(source, "distance_name", None)
    if name is None and not getattr(source, "lower_is_better", True):
        name = "distance"
    return label if name is None else f"{label} as {name}"


def unique_labels(metrics: Sequence[Metric]) -> list[str]:
    """The labels of metrics shown side by side (columns of one table, rows of one report):
    each metric's :func:`metric_label`; a label that metrics of different options share becomes
    their full ``spec``, and a metric given twice is numbered (``psnr``, ``psnr#2``)."""
    labels = [metric_label(m) for m in metrics]
    specs: dict[str, set[str]] = {}
    for metric, label in zip(metrics, labels):
        specs.setdefault(label, set()).add(metric.spec)
    return number_repeats([m.spec if len(specs[label]) > 1 else label for m, label in zip(metrics, labels)])


def label_metric_name(label: str) -> str | None:
    """The registry name a label of this module starts with (``ssim(convention=lpips)``,
    ``psnr#2``, a spec -> ``ssim``, ``psnr``), or None when it names no registry metric."""
    name = canonical_name(label.split("(", 1)[0].split("#", 1)[0])
    return name if name in METRICS else None


def short_labels(labels: Sequence[str]) -> dict[str, str]:
    """A short, unique name for each label, for narrow tables and figure legends (the bench
    report lists each with its full label): the metric's name (``l2``, ``ssim``), LPIPS with
    its net (``lpips-alex``; ``lpips-vgg-tune`` for variants other than lin); a short name
    taken already is numbered (``ssim#2``)."""
    names: dict[str, str] = {}
    for label in labels:
        short = label.split("(", 1)[0][:24]
        if short == "lpips":
            net = re.search(r"net=(\w+)", label)
            variant = re.search(r"variant=(\w+)", label)
            short += f"-{net.group(1)}" if net else ""
            short += f"-{variant.group(1)}" if variant and variant.group(1) != "lin" else ""
        unique, k = short, 2
        while unique in names.values():
            unique, k = f"{short}#{k}", k + 1
        names[label] = unique
    return names


def short_distance_labels(labels: Sequence[str]) -> dict[str, str]:
    """For each label, what a column of the metric's distances (``metric.to_distance``: what
    the 2AFC and JND benchmarks compare) is, under its :func:`short_labels` name:
    :func:`distance_label` with the short name (``l2``, ``lpips-alex``, ``psnr as mse``,
    ``ssim as dssim``); a label naming no registry metric keeps its short name alone."""
    short = short_labels(labels)
    named = {}
    for label in labels:
        name = label_metric_name(label)
        named[label] = distance_label(name, short[label]) if name is not None else short[label]
    return named


def number_repeats(labels: list[str]) -> list[str]:
    """The labels with each repeat numbered (``psnr``, ``psnr#2``), so table columns stay unique."""
    seen: dict[str, int] = {}
    numbered = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        numbered.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return numbered
