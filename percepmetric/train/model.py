"""The LPIPS distance as the trainer sees it: trunk, calibration weights w, and two fast paths.

LPIPS (Zhang et al. 2018, Eq. 1) between images x and x0 with taps l = 1..L of a trunk F is, in
the paper, ``sum_l 1/(H_l W_l) sum_{h,w} || w_l * (yhat_l[h,w] - yhat0_l[h,w]) ||^2`` with ``yhat``
the trunk activations unit-normalised over channels. The released code (v0.1), the ``lpips``
metric of this package and this trainer apply ``w`` to the *squared* difference instead (a 1x1
convolution), i.e.::

    d(x, x0) = sum_l  sum_c  w_lc * s_lc,     s_lc = mean_{h,w} (yhat_lc - yhat0_lc)^2

This is *linear in w*. With the trunk frozen (variant ``lin``) the per-channel
statistics ``s`` of a pair never change, so the trainer computes them once per triplet without
autograd (:meth:`LPIPSTrainable.pair_stats`, 2 x sum_l C_l floats per triplet: 9.2 KB for alex)
and a training step is one matrix-vector product per batch. ``tune`` and ``scratch`` backpropagate
through the trunk (:meth:`LPIPSTrainable.triplet_distances`, one trunk pass over ref, p0, p1).

Initialisation (``w_init``): ``"ones"`` starts from w = 1, the ``baseline`` (cosine) distance,
so calibration departs from the uncalibrated metric; ``"torch"`` uses PyTorch's default 1x1
convolution initialisation (Kaiming-uniform, a = sqrt(5)), clamped at zero, as the original
training code does (its linear layers start random: ``pretrained=not is_train``).
Trunks: ``lin``/``tune`` start from the ImageNet weights; ``scratch`` from random Gaussian
weights, N(0, 2 / fan_in) (He-normal), zero biases -- the paper's "random Gaussian weights".
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from ..nets.backbones import canonical_net, tap_channels

__all__ = ["TRAINABLE_VARIANTS", "W_INITS", "LPIPSTrainable", "export_metric", "gaussian_init_"]

# The LPIPS variants training makes (metrics/lpips.py VARIANTS adds baseline, which is not trained).
TRAINABLE_VARIANTS = ("lin", "tune", "scratch")
W_INITS = ("ones", "torch")


def gaussian_init_(trunk: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every convolution of ``trunk`` with He-normal weights N(0, 2/fan_in) and zero bias."""
    with torch.no_grad():
        for module in trunk.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
                weight = torch.randn(module.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in)
                module.weight.copy_(weight)
                if module.bias is not None:
                    module.bias.zero_()


def _default_conv_init(channels: int, generator: torch.Generator) -> torch.Tensor:
    # PyTorch's Conv2d default for a (1, C, 1, 1) weight: Kaiming-uniform with a = sqrt(5),
    # i.e. U(-1/sqrt(C), 1/sqrt(C)).
    bound = 1.0 / math.sqrt(channels)
    return (torch.rand(channels, generator=generator) * 2 - 1) * bound


