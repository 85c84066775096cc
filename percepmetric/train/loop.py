"""The training loop: LPIPS ``lin`` / ``tune`` / ``scratch`` on 2AFC triplets, on one process or many.

Per step (Zhang et al. 2018, appendix; defaults of the original ``train.py``): take a batch of
triplets, compute ``d0 = d(ref, p0)``, ``d1 = d(ref, p1)``, let the ranking head G predict the
judge fraction, minimise binary cross-entropy with Adam (lr 1e-4, betas (0.5, 0.999)), then clamp
the calibration weights w at zero. The learning rate stays at its base value and then decays
linearly over the last ``decay_epochs`` epochs (:func:`~percepmetric.train.ranking.learning_rate`).

Files in ``out/``: ``latest.pt`` (the state to resume from, written atomically at the end of
every epoch and every ``save_every`` steps), ``epoch_NNN.pt`` (the state after epoch NNN),
``log.jsonl`` (one JSON row per epoch: loss, training 2AFC, lr, seconds) and, at the end,
``final.pt``: the trained metric, loadable by ``create_metric("lpips", weights=...)``.

Resuming restores model, G, optimiser, epoch, step within the epoch, the running epoch sums and
the RNG states; the order of triplets in an epoch is a function of (seed, epoch) alone
(:class:`~torch.utils.data.DistributedSampler`), so a resumed run takes exactly the steps the
uninterrupted one would have. A resume is refused when a setting or any byte of the data differs.

Every checkpoint holds tensors and plain values only and is read with ``weights_only=True``
(:mod:`percepmetric.checkpoints`): a hostile ``latest.pt`` is refused and nothing in it runs.
Files are written atomically and follow the umask; temporaries that a kill during a write left
behind are removed when the next run starts.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DistributedSampler

from ..checkpoints import (load_checkpoint_file, numpy_rng_state, remove_stale_temporaries, save_checkpoint,
                           set_numpy_rng_state)
from ..data.bapps import to_tensor
from ..errors import InputError
from ..io import atomic_write_text, prepare_output_dir
from .data import Triplets
from .distributed import Dist, all_gather_rows, setup, teardown
from .model import VARIANTS, W_INITS, LPIPSTrainable
from .ranking import RankingHead, learning_rate, ranking_loss, two_afc_agreement

__all__ = ["TrainConfig", "TwoAFCModel", "train", "load_checkpoint", "check_loop_options",
           "check_run_folder", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "percepmetric-train"
# 2: the NumPy RNG state is stored as a tensor and numbers (version 1 pickled it, so cannot be read safely).
CHECKPOINT_VERSION = 2
RESUME_FIELDS = ("version", "config", "data", "model", "optimizer", "epoch", "step", "global_step", "sums",
                 "history", "rng")
# What a run writes into --out; a kill during a write leaves `.NAME.*.tmp`, removed at the next start.
RUN_FILES = ("latest.pt", "epoch_[0-9][0-9][0-9].pt", "final.pt", "log.jsonl", "eval.json")
STATS_BATCH = 100  # triplets per trunk pass when precomputing lin statistics


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (the run's identity; stored in every checkpoint).

    ``epochs`` is the total; the last ``decay_epochs`` of them decay the rate linearly
    (default: half, rounded down, so 10 epochs = 5 constant + 5 decaying as in the paper).
    """

    net: str = "alex"
    variant: str = "lin"
    epochs: int = 10
    decay_epochs: int | None = None
    batch_size: int = 50
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    hidden: int = 32
    eps: float = 0.1
    w_init: str = "ones"
    seed: int = 0

    def resolved(self) -> "TrainConfig":
        """Defaults filled in and every value checked; :class:`InputError` names the bad option."""
        from ..nets.backbones import canonical_net

        cfg = replace(self, net=canonical_net(self.net),
                      decay_epochs=self.epochs // 2 if self.decay_epochs is None else self.decay_epochs)
        if cfg.variant not in VARIANTS:
            raise InputError(f"--variant {cfg.variant!r}: choose one of {', '.join(VARIANTS)}")
        if cfg.w_init not in W_INITS:
            raise InputError(f"--w-init {cfg.w_init!r}: choose one of {', '.join(W_INITS)}")
        if cfg.epochs < 1:
            raise InputError(f"--epochs must be at least 1, got {cfg.epochs}")
        if not 0 <= cfg.decay_epochs <= cfg.epochs:
            raise InputError(f"--decay-epochs must lie in [0, --epochs={cfg.epochs}], got {cfg.decay_epochs}")
        if cfg.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {cfg.batch_size}")
        if not cfg.lr > 0:
            raise InputError(f"--lr must be positive, got {cfg.lr}")
        if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
            raise InputError(f"--beta1/--beta2 must lie in [0, 1), got {cfg.beta1}, {cfg.beta2}")
        if cfg.hidden < 1 or not cfg.eps > 0:
            raise InputError(f"--hidden must be >= 1 and --eps > 0, got {cfg.hidden}, {cfg.eps}")
        return cfg


class TwoAFCModel(nn.Module):
    """Metric + ranking head, the one module the optimiser (and DDP) sees.

    ``forward(s0, s1)`` -- statistics of frozen-trunk pairs, ``(N, sum C)`` each -- or
    ``forward(ref, p0, p1)`` -- image batches ``(N,3,H,W)`` in [0, 1] -- returns
    ``(d0, d1, logit)``, each ``(N,)``; ``sigmoid(logit)`` predicts the judge fraction.
    """

    def __init__(self, lpips: LPIPSTrainable, head: RankingHead) -> None:
        super().__init__()
        self.lpips = lpips
        self.head = head

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if len(inputs) == 2:
            d0, d1 = (self.lpips.distance_from_stats(s) for s in inputs)
        else:
            d0, d1 = self.lpips.triplet_distances(*inputs)
        return d0, d1, self.head(d0, d1)


# ---------------------------------------------------------------------------- checkpoints

def load_checkpoint(path: str | Path) -> dict:
    """A training checkpoint written by :func:`train`, read without running any code.

    :class:`InputError` (one line naming the file) when it is absent, holds pickled objects,
    is not a training checkpoint, was written by a newer percepmetric, or lacks what a resume needs.
    """
    path = Path(path)
    ck = load_checkpoint_file(path, format=CHECKPOINT_FORMAT, required=RESUME_FIELDS,
                              what="percepmetric training checkpoint")
    if not isinstance(ck["version"], int) or ck["version"] > CHECKPOINT_VERSION:
        raise InputError(f"{path}: training checkpoint version {ck['version']!r} is newer than this "
                         f"percepmetric reads ({CHECKPOINT_VERSION})")
    names = {f.name for f in fields(TrainConfig)}
    if not isinstance(ck["config"], dict) or set(ck["config"]) != names:
        raise InputError(f"{path}: damaged percepmetric training checkpoint: its 'config' does not hold "
                         f"the training settings")
    if not isinstance(ck["data"], dict) or "sha1" not in ck["data"]:
        raise InputError(f"{path}: damaged percepmetric training checkpoint: its 'data' has no fingerprint")
    return ck


def check_loop_options(save_every: int, stop_after: int | None) -> None:
    """:class:`InputError` for a ``save_every`` or ``stop_after`` that :func:`train` cannot honour."""
    if save_every < 0:
        raise InputError(f"--save-every must be >= 0, got {save_every}")
    if stop_after is not None and stop_after < 1:
        raise InputError(f"--stop-after must be at least 1, got {stop_after}")


def check_run_folder(out: str | Path, config: TrainConfig, resume: bool) -> dict | None:
    """The checks on ``out`` that need no data, so a command makes them before loading any.

    Without ``resume``, ``out`` must not hold a run already; with it, ``out/latest.pt`` must
    exist and have been made with ``config`` (resolved). Returns that checkpoint, or None.
    Creates nothing.
    """
    out = Path(out)
    latest = out / "latest.pt"
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if resume and not latest.is_file():
        raise InputError(f"--resume: {latest} does not exist (nothing to resume)")
    if not resume and latest.exists():
        raise InputError(f"{out} already holds a run ({latest.name}); pass --resume to continue it or choose another --out")
    if not resume:
        return None
    ck = load_checkpoint(latest)
    _refuse_other_settings(TrainConfig(**ck["config"]), config, out)
    return ck


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _refuse_other_settings(stored: TrainConfig, given: TrainConfig, out: Path) -> None:
    # A resumed run must take the steps the interrupted one would have: every setting must match.
    differ = [f.name for f in fields(TrainConfig) if getattr(stored, f.name) != getattr(given, f.name)]
    if "decay_epochs" in differ and "epochs" in differ and all(
            c.decay_epochs == c.epochs // 2 for c in (stored, given)):
        differ.remove("decay_epochs")  # it follows --epochs on both sides; naming it would send the user looking
    if differ:
        changes = "; ".join(f"{_option(k)} was {getattr(stored, k)}, now {getattr(given, k)}" for k in differ)
        raise InputError(f"--resume: the run in {out} was started with other settings ({changes}). To continue "
                         f"it, drop these options or give the stored values; to train with the new ones, "
                         f"use a new --out")


def _refuse_other_data(stored: dict, given: dict, out: Path) -> None:
    # Same content under another name (a moved or copied folder) is the same data.
    if stored["sha1"] == given["sha1"]:
        return

    def described(fingerprint: dict) -> str:
        sources = fingerprint.get("sources")
        if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources):
            return "unrecorded sources"
        return ", ".join(f"{s.get('name')} ({s.get('count')} triplets)" for s in sources)

    was, now = described(stored), described(given)
    what = f"was {was}, now {now}" if was != now else f"{now} has changed since the run started"
    raise InputError(f"--resume: the run in {out} was trained on other data ({what}). To continue it, give the "
                     f"same --data/--root/--split as when it started; to train on this data, use a new --out")


def data_fingerprint(data: Triplets) -> dict:
    """What the run was trained on: sources, count, patch size and a SHA-1 of every judge and patch.

    Every byte is hashed (1-2 s per GB), so a resume on data that changed anywhere is
    refused rather than mixed into the run.
    """
    digest = hashlib.sha1()
    for array in (data.judge, data.ref, data.p0, data.p1):
        digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return {"sources": list(data.sources), "triplets": len(data),
            "patch_size": list(data.ref.shape[1:3]), "sha1": digest.hexdigest()}


def _frozen_prefixes(model: "TwoAFCModel") -> tuple[str, ...]:
    # A frozen trunk is rebuilt from torchvision's ImageNet weights: no need to store it each epoch.
    return ("lpips.metric.trunk.",) if model.lpips.variant == "lin" else ()


def _trainable_state(model: "TwoAFCModel") -> dict:
    skip = _frozen_prefixes(model)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not (skip and k.startswith(skip))}


