"""The training loop: LPIPS ``lin`` / ``tune`` / ``scratch`` on 2AFC triplets, on one process or many.

Per step (Zhang et al. 2018, appendix; defaults of the original ``train.py``): take a batch of
triplets, compute ``d0 = d(ref, p0)``, ``d1 = d(ref, p1)``, let the ranking head G predict the
judge fraction, minimise binary cross-entropy with Adam (lr 1e-4, betas (0.5, 0.999)), then clamp
the calibration weights w at zero. The learning rate stays at its base value and then decays
linearly over the last ``decay_epochs`` epochs (:func:`~percepmetric.train.ranking.learning_rate`).

Reading order: :class:`LpipsTrainConfig` (what decides the weights), :func:`train_lpips` (the
checks on the run folder and the data, then a :class:`LpipsTrainer`), :class:`LpipsTrainer`
(construction, :meth:`~LpipsTrainer.step`, :meth:`~LpipsTrainer.fit`, :meth:`~LpipsTrainer.save`,
:meth:`~LpipsTrainer.load_state`), then the checks and the checkpoint reader.

Files in ``out/``: ``latest.pt`` (the state to resume from, written atomically at the end of
every epoch and every ``save_every`` steps), ``epoch_NNN.pt`` (the state after epoch NNN),
``log.jsonl`` (one JSON row per epoch: loss, training 2AFC, lr, seconds) and, at the end,
``final.pt``: the trained metric, loadable by ``create_metric("lpips", weights=...)``.

Resuming restores model, G, optimiser, epoch, step within the epoch, the running epoch sums and
the RNG states; the order of triplets in an epoch is a function of (seed, epoch) alone
(:class:`~torch.utils.data.DistributedSampler`), so a resumed run takes exactly the steps the
uninterrupted one would have. A resume is refused when a setting or any byte of the data differs.

Every checkpoint holds tensors and plain values only, is written by
:func:`~percepmetric.checkpoints.save_checkpoint` and read by
:func:`~percepmetric.checkpoints.load_checkpoint_file` (``weights_only=True``): a hostile
``latest.pt`` is refused and nothing in it runs. Files are written atomically and follow the
umask; temporaries that a kill during a write left behind are removed when the next run starts.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from ..checkpoints import (
    load_checkpoint_file,
    numpy_rng_state,
    remove_stale_temporaries,
    save_checkpoint,
    set_numpy_rng_state,
)
from ..data.bapps import TwoAFCSplit, to_tensor
from ..errors import InputError
from ..io import atomic_write_text, prepare_output_dir
from ..stats import two_afc_credit
from .distributed import Dist, all_gather_rows, setup, teardown
from .model import TRAINABLE_VARIANTS, W_INITS, LPIPSTrainable, export_metric
from .ranking import RankingHead, learning_rate, ranking_loss

__all__ = [
    "CHECKPOINT_FORMAT",
    "LpipsTrainConfig",
    "LpipsTrainer",
    "TrainingResult",
    "TwoAFCModel",
    "check_loop_options",
    "check_run_folder",
    "data_fingerprint",
    "load_training_checkpoint",
    "train_lpips",
]

CHECKPOINT_FORMAT = "percepmetric-train"
# The layout of a training checkpoint; a file of a later version is refused. Version 2 stores the NumPy
# RNG state as a tensor and numbers, so the file loads with ``weights_only`` (no pickled objects).
CHECKPOINT_VERSION = 2
RESUME_FIELDS = ("version", "config", "data", "model", "optimizer", "epoch", "step", "global_step", "sums",
                 "history", "rng")
# What a run writes into --out; a kill during a write leaves `.NAME.*.tmp`, removed at the next start.
RUN_FILES = ("latest.pt", "epoch_[0-9][0-9][0-9].pt", "final.pt", "log.jsonl", "eval.json")
STATS_BATCH = 100  # triplets per trunk pass when precomputing lin statistics

EpochRow = dict[str, float]  # one line of log.jsonl: epoch, lr, loss, train_2afc, triplets, steps, seconds
Fingerprint = dict[str, Any]  # what data_fingerprint returns; stored in every checkpoint


@dataclass(frozen=True)
class LpipsTrainConfig:
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

    def resolved(self) -> LpipsTrainConfig:
        """Defaults filled in and every value checked; :class:`InputError` names the bad option."""
        from ..nets.backbones import canonical_net

        decay = self.decaying_epochs
        cfg = replace(self, net=canonical_net(self.net), decay_epochs=decay)
        if cfg.variant not in TRAINABLE_VARIANTS:
            raise InputError(f"--variant {cfg.variant!r}: choose one of {', '.join(TRAINABLE_VARIANTS)}")
        if cfg.w_init not in W_INITS:
            raise InputError(f"--w-init {cfg.w_init!r}: choose one of {', '.join(W_INITS)}")
        if cfg.epochs < 1:
            raise InputError(f"--epochs must be at least 1, got {cfg.epochs}")
        if not 0 <= decay <= cfg.epochs:
            raise InputError(f"--decay-epochs must lie in [0, --epochs={cfg.epochs}], got {decay}")
        if cfg.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {cfg.batch_size}")
        if not cfg.lr > 0:
            raise InputError(f"--lr must be positive, got {cfg.lr}")
        if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
            raise InputError(f"--beta1/--beta2 must lie in [0, 1), got {cfg.beta1}, {cfg.beta2}")
        if cfg.hidden < 1 or not cfg.eps > 0:
            raise InputError(f"--hidden must be >= 1 and --eps > 0, got {cfg.hidden}, {cfg.eps}")
        return cfg

    @property
    def decaying_epochs(self) -> int:
        """How many of the last epochs decay the rate: ``decay_epochs``, or half of ``epochs`` when None."""
        return self.epochs // 2 if self.decay_epochs is None else self.decay_epochs


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


class TrainingResult(TypedDict):
    """What :func:`train_lpips` and :meth:`LpipsTrainer.fit` return.

    ``final``: the path of ``final.pt``, or None when ``stop_after`` stopped the run first.
    """

    final: Path | None
    history: list[EpochRow]
    config: dict[str, Any]
    data: Fingerprint


# ---------------------------------------------------------------------------- the entry point

def train_lpips(
    config: LpipsTrainConfig,
    data: TwoAFCSplit,
    out: str | Path,
    *,
    resume: bool = False,
    cache_features: bool = True,
    save_every: int = 0,
    progress: bool = True,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
) -> TrainingResult:
    """Train an LPIPS variant on ``data`` and write checkpoints and ``final.pt`` into ``out``.

    Launched by torchrun, every process runs this same call (see :mod:`.distributed`); the
    global batch ``config.batch_size`` is split evenly across processes.

    ``cache_features`` (``lin`` only): keep the pair statistics of every triplet in memory
    (``2 * N * sum_l C_l * 4`` bytes: 9.2 KB per triplet for alex, 11.8 KB for vgg, 17.9 KB for
    squeeze) so the trunk runs once for the whole run instead of once per epoch.

    ``stop_after``: stop once this many steps (counted over the whole run) are done, leaving a
    checkpoint to ``resume`` from and no ``final.pt`` (``result["final"]`` is then ``None``):
    a time-boxed job, or a simulated interruption in the tests.

    Everything a user can get wrong is refused, in one :class:`InputError` line, before ``out``
    is created: the options, the device, the batch against the number of processes, the run
    folder (:func:`check_run_folder`) and, on resume, the data (its :func:`data_fingerprint`).
    """
    cfg = config.resolved()
    check_loop_options(save_every, stop_after)
    dist = setup(device)  # checks the device before anything is written
    try:
        out = Path(out)
        if cfg.batch_size % dist.world:
            raise InputError(f"--batch-size {cfg.batch_size} must be divisible by the {dist.world} processes")
        if len(data) == 0:
            raise InputError("no training triplets")
        checkpoint = check_run_folder(out, cfg, resume)
        fingerprint = data_fingerprint(data)
        if checkpoint is not None:
            _refuse_other_data(checkpoint["data"], fingerprint, out)
        prepare_output_dir(out)  # every rank: each fails with the same line rather than waiting for rank 0
        if dist.is_main:
            remove_stale_temporaries(out, RUN_FILES)
        trainer = LpipsTrainer(cfg, data, out, dist, fingerprint=fingerprint, cache_features=cache_features,
                               progress=progress, log=log)
        if checkpoint is not None:
            trainer.load_state(checkpoint, out / "latest.pt")
        return trainer.fit(save_every=save_every, stop_after=stop_after)
    finally:
        teardown(dist)


# ---------------------------------------------------------------------------- the trainer

class LpipsTrainer:
    """One training run as this process sees it: the model and its optimiser, the schedule, the
    order of the triplets, and where the run stands (epoch, step, this epoch's running sums) --
    which, with the RNG states, is what a checkpoint holds.

    :func:`train_lpips` checks the run folder and the data, builds one, continues it from
    ``latest.pt`` with :meth:`load_state` on resume, and calls :meth:`fit`. ``config`` must be
    :meth:`~LpipsTrainConfig.resolved`, ``out`` an existing folder, and ``config.batch_size``
    divisible by ``dist.world``.
    """

    def __init__(self, config: LpipsTrainConfig, data: TwoAFCSplit, out: str | Path, dist: Dist, *,
                 fingerprint: Fingerprint | None = None, cache_features: bool = True, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> None:
        self.config, self.data, self.out, self.dist = config, data, Path(out), dist
        self.fingerprint = data_fingerprint(data) if fingerprint is None else fingerprint
        self.cache_features, self.progress = cache_features, progress
        self.say: Callable[[str], None] = (log or print) if dist.is_main else _silent

        # The model: seeded, so every process (and every rerun) starts from the same weights.
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        random.seed(config.seed)
        self.model = TwoAFCModel(LPIPSTrainable(config.net, config.variant, config.w_init, seed=config.seed),
                                 RankingHead(config.hidden, eps=config.eps)).to(dist.device)
        self.lpips = self.model.lpips
        # What the steps run through: under torchrun, DDP averages the gradients across processes.
        self.stepper: nn.Module = self.model
        if dist.active:
            from torch.nn.parallel import DistributedDataParallel

            self.stepper = DistributedDataParallel(
                self.model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)

        # The optimiser; its rate follows the schedule, set at the start of every epoch (learning_rate).
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr, betas=(config.beta1, config.beta2))

        # The data order: this process's share of each epoch's permutation, a function of (seed, epoch) only.
        self.sampler: DistributedSampler[int] = DistributedSampler(
            _Sized(len(data)), num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=config.seed, drop_last=False)
        self.local_batch = config.batch_size // dist.world

        # Where the run stands.
        self.epoch = 1  # the epoch being trained (1-based); epochs + 1 once the run is done
        self.epoch_step = 0  # steps of this epoch already taken
        self.global_step = 0  # steps of the whole run
        self.history: list[EpochRow] = []
        self.sums = self._zero_sums()  # this process's loss * n, agreement, n over this epoch so far
        self._lin_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ one step

    def step(self, batch: np.ndarray) -> None:
        """One optimiser step on the triplets ``batch`` (indices into the data: this process's
        share of a global batch), then w is clamped at zero; adds to the epoch's sums."""
        judge = torch.from_numpy(self.data.judge[batch]).to(self.dist.device)
        d0, d1, logit = self.stepper(*self._model_inputs(batch))
        loss = ranking_loss(logit, judge)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.lpips.clamp_weights_()
        self.epoch_step += 1
        self.global_step += 1
        with torch.no_grad():
            agree = two_afc_credit(d0.detach(), d1.detach(), judge).double().sum()
            self.sums += torch.stack((loss.detach().double() * len(batch), agree, agree.new_tensor(float(len(batch)))))

    def epoch_batches(self) -> list[np.ndarray]:
        """This process's batches of triplet indices for the current epoch, in the order they are taken."""
        self.sampler.set_epoch(self.epoch)
        order = np.fromiter(iter(self.sampler), dtype=np.int64)
        return [order[i:i + self.local_batch] for i in range(0, len(order), self.local_batch)]

    def _model_inputs(self, batch: np.ndarray) -> tuple[torch.Tensor, ...]:
        """What :class:`TwoAFCModel` takes for triplets ``batch``: cached or fresh lin statistics, or images."""
        device = self.dist.device
        if self._lin_cache is not None:
            rows = torch.from_numpy(batch).to(device)
            return self._lin_cache[0][rows], self._lin_cache[1][rows]
        images = tuple(to_tensor(x[batch], device) for x in (self.data.ref, self.data.p0, self.data.p1))
        return self.lpips.pair_stats(*images) if self.lpips.variant == "lin" else images

    # ------------------------------------------------------------------ the run

    def fit(self, save_every: int = 0, stop_after: int | None = None) -> TrainingResult:
        """Train the epochs that remain, checkpointing at every epoch end (and every ``save_every``
        steps); write ``final.pt``. ``stop_after``: stop, with a checkpoint and without
        ``final.pt``, once the run has taken that many steps (see :func:`train_lpips`)."""
        cfg = self.config
        if cfg.variant == "lin" and self.cache_features and self.epoch <= cfg.epochs and self._lin_cache is None:
            self._lin_cache = self._lin_statistics()
        self.model.train()
        while self.epoch <= cfg.epochs:
            if not self._train_epoch(save_every, stop_after):
                return self._stopped(f"epoch {self.epoch}, step {self.epoch_step}")
            if self.global_step == stop_after and self.epoch <= cfg.epochs:
                return self._stopped(f"end of epoch {self.epoch - 1}")
        return self._finish()

    def _train_epoch(self, save_every: int, stop_after: int | None) -> bool:
        """Take the rest of the current epoch's steps, then log it and checkpoint; False when
        ``stop_after`` stopped it in the middle (after a checkpoint)."""
        from tqdm import tqdm

        cfg = self.config
        started = time.perf_counter()
        lr = learning_rate(cfg.lr, self.epoch, cfg.epochs, cfg.decaying_epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batches = self.epoch_batches()
        if self.epoch_step == 0:
            self.sums = self._zero_sums()
        with tqdm(total=len(batches), initial=self.epoch_step, desc=f"epoch {self.epoch}/{cfg.epochs}", unit="batch",
                  disable=not (self.progress and self.dist.is_main), leave=False) as bar:
            for batch in batches[self.epoch_step:]:
                self.step(batch)
                bar.update(1)
                # A checkpoint at the epoch's last step would be the end-of-epoch one, written below.
                if self.epoch_step < len(batches) and (
                        (save_every and self.global_step % save_every == 0) or self.global_step == stop_after):
                    self.save()
                    if self.global_step == stop_after:
                        return False
        self._end_epoch(lr, time.perf_counter() - started)
        return True

    def _end_epoch(self, lr: float, seconds: float) -> None:
        totals = _summed_over_ranks(self.dist, self.sums)
        row: EpochRow = {"epoch": self.epoch, "lr": lr, "loss": (totals[0] / totals[2]).item(),
                         "train_2afc": (totals[1] / totals[2]).item(), "triplets": int(totals[2].item()),
                         "steps": self.global_step, "seconds": round(seconds, 3)}
        self.history.append(row)
        self.say(f"epoch {self.epoch}/{self.config.epochs}  lr {lr:.3g}  loss {row['loss']:.4f}  "
                 f"train 2AFC {100 * row['train_2afc']:.2f}%  ({row['triplets']} triplets, {row['seconds']:.1f} s)")
        self.epoch, self.epoch_step = self.epoch + 1, 0
        self.sums = self._zero_sums()
        self.save(also=f"epoch_{self.epoch - 1:03d}.pt")
        if self.dist.is_main:
            atomic_write_text(self.out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))

    def _stopped(self, where: str) -> TrainingResult:
        self.say(f"stopped after step {self.global_step} ({where}); continue with --resume")
        self.dist.barrier()
        return self._result(None)

    def _finish(self) -> TrainingResult:
        final = self.out / "final.pt"
        if self.dist.is_main:
            meta = {"trained_on": self.fingerprint, "training": asdict(self.config), "history": self.history,
                    "processes": self.dist.world, "steps": self.global_step}
            export_metric(self.lpips, final, meta)
        self.dist.barrier()
        return self._result(final)

    def _result(self, final: Path | None) -> TrainingResult:
        return {"final": final, "history": self.history, "config": asdict(self.config), "data": self.fingerprint}

    def _lin_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s0, s1)`` for every triplet, ``(N, sum C)`` each; each process computes every world-th row."""
        from tqdm import tqdm

        d, data, lp = self.dist, self.data, self.lpips
        mine = np.arange(d.rank, len(data), d.world)
        s0, s1 = [], []
        for start in tqdm(range(0, len(mine), STATS_BATCH), desc="trunk features", unit="batch",
                          disable=not (self.progress and d.is_main), leave=False):
            idx = mine[start:start + STATS_BATCH]
            a, b = lp.pair_stats(*(to_tensor(x[idx], d.device) for x in (data.ref, data.p0, data.p1)))
            s0.append(a)
            s1.append(b)
        width = sum(lp.channels)
        rows0 = torch.cat(s0) if s0 else torch.zeros(0, width, device=d.device)
        rows1 = torch.cat(s1) if s1 else torch.zeros(0, width, device=d.device)
        return all_gather_rows(d, rows0, len(data)), all_gather_rows(d, rows1, len(data))

    def _zero_sums(self) -> torch.Tensor:
        return torch.zeros(3, dtype=torch.float64, device=self.dist.device)

    # ------------------------------------------------------------------ checkpoints

    def save(self, also: str | None = None) -> None:
        """Write where the run stands to ``out/latest.pt`` (and to ``out/ALSO``), atomically.

        Every process calls this (the epoch's sums are summed over processes); rank 0 writes.
        """
        sums = _summed_over_ranks(self.dist, self.sums)
        if not self.dist.is_main:
            return
        state = self._state(sums)
        save_checkpoint(state, self.out / "latest.pt")
        if also is not None:
            save_checkpoint(state, self.out / also)

    def _state(self, summed_sums: torch.Tensor) -> dict[str, Any]:
        # Tensors and plain values only, so the file loads with weights_only=True.
        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": asdict(self.config),
                "data": self.fingerprint, "model": _trainable_state(self.model),
                "optimizer": self.optimizer.state_dict(), "epoch": self.epoch, "step": self.epoch_step,
                "global_step": self.global_step, "sums": summed_sums.cpu(), "history": self.history,
                "rng": _rng_state()}

    def load_state(self, checkpoint: dict[str, Any], path: Path) -> None:
        """Continue the run from ``checkpoint`` (:func:`load_training_checkpoint` of ``path``, made
        with this configuration and data: :func:`train_lpips` checks both).

        :class:`InputError` naming ``path`` when a field holds something this run cannot take.
        """
        try:
            _load_trainable_state(self.model, checkpoint["model"], path)
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.epoch, self.epoch_step = checkpoint["epoch"], checkpoint["step"]
            self.global_step, self.history = checkpoint["global_step"], checkpoint["history"]
            # The stored sums are totals over all processes: rank 0 carries them, the others restart at 0.
            self.sums = checkpoint["sums"].to(self.dist.device) if self.dist.is_main else self._zero_sums()
            _set_rng_state(checkpoint["rng"])
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            # The fields are present (load_training_checkpoint checked) but hold something else: damaged or forged.
            raise InputError(f"{path}: damaged percepmetric training checkpoint ({type(exc).__name__} "
                             f"while restoring the run)") from None
        self.say(f"resuming {self.out} at epoch {self.epoch}, step {self.epoch_step} "
                 f"({self.global_step} steps done)")


# ---------------------------------------------------------------------------- checks before a run

def check_loop_options(save_every: int, stop_after: int | None) -> None:
    """:class:`InputError` for a ``save_every`` or ``stop_after`` that :func:`train_lpips` cannot honour."""
    if save_every < 0:
        raise InputError(f"--save-every must be >= 0, got {save_every}")
    if stop_after is not None and stop_after < 1:
        raise InputError(f"--stop-after must be at least 1, got {stop_after}")


def check_run_folder(out: str | Path, config: LpipsTrainConfig, resume: bool) -> dict[str, Any] | None:
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
        raise InputError(f"{out} already holds a run ({latest.name}); pass --resume to continue it or choose "
                         f"another --out")
    if not resume:
        return None
    checkpoint = load_training_checkpoint(latest)
    _refuse_other_settings(LpipsTrainConfig(**checkpoint["config"]), config, out)
    return checkpoint


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint written by :meth:`LpipsTrainer.save`, read without running any code.

    :class:`InputError` (one line naming the file) when it is absent, holds pickled objects,
    is not a training checkpoint, was written by a newer percepmetric, or lacks what a resume needs.
    """
    path = Path(path)
    checkpoint = load_checkpoint_file(path, format=CHECKPOINT_FORMAT, required=RESUME_FIELDS,
                                      what="percepmetric training checkpoint")
    if not isinstance(checkpoint["version"], int) or checkpoint["version"] > CHECKPOINT_VERSION:
        raise InputError(f"{path}: training checkpoint version {checkpoint['version']!r} is newer than this "
                         f"percepmetric reads ({CHECKPOINT_VERSION})")
    names = {f.name for f in fields(LpipsTrainConfig)}
    if not isinstance(checkpoint["config"], dict) or set(checkpoint["config"]) != names:
        raise InputError(f"{path}: damaged percepmetric training checkpoint: its 'config' does not hold "
                         f"the training settings")
    if not isinstance(checkpoint["data"], dict) or "sha1" not in checkpoint["data"]:
        raise InputError(f"{path}: damaged percepmetric training checkpoint: its 'data' has no fingerprint")
    return checkpoint


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _refuse_other_settings(stored: LpipsTrainConfig, given: LpipsTrainConfig, out: Path) -> None:
    # A resumed run must take the steps the interrupted one would have: every setting must match.
    differ = [f.name for f in fields(LpipsTrainConfig) if getattr(stored, f.name) != getattr(given, f.name)]
    if "decay_epochs" in differ and "epochs" in differ and all(
            c.decay_epochs == c.epochs // 2 for c in (stored, given)):
        differ.remove("decay_epochs")  # it follows --epochs on both sides; naming it would send the user looking
    if differ:
        changes = "; ".join(f"{_option(k)} was {getattr(stored, k)}, now {getattr(given, k)}" for k in differ)
        raise InputError(f"--resume: the run in {out} was started with other settings ({changes}). To continue "
                         f"it, drop these options or give the stored values; to train with the new ones, "
                         f"use a new --out")


def _refuse_other_data(stored: Fingerprint, given: Fingerprint, out: Path) -> None:
    # Same content under another name (a moved or copied folder) is the same data.
    if stored["sha1"] == given["sha1"]:
        return

    def described(fingerprint: Fingerprint) -> str:
        sources = fingerprint.get("sources")
        if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources):
            return "unrecorded sources"
        return ", ".join(f"{s.get('name')} ({s.get('count')} triplets)" for s in sources)

    was, now = described(stored), described(given)
    what = f"was {was}, now {now}" if was != now else f"{now} has changed since the run started"
    raise InputError(f"--resume: the run in {out} was trained on other data ({what}). To continue it, give the "
                     f"same --data/--root/--split as when it started; to train on this data, use a new --out")


def data_fingerprint(data: TwoAFCSplit) -> Fingerprint:
    """What the run was trained on: sources, count, patch size and a SHA-1 of every judge and patch.

    Every byte is hashed (1-2 s per GB), so a resume on data that changed anywhere is
    refused rather than mixed into the run.
    """
    digest = hashlib.sha1()
    for array in (data.judge, data.ref, data.p0, data.p1):
        digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8).data)
    return {"sources": list(data.sources), "triplets": len(data),
            "patch_size": list(data.ref.shape[1:3]), "sha1": digest.hexdigest()}


