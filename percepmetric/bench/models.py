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

**FID and KID.** Besides its report, a kind may hand back the images it generated and the real
images they stand for (:class:`ModelReport`: the report and one :class:`GeneratedSet` per model;
plain tuples of the same shape do as well, so a plugin need not import bench). bench then
computes, for every kind alike, the FID and KID of each model's generated images against the
real ones (:func:`set_distances`, on :func:`percepmetric.metrics.distribution.compare_sets`),
prints them under the report and writes them to ``fid_kid.csv`` and ``fid_kid.json``. A kind
whose ``evaluate`` returns the report alone (the protocol's first form) keeps working: it just
gets no FID.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from ..errors import InputError, PercepmetricError, WeightsNotFoundError

if TYPE_CHECKING:  # annotations only: the command line imports this module without torch
    from torch import nn

ENTRY_POINT_GROUP = "percepmetric.models"
#: What bench writes in ``--out`` besides the kind's own tables when it computes FID and KID.
FID_FILES = ("fid_kid.csv", "fid_kid.json")
#: The FID modes (those of :data:`percepmetric.nets.inception.MODES`, which a test keeps equal),
#: here so that the command line's options need not import the network's module.
FID_MODES = ("clean", "legacy_tensorflow", "legacy_pytorch")


class GeneratedSet(NamedTuple):
    """One model's generated images and the real images they stand for, for FID and KID.

    ``generated`` and ``real``: what :func:`~percepmetric.metrics.distribution.compare_sets`
    takes: an (N, 3, H, W) tensor (uint8 codes 0..255, or floats in [0, 1]: clamp a generator's
    output first), a folder of images (e.g. the reconstructions the kind wrote) or a list of
    image files. ``label``: the model's name in the report (as in the kind's own table)."""

    label: str
    generated: Any
    real: Any


class ModelReport(NamedTuple):
    """What :meth:`ModelKind.evaluate` may return instead of the bare report: the report and the
    images bench computes FID and KID from (one :class:`GeneratedSet` per model)."""

    text: str
    sets: Sequence[GeneratedSet]


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

    It returns either the report (a ``str``: the first form of the protocol, still accepted) or a
    :class:`ModelReport` (any ``(text, [(label, generated, real), ...])`` tuple): the report and
    each model's generated images with the real ones, from which bench computes FID and KID for
    every kind alike.
    """

    name: str
    example: str

    def evaluate(self, paths: Sequence[str], data_dir: str, metrics: Sequence[nn.Module], out_dir: Path | None,
                 plot: bool) -> str | ModelReport | tuple[str, Sequence[tuple[str, Any, Any]]]: ...


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


def run_models(specs: Sequence[str], data_dir: str, metrics: Sequence[nn.Module], out_dir: Path | None,
               plot: bool) -> tuple[str, ModelReport]:
    """``bench --model SPEC ... --data DIR``: (the KIND, its :class:`ModelReport` on them); a kind
    that returns its report alone hands back no images (``sets`` empty).

    The models of one run are of one kind (they are compared with each other).
    """
    kinds = known_kinds()
    split = [split_model_spec(spec, kinds) for spec in specs]
    names = sorted({name for name, _ in split})
    if len(names) > 1:
        raise InputError(f"--model: give models of one kind per run (got {', '.join(names)})")
    result = load_kind(names[0]).evaluate([path for _, path in split], data_dir, metrics, out_dir, plot)
    return names[0], as_model_report(result, names[0])


def evaluate_models(specs: Sequence[str], data_dir: str, metrics: Sequence[nn.Module], out_dir: Path | None,
                    plot: bool) -> str:
    """The report alone of :func:`run_models` (no FID)."""
    return run_models(specs, data_dir, metrics, out_dir, plot)[1].text


def as_model_report(result: Any, kind: str) -> ModelReport:
    """What a kind's ``evaluate`` returned, as a :class:`ModelReport`: a ``str`` is the report
    with no images; a ``(text, sets)`` pair is checked (each set a ``(label, generated, real)``
    whose images :func:`~percepmetric.metrics.distribution.compare_sets` can take). Anything
    else is one line naming the plugin."""
    from ..set_features import is_image_set

    if isinstance(result, str):
        return ModelReport(result, ())
    bad = f"--model: the plugin of kind {kind!r} returned"
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], str)):
        raise InputError(f"{bad} {type(result).__name__}, not a report (str) or (report, sets)")
    sets = []
    for item in result[1]:
        if not (isinstance(item, tuple) and len(item) == 3 and isinstance(item[0], str)):
            raise InputError(f"{bad} a set {type(item).__name__}, not (label, generated, real)")
        for what, images in (("generated", item[1]), ("real", item[2])):
            if not is_image_set(images):
                raise InputError(f"{bad} {what} images of {item[0]!r} that are no image set "
                                 f"({type(images).__name__}: expected a tensor, a folder or a list of files)")
        sets.append(GeneratedSet(*item))
    return ModelReport(result[0], tuple(sets))


# ---------------------------------------------------------------- FID and KID of what a kind generated


def resolve_fid(fid: bool | None, mode: str | None) -> str | None:
    """The FID mode ``bench --model`` computes FID and KID in, or None when it does not.

    ``fid``: ``--fid`` (True), ``--no-fid`` (False) or neither (None: on when the FID network is
    installed, off without a word when it is not). ``--fid`` or ``--fid-mode`` asks for it: then
    a missing network is one line naming how to get it (:class:`WeightsNotFoundError`), before
    any work. A network file that is there but is not the published one (the file
    ``$PERCEPMETRIC_FID_WEIGHTS`` names) is refused in every case, before the work too.
    """
    from ..weights import PUBLISHED_SHA256, fid_inception_file, locate, sha256_digest

    if mode is not None and mode not in FID_MODES:
        raise InputError(f"--fid-mode {mode!r}: one of {', '.join(FID_MODES)}")
    if fid is False:
        if mode is not None:
            raise InputError("--fid-mode is the mode of FID; it does not combine with --no-fid")
        return None
    located = locate(fid_inception_file())
    if located.path is None:
        if fid or mode is not None:
            raise WeightsNotFoundError(f"--{'fid' if fid else 'fid-mode'}: {located.missing_message()}")
        return None
    if located.source.startswith("$"):  # a carrier's copy was checked by locate; the user's is checked here
        try:
            digest = sha256_digest(located.path)
        except OSError as exc:
            raise WeightsNotFoundError(f"FID: {located.source} names {located.path}, unreadable ({exc})") from None
        if digest != PUBLISHED_SHA256["fid/default_1.pt"]:
            raise WeightsNotFoundError(f"FID: {located.source} names {located.path}, sha256 {digest[:16]}..., not "
                                       f"the published network; {fid_inception_file().install}")
    return mode or "clean"


@dataclass(frozen=True)
class SetDistance:
    """FID and KID of one model's generated images against the real ones (NaN, with ``note``
    saying why, when they could not be computed, e.g. fewer than two images)."""

    model: str
    mode: str
    fid: float
    count_generated: int
    count_real: int
    kid_mean: float
    kid_std: float
    kid_subsets: int
    kid_subset_size: int
    kid_std_note: str = ""
    network: str = ""
    note: str = ""


def set_distances(sets: Sequence[GeneratedSet], mode: str, device: Any = "auto",
                  batch_size: int = 32) -> list[SetDistance]:
    """:func:`~percepmetric.metrics.distribution.compare_sets` (FID and KID, clean-fid's KID
    defaults) of each set's generated images against its real ones, in ``mode``."""
    from ..metrics.distribution import compare_sets

    out = []
    for s in sets:
        try:
            result = compare_sets(s.generated, s.real, mode, kid=True, device=device, batch_size=batch_size)
        except WeightsNotFoundError:
            raise
        except PercepmetricError as exc:  # e.g. a single image: no covariance
            nan = float("nan")
            out.append(SetDistance(s.label, mode, nan, 0, 0, nan, nan, 0, 0, note=str(exc)))
            continue
        kid = result.kid
        assert kid is not None
        out.append(SetDistance(s.label, result.fid.mode, result.fid.value, result.fid.count_a, result.fid.count_b,
                               kid.mean, kid.std, kid.subsets, kid.subset_size, kid.std_note, result.fid.network))
    return out


