"""Training LPIPS on 2AFC judgments: ``lin``, ``tune`` and ``scratch`` (Zhang et al. 2018).

Modules, in reading order: :mod:`.ranking` (the head G, loss, learning-rate schedule),
:mod:`.model` (the LPIPS distance with its fast frozen-trunk path), :mod:`.data` (triplets),
:mod:`.loop` (the :class:`~.loop.LpipsTrainer`: loop, checkpoints, resume), :mod:`.distributed` (torchrun / DDP),
:mod:`.evaluate` (2AFC of the result), :mod:`.commands` (``percepmetric train``).
See docs/training.md.
"""

from .loop import LpipsTrainConfig, LpipsTrainer, train_lpips

__all__ = ["LpipsTrainConfig", "LpipsTrainer", "train_lpips"]
