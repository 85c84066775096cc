"""DeePSiM losses: each term against a hand-computed value, Eq. 1, the pause rule, metric losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from percepmetric import create_metric
from percepmetric.deepsim import losses as L
from percepmetric.deepsim.train import DeepSimConfig, ImageCrops, Trainer
from percepmetric.errors import InputError

from helpers import metric_params


def test_image_loss_by_hand():
    g = torch.tensor([[[[0.1, 0.2]]], [[[0.0, 0.0]]]])
    x = torch.zeros(2, 1, 1, 2)
    # sample 0: 255^2 * (0.01 + 0.04); sample 1: 0; mean over the batch
    assert L.image_loss(g, x).item() == pytest.approx(255**2 * 0.05 / 2, rel=1e-6)


def test_feature_loss_by_hand():
    a = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    b = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert L.feature_loss(a, b).item() == pytest.approx((4 + 9 + 3) / 2)


def test_adversarial_and_discriminator_loss_by_hand():
    real = torch.tensor([[0.0, math.log(3.0)]])  # D(x) = 3/4
    fake = torch.tensor([[math.log(3.0), 0.0]])  # D(G) = 1/4
    assert L.adversarial_loss(fake).item() == pytest.approx(-math.log(0.25))
    assert L.discriminator_loss(real, fake).item() == pytest.approx(-2 * math.log(0.75))


def test_kl_loss_by_hand():
    mu = torch.tensor([[1.0, 2.0]])
    log_sigma = torch.tensor([[0.0, math.log(2.0)]])
    # 1/2 (||mu||^2 + ||sigma||^2 - sum log sigma^2) = 1/2 (5 + 5 - 2 log 2)
    assert L.kl_loss(mu, log_sigma).item() == pytest.approx(5 - math.log(2.0), rel=1e-6)


class FixedD(nn.Module):
    feature_dim = None

    def forward(self, x):
        return torch.tensor([[0.0, math.log(3.0)]]).expand(x.shape[0], 2) + 0 * x.sum()


def test_eq1_combines_the_weighted_terms():
    g = torch.full((1, 1, 1, 2), 0.1)
    x = torch.zeros(1, 1, 1, 2)
    loss = L.DeepSimLoss(L.LossWeights(), comparator=nn.Identity(), discriminator=FixedD())
    total, parts = loss.generator_loss(g, x)
    img = 255**2 * 0.02
    feat = 0.02
    adv = -math.log(0.75)
    assert parts["img"] == pytest.approx(img, rel=1e-5)
    assert parts["feat"] == pytest.approx(feat, rel=1e-5)
    assert parts["adv"] == pytest.approx(adv, rel=1e-5)
    # The paper's Eq. 1 with its Sec. 3.2 weights (their source: test_defaults_and_ablation_presets).
    assert total.item() == pytest.approx(0.01 * feat + 100 * adv + 2e-6 * img, rel=1e-5)


def test_defaults_and_ablation_presets():
    w = L.LossWeights()
    # DeePSiM paper (Dosovitskiy & Brox 2016), Sec. 3.2 "Training details": lambda_adv = 100,
    # lambda_img = 2e-6, lambda_feat = 0.01 "for the AlexNet CONV5 comparator"; Sec. 4.2
    # "Variational autoencoder": lambda_KL = 20.
    assert (w.feat, w.adv, w.img, w.kl) == (0.01, 100.0, 2e-6, 20.0)
    assert L.loss_weights("image").as_dict() | {} == {"feat": 0.0, "adv": 0.0, "img": 2e-6, "kl": 20.0, "metric": 0.0}
    assert L.loss_weights("features").adv == 0 and L.loss_weights("features").img == 0
    assert L.loss_weights("adversarial").feat == 0 and L.loss_weights("adversarial").adv == 100
    assert L.loss_weights("full", adv=8.0).adv == 8.0
    with pytest.raises(InputError, match="unknown loss preset"):
        L.loss_weights("nope")


def test_switched_off_terms_are_absent():
    g, x = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4)
    total, parts = L.DeepSimLoss(L.loss_weights("image")).generator_loss(g, x)
    assert set(parts) == {"img"}
    with pytest.raises(InputError, match="no discriminator"):
        L.DeepSimLoss(L.loss_weights("adversarial"))


def test_pause_rule():
    assert L.DISCRIMINATOR_PAUSE_RATIO == 0.1
    assert not L.discriminator_should_update(0.05, 1.0)  # ratio 0.05 < 0.1: D is far ahead, pause
    assert L.discriminator_should_update(0.1, 1.0)
    assert L.discriminator_should_update(1.4, 0.7)


@pytest.fixture(scope="module")
def crops():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 48, 3), dtype=np.uint8) for _ in range(3)]
    return ImageCrops(images, 32)


def _tiny(loss="full", **kw):
    return DeepSimConfig(task="autoencoder", size=32, iterations=1, batch_size=4, width=0.125,
                         discriminator_width=0.125, loss=loss, comparator_pretrained=False, checkpoint_every=0, **kw)


@pytest.mark.parametrize("ratio, updated", [(1e9, False), (0.0, True)])
def test_discriminator_paused_by_ratio_in_training(crops, ratio, updated, tmp_path):
    trainer = Trainer(_tiny(pause_ratio=ratio, out=str(tmp_path)), crops)
    before = [p.detach().clone() for p in trainer.loss.discriminator.parameters()]
    parts = trainer.train_step(crops.random_batch(4, np.random.default_rng(1)))
    after = list(trainer.loss.discriminator.parameters())
    changed = any(not torch.equal(a, b) for a, b in zip(before, after))
    assert changed == updated and parts["d_updated"] == float(updated)


def _generator_loss(trainer, batch):
    model = trainer.model.eval()
    trainer.loss.eval()
    with torch.no_grad():
        code = model.encode(batch)
        generated = model.decode(code)
        if trainer.loss.weights.metric:
            # The metric sees clamp(G) and a fresh generator's output is all below 0 (clamped
            # flat); its straight-through gradient is the L2 one, so check that on the raw output.
            return (generated - batch).square().mean().item()
        total, _ = trainer.loss.generator_loss(generated, batch, code)
    return total.item()


@pytest.mark.parametrize("loss, metric", [("full", None), ("image", None), ("features", None), ("metric", "l2")])
def test_one_step_lowers_the_generator_loss(crops, loss, metric, tmp_path):
    trainer = Trainer(_tiny(loss, metric=metric, pause_ratio=1e9, out=str(tmp_path), lr=1e-3), crops)
    batch = crops.random_batch(4, np.random.default_rng(2))
    before = _generator_loss(trainer, batch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        trainer.train_step(batch)
    assert _generator_loss(trainer, batch) < before


def test_metric_loss_clamps_and_has_gradients():
    metric = create_metric("l2")
    g = torch.tensor([[[[1.5, 0.5]]]], requires_grad=True).expand(1, 3, 1, 2)
    x = torch.full((1, 3, 1, 2), 0.5)
    value = L.metric_loss(metric, g, x)
    # clamp(1.5) = 1 -> squared error 0.25 on one pixel of two (per channel): MSE 0.125
    assert value.item() == pytest.approx(metric.to_distance(metric(g.detach().clamp(0, 1), x)).item())
    value.backward()
    leaf = torch.tensor([[[[-0.5, 0.5]]]], requires_grad=True)
    L.metric_loss(metric, leaf.expand(1, 3, 1, 2), torch.full((1, 3, 1, 2), 0.5)).backward()
    # straight-through: the clamped pixel (-0.5 -> 0) still gets the gradient pushing it up
    assert leaf.grad[0, 0, 0, 0] < 0


@pytest.mark.parametrize("name", metric_params(["ms_ssim", "lpips"]))
def test_registry_metrics_as_losses_when_available(name):
    metric = create_metric(name)
    size = max(metric.min_size, 64)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, size, size, generator=gen)
    # a related pair (pure noise pairs sit where MS-SSIM clamps its contrast term to 0)
    g = (x + 0.1 * torch.randn(1, 3, size, size, generator=gen)).clamp(0, 1).requires_grad_()
    L.metric_loss(metric, g, x).backward()
    assert torch.isfinite(g.grad).all() and g.grad.abs().sum() > 0
