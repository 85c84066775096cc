"""``percepmetric train``: calibrate or train an LPIPS variant on 2AFC judgments.

The same command runs on several processes when launched by torchrun::

    percepmetric train --variant tune --net alex --root BAPPS --out run/
    torchrun --nproc_per_node=4 -m percepmetric.train --variant tune --net alex --root BAPPS --out run/
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..io import atomic_write_text

DEFAULT_TRAIN_SPLITS = ("train/traditional", "train/cnn", "train/mix")


@click.command("train")
@click.option("--variant", default="lin", show_default=True,
              help="lin (frozen trunk, learn w), tune (ImageNet trunk trained with w) or scratch (random trunk).")
@click.option("--net", default="alex", show_default=True, help="Trunk: alex, vgg or squeeze.")
@click.option("--root", default=None, type=click.Path(file_okay=False),
              help="BAPPS folder (as in `bench`; default $PERCEPMETRIC_BAPPS, "
                   "else ~/.local/share/percepmetric/bapps).")
@click.option("--split", "splits", multiple=True, metavar="NAME",
              help="2AFC split(s) to train on (repeatable; groups allowed). "
                   "Default: train/traditional, train/cnn, train/mix.")
@click.option("--data", "folders", multiple=True, metavar="FOLDER",
              help="Folder of your own triplets in BAPPS layout: ref/ p0/ p1/ judge/ (repeatable).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder: checkpoints, log.jsonl, final.pt.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--epochs", default=10, show_default=True, help="Total epochs.")
@click.option("--decay-epochs", default=None, type=int,
              help="Last epochs with linearly decaying rate [default: epochs // 2].")
@click.option("--batch-size", default=50, show_default=True,
              help="Triplets per step (the global batch across processes).")
@click.option("--lr", default=1e-4, show_default=True, help="Adam learning rate.")
@click.option("--beta1", default=0.5, show_default=True, help="Adam beta1.")
@click.option("--beta2", default=0.999, show_default=True, help="Adam beta2.")
@click.option("--hidden", default=32, show_default=True, help="Units per hidden layer of the ranking head G.")
@click.option("--eps", default=0.1, show_default=True, help="Guard in G's ratios d0/(d1+eps), d1/(d0+eps).")
@click.option("--w-init", default="ones", show_default=True,
              help="Initial w: ones (= baseline) or torch (PyTorch's default init clamped at 0, "
                   "as the original code).")
@click.option("--seed", default=0, show_default=True, help="Seed of the initialisation and of the triplet order.")
@click.option("--save-every", default=0, show_default=True,
              help="Also checkpoint every N steps (0: at epoch ends only).")
@click.option("--stop-after", default=None, type=int, metavar="STEPS",
              help="Stop (with a checkpoint) once this many steps of the run are done; continue later with --resume.")
@click.option("--cache-features/--no-cache-features", default=True, show_default=True,
              help="lin: keep every triplet's trunk statistics in memory (9-18 KB per triplet).")
@click.option("--val-split", "val_splits", multiple=True, metavar="NAME",
              help="2AFC split(s) to score the result on [default: the val/* splits present under --root].")
@click.option("--val-data", "val_folders", multiple=True, metavar="FOLDER",
              help="Triplet folder(s) to score the result on.")
@click.option("--no-eval", is_flag=True, help="Skip the evaluation at the end.")
@click.option("--device", default="auto", show_default=True,
              help="auto (cuda if available, else cpu), cpu, cuda or cuda:N; "
                   "under torchrun, cuda means cuda:LOCAL_RANK.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
def train_command(variant: str, net: str, root: str | None, splits: tuple[str, ...], folders: tuple[str, ...],
                  out: str, resume: bool, epochs: int, decay_epochs: int | None, batch_size: int, lr: float,
                  beta1: float, beta2: float, hidden: int, eps: float, w_init: str, seed: int, save_every: int,
                  stop_after: int | None, cache_features: bool, val_splits: tuple[str, ...],
                  val_folders: tuple[str, ...], no_eval: bool, device: str, progress: bool) -> None:
    """Train LPIPS (lin, tune or scratch) on 2AFC judgments; writes OUT/final.pt.

    Use the result anywhere a metric goes: `percepmetric score --metric lpips --weights OUT/final.pt ...`.
    """
    from ..devices import resolve_device
    from .data import load_training_triplets
    from .distributed import launched_by_torchrun
    from .evaluate import evaluate_weights, present_val_splits
    from .loop import LpipsTrainConfig, check_loop_options, check_run_folder, train_lpips

    # The cheap checks first (options, device, run folder): a mistake is one line before the data
    # loads, which can take minutes, and nothing is created until everything has been checked.
    config = LpipsTrainConfig(net=net, variant=variant, epochs=epochs, decay_epochs=decay_epochs,
                              batch_size=batch_size, lr=lr, beta1=beta1, beta2=beta2, hidden=hidden, eps=eps,
                              w_init=w_init, seed=seed).resolved()
    check_loop_options(save_every, stop_after)
    device = str(resolve_device(device))  # "auto" becomes what it means here; under torchrun, see setup()
    check_run_folder(out, config, resume)
    if not splits and not folders:
        splits = DEFAULT_TRAIN_SPLITS
    data = load_training_triplets(root, list(splits), list(folders))
    is_main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    if is_main:
        names = ", ".join(f"{s['name']} ({s['count']})" for s in data.sources)
        click.echo(f"training lpips {config.variant} {config.net} on {len(data)} triplets: {names}", err=True)
    result = train_lpips(config, data, out, resume=resume, cache_features=cache_features, save_every=save_every,
                         progress=progress, device=device, log=lambda msg: click.echo(msg, err=True),
                         stop_after=stop_after)
    final = result["final"]
    if not is_main or final is None:
        return
    click.echo(f"wrote {final}")
    if no_eval:
        return
    if not val_splits and not val_folders and (root is not None or splits):
        val_names = present_val_splits(root)
    else:
        from ..data.bapps import expand_splits

        val_names = expand_splits(list(val_splits))
    # Under torchrun the process group is gone by now: evaluate on this rank's default device.
    eval_device = None if launched_by_torchrun() else device
    rows = evaluate_weights(final, root, val_names, list(val_folders), device=eval_device)
    for row in rows:
        click.echo(f"{row['split']:<24} 2AFC {100 * row['2afc']:6.2f}%  ({row['triplets']} triplets)")
    if rows:
        atomic_write_text(Path(out) / "eval.json", json.dumps(rows, indent=2))


COMMANDS: list[click.Command] = [train_command]
