"""Anti-aliased, blur-pooled AlexNet and VGG16 trunks: the networks of ST-LPIPS.

Ghildyal & Liu, "Shift-tolerant Perceptual Similarity Metric" (ECCV 2022), build on Zhang's
anti-aliased CNNs (ICML 2019): every strided step of the trunk becomes a stride-1 step followed
by :class:`BlurPool`, a fixed low-pass filter sampled with stride 2, so a 1-pixel shift of the
input no longer changes which samples survive the downsampling. Their "shift_tolerant" trunks
(the only ones whose weights the ``stlpips-pytorch`` 0.0.2 wheel ships) are, layer by layer
(``features`` index: layer; taps marked ``->``):

AlexNet (the index of each layer in the authors' flat list, which their weight file keeps)::

    0 conv 3->64, 11x11, stride 1 (not 4), zero pad 2     1 BlurPool   2 ReLU  -> tap 1 (64)
    3 max pool 3x3, stride 1 (not 2)   4 BlurPool   5 conv 64->192, 5x5, pad 2   6 ReLU -> tap 2 (192)
    7 max pool 3x3, stride 1   8 BlurPool   9 conv 192->384, 3x3, pad 1   10 ReLU        -> tap 3 (384)
    11 conv 384->256, 3x3, pad 1   12 ReLU                                            -> tap 4 (256)
    13 conv 256->256, 3x3, pad 1   14 ReLU                                            -> tap 5 (256)

(the blur sits *before* the first ReLU; the max pooling after conv5 is never reached.)

VGG16: torchvision's configuration D with each ``max pool 2x2 stride 2`` replaced by
``max pool 2x2 stride 1`` + BlurPool (indices 4-5, 10-11, 18-19, 26-27); taps after relu1_2,
relu2_2, relu3_3, relu4_3, relu5_3 (``features`` ends 4, 10, 18, 26, 34).

:class:`BlurPool` (``Downsample`` with ``pad_more=True`` in the authors' code): reflection
padding of ``k - 1 = 2`` pixels on every side (twice the "same" padding of the anti-aliased CNNs,
which the authors found more shift-tolerant), then a depthwise 3x3 convolution with the binomial
filter ``[1, 2, 1]^T [1, 2, 1] / 16``, stride 2. An ``h``-pixel input gives ``floor((h + 1) / 2) + 1``.
The filters are buffers, read from the weight file like every other tensor.

This module holds only architecture; the weights come from the authors' files
(:mod:`percepmetric.metrics.stlpips`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import BackboneSpec, Trunk

__all__ = [
    "ST_NETS",
    "BLUR_SIZE",
    "BlurPool",
    "ShiftTolerantTrunk",
    "binomial_filter",
    "shift_tolerant_spec",
    "build_shift_tolerant_trunk",
]

ST_NETS = ("alex", "vgg")
BLUR_SIZE = 3  # the filter size of the released weights (``blur_filter_size=3``; VGG forces 3)
#: Activations of one slice of the batch through the first, full-resolution stage (see
#: :meth:`ShiftTolerantTrunk.taps`): 32 MiB is two 256x256 images for AlexNet, and slices that
#: size keep oneDNN as fast per image as one whole batch.
FIRST_STAGE_BYTES = 32 * 2**20


def binomial_filter(size: int = BLUR_SIZE) -> torch.Tensor:
    """``(size, size)`` float32: the outer product of row ``size - 1`` of Pascal's triangle with
    itself, normalised to sum 1 (``size=3``: ``[[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16``)."""
    if size < 1:
        raise ValueError(f"binomial_filter: size must be >= 1, got {size}")
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    kernel = torch.outer(row, row)
    return (kernel / kernel.sum()).float()


class BlurPool(nn.Module):
    """Reflection pad ``size - 1`` on each side, then a depthwise ``size x size`` low-pass filter
    sampled with ``stride`` (anti-aliased downsampling; Zhang 2019, with ST-LPIPS's wider pad).

    ``filt``: ``(channels, 1, size, size)`` persistent buffer (the weight file holds it)."""

    filt: torch.Tensor

    def __init__(self, channels: int, size: int = BLUR_SIZE, stride: int = 2) -> None:
        super().__init__()
        self.channels, self.size, self.stride = channels, size, stride
        self.pad = size - 1
        self.register_buffer("filt", binomial_filter(size).expand(channels, 1, size, size).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = F.pad(x, (self.pad,) * 4, mode="reflect")
        return F.conv2d(padded, self.filt.to(x.dtype), stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, size={self.size}, stride={self.stride}, reflect_pad={self.pad}"


# The LPIPS trunk description, filled for these trunks: not torchvision models, hence no builder
# or weights enum of torchvision's (the weights are the authors' file). min_size: the smallest H
# and W every layer accepts (a reflection pad of 2 needs 3 or more pixels where it is applied).
_SPECS = {
    "alex": BackboneSpec("alex", "alexnet (shift-tolerant, Ghildyal & Liu 2022)", "", (3, 7, 11, 13, 15),
                         (64, 192, 384, 256, 256), ("relu1", "relu2", "relu3", "relu4", "relu5"), 21),
    "vgg": BackboneSpec("vgg", "vgg16 (shift-tolerant, Ghildyal & Liu 2022)", "", (4, 10, 18, 26, 34),
                        (64, 128, 256, 512, 512), ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"), 18),
}
_VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def shift_tolerant_spec(net: str) -> BackboneSpec:
    if net not in _SPECS:
        raise ValueError(f"no shift-tolerant trunk {net!r} (choose one of: {', '.join(ST_NETS)})")
    return _SPECS[net]


def _alex_layers() -> list[nn.Module]:
    return [
        nn.Conv2d(3, 64, kernel_size=11, stride=1, padding=2), BlurPool(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=1), BlurPool(64), nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=1), BlurPool(192), nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
    ]


def _vgg_layers() -> list[nn.Module]:
    layers: list[nn.Module] = []
    channels = 3
    for stage, widths in enumerate(_VGG16_STAGES):
        if stage > 0:
            layers += [nn.MaxPool2d(kernel_size=2, stride=1), BlurPool(channels)]
        for width in widths:
            layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = width
    return layers


class ShiftTolerantTrunk(Trunk):
    """The anti-aliased trunk of ``net`` cut at its five taps: a
    :class:`~percepmetric.nets.backbones.Trunk` (``taps(x)`` yields the taps one at a time,
    ``forward(x)`` lists them, for LPIPS-scaled ``x`` of shape ``(N,3,H,W)``) whose ``features``
    keep the authors' layer indices."""

    def __init__(self, net: str) -> None:
        spec = shift_tolerant_spec(net)
        super().__init__(spec, nn.Sequential(*(_alex_layers() if net == "alex" else _vgg_layers())))
        assert len(self.features) == spec.tap_ends[-1]

    def taps(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """As :meth:`Trunk.taps`, but the first stage (full resolution: the stride-1 first
        convolution, its blur) runs on slices of the batch of at most
        :data:`FIRST_STAGE_BYTES` of activations each, joined at the first tap. Without the
        stride 4 (AlexNet) or 2 (VGG16) of the original first layer, that stage's activations are
        4-16x those of the plain trunk and would set the peak memory of a whole batch."""
        first = self.tap_ends[0]
        per_image = self.channels[0] * x.shape[-2] * x.shape[-1] * x.element_size()
        step = max(1, FIRST_STAGE_BYTES // per_image)
        if step >= x.shape[0]:
            h = self.features[:first](x)
        else:
            h = torch.cat([self.features[:first](x[i:i + step]) for i in range(0, x.shape[0], step)])
        yield h
        start = first
        for end in self.tap_ends[1:]:
            for i in range(start, end):
                h = self.features[i](h)
            start = end
            yield h

    def tap_of_layer(self, index: int) -> int:
        """The tap (0-based) whose stretch of ``features`` holds layer ``index``."""
        return next(k for k, end in enumerate(self.tap_ends) if index < end)



def build_shift_tolerant_trunk(net: str) -> ShiftTolerantTrunk:
    """The architecture of ``net`` with UNINITIALISED parameters and binomial blur filters, on the
    CPU, in eval mode (built on the meta device: no time spent on an init the weight file replaces;
    the caller must fill every tensor, as :func:`percepmetric.metrics.stlpips.load_stlpips_file` does)."""
    with torch.device("meta"):
        trunk = ShiftTolerantTrunk(net)
    trunk = trunk.to_empty(device="cpu")
    for module in trunk.modules():
        if isinstance(module, BlurPool):
            module.filt.copy_(binomial_filter(module.size).expand_as(module.filt))
    return trunk.eval()
