"""The networks of DeePSiM (Dosovitskiy & Brox 2016, "Generating images with perceptual
similarity metrics based on deep networks"): generators, discriminator, comparators and the
encoders of the autoencoder and the VAE.

All images here are ``(N,3,H,W)`` floats on the [0, 1] scale (the generators' output is
linear, so it may leave that range a little). Feature extractors normalise with the ImageNet
mean and standard deviation themselves, as torchvision's classifiers expect.

Layer names of AlexNet used throughout (torchvision's AlexNet, which differs from the
paper's CaffeNet in channel counts of conv1/conv2 and in having no LRN):

=========  ===================================================  ======================
name       what it is                                           shape at 227 / 64 px
=========  ===================================================  ======================
conv1..5   output of that convolution after its ReLU            conv5: 256x13x13 / 3x3
pool5      conv5 after max-pooling (the paper's "CONV5")        256x6x6 / 256x1x1
fc6, fc7   first/second fully connected layer after its ReLU    4096
fc8        class scores (before softmax)                        1000
=========  ===================================================  ======================

For inversion the paper's CONV5 means pooled features, so ``layer="conv5"`` of a
:class:`Generator` reads pool5; as a *comparator* ``conv5`` is the unpooled relu5 map.

An AlexNet weight file whose fully connected layers were stripped or zeroed (to save space)
gives all-zero fc6/fc7/fc8 features: nothing to invert. Conv layers, random
(``pretrained=False``) or trained encoders do not depend on those layers.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, WeightsNotFoundError

LRELU_SLOPE = 0.3  # Sec. 3.1: leaky ReLU with alpha = 0.3 in every network
ALEXNET_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8")
INVERT_LAYERS = ("conv5", "fc6", "fc7", "fc8")  # conv5 means pool5, as in the paper
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Index in torchvision's alexnet().features after which each conv-side layer is read.
_ALEX_FEATURE_ENDS = {"conv1": 2, "conv2": 5, "conv3": 8, "conv4": 10, "conv5": 12, "pool5": 13}
_ALEX_FC = {"fc6": 1, "fc7": 2, "fc8": 3}  # how many Linear layers of the classifier


def lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(LRELU_SLOPE)


def _ch(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


# ---------------------------------------------------------------- up-convolution

def bed_of_nails_upsample(x: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """``(N,C,H,W) -> (N,C,factor*H,factor*W)``: each value at the top-left of its
    ``factor x factor`` cell, zeros elsewhere ("bed of nails" upsampling, Sec. 3.1)."""
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, h * factor, w * factor)
    out[:, :, ::factor, ::factor] = x
    return out


class UpConv(nn.ConvTranspose2d):
    """Up-convolution of the paper: 2x bed-of-nails upsampling, then a 4x4 convolution.

    Implemented as ``ConvTranspose2d(kernel 4, stride 2, padding 1)``, which is exactly that:
    a transposed convolution with stride 2 inserts zeros between inputs (bed of nails) and
    convolves; ``(N,Cin,H,W) -> (N,Cout,2H,2W)``. (Caffe's Deconvolution layer used by the
    authors is the same operation.) ``tests/test_deepsim_nets.py`` checks the equivalence.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=4, stride=2, padding=1)


# ---------------------------------------------------------------- AlexNet prefix

def alexnet_weights_path() -> Path:
    """``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth`` (follows ``$TORCH_HOME``)."""
    import torchvision.models as tvm

    url = tvm.AlexNet_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def build_alexnet(pretrained: bool = True, features_only: bool = False) -> nn.Module:
    """Torchvision's full AlexNet (features + avgpool + classifier), on torch's default device
    (the CPU unless changed; callers move it), eval mode.

    ``pretrained=True`` loads ``IMAGENET1K_V1`` through torchvision's weights API from its
    cache; a missing file (no download possible) raises :class:`WeightsNotFoundError` naming
    the file and folder. ``pretrained=False`` keeps torchvision's random initialisation (the
    paper's "AlexNet with random weights" comparator). ``features_only=True`` promises that only
    ``model.features`` will be used (the classifier may then stay uninitialised on the meta device).
    """
    import torchvision.models as tvm

    if features_only and not pretrained:
        # Skip initialising the 58M classifier weights: build on the meta device and initialise
        # the convolutions in order, which draws the same random numbers as alexnet(weights=None).
        with torch.device("meta"):
            model = tvm.alexnet(weights=None)
        model.features.to_empty(device=torch.get_default_device())
        for module in model.features:
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()
        return model.eval()
    model = tvm.alexnet(weights=None)
    if pretrained:
        weights = tvm.AlexNet_Weights.IMAGENET1K_V1
        path = alexnet_weights_path()
        try:
            state = weights.get_state_dict(progress=False, check_hash=False, weights_only=True)
        except Exception as exc:  # URLError, OSError, a truncated file ...
            raise WeightsNotFoundError(
                f"pretrained AlexNet weights {path.name} are not readable in {path.parent} and could not be "
                f"downloaded ({type(exc).__name__}); put the file there or set TORCH_HOME to a folder "
                f"holding hub/checkpoints/{path.name}"
            ) from exc
        model.load_state_dict(state)
    return model.eval()


