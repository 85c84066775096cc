"""CLI commands of this part, attached to ``percepmetric`` by ``percepmetric.cli``:

    percepmetric deepsim train --task invert --layer fc6 --data DIR --out run ... [--device cuda]
    percepmetric deepsim evaluate run/final.pt --data DIR --out run/eval [--device cpu]
    percepmetric deepsim demo --out DIR [--iterations 300 ...]

Each takes ``--device auto|cpu|cuda|cuda:N`` (default auto: CUDA when available, else the CPU).
Flags mean what they mean in the other commands: ``--no-progress`` hides progress bars and
``-o/--option KEY=VALUE`` passes an option to ``--metric``. ``--quiet`` and
``--metric-option`` are hidden aliases of those two (not in ``--help``), for scripts written
with them.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..cli_options import device_option, no_progress_option, parse_option_value, split_option_items
from ..errors import InputError


def _options(metric: str | None, items: tuple[str, ...]) -> dict[str, Any]:
    """``-o KEY=VALUE`` items -> the options of ``--metric``, split and read as every command
    reads them (:func:`~percepmetric.cli_options.split_option_items`,
    :func:`~percepmetric.cli_options.parse_option_value` by the option's default)."""
    if not items:
        return {}
    if not metric:
        raise InputError("-o/--option sets options of --metric; give --metric NAME too")
    from ..registry import metric_options

    defaults = metric_options(metric)
    return {key: parse_option_value(value, defaults.get(key)) for key, value in split_option_items(items).items()}


def progress_options(command):
    """``--no-progress`` as every command has it, and ``--quiet``, a hidden alias of it for
    scripts written with that name."""
    command = click.option("--quiet", "quiet", is_flag=True, hidden=True)(command)
    return no_progress_option(command)


def _set_threads(threads: int) -> None:
    if threads < 0:
        raise InputError(f"--threads must be 0 (default) or positive, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show each Python warning raised inside as one line on stderr, ``percepmetric: warning:
    MESSAGE`` (its first line), above any progress bar, instead of Python's form with the file,
    the line number and the source line (e.g. train's "features of the first batch are all
    zero"). Which warnings are shown, and how often, is left to the warnings filters."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        from tqdm.auto import tqdm

        text = str(message).strip()
        text = text.splitlines()[0] if text else category.__name__
        tqdm.write(f"percepmetric: warning: {text}", file=sys.stderr)  # clears and redraws a bar

    with warnings.catch_warnings():  # restores warnings.showwarning on the way out
        warnings.showwarning = show
        yield


@click.group("deepsim")
@click.pass_context
def deepsim(ctx: click.Context) -> None:
    """DeePSiM generators (Dosovitskiy & Brox 2016): train, evaluate, demo."""
    ctx.with_resource(warnings_as_lines())  # for the whole of the command that follows


@deepsim.command("train")
@click.option("--task", type=click.Choice(["invert", "autoencoder", "vae"]), default="invert", show_default=True)
@click.option("--layer", default="fc6", show_default=True,
              help="invert: AlexNet layer to invert (conv5 = pool5 as in the paper, fc6, fc7, fc8).")
@click.option("--size", type=int, default=227, show_default=True,
              help="Crop size: 227 (paper) or 64; one the networks cannot take is refused, naming the smallest.")
@click.option("--data", required=True, type=click.Path(), help="Folder of training images (searched recursively).")
@click.option("--out", default="run", show_default=True, type=click.Path(), help="Run folder (checkpoints, log.csv).")
@click.option("--iterations", type=int, default=1000, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=2e-4, show_default=True)
@click.option("--loss", type=click.Choice(["full", "image", "features", "adversarial", "metric"]), default="full",
              show_default=True, help="Ablation preset of Eq. 1, or 'metric' for a registry metric alone.")
@click.option("--lambda-feat", type=float, default=None, help="Override lambda_feat (default 0.01).")
@click.option("--lambda-adv", type=float, default=None, help="Override lambda_adv (default 100).")
@click.option("--lambda-img", type=float, default=None, help="Override lambda_img (default 2e-6).")
@click.option("--lambda-kl", type=float, default=None, help="Override lambda_KL of the VAE (default 20).")
@click.option("--lambda-metric", type=float, default=None, help="Weight of --metric (default 1).")
@click.option("--metric", default=None, help="Registry metric used as (part of) the loss: l2, ms_ssim, lpips ...")
@click.option("--option", "-o", "metric_options", multiple=True, metavar="KEY=VALUE",
              help="Option of --metric, e.g. -o net=vgg (repeatable).")
@click.option("--metric-option", "old_metric_options", multiple=True, hidden=True)
@click.option("--comparator", default="alex:conv5", show_default=True,
              help="NET:LAYER, e.g. alex:conv5, alex:fc6, vgg:relu3_3.")
@click.option("--random-comparator", is_flag=True,
              help="Comparator with random weights (paper's study of comparators).")
@click.option("--random-encoder", is_flag=True, help="Random AlexNet for the inverted layer / VAE encoder trunk.")
@click.option("--width", type=float, default=1.0, show_default=True, help="Scale of every hidden layer (1 = paper).")
@click.option("--latent", type=int, default=4096, show_default=True, help="VAE latent size.")
@click.option("--code-channels", type=int, default=8, show_default=True, help="Autoencoder code channels.")
@click.option("--discriminator-features", is_flag=True, help="Feed the inverted features to the discriminator too.")
@click.option("--checkpoint-every", type=int, default=500, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=0, help="torch CPU threads (0: torch's default).")
@click.option("--resume", is_flag=True,
              help="Continue from OUT/last.pt (its stored settings win, except --iterations and --device; "
                   "--data must hold the same images).")
@progress_options
@device_option
def train_command(task, layer, size, data, out, iterations, batch_size, lr, loss, lambda_feat, lambda_adv, lambda_img,
                  lambda_kl, lambda_metric, metric, metric_options, old_metric_options, comparator, random_comparator,
                  random_encoder, width, latent, code_channels, discriminator_features, checkpoint_every, seed, threads,
                  resume, no_progress, quiet, device) -> None:
    """Train a generator; writes OUT/last.pt, OUT/final.pt and OUT/log.csv.

    An OUT that already holds a run is continued with --resume, never overwritten.
    """
    from .train import DeepSimConfig, train_generator

    _set_threads(threads)
    config = DeepSimConfig(
        task=task, layer=layer, size=size, data=data, out=out, iterations=iterations, batch_size=batch_size, lr=lr,
        loss=loss, lambda_feat=lambda_feat, lambda_adv=lambda_adv, lambda_img=lambda_img, lambda_kl=lambda_kl,
        lambda_metric=lambda_metric, metric=metric,
        metric_options=_options(metric, old_metric_options + metric_options), comparator=comparator,
        comparator_pretrained=not random_comparator, pretrained=not random_encoder, width=width, latent=latent,
        code_channels=code_channels, discriminator_features=discriminator_features,
        checkpoint_every=checkpoint_every, seed=seed, device=device,
    )
    path = train_generator(config, resume=resume, progress=not (no_progress or quiet))
    click.echo(f"wrote {path}")


@deepsim.command("evaluate")
@click.argument("checkpoint", type=click.Path())
@click.option("--data", required=True, type=click.Path(), help="Folder of test images (central crops are used).")
@click.option("--out", required=True, type=click.Path(), help="Folder for errors.json and the image grids.")
@click.option("--comparator", default=None,
              help="Feature space of the normalised error (default: the run's comparator).")
@click.option("--iterations", type=int, default=4, show_default=True, help="Re-encoding iterations.")
@device_option
def evaluate_command(checkpoint, data, out, comparator, iterations, device) -> None:
    """Normalised errors (paper, Table 2), re-encoding and interpolation grids of a trained model."""
    from .evaluate import evaluate_run

    errors = evaluate_run(checkpoint, data, out, iterations=iterations, comparator=comparator, device=device)
    click.echo(json.dumps(errors, indent=2))


@deepsim.command("demo")
@click.option("--out", required=True, type=click.Path(), help="Folder for data, runs, table and figures.")
@click.option("--iterations", type=int, default=500, show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate (paper: 2e-4).")
@click.option("--size", type=int, default=64, show_default=True, help="Patch size, 32 to 150.")
@click.option("--width", type=float, default=0.5, show_default=True)
@click.option("--n-test", type=int, default=16, show_default=True, help="Held-out test patches.")
@click.option("--metric", "-m", "metrics", multiple=True,
              help="Metrics of the evaluation (default: all of the registry's usual ones).")
@click.option("--metric-loss", default=None, help="Also train a generator with this registry metric as its loss.")
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch CPU threads (0: torch's default). One is the most efficient on a busy shared machine.")
@progress_options
@device_option
def demo_command(out, iterations, batch_size, lr, size, width, n_test, metrics, metric_loss, threads, no_progress,
                 quiet, device) -> None:
    """Train an image-loss and a DeePSiM autoencoder on scikit-image photos and compare them with every metric."""
    from .demo import DEMO_METRICS, run_demo

    _set_threads(threads)
    if iterations < 1 or batch_size < 1 or n_test < 2:
        raise InputError("--iterations and --batch-size must be at least 1 and --n-test at least 2")
    run_demo(out, iterations=iterations, batch_size=batch_size, lr=lr, size=size, width=width, n_test=n_test,
             metric_names=tuple(metrics) or DEMO_METRICS, metric_loss=metric_loss, progress=not (no_progress or quiet),
             log=click.echo, device=device)


COMMANDS: list = [deepsim]