# ---------------------------------------------------------------------------- small helpers

def _silent(_message: str) -> None:
    """Where the processes other than rank 0 send their progress lines."""


class _Sized(Dataset[int]):
    # DistributedSampler only needs len(dataset): batches are gathered from arrays directly.
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def _frozen_prefixes(model: TwoAFCModel) -> tuple[str, ...]:
    # A frozen trunk is rebuilt from torchvision's ImageNet weights: no need to store it each epoch.
    return ("lpips.metric.trunk.",) if model.lpips.variant == "lin" else ()


def _trainable_state(model: TwoAFCModel) -> dict[str, torch.Tensor]:
    skip = _frozen_prefixes(model)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not (skip and k.startswith(skip))}


def _load_trainable_state(model: TwoAFCModel, state: dict[str, torch.Tensor], path: Path) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    skip = _frozen_prefixes(model)
    missing = [k for k in missing if not (skip and k.startswith(skip))]
    if missing or unexpected:
        raise InputError(f"{path}: checkpoint does not fit the model (missing {missing[:2]}, "
                         f"unexpected {unexpected[:2]})")


def _rng_state() -> dict[str, Any]:
    # Tensors and plain values only, so the checkpoint loads with weights_only=True.
    return {"torch": torch.get_rng_state(), "numpy": numpy_rng_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    set_numpy_rng_state(state["numpy"])
    random.setstate(state["python"])


def _summed_over_ranks(d: Dist, sums: torch.Tensor) -> torch.Tensor:
    totals = sums.clone()
    if d.active:
        torch.distributed.all_reduce(totals)
    return totals
