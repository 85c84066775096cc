"""DeePSiM networks: shapes for every layer and size, Table 1, up-convolution, weights errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from percepmetric.deepsim import networks as D
from percepmetric.errors import InputError, WeightsNotFoundError

from helpers import alexnet_torch_home, requires_weights

needs_alexnet = requires_weights("alex")


@pytest.fixture(scope="module")
def alexnet():
    return D.build_alexnet(pretrained=False)


def test_upconv_is_bed_of_nails_then_convolution():
    torch.manual_seed(0)
    up = D.UpConv(3, 5).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    # A transposed convolution = zero-insertion upsampling + convolution with the flipped,
    # transposed kernel and padding k - 1 - p = 2 (cropped by one at the far end).
    nails = D.bed_of_nails_upsample(x)
    weight = up.weight.flip(2, 3).transpose(0, 1)
    direct = torch.nn.functional.conv2d(torch.nn.functional.pad(nails, (2, 1, 2, 1)), weight, up.bias)
    assert direct.shape == (2, 5, 8, 8)
    torch.testing.assert_close(up(x), direct)


def test_bed_of_nails_places_values_and_zeros():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    y = D.bed_of_nails_upsample(x)
    assert y.shape == (1, 1, 4, 4)
    assert y[0, 0, ::2, ::2].tolist() == [[0.0, 1.0], [2.0, 3.0]]
    assert y.sum() == x.sum() and (y[0, 0, 1::2] == 0).all()


def test_fc6_generator_follows_table_1():
    g = D.Generator("fc6", 227)
    linear = [m for m in g.top if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linear] == [4096, 4096, 4096]
    convs = [m for m in g.up if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    kinds = ["uconv" if isinstance(m, D.UpConv) else "conv" for m in convs]
    assert kinds == ["uconv", "conv", "uconv", "conv", "uconv", "conv", "uconv", "uconv", "uconv"]
    assert [m.out_channels for m in convs] == [256, 512, 256, 256, 128, 128, 64, 32, 3]
    assert [m.kernel_size[0] for m in convs] == [4, 3, 4, 3, 4, 3, 4, 4, 4]
    slopes = {m.negative_slope for m in g.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.3}
    assert isinstance(g.up[-1], D.UpConv)  # linear output: nothing after the last uconv
    out = g(torch.randn(1, 4096))
    assert out.shape == (1, 3, 227, 227)


@pytest.mark.parametrize("layer", ["conv5", "fc6", "fc7", "fc8"])
@pytest.mark.parametrize("size", [227, 64])
def test_generator_shapes(layer, size):
    g = D.Generator(layer, size, width=0.125)
    shape = D.alexnet_layer_shape("pool5" if layer == "conv5" else layer, size)
    assert g.in_shape == shape
    assert g(torch.randn(2, *shape)).shape == (2, 3, size, size)


def test_generator_rejects_wrong_input():
    g = D.Generator("fc8", 64, width=0.125)
    with pytest.raises(InputError, match="expected input"):
        g(torch.randn(2, 4096))
    with pytest.raises(InputError, match="generator layer"):
        D.Generator("conv3", 64)


@pytest.mark.parametrize("layer", D.ALEXNET_LAYERS)
def test_alexnet_features_shapes(layer, alexnet):
    f = D.AlexNetFeatures(layer, model=alexnet)
    for size in (227, 64):
        out = f(torch.rand(2, 3, size, size))
        assert out.shape == (2, *D.alexnet_layer_shape(layer, size))
    assert not any(p.requires_grad for p in f.parameters())


def test_comparator_passes_gradient_to_input(alexnet):
    f = D.AlexNetFeatures("conv5", model=alexnet)
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    f(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("size", [227, 64])
@pytest.mark.parametrize("feature_dim", [None, 4096])
def test_discriminator_shapes(size, feature_dim):
    d = D.Discriminator(size, feature_dim, width=0.25).eval()
    convs = [m for m in d.convs if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 and convs[0].stride == ((4, 4) if size >= 128 else (2, 2))
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in d.head) == 2
    feats = torch.randn(2, feature_dim) if feature_dim else None
    assert d(torch.rand(2, 3, size, size), feats).shape == (2, 2)
    if feature_dim:
        with pytest.raises(InputError, match="needs the features"):
            d(torch.rand(2, 3, size, size))


def test_autoencoder_and_vae_shapes(alexnet):
    ae = D.ReconstructionModel("autoencoder", size=64, width=0.25)
    x = torch.rand(2, 3, 64, 64)
    assert ae.encode(x).shape == (2, 8, 8, 8)  # 8 channels, 8 times smaller (arXiv version)
    assert ae.reconstruct(x).shape == (2, 3, 64, 64)
    enc = D.VAEEncoder(latent=32, model=alexnet)
    mu, log_sigma = enc(x)
    assert mu.shape == log_sigma.shape == (2, 32)
    z = D.reparameterize(mu, log_sigma, torch.Generator().manual_seed(0))
    assert z.shape == (2, 32)
    vae = D.ReconstructionModel("vae", size=64, width=0.125, latent=32, pretrained=False)
    assert vae.reconstruct(x).shape == (2, 3, 64, 64)
    assert vae.sample(3, torch.Generator().manual_seed(0)).shape == (3, 3, 64, 64)
    with pytest.raises(InputError, match="needs a VAE"):
        ae.sample(1)


def test_inverter_uses_the_named_layer():
    m = D.ReconstructionModel("invert", "conv5", 64, width=0.125, pretrained=False)
    assert m.encoder.layer == "pool5"
    assert m.encode(torch.rand(1, 3, 64, 64)).shape == (1, 256, 1, 1)
    with pytest.raises(InputError, match="unknown task"):
        D.ReconstructionModel("gan")
    with pytest.raises(InputError, match="at least 63 px"):
        D.ReconstructionModel("invert", "conv5", 32)


def test_features_only_random_alexnet_matches_torchvision_init():
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        full = torchvision.models.alexnet(weights=None)
        torch.manual_seed(5)
        light = D.build_alexnet(pretrained=False, features_only=True)
    for a, b in zip(full.features.parameters(), light.features.parameters()):
        assert torch.equal(a, b)


@needs_alexnet
@pytest.mark.parametrize("classifier", ["zeros", "nonzero"])
def test_pretrained_weights_come_from_the_file(tmp_path, monkeypatch, classifier):
    # a file with a zeroed classifier (as a trimmed copy may have) and one with a real one
    monkeypatch.setenv("TORCH_HOME", str(alexnet_torch_home(tmp_path, classifier)))
    alex = D.build_alexnet(pretrained=True)
    assert alex.features[0].weight.abs().sum() > 0
    assert (alex.classifier[1].weight.abs().sum() > 0) == (classifier == "nonzero")


def test_missing_weights_file_names_file_and_folder(tmp_path, monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    # TORCH_HOME, not torch.hub.set_dir: set_dir would pin the folder for every later test.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        D.build_alexnet(pretrained=True)
    message = str(info.value)
    assert "alexnet-owt-7be5be79.pth" in message and str(tmp_path) in message


def test_comparator_specs():
    c = D.build_comparator("alex:conv3", pretrained=False)
    assert c(torch.rand(1, 3, 64, 64)).shape == (1, 384, 3, 3)
    with pytest.raises(InputError, match="NET:LAYER"):
        D.build_comparator("alex")
    with pytest.raises(InputError, match="unknown AlexNet layer"):
        D.build_comparator("alex:conv9", pretrained=False)


def test_backbone_comparator_from_registry_backbones():
    c = D.build_comparator("squeeze:fire3", pretrained=False)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    out = c(x)
    assert out.shape == (1, 128, 7, 7)
    out.sum().backward()
    assert x.grad is not None
