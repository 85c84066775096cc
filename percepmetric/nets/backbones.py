"""ImageNet trunks cut at the layers LPIPS compares: AlexNet, VGG16 and SqueezeNet 1.1.

Zhang et al. 2018 (LPIPS), Sec. 3: the distance compares activations of a few layers of an
ImageNet classifier. The taps (all after a ReLU) are

==========  =================================================  ==================================
net         taps                                               channels
==========  =================================================  ==================================
``alex``    conv1 .. conv5 (after ReLU)                        64, 192, 384, 256, 256
``vgg``     relu1_2, relu2_2, relu3_3, relu4_3, relu5_3        64, 128, 256, 512, 512
``squeeze`` relu1 (first conv), fire3, fire5, fire6, fire7,     64, 128, 256, 384, 384, 512, 512
            fire8, fire9 (seven taps)
==========  =================================================  ==================================

The trunk is torchvision's ``features`` Sequential truncated after the last tap, so its
state dict uses torchvision's own keys (``features.0.weight``, ...) and a torchvision
checkpoint loads into it without renaming. Pretrained weights come through torchvision's
weights API (``AlexNet_Weights.IMAGENET1K_V1`` ...) and its cache
``$TORCH_HOME/hub/checkpoints/`` (``torch.hub.get_dir()``); only ``features.*`` is read:
LPIPS compares convolution activations, so the classifier's weights never matter and a file
holding only the convolutions loads too.

Inputs of :class:`Trunk` are already scaled the way LPIPS scales them (see
:func:`percepmetric.metrics.lpips.lpips_input_scaling`); the trunk itself is plain torchvision.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError, WeightsNotFoundError
from ..options import Net

__all__ = [
    "NETS",
    "BackboneSpec",
    "Trunk",
    "backbone_spec",
    "build_backbone",
    "canonical_net",
    "load_pretrained_features",
    "load_trunk",
    "tap_channels",
    "trunk_weights_path",
]

NETS = ("alex", "vgg", "squeeze")

_ALIASES: dict[str, Net] = {
    "alex": "alex", "alexnet": "alex",
    "vgg": "vgg", "vgg16": "vgg",
    "squeeze": "squeeze", "squeezenet": "squeeze", "squeezenet1_1": "squeeze", "squeezenet1.1": "squeeze",
}


@dataclass(frozen=True)
class BackboneSpec:
    """Where to cut a torchvision classifier.

    ``tap_ends[k]`` is the index in ``features`` *after* which tap ``k`` is read (so tap ``k``
    is the output of ``features[tap_ends[k] - 1]``); the trunk keeps ``features[:tap_ends[-1]]``.
    """

    net: str
    builder: str  # torchvision.models function name
    weights_enum: str  # torchvision.models weights enum class name
    tap_ends: tuple[int, ...]
    channels: tuple[int, ...]
    tap_names: tuple[str, ...]
    min_size: int  # smallest H and W for which every tap is at least 1x1


_SPECS = {
    # features: conv1 relu pool | conv2 relu pool | conv3 relu | conv4 relu | conv5 relu (pool)
    "alex": BackboneSpec("alex", "alexnet", "AlexNet_Weights", (2, 5, 8, 10, 12), (64, 192, 384, 256, 256),
                         ("conv1", "conv2", "conv3", "conv4", "conv5"), 31),
    # features: [conv relu]x2 pool | [conv relu]x2 pool | [conv relu]x3 pool | x3 pool | x3 (pool)
    "vgg": BackboneSpec("vgg", "vgg16", "VGG16_Weights", (4, 9, 16, 23, 30), (64, 128, 256, 512, 512),
                        ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"), 16),
    # features: conv1 relu | pool fire2 fire3 | pool fire4 fire5 | pool fire6 | fire7 | fire8 | fire9
    "squeeze": BackboneSpec("squeeze", "squeezenet1_1", "SqueezeNet1_1_Weights", (2, 5, 8, 10, 11, 12, 13),
                            (64, 128, 256, 384, 384, 512, 512),
                            ("relu1", "fire3", "fire5", "fire6", "fire7", "fire8", "fire9"), 17),
}


def canonical_net(net: str) -> Net:
    """``"alexnet"`` -> ``"alex"`` etc.; :class:`InputError` for an unknown name."""
    key = str(net).strip().lower()
    if key not in _ALIASES:
        raise InputError(f"unknown LPIPS net {net!r} (choose one of: {', '.join(NETS)})")
    return _ALIASES[key]


def backbone_spec(net: str) -> BackboneSpec:
    return _SPECS[canonical_net(net)]


def tap_channels(net: str) -> list[int]:
    """Channel count of each tap, e.g. ``[64, 192, 384, 256, 256]`` for ``alex``."""
    return list(backbone_spec(net).channels)


class Trunk(nn.Module):
    """``features[:last_tap]`` of a torchvision classifier, returning the tapped activations.

    ``trunk(x)`` with ``x`` of shape ``(N,3,H,W)`` (already LPIPS-scaled) returns a list of
    ``(N, C_k, H_k, W_k)`` tensors, one per tap. :meth:`taps` yields them one at a time, so a
    caller that consumes each tap before asking for the next keeps only one alive.
    """

    def __init__(self, spec: BackboneSpec, features: nn.Sequential) -> None:
        super().__init__()
        self.net = spec.net
        self.tap_ends = spec.tap_ends
        self.channels = spec.channels
        self.tap_names = spec.tap_names
        self.features = features

    def taps(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        h = x
        start = 0
        for end in self.tap_ends:
            for i in range(start, end):
                h = self.features[i](h)
            start = end
            yield h

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.taps(x))

    def extra_repr(self) -> str:
        return f"net={self.net!r}, taps={list(self.tap_names)}"


#: Seconds a download of pretrained weights waits for the network (each connect, each read):
#: torch.hub sets no timeout, so a machine whose network drops packets would wait for minutes.
DOWNLOAD_TIMEOUT_SECONDS = 15.0


@contextlib.contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _tv_weights(spec: BackboneSpec):
    import torchvision.models as tvm

    return getattr(tvm, spec.weights_enum).IMAGENET1K_V1


def trunk_weights_path(net: str) -> Path:
    """Where torchvision caches the ImageNet weights of ``net``:
    ``torch.hub.get_dir()/checkpoints/<file name of the weights URL>`` (follows ``$TORCH_HOME``)."""
    url = _tv_weights(backbone_spec(net)).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def load_pretrained_features(net: str) -> dict[str, torch.Tensor]:
    """The ImageNet ``features.*`` tensors of ``net`` (torchvision ``IMAGENET1K_V1``), on the CPU.

    Loads through torchvision's weights API, which reads the cached file or downloads it.
    Raises :class:`WeightsNotFoundError` naming the file and the folder to put it in when the
    file is absent and cannot be downloaded.
    """
    spec = backbone_spec(net)
    weights = _tv_weights(spec)
    path = trunk_weights_path(net)
    # torch.hub prints "Downloading: ..." on stdout, which would spoil a --json output: keep it,
    # and show it on stderr only if the download worked (else the error says it all).
    notice = io.StringIO()
    try:
        # check_hash=False: torchvision never re-checks a cached file either.
        with contextlib.redirect_stdout(notice), _network_timeout(DOWNLOAD_TIMEOUT_SECONDS):
            state = weights.get_state_dict(progress=False, check_hash=False, weights_only=True)
    except Exception as exc:  # URLError, HTTPError, OSError, a truncated download ...
        if path.is_file():
            raise WeightsNotFoundError(f"{path}: cannot read the pretrained {spec.builder} weights "
                                       f"({_unreadable_reason(exc)}); delete it to download it again, or put "
                                       f"the real {path.name} there") from None
        raise WeightsNotFoundError(
            f"pretrained {spec.builder} weights {path.name} are not in {path.parent} and could not be "
            f"downloaded from {weights.url} ({type(exc).__name__}: {exc}); put the file in that folder "
            f"(or point TORCH_HOME at a folder holding hub/checkpoints/{path.name})"
        ) from exc
    sys.stderr.write(notice.getvalue())
    n_keep = spec.tap_ends[-1]
    features = {k: v for k, v in state.items()
                if k.startswith("features.") and int(k.split(".")[1]) < n_keep}
    if not features:
        raise WeightsNotFoundError(f"{path}: holds no features.* tensors of {spec.builder}")
    return features


def _unreadable_reason(exc: Exception) -> str:
    """torch.load's failure on a cached weight file in a few words (its own message runs to many
    lines): a file that wants to build Python objects is refused by ``weights_only`` and nothing
    in it runs; anything else is a damaged or foreign file."""
    if isinstance(exc, pickle.UnpicklingError) and "global" in str(exc).lower():
        return "it holds pickled Python objects, so loading it could run code: refused, nothing was run"
    return f"not a readable torch file, damaged or truncated ({type(exc).__name__})"


def build_backbone(net: str, pretrained: bool = True, seed: int | None = None) -> Trunk:
    """The tap-cut trunk of ``net`` (``alex``, ``vgg`` or ``squeeze``), in eval mode.

    ``pretrained=True``: ImageNet weights through torchvision's weights API (see
    :func:`load_pretrained_features`). ``pretrained=False``: torchvision's own default
    initialisation of that architecture (AlexNet: PyTorch's default Conv2d init, i.e.
    Kaiming-uniform with a=sqrt(5); VGG16: Kaiming-normal fan_out, zero bias; SqueezeNet 1.1:
    Kaiming-uniform, zero bias) -- the same init the LPIPS code's ``pnet_rand=True`` uses.
    With ``seed`` given the random init is reproducible and leaves the global RNG untouched.
    Parameters come back with ``requires_grad=True``; the metric freezes them.
    """
    import torchvision.models as tvm

    spec = backbone_spec(net)
    if pretrained:
        return load_trunk(spec.net, load_pretrained_features(spec.net))
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = getattr(tvm, spec.builder)(weights=None)
    features = nn.Sequential(*list(model.features.children())[: spec.tap_ends[-1]])
    return Trunk(spec, features).eval()


def load_trunk(net: str, state_dict: dict[str, torch.Tensor]) -> Trunk:
    """A trunk of ``net`` holding ``state_dict`` (keys ``features.<i>.weight|bias``), on the CPU.

    The architecture is built on the meta device (no time spent on a random init that is
    overwritten at once), then filled with the given tensors. Mismatching keys or shapes raise
    :class:`InputError`.
    """
    import torchvision.models as tvm

    spec = backbone_spec(net)
    with torch.device("meta"):
        model = getattr(tvm, spec.builder)(weights=None)
    features = nn.Sequential(*list(model.features.children())[: spec.tap_ends[-1]])
    trunk = Trunk(spec, features).to_empty(device="cpu")
    try:
        trunk.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise InputError(f"trunk weights do not fit the {spec.builder} trunk: {' '.join(first[:3])}") from None
    return trunk.eval()