def _counts(values: Sequence[int]) -> str:
    low, high = min(values), max(values)
    return f"{low}" if low == high else f"{low} to {high}"


def bias_note(rows: Sequence[SetDistance]) -> str:
    """The line that says on how many images FID was computed, and what that allows."""
    done = [r for r in rows if not r.note]
    n = _counts([min(r.count_generated, r.count_real) for r in done]) if done else "0"
    return f"FID on {n} images: compare only at equal N (biased upward, strongly so on few images)"


def format_set_distances(rows: Sequence[SetDistance]) -> str:
    """The FID/KID block of the report: a title with the mode, one line per model (FID, KID mean
    ± std, images generated / real), then the bias note and what a zero KID std means."""
    mode = rows[0].mode if rows else "clean"
    head = ["model", "FID", "KID mean ± std", "images (generated / real)"]
    cells = []
    for r in rows:
        if r.note:
            cells.append([f"  {r.model}", "n/a", "n/a", r.note])
        else:
            cells.append([f"  {r.model}", f"{r.fid:.2f}", f"{r.kid_mean:.4g} ± {r.kid_std:.2g}",
                          f"{r.count_generated} / {r.count_real}"])
    widths = [max(len(row[i]) for row in [head, *cells]) for i in range(3)]

    def line(row: list[str]) -> str:
        return "  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]), row[3]])

    lines = [f"FID and KID against the real images (mode {mode}; Inception v3 pool features)",
             line(head), *map(line, cells), bias_note(rows)]
    notes = sorted({r.kid_std_note for r in rows if r.kid_std_note and not r.note})
    lines += [f"KID std: {note}" for note in notes]
    return "\n".join(lines)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else value


def write_set_distances(rows: Sequence[SetDistance], out_dir: str | os.PathLike) -> list[Path]:
    """``fid_kid.csv`` (one row per model) and ``fid_kid.json`` (the same rows, the mode, the
    network's SHA-256 and the bias note) in ``out_dir``, atomically."""
    import csv
    import io as text_io

    from ..io import atomic_write_text

    out = Path(out_dir)
    fields = ["model", "mode", "fid", "count_generated", "count_real", "kid_mean", "kid_std", "kid_subsets",
              "kid_subset_size", "kid_std_note", "note"]
    buffer = text_io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({field: getattr(r, field) for field in fields})
    records = [{field: _number(v) if isinstance(v := getattr(r, field), float) else v for field in fields}
               for r in rows]
    payload = {"what": "FID and KID of each model's generated images against the real ones",
               "mode": rows[0].mode if rows else None,
               "network_sha256": next((r.network for r in rows if r.network), None),
               "note": bias_note(rows), "models": records}
    csv_path = atomic_write_text(out / FID_FILES[0], buffer.getvalue())
    json_path = atomic_write_text(out / FID_FILES[1], json.dumps(payload, indent=2) + "\n")
    return [csv_path, json_path]