class LPIPSTrainable(nn.Module):
    """An :class:`~percepmetric.metrics.lpips.LPIPS` metric being trained, and the two ways to use it.

    ``self.metric`` is the LPIPS module itself (made by ``LPIPS.untrained``): its ``trunk``
    (frozen for ``lin``) and ``calibration`` (``nn.ParameterList`` of ``(C_l,)`` weights w) are
    the trained parameters, so what is trained is exactly what is saved and reloaded.
    Inputs are image batches ``(N,3,H,W)`` in [0, 1].
    """

    def __init__(self, net: str = "alex", variant: str = "lin", w_init: str = "ones", seed: int = 0) -> None:
        super().__init__()
        from ..metrics.lpips import LPIPS

        net = canonical_net(net)
        if variant not in TRAINABLE_VARIANTS:
            raise InputError(f"--variant {variant!r}: choose one of {', '.join(TRAINABLE_VARIANTS)}")
        if w_init not in W_INITS:
            raise InputError(f"--w-init {w_init!r}: choose one of {', '.join(W_INITS)}")
        self.net, self.variant, self.w_init = net, variant, w_init
        generator = torch.Generator().manual_seed(seed)
        self.metric = LPIPS.untrained(net, variant, seed=seed, calibration="ones", input_range="0,1")
        if variant == "scratch":
            gaussian_init_(self.metric.trunk, generator)
        if w_init == "torch":
            with torch.no_grad():
                for w in self.metric.calibration:
                    w.copy_(_default_conv_init(w.numel(), generator).clamp_(min=0))
        self.metric.trunk.requires_grad_(variant != "lin")
        self.metric.calibration.requires_grad_(True)
        self.channels = tap_channels(net)

    # ------------------------------------------------------------------ pieces of Eq. 1

    def normalized_taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised trunk activations ``yhat_l`` ``(N, C_l, H_l, W_l)`` of images in [0, 1]."""
        from ..metrics.lpips import normalize_channels

        m = self.metric
        return [normalize_channels(t, m.distance.eps) for t in m.trunk(m.scale_input(images))]

    @staticmethod
    def tap_stats(taps_a: list[torch.Tensor], taps_b: list[torch.Tensor]) -> torch.Tensor:
        """``s`` of Eq. 1: ``(N, sum_l C_l)``, the spatial mean of ``(yhat_a - yhat_b)^2`` per channel."""
        return torch.cat([(a - b).square().mean(dim=(2, 3)) for a, b in zip(taps_a, taps_b, strict=True)], dim=1)

    def w_vector(self) -> torch.Tensor:
        """All channel weights as one ``(sum_l C_l,)`` vector, in tap order."""
        return torch.cat([v.reshape(-1) for v in self.metric.calibration])

    def distance_from_stats(self, stats: torch.Tensor) -> torch.Tensor:
        """``d = s . w``: ``(N, sum C) -> (N,)``."""
        return stats @ self.w_vector()

    # ------------------------------------------------------------------ what the loop calls

    def pair_stats(self, ref: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s0, s1)``, each ``(N, sum C)``, for frozen-trunk training; no autograd.

        (``no_grad`` rather than ``inference_mode``: the statistics enter ``s . w`` under autograd.)
        """
        with torch.no_grad():
            return self._stats(ref, p0, p1)

    def triplet_distances(self, ref: torch.Tensor, p0: torch.Tensor,
                          p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d0, d1)``, each ``(N,)``, with gradients through trunk and w (one trunk pass on 3N images)."""
        s0, s1 = self._stats(ref, p0, p1)
        return self.distance_from_stats(s0), self.distance_from_stats(s1)

    def _stats(self, ref: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = ref.shape[0]
        taps = self.normalized_taps(torch.cat((ref, p0, p1)))
        t_ref = [t[:n] for t in taps]
        return (self.tap_stats(t_ref, [t[n:2 * n] for t in taps]),
                self.tap_stats(t_ref, [t[2 * n:] for t in taps]))

    def clamp_weights_(self) -> None:
        """Keep w >= 0 (after every optimiser step, as the paper/code): distances stay non-negative."""
        with torch.no_grad():
            for v in self.metric.calibration:
                v.clamp_(min=0)


def export_metric(lp: LPIPSTrainable, path: Path, meta: dict[str, object]) -> Path:
    """Write the trained metric as an LPIPS weight file (:func:`.checkpoint.save_lpips_checkpoint`),
    atomically.

    ``lin`` files hold only w (the trunk is torchvision's ImageNet one); ``tune``/``scratch``
    files hold the trunk too.
    """
    from .checkpoint import save_lpips_checkpoint

    metric = lp.metric
    if lp.variant != "lin":
        metric.trunk_source = "file"  # the trained trunk goes into the file
    return save_lpips_checkpoint(metric, path, meta=meta)
