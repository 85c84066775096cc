"""CLI commands of this part, attached to ``percepmetric`` by ``percepmetric.cli``:
``bench``, ``make-fixture`` and ``download-bapps``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..cli_options import build_metrics, metric_option_flags
from ..errors import InputError

DEFAULT_BENCH_METRICS = ("lpips",)  # LPIPS (alex, lin) unless --metric says otherwise


def _dataset_root(root: str | None) -> tuple[Path, bool]:
    """(root, embedded): the dataset root the user chose, or the built-in sentinels when
    neither --root nor $PERCEPMETRIC_BAPPS is set and the default folder holds no dataset."""
    from ..data.bapps import ENV_ROOT, default_root, resolve_root, root_source

    source = root_source(root)
    path = resolve_root(root)
    if source == "default" and not ((path / "2afc").is_dir() or (path / "jnd").is_dir()):
        from ..data.fixtures import embedded_root

        click.echo(f"percepmetric: no BAPPS dataset in {default_root()} (set --root or ${ENV_ROOT}, or run "
                   f"`percepmetric download-bapps`); using the built-in synthetic sentinels", err=True)
        return embedded_root(), True
    if not path.is_dir():
        where = "--root" if source == "argument" else f"${ENV_ROOT}" if source == "environment" else "default root"
        raise InputError(f"{where} {path}: no such folder")
    return path, False


@click.command("bench")
@click.option("--split", "-s", "splits", multiple=True, metavar="NAME",
              help="Split or group (repeatable): val/cnn, train/mix, jnd/val/traditional, val, jnd, train, all. "
                   "Default: all (the six 2AFC val sets and both JND sets).")
@click.option("--all", "run_all", is_flag=True, help="Every 2AFC val and JND set, with the paper's summary table.")
@click.option("--root", default=None, type=click.Path(file_okay=False),
              help="BAPPS folder (holding 2afc/ and jnd/). Default: $PERCEPMETRIC_BAPPS, else "
                   "~/.local/share/percepmetric/bapps, else the built-in synthetic sentinels.")
@click.option("--model", "models", multiple=True, metavar="KIND:PATH",
              help="Evaluate a trained generator instead (e.g. deepsim:run/final.pt; repeatable); needs --data.")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False),
              help="Images for --model evaluation.")
@metric_option_flags
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Write results.csv, summary.csv, comparisons.csv, results.json and per-item distances here "
                   "(a second run reuses them; an interrupted run resumes).")
@click.option("--plot", is_flag=True, help="Also write two_afc.png and jnd_pr.png (needs --out).")
@click.option("--batch-size", type=int, default=None, help="Triplets or pairs per forward pass (default 100).")
@click.option("--device", default=None, help="torch device (default: cuda if available, else cpu).")
@click.option("--bootstrap", "n_boot", type=int, default=1000, show_default=True,
              help="Bootstrap resamples for the 95% confidence intervals and paired tests.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def bench_command(splits, run_all, root, models, data_dir, metrics, net, variant, weights, extra, out_dir, plot,
                  batch_size, device, n_boot, seed, no_progress, as_json) -> None:
    """How well metrics agree with people on BAPPS (2AFC score, JND mAP), with 95% intervals.

    Reproduces the evaluation of Zhang et al. (2018). Without a dataset it runs on a small
    built-in set of synthetic sentinels (NOT human judgments) so that everything can be tried.
    """
    import torch

    if plot and out_dir is None and not models:
        raise InputError("--plot needs --out DIR (where the figures go)")
    if n_boot < 1:
        raise InputError(f"--bootstrap must be at least 1, got {n_boot}")
    built = build_metrics(metrics, net, variant, weights, extra, default=DEFAULT_BENCH_METRICS)
    dev = torch.device(device) if device else (torch.device("cuda") if torch.cuda.is_available() else None)
    if dev is not None:
        built = [m.to(dev) for m in built]
    if models:
        if splits or run_all or root:
            raise InputError("--model evaluates generators on --data; it does not combine with --split/--all/--root")
        _bench_models(list(models), data_dir, built, out_dir, plot)
        return
    if data_dir is not None:
        raise InputError("--data is for --model evaluation; for BAPPS use --root")
    from .report import format_report
    from .runner import run_benchmark

    from ..data.bapps import expand_splits

    names = expand_splits(list(splits) + (["all"] if run_all or not splits else []))  # bad names fail first
    path, _ = _dataset_root(root)
    result = run_benchmark(built, names, path, out_dir, batch_size=batch_size, device=dev,
                           progress=not no_progress, n_boot=n_boot, seed=seed, plot=plot)
    if as_json:
        payload = json.loads((Path(out_dir) / "results.json").read_text()) if out_dir else None
        if payload is None:
            from .report import results_frame

            from .report import SYNTHETIC_NOTE

            payload = {"root": str(result.root), "synthetic": result.synthetic,
                       "note": SYNTHETIC_NOTE if result.synthetic else "human judgments (BAPPS)",
                       "results": json.loads(results_frame(result).to_json(orient="records")),
                       "comparisons": result.comparisons}
        click.echo(json.dumps(payload, indent=2))
        return
    click.echo(format_report(result))
    if result.files:
        click.echo(f"\nwrote {', '.join(p.name for p in result.files)} to {out_dir}")


def _bench_models(models, data_dir, metrics, out_dir, plot) -> None:
    if data_dir is None:
        raise InputError("--model needs --data DIR (the images to reconstruct)")
    from ..deepsim.evaluate import bench_models, format_table

    frame = bench_models(models, data_dir, metrics, Path(out_dir) if out_dir else None, plot)
    click.echo(format_table(frame))


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

    root = make_fixture(Path(directory), size=size, seed=seed)
    splits = expand_splits(["train", "all"])
    click.echo(f"wrote {len(splits)} splits of {size} items each to {root}: {', '.join(splits)}")
    click.echo("These are synthetic sentinels, not human judgments.")


@click.command("download-bapps")
@click.option("--root", default=None, type=click.Path(file_okay=False),
              help="Where to put the dataset. Default: $PERCEPMETRIC_BAPPS, else ~/.local/share/percepmetric/bapps.")
@click.option("--val-only", is_flag=True, help="Only the validation archives (2AFC val + JND), not the training set.")
@click.option("--url-base", default=None,
              help="Where the archives are: an http(s):// or file:// URL or a local folder (default: the official host).")
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
