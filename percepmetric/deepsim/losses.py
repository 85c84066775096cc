"""The DeePSiM loss (Dosovitskiy & Brox 2016, Eqs. 1-5 and 8), and registry metrics as losses.

    L = lambda_feat * L_feat + lambda_adv * L_adv + lambda_img * L_img   (+ lambda_KL * L_KL for a VAE)

Conventions (fixed here, used by training, tests and docs):

* Images are on the [0, 1] scale. ``L_img`` is measured in 8-bit pixel units (x 255), as the
  paper's Caffe models saw pixels in 0..255, so that the paper's lambda_img = 2e-6 keeps its
  meaning relative to the other terms.
* Every term sums over its elements (pixels, feature entries, latent units) per sample as the
  equations do, and is averaged over the batch (Caffe normalises its losses by the batch size).
* ``L_feat`` is in the units of the comparator's features as torchvision computes them
  (ImageNet-normalised input), which differ from the Caffe features of the paper; the default
  lambda_feat = 0.01 is the paper's value for AlexNet CONV5 and a starting point, not a
  calibrated match.
* D outputs two logits; D(x) = softmax(logits)[:, 1] is the probability of "real".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError
from ..metrics.color import straight_through

PIXEL_SCALE = 255.0  # L_img in 8-bit units (see module docstring)
DISCRIMINATOR_PAUSE_RATIO = 0.1  # Sec. 3.2: D is not updated while L_discr / L_adv < 0.1


@dataclass
class LossWeights:
    """lambda of each term (Sec. 3.2 defaults: AlexNet CONV5 comparator); 0 switches a term off."""

    feat: float = 0.01
    adv: float = 100.0
    img: float = 2e-6
    kl: float = 20.0  # Sec. 4.2, VAE only
    metric: float = 0.0  # weight of a registry metric used as (part of) the loss

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


# The paper's ablation (Fig. 1): which terms are on.
ABLATIONS = {
    "full": LossWeights(),
    "image": LossWeights(feat=0.0, adv=0.0),
    "features": LossWeights(adv=0.0, img=0.0),
    "adversarial": LossWeights(feat=0.0, img=0.0),
}


def loss_weights(preset: str = "full", **overrides: float | None) -> LossWeights:
    """The weights of an ablation preset (``full``, ``image``, ``features``, ``adversarial``,
    or ``metric`` = a registry metric alone), with any non-None ``overrides`` applied."""
    if preset == "metric":
        weights = LossWeights(feat=0.0, adv=0.0, img=0.0, metric=1.0)
    elif preset in ABLATIONS:
        weights = LossWeights(**ABLATIONS[preset].as_dict())
    else:
        raise InputError(f"unknown loss preset {preset!r} (choose one of: {', '.join([*ABLATIONS, 'metric'])})")
    for key, value in overrides.items():
        if value is not None:
            setattr(weights, key, float(value))
    return weights


def _per_sample_sum(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).sum(dim=1)


def image_loss(generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 5: ``mean_i sum (255 * (G(y_i) - x_i))^2`` over pixels and channels; images ``(N,C,H,W)`` in [0, 1]."""
    return _per_sample_sum((PIXEL_SCALE * (generated - target)) ** 2).mean()


