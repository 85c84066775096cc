"""The ranking head G and the loss LPIPS is trained with (Zhang et al. 2018, Fig. 3 right, appendix).

For a 2AFC triplet (ref, p0, p1) the metric gives ``d0 = d(ref, p0)`` and ``d1 = d(ref, p1)``.
A small network G turns the pair into the probability that a person picks p1 as closer::

    G(d0, d1) = sigmoid(MLP([d0, d1, d0 - d1, d0 / (d1 + eps), d1 / (d0 + eps)])),  eps = 0.1

with two hidden layers of 32 units and leaky ReLU (slope 0.2), trained with binary cross-entropy
against the judge fraction ``h`` in [0, 1] (the share of people who chose p1). Facts of the
original code (``lpips.Dist2LogitLayer`` / ``BCERankingLoss``): it uses 1x1 convolutions, which
are the same maps (and the same default initialisation) as the ``nn.Linear`` layers here.
We compute the loss from the logit (``binary_cross_entropy_with_logits``) -- the same value as
BCE on the sigmoid, without its overflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["RankingHead", "learning_rate", "ranking_loss"]


class RankingHead(nn.Module):
    """G of the LPIPS paper: ``(d0, d1)``, each ``(N,)``, -> logit ``(N,)`` of "p1 is closer".

    ``sigmoid(head(d0, d1))`` is the predicted judge fraction. ``hidden`` units per layer
    (32 in the paper), leaky-ReLU slope ``slope`` (0.2), ratio guard ``eps`` (0.1).
    """

    def __init__(self, hidden: int = 32, slope: float = 0.2, eps: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.mlp = nn.Sequential(
            nn.Linear(5, hidden), nn.LeakyReLU(slope),
            nn.Linear(hidden, hidden), nn.LeakyReLU(slope),
            nn.Linear(hidden, 1),
        )

    def forward(self, d0: torch.Tensor, d1: torch.Tensor) -> torch.Tensor:
        eps = self.eps
        x = torch.stack((d0, d1, d0 - d1, d0 / (d1 + eps), d1 / (d0 + eps)), dim=1)
        return self.mlp(x).squeeze(1)


def ranking_loss(logit: torch.Tensor, judge: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy between ``sigmoid(logit)`` and the judge fraction ``judge`` (both ``(N,)``)."""
    return F.binary_cross_entropy_with_logits(logit, judge.to(logit.dtype))


def learning_rate(base: float, epoch: int, epochs: int, decay_epochs: int) -> float:
    """Learning rate of 1-based ``epoch`` out of ``epochs``, the last ``decay_epochs`` decaying linearly.

    As the original ``train.py``: after each epoch beyond the constant ones the rate drops by
    ``base / decay_epochs``, so with 5 + 5 epochs epochs 1-6 run at ``base``, epoch 7 at 0.8 base,
    ..., epoch 10 at 0.2 base, and the rate reaches zero when training ends.
    """
    constant = epochs - decay_epochs
    if decay_epochs <= 0 or epoch <= constant + 1:
        return base
    return base * max(0.0, 1.0 - (epoch - constant - 1) / decay_epochs)
