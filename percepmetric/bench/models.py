"""Models under evaluation: what ``percepmetric bench --model KIND:PATH`` scores, and how it
finds the code that knows each KIND.

bench scores metrics against people; with ``--model`` it scores *models* (generators,
autoencoders) with those metrics instead: how close each model's reconstructions come to the
originals. bench does not know how a model is stored or run. Each kind of model is a plugin
that implements :class:`ModelKind` and is announced under the entry-point group
:data:`ENTRY_POINT_GROUP`; percepmetric's own DeePSiM generators are one, declared in
``pyproject.toml``::

    [project.entry-points."percepmetric.models"]
    deepsim = "percepmetric.deepsim.evaluate:DEEPSIM_MODELS"

A third-party package declares its kind the same way in its own metadata. So bench imports no
application: it reads the entry points and loads only the kind the user named.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from torch import nn

from ..errors import InputError

ENTRY_POINT_GROUP = "percepmetric.models"


@runtime_checkable
class ModelKind(Protocol):
    """One kind of model that ``bench --model KIND:PATH`` evaluates.

    ``name`` is the KIND the user types; ``example`` a whole ``--model`` value for the messages
    (e.g. ``deepsim:PATH/TO/final.pt``).

    :meth:`evaluate` loads each model from its path (the text after ``KIND:``), reconstructs with
    it the images of ``data_dir`` (as the kind prepares them, e.g. central crops of the model's
    size), scores each reconstruction against its original with every metric, writes its tables
    (and, with ``plot``, figures) into ``out_dir`` when one is given, and returns the report to
    print. Anything the user got wrong (a missing or refused file, no images) is an
    :class:`~percepmetric.errors.InputError`, raised before the work where it can be.
    """

    name: str
    example: str

    def evaluate(self, paths: Sequence[str], data_dir: str, metrics: Sequence[nn.Module], out_dir: Path | None,
                 plot: bool) -> str: ...


def _installed() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}


def known_kinds() -> list[str]:
    """The KINDs installed (names only: no plugin is imported)."""
    return sorted(_installed())


def load_kind(name: str) -> ModelKind:
    """The plugin of KIND ``name``; :class:`InputError` when none is installed under that name, or
    what is installed does not load or does not implement :class:`ModelKind`."""
    entry = _installed().get(name)
    if entry is None:
        known = ", ".join(known_kinds()) or "none"
        raise InputError(f"--model: no kind of model {name!r} is installed (known: {known})")
    try:
        kind = entry.load()
    except Exception as exc:  # a broken plugin is reported in one line, like any other input error
        raise InputError(f"--model: the plugin {entry.value} of kind {name!r} does not load "
                         f"({type(exc).__name__}: {exc})") from None
    if not isinstance(kind, ModelKind):
        raise InputError(f"--model: the plugin {entry.value} of kind {name!r} does not implement "
                         f"percepmetric.bench.models.ModelKind")
    return kind


def split_model_spec(spec: str, kinds: Sequence[str]) -> tuple[str, str]:
    """``KIND:PATH`` -> ``(KIND, PATH)`` for a KIND among ``kinds``.

    A bare path (no ``KIND:``; a file that exists; a Windows drive such as ``C:``) belongs to the
    only installed kind, as ``--model run/final.pt`` always meant ``deepsim:run/final.pt``. An
    unknown KIND is one line saying what a ``--model`` value looks like for every known kind.
    """
    name, sep, path = spec.partition(":")
    if sep and name in kinds:
        return name, path  # an empty path is the kind's to refuse, with its own example
    bare = not sep or Path(spec).exists() or len(name) == 1
    if bare and len(kinds) == 1:
        return kinds[0], spec
    if not kinds:
        raise InputError(f"--model {spec!r}: no kind of model is installed (entry points {ENTRY_POINT_GROUP!r}; "
                         "reinstall percepmetric)")
    examples = " or ".join(load_kind(kind).example for kind in kinds)
    raise InputError(f"--model {spec!r}: expected {examples}")


def evaluate_models(specs: Sequence[str], data_dir: str, metrics: Sequence[nn.Module], out_dir: Path | None,
                    plot: bool) -> str:
    """``bench --model SPEC ... --data DIR``: the report of the models' kind on them.

    The models of one run are of one kind (they are compared with each other).
    """
    kinds = known_kinds()
    split = [split_model_spec(spec, kinds) for spec in specs]
    names = sorted({name for name, _ in split})
    if len(names) > 1:
        raise InputError(f"--model: give models of one kind per run (got {', '.join(names)})")
    return load_kind(names[0]).evaluate([path for _, path in split], data_dir, metrics, out_dir, plot)