def feature_loss(generated_features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """Eq. 2: ``mean_i ||C(G(y_i)) - C(x_i)||^2``, features ``(N, ...)``."""
    return _per_sample_sum((generated_features - target_features) ** 2).mean()


def adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``mean_i -log D(G(y_i))``, logits ``(N,2)`` (index 1 = real)."""
    return -F.log_softmax(fake_logits, dim=1)[:, 1].mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 3: ``mean_i -log D(x_i) - log(1 - D(G(y_i)))``, logits ``(N,2)``."""
    return -(F.log_softmax(real_logits, dim=1)[:, 1] + F.log_softmax(fake_logits, dim=1)[:, 0]).mean()


def kl_loss(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Eq. 8: ``mean_i 1/2 (||mu_i||^2 + ||sigma_i||^2 - <log sigma_i^2, 1>)``, ``(N,latent)`` each.

    As printed in the paper, without the constant -1 per unit of the textbook KL (it does not
    change gradients): its minimum, at mu = 0 and sigma = 1, is latent / 2.
    """
    return (0.5 * (mu ** 2 + torch.exp(2 * log_sigma) - 2 * log_sigma)).sum(dim=1).mean()


def discriminator_should_update(discr_loss: float, adv_loss: float,
                                threshold: float = DISCRIMINATOR_PAUSE_RATIO) -> bool:
    """Sec. 3.2: update D only while ``L_discr / L_adv >= threshold`` (D is paused when it is far ahead)."""
    if adv_loss <= 0:
        return False
    return discr_loss / adv_loss >= threshold


def clamp_straight_through(x: torch.Tensor, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """``clamp(x, lo, hi)`` in the forward pass, identity gradient in the backward pass.

    A plain clamp gives no gradient to clamped pixels, so a generator whose (linear) output
    starts below 0 everywhere -- common at initialisation -- would never move under a metric
    loss; passing the gradient straight through keeps it learning.
    """
    return straight_through(x, x.clamp(lo, hi))


def metric_loss(metric, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A registry metric as a loss: ``mean_i metric.to_distance(metric(clamp(G, 0, 1), x))``.

    Registry metrics accept inputs in [0, 1] only, so the generator's linear output is clamped
    to that range on this path, with a straight-through gradient
    (:func:`clamp_straight_through`). This is how the same generator is trained with L2, L1
    (``l1`` if registered), MS-SSIM (as Snell et al. 2017) or LPIPS.
    """
    return metric.to_distance(metric(clamp_straight_through(generated), target)).mean()


class DeepSimLoss(torch.nn.Module):
    """Eq. 1 with its parts: comparator C (frozen), discriminator D (trained separately) and
    optionally a registry metric.

    ``generator_loss(generated, target, condition)`` returns ``(total, parts)`` where ``parts``
    maps ``feat``, ``adv``, ``img``, ``metric`` to the unweighted detached values of the terms
    that are on. ``discriminator_step_loss(generated, target, condition)`` is Eq. 3 (the
    generated images are detached). ``condition`` (the features being inverted) is passed to D
    when D was built to take it.
    """

    def __init__(self, weights: LossWeights, comparator=None, discriminator=None, metric=None) -> None:
        super().__init__()
        if weights.feat and comparator is None:
            raise InputError("the feature loss is on (lambda_feat > 0) but no comparator was given")
        if weights.adv and discriminator is None:
            raise InputError("the adversarial loss is on (lambda_adv > 0) but no discriminator was given")
        if weights.metric and metric is None:
            raise InputError("the metric loss is on but no metric was given")
        self.weights = weights
        self.comparator = comparator
        self.discriminator = discriminator
        self.metric = metric

    def _d(self, images: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        if getattr(self.discriminator, "feature_dim", None):
            return self.discriminator(images, condition)
        return self.discriminator(images)

    def generator_loss(self, generated: torch.Tensor, target: torch.Tensor,
                       condition: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        w = self.weights
        total = generated.new_zeros(())
        parts: dict[str, float] = {}
        if w.feat:
            with torch.no_grad():
                target_features = self.comparator(target)
            term = feature_loss(self.comparator(generated), target_features)
            total = total + w.feat * term
            parts["feat"] = term.item()
        if w.adv:
            term = adversarial_loss(self._d(generated, condition))
            total = total + w.adv * term
            parts["adv"] = term.item()
        if w.img:
            term = image_loss(generated, target)
            total = total + w.img * term
            parts["img"] = term.item()
        if w.metric:
            term = metric_loss(self.metric, generated, target)
            total = total + w.metric * term
            parts["metric"] = term.item()
        return total, parts

    def discriminator_step_loss(self, generated: torch.Tensor, target: torch.Tensor,
                                condition: torch.Tensor | None = None) -> torch.Tensor:
        return discriminator_loss(self._d(target, condition), self._d(generated.detach(), condition))
