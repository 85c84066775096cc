"""Metric option values: their types and the one parser that reads them as users type them.

The same parser serves ``create_metric(...)`` in Python and ``-o KEY=VALUE`` on the command
line, so ``create_metric("ssim", convention="MATLAB", downsample="True")`` and
``-o convention=MATLAB -o downsample=true`` mean the same thing.

Option names every metric shares:

``data_range``  inputs lie in ``[0, data_range]`` (1 by default; 255 for 8-bit values)
``precision``   the float dtype a metric computes in: ``"auto"`` follows the input's dtype (FSIM
                spells it ``"input"``, the name its cache keys keep; both names are accepted by
                every metric that has the option), or a dtype name (``"float64"``,
                ``"float32"``, ``"float16"``, ``"bfloat16"``) among those the metric supports
``reduction``   ``"none"`` (one value per image, the default), ``"mean"`` or ``"sum"``
"""

from __future__ import annotations

import ast
import typing
from typing import Literal

import torch

from .errors import InputError

Reduction = Literal["none", "mean", "sum"]
REDUCTIONS: tuple[str, ...] = typing.get_args(Reduction)
Precision = Literal["auto", "input", "float64", "float32", "float16", "bfloat16"]
Color = Literal["rgb", "grey", "lab"]
#: ``color="y"`` of PSNR and SSIM: the luma Y of ITU-R BT.601 YCbCr, as super-resolution papers score.
LumaColor = Literal["y"]
PSNRColor = Literal["rgb", "y"]
Net = Literal["alex", "vgg", "squeeze"]
Variant = Literal["baseline", "lin", "tune", "scratch"]
L2Convention = Literal["plain", "lpips"]
SSIMConvention = Literal["matlab", "lpips"]
MatlabConvention = Literal["matlab"]

#: Booleans as people type them (in any case) on the command line, in data files and in
#: environment variables.
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
#: The words a boolean option takes in Python: there ``"yes"`` or ``"off"`` is more likely a
#: mistake, which the metric then refuses.
_PYTHON_BOOL_WORDS = ("true", "1", "false", "0")


def parse_bool(text: object, words: tuple[str, ...] = TRUE_WORDS + FALSE_WORDS) -> bool | None:
    """A boolean word -> True or False: :data:`TRUE_WORDS` and :data:`FALSE_WORDS` in any case,
    around spaces ignored, among those in ``words``; None for any other text or object.

    The one reader of yes/no words in percepmetric: option values
    (:func:`parse_option_value`), the ``dmos`` column of a MOS CSV, environment variables.
    """
    if not isinstance(text, str):
        return None
    word = text.strip().lower()
    if word not in words:
        return None
    if word in TRUE_WORDS:
        return True
    return False if word in FALSE_WORDS else None


def parse_option_value(
    value: object,
    default: object = None,
    choices: tuple[object, ...] = (),
    *,
    command_line: bool = False,
) -> object:
    """An option value as the user typed it -> the Python value the metric takes.

    - Non-strings are returned as they are.
    - ``true``/``false`` in any case are booleans; for an option whose ``default`` is a boolean
      (or whose ``choices`` include booleans), ``1``/``0`` are too, and on the command line
      ``yes``/``no`` and ``on``/``off``.
    - A word among the option's string ``choices`` matches in any case (``MATLAB`` -> ``matlab``).
    - On the command line anything else is read as a Python literal (``255``, ``0.5``, ``(0, 1)``,
      ``None``), else kept as text (a bare word such as ``lab`` or a path). In Python other
      strings are kept as they are.
    """
    if not isinstance(value, str):
        return value
    takes_bool = isinstance(default, bool) or any(isinstance(c, bool) for c in choices)
    bool_words = ("true", "false") if not takes_bool else (
        TRUE_WORDS + FALSE_WORDS if command_line else _PYTHON_BOOL_WORDS)
    flag = parse_bool(value, bool_words)
    if flag is not None:
        return flag
    word = value.strip().lower()
    for choice in choices:
        if isinstance(choice, str) and choice.lower() == word:
            return choice
    if not command_line:
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def literal_choices(annotation: object) -> tuple[object, ...]:
    """The values a ``Literal`` annotation allows, also inside ``Optional``/``Union``; () for others.
    ``bool`` in a union counts as the choices True and False."""
    if annotation is bool:
        return (True, False)
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return tuple(choice for arg in typing.get_args(annotation) for choice in literal_choices(arg))


def check_reduction(reduction: object) -> Reduction:
    """``reduction`` as one of ``none``/``mean``/``sum`` (any case), else :class:`InputError`."""
    parsed = parse_option_value(reduction, choices=REDUCTIONS)
    if parsed not in REDUCTIONS:
        raise InputError(f"option reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return typing.cast(Reduction, parsed)


def reduce_values(values: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """Per-item values ``(N,)`` (or maps ``(N,...)``) reduced as ``reduction`` says."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values