def _alexnet_side(layer: str, size: int) -> int:
    """Side of AlexNet's conv-side ``layer`` output for a ``size x size`` input (below 1: empty)."""
    s = (size + 4 - 11) // 4 + 1  # conv1
    s1 = s
    s = (s - 3) // 2 + 1  # pool1
    s2 = s
    s = (s - 3) // 2 + 1  # pool2
    return {"conv1": s1, "conv2": s2, "conv3": s, "conv4": s, "conv5": s, "pool5": (s - 3) // 2 + 1}[layer]


def alexnet_layer_shape(layer: str, size: int) -> tuple[int, ...]:
    """Shape of one image's AlexNet ``layer`` output for a ``size x size`` input, without running it."""
    if layer not in ALEXNET_LAYERS:
        raise InputError(f"unknown AlexNet layer {layer!r} (choose one of: {', '.join(ALEXNET_LAYERS)})")
    if layer in ("fc6", "fc7"):
        return (4096,)
    if layer == "fc8":
        return (1000,)
    spatial = _alexnet_side(layer, size)
    channels = {"conv1": 64, "conv2": 192, "conv3": 384, "conv4": 256, "conv5": 256, "pool5": 256}[layer]
    if spatial < 1:
        raise InputError(f"AlexNet {layer} is empty for {size}x{size} images (need at least "
                         f"{alexnet_smallest_size(layer)} px)")
    return (channels, spatial, spatial)


def alexnet_smallest_size(layer: str) -> int:
    """Smallest image side for which AlexNet's ``layer`` is not empty (fc layers read pool5)."""
    layer = "pool5" if layer in ("fc6", "fc7", "fc8") else layer
    return next(s for s in range(1, 1024) if _alexnet_side(layer, s) >= 1)


def smallest_accepted_size(build: Callable[[int], Callable[[torch.Tensor], object]], limit: int = 1024) -> int | None:
    """The smallest ``size`` for which ``build(size)`` makes a network that runs on a ``size x size``
    image (None when no size up to ``limit`` works), found with :func:`size_error`.

    Sizes are tried from 1 up, not bisected: a network may take only some sizes (the
    autoencoder, multiples of 8).
    """
    return next((size for size in range(1, limit + 1) if size_error(build, size) is None), None)


def size_error(build: Callable[[int], Callable[[torch.Tensor], object]], size: int) -> Exception | None:
    """Why the network that ``build(size)`` makes cannot run on a ``size x size`` image (None: it can).

    ``build(size)`` returns the callable to run (a module, or a bound method such as
    ``model.reconstruct``). Everything runs on PyTorch's meta device, which computes shapes only
    (no weights are loaded or initialised, no arithmetic), so the answer comes from the
    architecture itself, in milliseconds. Build with random weights (``pretrained=False``): the
    shapes do not depend on them.
    """
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = build(size)
            run(torch.empty(1, 3, size, size))
    except (InputError, RuntimeError, ValueError) as exc:  # shape checks of torch raise RuntimeError
        return exc
    return None


class AlexNetFeatures(nn.Module):
    """AlexNet from the image up to ``layer`` (see the module table): ``(N,3,H,W)`` in [0, 1] ->
    ``(N,C,h,w)`` for conv layers and pool5, ``(N,F)`` for fc6/fc7/fc8.

    ImageNet mean/std normalisation is applied inside. Dropout is left out (features are
    those of the test-time network). ``trainable=False`` freezes the weights and keeps the
    module in eval mode; gradients still flow to the input (comparator use).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, layer: str = "conv5", pretrained: bool = True, trainable: bool = False,
                 model: nn.Module | None = None) -> None:
        super().__init__()
        if layer not in ALEXNET_LAYERS:
            raise InputError(f"unknown AlexNet layer {layer!r} (choose one of: {', '.join(ALEXNET_LAYERS)})")
        self.layer = layer
        self.pretrained = pretrained
        self.trainable = trainable
        if model is None:
            model = build_alexnet(pretrained, features_only=layer in _ALEX_FEATURE_ENDS)
        self.features: nn.Module
        self.avgpool: nn.Module | None = None
        self.classifier: nn.Module | None = None
        if layer in _ALEX_FEATURE_ENDS:
            conv_side = list(model.get_submodule("features").children())
            self.features = nn.Sequential(*conv_side[: _ALEX_FEATURE_ENDS[layer]])
        else:
            self.features = model.get_submodule("features")
            self.avgpool = model.get_submodule("avgpool")
            linear = [m for m in model.get_submodule("classifier").children() if isinstance(m, nn.Linear)]
            parts: list[nn.Module] = []
            for i, fc in enumerate(linear[: _ALEX_FC[layer]]):
                parts.append(fc)
                if i < 2:  # relu6, relu7; fc8 stays linear
                    parts.append(nn.ReLU())
            self.classifier = nn.Sequential(*parts)
        for module in self.modules():  # in-place ReLUs would break gradients w.r.t. the input
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if not trainable:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True):
        return super().train(mode and self.trainable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features((x - self.mean) / self.std)
        if self.classifier is not None and self.avgpool is not None:
            h = self.classifier(torch.flatten(self.avgpool(h), 1))
        return h


class BackboneFeatures(nn.Module):
    """One tap of a registry backbone (``vgg``/``squeeze``/``alex`` trunks of
    :func:`percepmetric.nets.backbones.build_backbone`) as a frozen feature extractor:
    ``(N,3,H,W)`` in [0, 1] -> ``(N,C,h,w)``, ImageNet normalisation inside."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: str, tap: str, pretrained: bool = True) -> None:
        super().__init__()
        from ..nets.backbones import build_backbone

        trunk = build_backbone(net, pretrained=pretrained, seed=0)
        if tap not in trunk.tap_names:
            raise InputError(f"backbone {net!r} has no tap {tap!r} (taps: {', '.join(trunk.tap_names)})")
        self.index = trunk.tap_names.index(tap)
        self.trunk = trunk.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, h in enumerate(self.trunk.taps((x - self.mean) / self.std)):
            if i == self.index:
                return h
        raise AssertionError("unreachable")


def build_comparator(spec: str = "alex:conv5", pretrained: bool = True) -> nn.Module:
    """The comparator C of Eq. 2 from ``"net:layer"``: frozen, eval mode, gradients flow to the input.

    ``alex:<layer>`` takes any layer of :data:`ALEXNET_LAYERS` (conv5 = relu5 by default, the
    paper's choice; ``alex:fc6`` is its FC6 comparator). ``vgg:<tap>`` and ``squeeze:<tap>``
    use the registry's backbones (e.g. ``vgg:relu3_3``). ``pretrained=False`` gives random
    weights (the paper's random-AlexNet comparator).
    """
    net, sep, layer = str(spec).partition(":")
    if not sep or not layer:
        raise InputError(f"comparator {spec!r}: expected NET:LAYER, e.g. alex:conv5 or vgg:relu3_3")
    if net.lower() in ("alex", "alexnet"):
        return AlexNetFeatures(layer, pretrained=pretrained, trainable=False)
    return BackboneFeatures(net, layer, pretrained=pretrained)


# ---------------------------------------------------------------- generators

def _padded_size(size: int) -> int:
    """Smallest 4 * 2^k >= size: the generator's native output before the centre crop."""
    if size < 8:
        raise InputError(f"image size {size} is too small (need at least 8)")
    return 4 * 2 ** math.ceil(math.log2(size / 4))


def _upsampling_stages(size: int, width: float) -> nn.Sequential:
    """The up-convolutional part of Table 1 from 256w x 4 x 4 to a 3-channel image.

    Table 1 (227 px, native 256 px, six up-convolutions): uconv 256, conv 512, uconv 256,
    conv 256, uconv 128, conv 128, uconv 64, uconv 32, uconv 3. For k up-convolutions in
    general: the first min(k-1, 3) are (uconv, conv) pairs as above, the next ones plain
    uconvs halving channels from 64, the last a uconv to 3 channels with a linear output. So
    64 px (k = 4) is uconv 256, conv 512, uconv 256, conv 256, uconv 128, conv 128, uconv 3.
    """
    k = int(round(math.log2(_padded_size(size) / 4)))
    pairs = [(256, 512), (256, 256), (128, 128)]
    layers: list[nn.Module] = []
    c = _ch(256, width)
    for up, conv in pairs[: min(k - 1, 3)]:
        layers += [UpConv(c, _ch(up, width)), lrelu(),
                   nn.Conv2d(_ch(up, width), _ch(conv, width), 3, padding=1), lrelu()]
        c = _ch(conv, width)
    plain = 64
    for _ in range(max(0, k - 1 - 3)):
        layers += [UpConv(c, _ch(plain, width)), lrelu()]
        c, plain = _ch(plain, width), plain // 2
    layers.append(UpConv(c, 3))  # linear output (Sec. 3.1)
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """Up-convolutional generator of Table 1, inverting AlexNet ``layer`` to a ``size`` image.

    ``fc6``/``fc7``/``fc8`` (input ``(N,4096)`` / ``(N,1000)``, or ``in_features`` for a VAE
    latent): three fully connected layers (4096, 4096, 4096 = 256x4x4 units, leaky ReLU),
    reshape to ``(N,256,4,4)``, then the up-convolutions of :func:`_upsampling_stages`.
    ``conv5`` (input pool5 ``(N,256,s,s)``, s = 6 at 227 px, 1 at 64 px): the fully connected
    layers become convolutions (512, 512, 256 channels; the first maps s x s to 4 x 4: a valid
    (s-3)x(s-3) convolution when s > 4, i.e. 3x3 at 227 px, a transposed one when s < 4).

    Output ``(N,3,size,size)``, linear, image scale [0, 1]: the native 4*2^k output (256 for
    227) is centre-cropped to ``size``. ``width`` scales every hidden layer (1.0 = the paper).
    """

    def __init__(self, layer: str = "fc6", size: int = 227, width: float = 1.0,
                 in_features: int | None = None, in_shape: tuple[int, ...] | None = None) -> None:
        super().__init__()
        if layer == "pool5":
            layer = "conv5"
        if layer not in INVERT_LAYERS:
            raise InputError(f"generator layer {layer!r}: choose one of {', '.join(INVERT_LAYERS)}")
        self.layer, self.size, self.width = layer, int(size), float(width)
        self.native = _padded_size(self.size)
        c4 = _ch(256, width)
        if layer == "conv5":
            self.in_shape = tuple(in_shape or alexnet_layer_shape("pool5", self.size))
            cin, s = self.in_shape[0], self.in_shape[-1]
            if s > 4:
                first: nn.Module = nn.Conv2d(cin, _ch(512, width), s - 3)  # valid: s -> 4
            elif s == 4:
                first = nn.Conv2d(cin, _ch(512, width), 3, padding=1)
            else:
                first = nn.ConvTranspose2d(cin, _ch(512, width), 5 - s)  # s -> 4
            self.top = nn.Sequential(
                first, lrelu(),
                nn.Conv2d(_ch(512, width), _ch(512, width), 3, padding=1), lrelu(),
                nn.Conv2d(_ch(512, width), c4, 3, padding=1), lrelu(),
            )
        else:
            n_in = in_features or alexnet_layer_shape(layer, self.size)[0]
            self.in_shape = (n_in,)
            hidden = _ch(4096, width)
            self.top = nn.Sequential(
                nn.Linear(n_in, hidden), lrelu(),
                nn.Linear(hidden, hidden), lrelu(),
                nn.Linear(hidden, c4 * 16), lrelu(),
                nn.Unflatten(1, (c4, 4, 4)),
            )
        self.up = _upsampling_stages(self.size, width)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        if tuple(code.shape[1:]) != self.in_shape:
            raise InputError(f"generator for {self.layer}: expected input (N, {', '.join(map(str, self.in_shape))}), "
                             f"got {tuple(code.shape)}")
        img = self.up(self.top(code))
        off = (self.native - self.size) // 2
        return img[:, :, off: off + self.size, off: off + self.size]


# ---------------------------------------------------------------- discriminator

class Discriminator(nn.Module):
    """Discriminator of Sec. 3.1: ``(N,3,S,S)`` [+ features ``(N,...)``] -> logits ``(N,2)``
    (index 1 = "real"; softmax gives D of Eqs. 3-4).

    Five convolutions (32 k7, 64 k5, 128 k3 stride 2, 256 k3, 256 k3 stride 2; the first has
    stride 4 for images of 128 px and more, as the paper increases it for large images, and
    stride 2 below), leaky ReLU, global average pooling, 50% dropout, fully connected 512,
    50% dropout, fully connected 2. With ``feature_dim`` the features being inverted also
    enter: two fully connected layers (1024, 512) whose output is concatenated with the
    pooled convolutional features (the paper's conditioning for the AlexNet inversion).
    """

    def __init__(self, size: int = 227, feature_dim: int | None = None, width: float = 1.0) -> None:
        super().__init__()
        first_stride = 4 if size >= 128 else 2
        spec = [(32, 7, first_stride), (64, 5, 1), (128, 3, 2), (256, 3, 1), (256, 3, 2)]
        layers: list[nn.Module] = []
        c = 3
        for out, k, stride in spec:
            layers += [nn.Conv2d(c, _ch(out, width), k, stride=stride, padding=k // 2), lrelu()]
            c = _ch(out, width)
        self.convs = nn.Sequential(*layers)
        self.feature_dim = feature_dim
        joint = c
        self.feature_branch: nn.Sequential | None = None
        if feature_dim:
            self.feature_branch = nn.Sequential(
                nn.Linear(feature_dim, _ch(1024, width)), lrelu(),
                nn.Linear(_ch(1024, width), _ch(512, width)), lrelu(),
            )
            joint += _ch(512, width)
        self.head = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(joint, _ch(512, width)), lrelu(),
            nn.Dropout(0.5),
            nn.Linear(_ch(512, width), 2),
        )

    def forward(self, image: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        h = self.convs(image).mean(dim=(2, 3))  # global average pooling
        if self.feature_branch is not None:
            if features is None:
                raise InputError("this discriminator was built with feature_dim and needs the features too")
            h = torch.cat([h, self.feature_branch(torch.flatten(features, 1))], dim=1)
        return self.head(h)


# ---------------------------------------------------------------- autoencoder and VAE

class ConvEncoder(nn.Module):
    """Encoder of the DeePSiM autoencoder (arXiv version, Sec. 4): ``(N,3,S,S) -> (N,code,S/8,S/8)``,
    an ``code_channels``-channel map 8 times smaller than the image (8 channels in the paper).

    Three stride-2 5x5 convolutions (32, 64, 128 channels, each followed by a 3x3 one), leaky
    ReLU, then a linear 3x3 convolution to the code. ``S`` must be a multiple of 8.
    """

    def __init__(self, code_channels: int = 8, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for out in (32, 64, 128):
            o = _ch(out, width)
            layers += [nn.Conv2d(c, o, 5, stride=2, padding=2), lrelu(), nn.Conv2d(o, o, 3, padding=1), lrelu()]
            c = o
        layers.append(nn.Conv2d(c, code_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Decoder of the autoencoder: ``(N,code,S/8,S/8) -> (N,3,S,S)``, linear output.

    A 3x3 convolution to 128 channels, then three (uconv, conv) stages (64, 32 channels) with
    the last uconv going to 3 channels; leaky ReLU between.
    """

    def __init__(self, code_channels: int = 8, width: float = 1.0) -> None:
        super().__init__()
        c128, c64, c32 = _ch(128, width), _ch(64, width), _ch(32, width)
        self.net = nn.Sequential(
            nn.Conv2d(code_channels, c128, 3, padding=1), lrelu(),
            UpConv(c128, c64), lrelu(), nn.Conv2d(c64, c64, 3, padding=1), lrelu(),
            UpConv(c64, c32), lrelu(), nn.Conv2d(c32, c32, 3, padding=1), lrelu(),
            UpConv(c32, 3),
        )

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code)


class VAEEncoder(nn.Module):
    """VAE encoder of Sec. 4.2: AlexNet up to FC6 predicting ``mu`` and ``sigma``.

    ``(N,3,S,S)`` in [0, 1] -> ``(mu, log_sigma)``, each ``(N,latent)``: AlexNet's conv trunk
    (pool5, adaptive-average-pooled to 6x6 as torchvision does) followed by two fully
    connected heads in place of fc6. ``sigma`` is parametrised by its log so it stays positive.
    Conv weights come from ImageNet when ``pretrained`` (as the paper initialises with
    AlexNet); the heads start random. Trainable.
    """

    def __init__(self, latent: int = 4096, pretrained: bool = True, model: nn.Module | None = None) -> None:
        super().__init__()
        alex = model if model is not None else build_alexnet(pretrained, features_only=True)
        self.trunk = AlexNetFeatures("pool5", trainable=True, model=alex)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.mu = nn.Linear(256 * 36, latent)
        self.log_sigma = nn.Linear(256 * 36, latent)
        nn.init.zeros_(self.log_sigma.weight)
        nn.init.constant_(self.log_sigma.bias, -2.0)  # start with small posterior noise
        self.latent = latent

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.flatten(self.avgpool(self.trunk(x)), 1)
        return self.mu(h), self.log_sigma(h)


def reparameterize(mu: torch.Tensor, log_sigma: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``z = mu + sigma * eps``, ``eps ~ N(0, I)`` (Sec. 4.2)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(log_sigma) * eps


# ---------------------------------------------------------------- the models under evaluation

TASKS = ("invert", "autoencoder", "vae")


class ReconstructionModel(nn.Module):
    """Image -> code -> image, for the three tasks of the paper.

    ``invert``: the code is a fixed AlexNet ``layer`` (frozen :class:`AlexNetFeatures`;
    ``conv5`` reads pool5), decoded by :class:`Generator`. ``autoencoder``:
    :class:`ConvEncoder` + :class:`ConvDecoder`, both trained. ``vae``: :class:`VAEEncoder`
    + :class:`Generator` (FC6 design) on the latent; :meth:`reconstruct` decodes ``mu``.

    :meth:`encode` gives the code (for a VAE: ``mu``), :meth:`decode` the image
    ``(N,3,size,size)`` (linear, [0, 1] scale), :meth:`reconstruct` both.
    """

    def __init__(self, task: str = "invert", layer: str = "fc6", size: int = 227, width: float = 1.0,
                 pretrained: bool = True, code_channels: int = 8, latent: int = 4096) -> None:
        super().__init__()
        if task not in TASKS:
            raise InputError(f"unknown task {task!r} (choose one of: {', '.join(TASKS)})")
        if task in ("invert", "vae") and int(size) < alexnet_smallest_size("pool5"):
            raise InputError(f"--size {size}: the {task} task reads AlexNet pool5, which needs images of at least "
                             f"{alexnet_smallest_size('pool5')} px")
        self.task, self.size, self.latent = task, int(size), int(latent)
        self.encoder: nn.Module
        self.decoder: nn.Module
        self.config = {"task": task, "layer": layer, "size": int(size), "width": float(width),
                       "pretrained": bool(pretrained), "code_channels": int(code_channels), "latent": int(latent)}
        if task == "invert":
            if layer not in INVERT_LAYERS and layer != "pool5":
                raise InputError(f"--layer {layer!r}: choose one of {', '.join(INVERT_LAYERS)}")
            alex_layer = "pool5" if layer in ("conv5", "pool5") else layer
            self.encoder = AlexNetFeatures(alex_layer, pretrained=pretrained, trainable=False)
            self.decoder = Generator(layer, size, width)
        elif task == "autoencoder":
            if self.size % 8:
                raise InputError(f"autoencoder image size must be a multiple of 8, got {size}")
            self.encoder = ConvEncoder(code_channels, width)
            self.decoder = ConvDecoder(code_channels, width)
        else:
            self.encoder = VAEEncoder(latent, pretrained=pretrained)
            self.decoder = Generator("fc6", size, width, in_features=latent)

    @property
    def encoder_trainable(self) -> bool:
        return self.task != "invert"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        code = self.encoder(x)
        return code[0] if self.task == "vae" else code

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """VAE only: ``n`` images decoded from ``z ~ N(0, I)`` (sampling from the prior)."""
        if self.task != "vae":
            raise InputError("sampling from the prior needs a VAE (--task vae)")
        p = next(self.decoder.parameters())
        z = torch.randn((n, self.latent), generator=generator, device=p.device, dtype=p.dtype)
        return self.decode(z)
