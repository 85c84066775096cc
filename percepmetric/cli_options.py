"""Click options shared by every command that uses metrics (score, distance, bench, ...).

Kept apart from ``cli.py`` so that each part's ``commands.py`` can import them without
importing the command group itself (no import cycle under ``python -m percepmetric.cli``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click

from . import options
from .errors import InputError

DEFAULT_METRICS = ("psnr", "ssim", "ms_ssim", "fsim", "lpips")


def metric_option_flags(func):
    """The options every metric-using command shares (metric choice and metric options)."""
    decorators = [
        click.option("--metric", "-m", "metrics", multiple=True, metavar="NAME",
                     help="Metric to use (repeatable). See `percepmetric metrics`."),
        click.option("--net", default=None, help="LPIPS backbone: alex, vgg or squeeze."),
        click.option("--variant", default=None, help="LPIPS variant: baseline, lin, tune or scratch."),
        click.option("--weights", default=None, type=click.Path(dir_okay=False),
                     help="Weight file of a trained metric (e.g. run/final.pt)."),
        click.option("--option", "-o", "extra", multiple=True, metavar="KEY=VALUE",
                     help="Any other metric option, e.g. -o convention=matlab -o data_range=255 -o downsample=false."),
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


def no_progress_option(func):
    """``--no-progress``: the one name every long-running command uses to hide progress bars."""
    return click.option("--no-progress", is_flag=True, help="No progress bar.")(func)


def build_metrics(names: Iterable[str], net, variant, weights, extra, default=DEFAULT_METRICS):
    """Create each named metric with the options that metric accepts.

    An option that none of the chosen metrics accepts is an error (a typo must not be
    silently ignored).
    """
    from .registry import create_metric, metric_options

    typed = split_option_items(extra)  # values as typed: parsed per metric, by each option's default
    given = {key: value for key, value in (("net", net), ("variant", variant), ("weights", weights))
             if value is not None}
    if parse_option_value(typed.get("spatial", "False"), False):
        # A per-pixel map has no single number to print.
        raise InputError("option 'spatial' gives a distance map, not a number: "
                         "use `percepmetric distance A B -m lpips --map MAP.png` (or Python: metric.distance_map)")
    names = list(names) or list(default)
    used: set[str] = set()
    metrics = []
    for name in names:
        accepted = metric_options(name)
        mine = {k: parse_option_value(v, accepted[k]) for k, v in typed.items() if k in accepted}
        mine.update({k: v for k, v in given.items() if k in accepted})
        used.update(mine)
        metrics.append(create_metric(name, **mine))
    unused = sorted((set(typed) | set(given)) - used)
    if unused:
        raise InputError(f"option {unused[0]!r} is not accepted by any chosen metric ({', '.join(names)})")
    return metrics