def _load_trainable_state(model: "TwoAFCModel", state: dict, path: Path) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    skip = _frozen_prefixes(model)
    missing = [k for k in missing if not (skip and k.startswith(skip))]
    if missing or unexpected:
        raise InputError(f"{path}: checkpoint does not fit the model (missing {missing[:2]}, unexpected {unexpected[:2]})")


def _rng_state() -> dict:
    # Tensors and plain values only, so the checkpoint loads with weights_only=True.
    return {"torch": torch.get_rng_state(), "numpy": numpy_rng_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    set_numpy_rng_state(state["numpy"])
    random.setstate(state["python"])


# ---------------------------------------------------------------------------- the loop

class _Sized:
    # DistributedSampler only needs len(dataset): batches are gathered from arrays directly.
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _lin_statistics(lp: LPIPSTrainable, data: Triplets, d: Dist, progress: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s0, s1)`` for every triplet, ``(N, sum C)`` each; each rank computes every world-th row."""
    from tqdm import tqdm

    mine = np.arange(d.rank, len(data), d.world)
    s0, s1 = [], []
    for start in tqdm(range(0, len(mine), STATS_BATCH), desc="trunk features", unit="batch",
                      disable=not (progress and d.is_main), leave=False):
        idx = mine[start:start + STATS_BATCH]
        a, b = lp.pair_stats(*(to_tensor(x[idx], d.device) for x in (data.ref, data.p0, data.p1)))
        s0.append(a)
        s1.append(b)
    width = sum(lp.channels)
    s0 = torch.cat(s0) if s0 else torch.zeros(0, width, device=d.device)
    s1 = torch.cat(s1) if s1 else torch.zeros(0, width, device=d.device)
    return all_gather_rows(d, s0, len(data)), all_gather_rows(d, s1, len(data))


def train(
    config: TrainConfig,
    data: Triplets,
    out: str | Path,
    *,
    resume: bool = False,
    cache_features: bool = True,
    save_every: int = 0,
    progress: bool = True,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
) -> dict:
    """Train an LPIPS variant on ``data`` and write checkpoints and ``final.pt`` into ``out``.

    Launched by torchrun, every process runs this same call (see :mod:`.distributed`); the
    global batch ``config.batch_size`` is split evenly across processes. Returns
    ``{"final": path, "history": [per-epoch rows], "config": dict, "data": fingerprint}``.

    ``cache_features`` (``lin`` only): keep the pair statistics of every triplet in memory
    (``2 * N * sum_l C_l * 4`` bytes: 9.2 KB per triplet for alex, 11.8 KB for vgg, 17.9 KB for
    squeeze) so the trunk runs once for the whole run instead of once per epoch.

    ``stop_after``: stop once this many steps (counted over the whole run) are done, leaving a
    checkpoint to ``resume`` from and no ``final.pt`` (``result["final"]`` is then ``None``):
    a time-boxed job, or a simulated interruption in the tests.
    """
    cfg = config.resolved()
    check_loop_options(save_every, stop_after)
    d = setup(device)  # checks the device before anything is written
    try:
        return _train(cfg, data, Path(out), d, resume, cache_features, save_every, progress, log, stop_after)
    finally:
        teardown(d)


def _train(cfg: TrainConfig, data: Triplets, out: Path, d: Dist, resume: bool, cache_features: bool,
           save_every: int, progress: bool, log: Callable[[str], None] | None, stop_after: int | None) -> dict:
    from tqdm import tqdm

    from .model import export_metric

    say = (log or print) if d.is_main else (lambda _msg: None)
    if cfg.batch_size % d.world:
        raise InputError(f"--batch-size {cfg.batch_size} must be divisible by the {d.world} processes")
    if len(data) == 0:
        raise InputError("no training triplets")
    local_batch = cfg.batch_size // d.world
    latest = out / "latest.pt"
    # Refuse a mismatching run before building anything, and create --out only once all is well.
    ck = check_run_folder(out, cfg, resume)
    fingerprint = data_fingerprint(data)
    if ck is not None:
        _refuse_other_data(ck["data"], fingerprint, out)
    prepare_output_dir(out)  # every rank: each fails with the same line rather than waiting for rank 0
    if d.is_main:
        remove_stale_temporaries(out, RUN_FILES)

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    random.seed(cfg.seed)
    model = TwoAFCModel(LPIPSTrainable(cfg.net, cfg.variant, cfg.w_init, seed=cfg.seed),
                        RankingHead(cfg.hidden, eps=cfg.eps)).to(d.device)
    lp = model.lpips
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    epoch, step, global_step, history = 1, 0, 0, []
    sums = torch.zeros(3, dtype=torch.float64, device=d.device)  # loss * n, agreement, n
    if resume:
        try:
            _load_trainable_state(model, ck["model"], latest)
            optimizer.load_state_dict(ck["optimizer"])
            epoch, step, global_step, history = ck["epoch"], ck["step"], ck["global_step"], ck["history"]
            # The stored sums are totals over all ranks: rank 0 carries them, the others restart at 0.
            sums = ck["sums"].to(d.device) if d.is_main else torch.zeros_like(sums)
            _set_rng_state(ck["rng"])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            # The fields are present (load_checkpoint checked) but hold something else: damaged or forged.
            raise InputError(f"{latest}: damaged percepmetric training checkpoint ({type(exc).__name__} "
                             f"while restoring the run)") from None
        say(f"resuming {out} at epoch {epoch}, step {step} ({global_step} steps done)")

    def checkpoint(next_epoch: int, next_step: int, running: torch.Tensor, also: Path | None = None) -> None:
        # Every rank calls this (the epoch sums are summed over ranks); rank 0 writes.
        running = _summed_over_ranks(d, running)
        if not d.is_main:
            return
        state = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": asdict(cfg), "data": fingerprint,
                 "model": _trainable_state(model), "optimizer": optimizer.state_dict(),
                 "epoch": next_epoch, "step": next_step, "global_step": global_step,
                 "sums": running.cpu(), "history": history, "rng": _rng_state()}
        save_checkpoint(state, latest)
        if also is not None:
            save_checkpoint(state, also)

    def stopped(where: str) -> dict:
        say(f"stopped after step {global_step} ({where}); continue with --resume")
        d.barrier()
        return {"final": None, "history": history, "config": asdict(cfg), "data": fingerprint}

    wrapped: nn.Module = model
    if d.active:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)

    lin = cfg.variant == "lin"
    cache = _lin_statistics(lp, data, d, progress) if lin and cache_features and epoch <= cfg.epochs else None
    sampler = DistributedSampler(_Sized(len(data)), num_replicas=d.world, rank=d.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    model.train()
    while epoch <= cfg.epochs:
        started = time.perf_counter()
        lr = learning_rate(cfg.lr, epoch, cfg.epochs, cfg.decay_epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # This rank's share of the epoch's permutation, a function of (seed, epoch) only.
        sampler.set_epoch(epoch)
        order = np.fromiter(iter(sampler), dtype=np.int64)
        batches = [order[i:i + local_batch] for i in range(0, len(order), local_batch)]
        if step == 0:
            sums = torch.zeros_like(sums)
        bar = tqdm(total=len(batches), initial=step, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch",
                   disable=not (progress and d.is_main), leave=False)
        for k in range(step, len(batches)):
            idx = batches[k]
            judge = torch.from_numpy(data.judge[idx]).to(d.device)
            d0, d1, logit = wrapped(*_batch_inputs(lp, data, idx, cache, d.device))
            loss = ranking_loss(logit, judge)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lp.clamp_weights_()
            global_step += 1
            with torch.no_grad():
                agree = two_afc_agreement(d0.detach(), d1.detach(), judge).double().sum()
                sums += torch.stack((loss.detach().double() * len(idx), agree, agree.new_tensor(float(len(idx)))))
            bar.update(1)
            if k + 1 < len(batches) and ((save_every and global_step % save_every == 0) or global_step == stop_after):
                checkpoint(epoch, k + 1, sums)
                if global_step == stop_after:
                    bar.close()
                    return stopped(f"epoch {epoch}, step {k + 1}")
        bar.close()
        totals = _summed_over_ranks(d, sums)
        row = {"epoch": epoch, "lr": lr, "loss": (totals[0] / totals[2]).item(),
               "train_2afc": (totals[1] / totals[2]).item(), "triplets": int(totals[2].item()),
               "steps": global_step, "seconds": round(time.perf_counter() - started, 3)}
        history.append(row)
        say(f"epoch {epoch}/{cfg.epochs}  lr {lr:.3g}  loss {row['loss']:.4f}  "
            f"train 2AFC {100 * row['train_2afc']:.2f}%  ({row['triplets']} triplets, {row['seconds']:.1f} s)")
        epoch, step = epoch + 1, 0
        checkpoint(epoch, 0, torch.zeros_like(sums), also=out / f"epoch_{epoch - 1:03d}.pt")
        if d.is_main:
            atomic_write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in history))
        if global_step == stop_after and epoch <= cfg.epochs:
            return stopped(f"end of epoch {epoch - 1}")

    final = out / "final.pt"
    if d.is_main:
        meta = {"trained_on": fingerprint, "training": asdict(cfg), "history": history,
                "processes": d.world, "steps": global_step}
        export_metric(lp, final, meta)
    d.barrier()
    return {"final": final, "history": history, "config": asdict(cfg), "data": fingerprint}


def _batch_inputs(lp: LPIPSTrainable, data: Triplets, idx: np.ndarray, cache, device: torch.device) -> tuple:
    """What :class:`TwoAFCModel` takes for triplets ``idx``: cached or fresh lin statistics, or images."""
    if cache is not None:
        rows = torch.from_numpy(idx).to(device)
        return cache[0][rows], cache[1][rows]
    images = tuple(to_tensor(x[idx], device) for x in (data.ref, data.p0, data.p1))
    return lp.pair_stats(*images) if lp.variant == "lin" else images


def _summed_over_ranks(d: Dist, sums: torch.Tensor) -> torch.Tensor:
    totals = sums.clone()
    if d.active:
        torch.distributed.all_reduce(totals)
    return totals
