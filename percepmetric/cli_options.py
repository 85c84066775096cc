"""Click options shared by every command that uses metrics (score, distance, bench, ...).

Kept apart from ``cli.py`` so that each part's ``commands.py`` can import them without
importing the command group itself (no import cycle under ``python -m percepmetric.cli``).
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import click

from . import options
from .errors import InputError

DEFAULT_METRICS = ("psnr", "ssim", "ms_ssim", "fsim", "lpips")


def metric_option_flags(func=None, *, default: Iterable[str] = DEFAULT_METRICS):
    """The options every metric-using command shares (metric choice and metric options); the
    ``-m`` help names the command's ``default`` metrics. ``@metric_option_flags`` or
    ``@metric_option_flags(default=(...))``."""
    if func is None:
        return functools.partial(metric_option_flags, default=default)
    default = tuple(default)
    skipped = (" (one whose weights are absent is named, with the reason, and the others run)"
               if len(default) > 1 else "")
    decorators = [
        click.option("--metric", "-m", "metrics", multiple=True, metavar="NAME[:KEY=VALUE,...]",
                     help="Metric to use (repeatable), with options of its own that win over -o, e.g. "
                          "-m lpips:net=alex -m lpips:net=vgg -m ssim:convention=lpips. "
                          f"See `percepmetric metrics`. Default: {' '.join('-m ' + d for d in default)}{skipped}."),
        click.option("--net", default=None, help="LPIPS backbone: alex, vgg or squeeze."),
        click.option("--variant", default=None, help="LPIPS variant: baseline, lin, tune or scratch."),
        click.option("--weights", default=None, type=click.Path(dir_okay=False),
                     help="Weight file of a trained metric (e.g. run/final.pt)."),
        click.option("--option", "-o", "extra", multiple=True, metavar="KEY=VALUE",
                     help="Any other metric option, for every chosen metric that takes it, e.g. "
                          "-o convention=matlab -o data_range=255 -o downsample=false."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def parse_option_value(text: str, default: Any = None) -> Any:
    """A ``-o KEY=VALUE`` value as the user typed it -> the Python value: the core's parser
    (:func:`percepmetric.options.parse_option_value`) with the command line's words
    (``yes``/``no``, ``on``/``off`` for boolean options; Python literals such as ``255``)."""
    return options.parse_option_value(text, default, command_line=True)


def split_option_items(items: Iterable[str]) -> dict[str, str]:
    """``-o KEY=VALUE`` items -> ``{KEY: VALUE}`` with the values as typed (each command reads
    them with :func:`parse_option_value`, by the option's default). ``-`` in a key means ``_``;
    the last value of a repeated key wins; an item without ``=`` is one :class:`InputError` line."""
    typed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--option {item!r}: expected KEY=VALUE")
        typed[key.replace("-", "_")] = value
    return typed


def device_option(func):
    """``--device auto|cpu|cuda|cuda:N``, checked by :func:`percepmetric.devices.resolve_device`."""
    return click.option("--device", default="auto", show_default=True, metavar="auto|cpu|cuda|cuda:N",
                        help="Where to compute: auto = CUDA when available, else the CPU.")(func)


def max_pixels_option(func):
    """``--max-pixels N``: the most pixels an image file may claim in its header before it is
    decoded (a guard against decompression bombs); default ``$PERCEPMETRIC_MAX_PIXELS``, else
    100 million (:func:`percepmetric.io.max_pixels_limit`). Passed on as ``max_pixels``."""
    return click.option("--max-pixels", "max_pixels", default=None, type=click.IntRange(min=1), metavar="N",
                        help="Refuse, before decoding, an image file whose header claims more than N pixels "
                             "(width x height; a guard against decompression bombs). Default: "
                             "$PERCEPMETRIC_MAX_PIXELS, else 100000000.")(func)


def no_progress_option(func):
    """``--no-progress``: the one name every long-running command uses to hide progress bars."""
    return click.option("--no-progress", is_flag=True, help="No progress bar.")(func)


@dataclass(frozen=True)
class MetricSpec:
    """One ``-m`` value, ``NAME[:KEY=VALUE[,KEY=VALUE...]]``: the metric's registry name and its
    own options, with the values as typed (read later by :func:`parse_option_value`, by each
    option's default, as ``-o`` values are)."""

    text: str
    name: str
    options: dict[str, str] = field(default_factory=dict)


_OPENING, _CLOSING, _QUOTES = "([{", ")]}", "\"'"


def _split_outside_brackets(text: str) -> list[str]:
    """``text`` split at the commas that are not inside brackets or quotes: a tuple value keeps
    its commas when written in brackets (``input_range=(-1,1)``)."""
    items: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in _QUOTES:
            quote = char
        elif char in _OPENING:
            depth += 1
        elif char in _CLOSING:
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
    items.append("".join(current))
    return items


def parse_metric_spec(text: str) -> MetricSpec:
    """``NAME[:KEY=VALUE[,KEY=VALUE...]]`` -> :class:`MetricSpec`.

    The name is read as the registry reads names (any case, ``-`` for ``_``); in keys, as in
    ``-o``, ``-`` means ``_``, and the last value of a repeated key wins. Commas separate the
    items; a value that holds commas (a tuple) is written in brackets, ``input_range=(-1,1)``.
    A malformed item is one :class:`InputError` line naming the spec.
    """
    from .registry import canonical_name

    name, colon, rest = text.partition(":")
    if not name.strip():
        raise InputError(f"-m {shlex.quote(text)}: expected NAME or NAME:KEY=VALUE[,KEY=VALUE...]")
    options: dict[str, str] = {}
    for position, item in enumerate(_split_outside_brackets(rest) if colon else []):
        key, sep, value = item.partition("=")
        if not item:
            raise InputError(f"-m {shlex.quote(text)}: an empty item where KEY=VALUE was expected")
        if not sep or not key.strip():
            # After a comma, most likely the rest of a value that holds commas.
            hint = " (a value with commas goes in brackets, e.g. input_range=(-1,1))" if position else ""
            raise InputError(f"-m {shlex.quote(text)}: {item!r} is not KEY=VALUE{hint}")
        options[key.strip().replace("-", "_")] = value
    return MetricSpec(text=text, name=canonical_name(name), options=options)


def _refuse_maps(typed: dict[str, str], where: str) -> None:
    if parse_option_value(typed.get("spatial", "False"), False) is True:
        # A per-pixel map has no single number to print.
        raise InputError(f"{where}'spatial' gives a distance map, not a number: "
                         "use `percepmetric distance A B -m lpips --map MAP.png` (or Python: metric.distance_map)")


def metric_requests(names: Iterable[str], net=None, variant=None, weights=None, extra: Iterable[str] = (),
                    default: Iterable[str] = DEFAULT_METRICS) -> list[tuple[MetricSpec, dict[str, Any]]]:
    """What :func:`build_metrics` would create, without creating it: each metric's spec and the
    options it gets, every option checked.

    ``names``: ``-m`` values (:func:`parse_metric_spec`); none means the ``default`` specs.
    ``-o`` items and the ``--net``/``--variant``/``--weights`` flags go to every metric that
    accepts them (a flag wins over ``-o``). A spec's own options win over both for that
    metric, as the more specific choice; the options of a ``default`` spec are presets,
    which the user's ``-o`` and flags override (``bench``'s default set: L2 in Lab, ...).

    Errors, one :class:`InputError` line each: an unknown metric; a key that the spec's
    metric does not take (naming both); a ``-o`` key or flag that no chosen metric takes (a
    typo must not be silently ignored).
    """
    from .registry import metric_options

    typed = split_option_items(extra)  # values as typed: parsed per metric, by each option's default
    flags = {key: value for key, value in (("net", net), ("variant", variant), ("weights", weights))
             if value is not None}
    _refuse_maps(typed, "option ")
    given = list(names)
    specs = [parse_metric_spec(text) for text in given or default]
    presets = not given
    used: set[str] = set()
    requests = []
    for spec in specs:
        accepted = metric_options(spec.name)  # an unknown metric name fails here
        unknown = sorted(set(spec.options) - set(accepted))
        if unknown:
            raise InputError(f"-m {shlex.quote(spec.text)}: metric {spec.name} has no option {unknown[0]!r} "
                             f"(options: {', '.join(sorted(accepted)) or 'none'})")
        _refuse_maps(spec.options, f"-m {shlex.quote(spec.text)}: ")
        own = {k: parse_option_value(v, accepted[k]) for k, v in spec.options.items()}
        shared = {k: parse_option_value(v, accepted[k]) for k, v in typed.items() if k in accepted}
        shared.update({k: v for k, v in flags.items() if k in accepted})  # a flag's value is taken as given
        used.update(shared)
        requests.append((spec, {**own, **shared} if presets else {**shared, **own}))
    unused = sorted((set(typed) | set(flags)) - used)
    if unused:
        chosen = ", ".join(spec.name for spec in specs)
        raise InputError(f"option {unused[0]!r} is not accepted by any chosen metric ({chosen})")
    return requests


def check_unique_labels(built: Iterable[tuple[MetricSpec, Any]]) -> None:
    """Refuse, with one :class:`InputError` line, two metrics that tables and files would show
    under one label (:func:`percepmetric.registry.metric_label`): the same metric given twice,
    or two that differ only in what the label does not show. ``built``: (spec, metric) pairs."""
    from .registry import metric_label

    seen: dict[str, tuple[MetricSpec, Any]] = {}
    for spec, metric in built:
        label = metric_label(metric)
        if label in seen:
            first, other = seen[label]
            both = f"-m {shlex.quote(first.text)} and -m {shlex.quote(spec.text)}"
            if other.spec == metric.spec:
                raise InputError(f"{both} are the same metric ({label}): give it once")
            raise InputError(f"{both} would share the label {label!r} in tables and files: compare them in two runs")
        seen[label] = (spec, metric)


def build_metrics(names: Iterable[str], net, variant, weights, extra, default=DEFAULT_METRICS) -> list:
    """Create each metric the user chose (``-m`` specs, else ``default``) with the options it
    accepts, as :func:`metric_requests` resolves them; their labels are unique
    (:func:`check_unique_labels`), so each names one column of any table or file. A metric
    whose weights are absent raises :class:`~percepmetric.errors.WeightsNotFoundError`."""
    return build_available_metrics(names, net, variant, weights, extra, default, skip_missing=False)[0]


@dataclass(frozen=True)
class Unavailable:
    """A chosen metric that cannot be built here: its ``-m`` text and why (a weight file or the
    package that carries it is absent)."""

    label: str
    reason: str


def build_available_metrics(names: Iterable[str], net, variant, weights, extra, default=DEFAULT_METRICS, *,
                            skip_missing: bool = True) -> tuple[list, list[Unavailable]]:
    """:func:`build_metrics`, but a metric whose pretrained weights (or the package carrying
    them, or the extra it needs) are absent is set aside with its reason instead of stopping the others: ``(built,
    unavailable)``. Every option is still checked against every chosen metric first. A weight
    file the user named (``--weights``, ``weights=``) must be there: its absence is an error."""
    from .errors import WeightsNotFoundError
    from .extras import MissingExtraError
    from .registry import create_metric

    built: list[tuple[MetricSpec, Any]] = []
    unavailable: list[Unavailable] = []
    for spec, chosen in metric_requests(names, net, variant, weights, extra, default):
        try:
            built.append((spec, create_metric(spec.name, **chosen)))
        except (WeightsNotFoundError, MissingExtraError) as exc:
            if not skip_missing or chosen.get("weights") is not None:
                raise
            unavailable.append(Unavailable(spec.text, str(exc)))
    check_unique_labels(built)
    return [metric for _, metric in built], unavailable
