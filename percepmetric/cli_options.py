"""Click options shared by every command that uses metrics (score, distance, bench, ...).

Kept apart from ``cli.py`` so that each part's ``commands.py`` can import them without
importing the command group itself (no import cycle under ``python -m percepmetric.cli``).
"""

from __future__ import annotations

import ast
from typing import Any, Iterable

import click

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
                     help="Any other metric option, e.g. -o convention=matlab -o data_range=255."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word such as matlab or lab


def build_metrics(names: Iterable[str], net, variant, weights, extra, default=DEFAULT_METRICS):
    """Create each named metric with the options that metric accepts.

    An option that none of the chosen metrics accepts is an error (a typo must not be
    silently ignored).
    """
    from .registry import create_metric, metric_options

    options: dict[str, Any] = {}
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--option {item!r}: expected KEY=VALUE")
        options[key.replace("-", "_")] = _parse_value(value)
    for key, value in (("net", net), ("variant", variant), ("weights", weights)):
        if value is not None:
            options[key] = value
    names = list(names) or list(default)
    used: set[str] = set()
    metrics = []
    for name in names:
        accepted = metric_options(name)
        mine = {k: v for k, v in options.items() if k in accepted}
        used.update(mine)
        metrics.append(create_metric(name, **mine))
    if options.get("spatial"):
        # A per-pixel map has no single number to print: the Python API returns it.
        raise InputError("option 'spatial' returns a distance map; use it from Python (percepmetric.create_metric), not the CLI")
    unused = sorted(set(options) - used)
    if unused:
        raise InputError(f"option {unused[0]!r} is not accepted by any chosen metric ({', '.join(names)})")
    return metrics
