"""Training DeePSiM generators (Sec. 3.2 of Dosovitskiy & Brox 2016) on any folder of images.

One iteration: sample a batch of random crops, encode (fixed AlexNet layer for ``invert``,
trained encoder for ``autoencoder``/``vae``), decode, take an Adam step on the generator
(and encoder) with the loss of :mod:`percepmetric.deepsim.losses`, then an Adam step on the
discriminator unless the pause rule holds (L_discr / L_adv < 0.1).

Checkpoints are dicts written atomically (temp file + rename) to ``OUT/last.pt`` every
``checkpoint_every`` iterations and to ``OUT/final.pt`` at the end; they hold the
configuration, all state dicts, both optimisers, the step, every RNG state and a fingerprint
of the training data, so ``resume=True`` continues exactly where the run stopped. They hold
tensors and plain data only (RNG states included) and are read with ``weights_only=True``
(:func:`percepmetric.checkpoints.load_checkpoint_file`): a file that wants to build Python
objects is refused and nothing in it runs.

Before a run reads its data or writes anything, :func:`train_generator` checks what a user can get
wrong: the image size (against what every network of the run accepts, :func:`check_size`), an
existing run in ``OUT`` (continued only with ``resume``), the data of a resumed run (its
fingerprint), and ``OUT`` itself (a folder that can be written).

Device (``DeepSimConfig.device``, ``--device``): ``auto`` (CUDA when available, else the CPU),
``cpu``, ``cuda`` or ``cuda:N``. Networks are built on the CPU with the seeded CPU RNG (same
initial weights on every device), then moved; every batch is moved to the device in
:meth:`Trainer.train_step`. Checkpoints load with ``map_location="cpu"`` and are moved after.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoints import load_checkpoint_file, remove_stale_temporaries, save_checkpoint
from ..devices import resolve_device
from ..errors import InputError
from ..io import atomic_write_text, prepare_output_dir
from .losses import DeepSimLoss, LossWeights, discriminator_should_update, kl_loss, loss_weights
from .networks import (
    Discriminator,
    ReconstructionModel,
    build_comparator,
    reparameterize,
    size_error,
    smallest_accepted_size,
)

CHECKPOINT_FORMAT = "percepmetric-deepsim/1"
RUN_FILES = ("last.pt", "final.pt", "log.csv")  # what a run writes into OUT (atomically)
# What evaluating a model reads from a checkpoint, and what resuming its run reads besides.
MODEL_FIELDS = ("config", "model_config", "model_state", "comparator")
RESUME_FIELDS = MODEL_FIELDS + ("discriminator_state", "opt_g", "opt_d", "step", "history", "rng")
FINGERPRINT_SAMPLE = 16  # files whose content enters the data fingerprint


# ---------------------------------------------------------------- device

def _cuda_devices(device: torch.device) -> list[int]:
    """GPU indices whose RNGs a run on ``device`` uses and saves (all of them on CUDA, none on the CPU)."""
    return list(range(torch.cuda.device_count())) if device.type == "cuda" else []


# ---------------------------------------------------------------- data

class ImageCrops:
    """All images of a folder (or given uint8 arrays), kept in memory, served as square crops.

    Each image is read once (grey repeated to RGB; alpha dropped by ``read_image_array``) and,
    when its shorter side is below ``size``, resized so that it equals ``size``.
    :meth:`random_batch` gives ``(n,3,size,size)`` float32 random crops in [0, 1] (as the paper
    trains on random crops); :meth:`center_crops` one central crop per image, for evaluation.
    """

    def __init__(self, images: list[np.ndarray], size: int, names: list[str] | None = None,
                 fingerprint: dict[str, Any] | None = None) -> None:
        if not images:
            raise InputError("no images to train or evaluate on")
        self.size = int(size)
        self._fingerprint = fingerprint or arrays_fingerprint(images)
        self.images = [self._fit(im) for im in images]
        self.names = names or [f"image{i}" for i in range(len(images))]

    @property
    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data (:func:`folder_fingerprint`, or :func:`arrays_fingerprint`
        for images given as arrays); stored in checkpoints, checked on resume."""
        return dict(self._fingerprint)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, size: int) -> ImageCrops:
        from ..io import read_image_array

        folder = Path(folder)
        paths = image_files(folder)
        arrays = []
        for p in paths:
            a = read_image_array(p)
            if a.dtype == np.uint16:
                a = (a // 257).astype(np.uint8)
            arrays.append(a)
        return cls(arrays, size, [str(p.relative_to(folder)) for p in paths], folder_fingerprint(folder, paths))

    def _fit(self, image: np.ndarray) -> np.ndarray:
        if image.ndim == 2:
            image = image[..., None]
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        h, w = image.shape[:2]
        if min(h, w) < self.size:
            from PIL import Image

            scale = self.size / min(h, w)
            new = (max(self.size, round(w * scale)), max(self.size, round(h * scale)))
            image = np.asarray(Image.fromarray(image).resize(new, Image.Resampling.BICUBIC))
        return np.ascontiguousarray(image)

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def _to_tensor(crops: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)

    def random_batch(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        s = self.size
        crops = []
        for k in rng.integers(0, len(self.images), size=n):
            im = self.images[k]
            top = rng.integers(0, im.shape[0] - s + 1)
            left = rng.integers(0, im.shape[1] - s + 1)
            crops.append(im[top: top + s, left: left + s])
        return self._to_tensor(crops)

    def center_crops(self) -> torch.Tensor:
        s = self.size
        crops = []
        for im in self.images:
            top, left = (im.shape[0] - s) // 2, (im.shape[1] - s) // 2
            crops.append(im[top: top + s, left: left + s])
        return self._to_tensor(crops)


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files under ``folder`` (searched recursively, hidden files and folders left out,
    as :func:`percepmetric.io.list_image_files` lists them), sorted; :class:`InputError` naming
    ``--data`` when the folder is absent or holds none."""
    from ..io import IMAGE_SUFFIXES, list_image_files

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--data {folder}: no such folder")
    paths = [folder / name for name in list_image_files(folder)]
    if not paths:
        raise InputError(f"--data {folder}: holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def folder_fingerprint(folder: str | os.PathLike, paths: list[Path] | None = None) -> dict[str, Any]:
    """What identifies the images of ``folder``, cheaply, whatever its size: the SHA-256 of every
    file's relative name and size, and of the bytes of up to :data:`FINGERPRINT_SAMPLE` files
    spread evenly over the sorted list (first and last included).

    A moved or copied folder keeps its fingerprint; another folder, a file added, removed,
    renamed or resized, or one of the sampled files changed, gives another one.
    """
    folder = Path(folder)
    paths = image_files(folder) if paths is None else paths
    digest = hashlib.sha256()
    total = 0
    for path in paths:
        size = path.stat().st_size
        total += size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\n".encode())
    picks = sorted({round(i * (len(paths) - 1) / max(1, FINGERPRINT_SAMPLE - 1)) for i in range(FINGERPRINT_SAMPLE)})
    for i in picks:
        digest.update(paths[i].read_bytes())
    return {"files": len(paths), "bytes": total, "sha256": digest.hexdigest()}


def arrays_fingerprint(images: list[np.ndarray]) -> dict[str, Any]:
    """The fingerprint of images given as arrays: the SHA-256 of every array's shape, type and bytes."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(f"{image.shape}{image.dtype}".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    return {"files": len(images), "bytes": int(sum(image.nbytes for image in images)), "sha256": digest.hexdigest()}


def _describe_fingerprint(fingerprint: Any) -> str:
    if not isinstance(fingerprint, dict):
        return "unreadable"
    return (f"{fingerprint.get('files', '?')} files, {fingerprint.get('bytes', '?')} bytes, "
            f"sha256 {str(fingerprint.get('sha256', '?'))[:12]}")


# ---------------------------------------------------------------- configuration

@dataclass
class DeepSimConfig:
    """Everything a run needs; stored in each checkpoint.

    ``loss``: ablation preset (``full``, ``image``, ``features``, ``adversarial``, ``metric``);
    ``lambda_*`` override its weights. ``metric``: registry name used as a loss term (with
    ``metric_options``); weight ``lambda_metric`` (1 with preset ``metric``).
    ``comparator``: ``net:layer`` (default AlexNet conv5), ``comparator_pretrained`` False
    gives random weights. ``discriminator_features``: feed the inverted features to D.
    ``device``: see :func:`resolve_device` (not taken from the checkpoint on resume).
    """

    task: str = "invert"
    layer: str = "fc6"
    size: int = 227
    data: str = ""
    out: str = "run"
    iterations: int = 1000
    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    loss: str = "full"
    lambda_feat: float | None = None
    lambda_adv: float | None = None
    lambda_img: float | None = None
    lambda_kl: float | None = None
    lambda_metric: float | None = None
    metric: str | None = None
    metric_options: dict[str, Any] = field(default_factory=dict)
    comparator: str = "alex:conv5"
    comparator_pretrained: bool = True
    pretrained: bool = True  # AlexNet weights of the inverted layer / VAE encoder trunk
    width: float = 1.0
    code_channels: int = 8
    latent: int = 4096
    discriminator_features: bool = False
    discriminator_width: float = 1.0
    pause_ratio: float = 0.1
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"

    def weights(self) -> LossWeights:
        w = loss_weights(self.loss, feat=self.lambda_feat, adv=self.lambda_adv, img=self.lambda_img,
                         kl=self.lambda_kl, metric=self.lambda_metric)
        if self.metric and self.lambda_metric is None and self.loss != "metric":
            w.metric = 1.0
        if self.task != "vae":
            w.kl = 0.0
        return w


def build_model(config: DeepSimConfig) -> ReconstructionModel:
    return ReconstructionModel(config.task, config.layer, config.size, config.width, config.pretrained,
                               config.code_channels, config.latent)


def _condition_dim(model: ReconstructionModel) -> int:
    p = next(model.parameters())
    with torch.no_grad():
        probe = model.encode(torch.zeros(1, 3, model.size, model.size, device=p.device, dtype=p.dtype))
    return probe[0].numel()


def build_loss(config: DeepSimConfig, model: ReconstructionModel) -> DeepSimLoss:
    w = config.weights()
    comparator = build_comparator(config.comparator, config.comparator_pretrained) if w.feat else None
    discriminator = None
    if w.adv:
        feature_dim = _condition_dim(model) if config.discriminator_features else None
        discriminator = Discriminator(config.size, feature_dim, config.discriminator_width)
    metric = None
    if w.metric:
        if not config.metric:
            raise InputError("loss preset 'metric' needs --metric NAME")
        from ..registry import create_metric

        metric = create_metric(config.metric, **config.metric_options)
        if not metric.differentiable:
            raise InputError(f"metric {config.metric!r} is not differentiable and cannot be a loss")
        if config.size < metric.min_size:
            raise InputError(f"--size {config.size}: the loss metric {config.metric} needs images of at least "
                             f"{metric.min_size} px")
    return DeepSimLoss(w, comparator, discriminator, metric)


def _model_description(config: DeepSimConfig) -> str:
    if config.task == "invert":
        return f"the AlexNet {config.layer} inverter"
    return "the VAE" if config.task == "vae" else "the autoencoder"


def _networks_seeing_images(config: DeepSimConfig) -> list[tuple[str, Callable[[int], Callable]]]:
    """Each network of the run that takes the images, and how to build it for a given size
    (random weights: shapes do not depend on them)."""
    w = config.weights()
    networks = [(_model_description(config),
                 lambda s: build_model(replace(config, size=s, pretrained=False)).reconstruct)]
    if w.feat:
        networks.append((f"the comparator {config.comparator} of the feature loss",
                         lambda s: build_comparator(config.comparator, pretrained=False)))
    if w.adv:
        networks.append(("the discriminator", lambda s: Discriminator(s, None, config.discriminator_width)))
    return networks


def check_size(config: DeepSimConfig) -> None:
    """Refuse, in one line and before anything runs, an image size some network of the run cannot
    take; when it is too small, say what the smallest size is.

    The sizes come from the networks themselves (:func:`~percepmetric.deepsim.networks.size_error`
    runs them on PyTorch's meta device), so they follow the architecture, the comparator and
    the loss preset. A registry metric used as a loss is checked when it is built
    (:func:`build_loss`).
    """
    size = config.size
    if size < 1:
        raise InputError(f"--size must be positive, got {size}")
    networks = _networks_seeing_images(config)
    failures = [(name, build, error) for name, build in networks if (error := size_error(build, size)) is not None]
    if not failures:
        return

    def whole_run(s: int) -> Callable[[torch.Tensor], None]:
        built = [build(s) for _, build in networks]

        def run_all(x: torch.Tensor) -> None:
            for run in built:
                run(x)
        return run_all

    if size_error(whole_run, 1024) is not None:  # not about the size (e.g. an unknown layer)
        raise InputError(f"--size {size}: {failures[0][2]}")
    smallest = smallest_accepted_size(whole_run)
    reasons = []
    for name, build, error in failures:
        needs = smallest_accepted_size(build)
        reasons.append(f"{name} needs at least {needs} px" if needs is not None and needs > size else str(error))
    if smallest is not None and smallest > size:
        reasons.append(f"the smallest --size this run accepts is {smallest}")
    raise InputError(f"--size {size}: " + "; ".join(reasons))


# ---------------------------------------------------------------- checkpoints

def load_deepsim_checkpoint(path: str | os.PathLike, required: tuple[str, ...] = MODEL_FIELDS) -> dict[str, Any]:
    """Read a DeePSiM checkpoint without running any code in it (``weights_only=True``).

    :class:`InputError` in one line naming the file when it is absent, not a DeePSiM checkpoint,
    holds pickled Python objects (refused unread), or lacks one of the ``required`` fields
    (:data:`MODEL_FIELDS` to evaluate its model, :data:`RESUME_FIELDS` to resume its run).
    """
    return load_checkpoint_file(path, format=CHECKPOINT_FORMAT, required=required,
                                what="percepmetric DeePSiM checkpoint")


def model_from_checkpoint(ckpt: dict[str, Any], device: str | torch.device | None = None,
                          path: str | os.PathLike | None = None) -> ReconstructionModel:
    """The trained :class:`ReconstructionModel` of a checkpoint dict, in eval mode, on ``device``
    (a :func:`resolve_device` spec; None keeps it where the checkpoint was loaded, the CPU).

    The encoder's pretrained AlexNet file is not needed: all weights come from the checkpoint.
    A model configuration or state that does not fit gives :class:`InputError` (a damaged file,
    named by ``path`` when given).
    """
    try:
        cfg = dict(ckpt["model_config"])
        cfg["pretrained"] = False  # weights come from the state dict below
        model = ReconstructionModel(**cfg)
        model.load_state_dict(ckpt["model_state"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        where = f"{path}: " if path is not None else ""
        raise InputError(f"{where}damaged DeePSiM checkpoint: its model does not load ({reason})") from None
    model.config["pretrained"] = ckpt["model_config"]["pretrained"]
    if device is not None:
        model = model.to(resolve_device(device))
    return model.eval()


# ---------------------------------------------------------------- the loop

class Trainer:
    """State of one run: model, loss (with D), optimisers, step, RNGs. See the module docstring."""

    def __init__(self, config: DeepSimConfig, data: ImageCrops | None = None) -> None:
        self.config = config
        self.out = Path(config.out)
        self.device = resolve_device(config.device)
        with torch.random.fork_rng(devices=_cuda_devices(self.device)):
            torch.manual_seed(config.seed)
            self.model = build_model(config)  # on the CPU: the same initial weights on every device
            self.loss = build_loss(config, self.model)
            self.torch_rng_state = torch.random.default_generator.get_state()  # seeded: runs are reproducible
            # dropout on a GPU draws from the CUDA generators (seeded by manual_seed above)
            self.cuda_rng_state = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None
        self.model.to(self.device)
        self.loss.to(self.device)
        self.data = data if data is not None else ImageCrops.from_folder(config.data, config.size)
        params = list(self.model.decoder.parameters())
        if self.model.encoder_trainable:
            params += list(self.model.encoder.parameters())
        betas = (config.betas[0], config.betas[1])
        self.opt_g = torch.optim.Adam(params, lr=config.lr, betas=betas)
        d = self.loss.discriminator
        self.opt_d = torch.optim.Adam(d.parameters(), lr=config.lr, betas=betas) if d is not None else None
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.data_rng = np.random.default_rng(config.seed)
        g = torch.Generator(device=self.device)
        g.manual_seed(config.seed + 1)
        self.noise_rng = g  # VAE epsilon, drawn on the device

    # -- one iteration
    def train_step(self, batch: torch.Tensor) -> dict[str, float]:
        """One generator step and (unless paused) one discriminator step; returns the logged values.

        ``batch``: ``(N,3,S,S)`` in [0, 1] on any device (moved to the run's device here).
        """
        model, loss, w = self.model, self.loss, self.loss.weights
        batch = batch.to(self.device)
        model.decoder.train()
        if model.encoder_trainable:
            model.encoder.train()
        if loss.discriminator is not None:
            loss.discriminator.train()
        if model.task == "invert":
            with torch.no_grad():
                code = model.encoder(batch)
            condition = code
            if self.step == 0 and not code.any():
                # e.g. an AlexNet weight file whose fully connected layers were stripped to save space
                warnings.warn(f"AlexNet {model.config['layer']} features of the first batch are all zero: the "
                              "generator has nothing to invert (zeroed fully connected weights?); use --layer conv5 "
                              "or --random-encoder", RuntimeWarning, stacklevel=2)
        elif model.task == "vae":
            mu, log_sigma = model.encoder(batch)
            code = reparameterize(mu, log_sigma, self.noise_rng)
            condition = mu.detach()
        else:
            code = model.encoder(batch)
            condition = code.detach()
        generated = model.decoder(code)
        total, parts = loss.generator_loss(generated, batch, condition)
        if model.task == "vae" and w.kl:
            kl = kl_loss(mu, log_sigma)
            total = total + w.kl * kl
            parts["kl"] = kl.item()
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        parts["total"] = total.item()
        if loss.discriminator is not None:
            d_loss = loss.discriminator_step_loss(generated, batch, condition)
            parts["discr"] = d_loss.item()
            update = discriminator_should_update(parts["discr"], parts["adv"], self.config.pause_ratio)
            parts["d_updated"] = float(update)
            if update and self.opt_d is not None:  # an optimiser exists whenever a discriminator does
                self.opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                self.opt_d.step()
        self.step += 1
        parts["step"] = self.step
        return parts

    # -- checkpoints
    def state(self) -> dict[str, Any]:
        d = self.loss.discriminator
        return {
            "format": CHECKPOINT_FORMAT,
            "config": asdict(self.config),
            "model_config": dict(self.model.config),
            "loss_weights": self.loss.weights.as_dict(),
            "comparator": {"spec": self.config.comparator, "pretrained": self.config.comparator_pretrained},
            "model_state": self.model.state_dict(),
            "discriminator_state": d.state_dict() if d is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "step": self.step,
            "history": list(self.history),
            "data_fingerprint": self.data.fingerprint,
            "rng": {
                "torch": torch.random.default_generator.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                "noise": self.noise_rng.get_state(),
                "data": self.data_rng.bit_generator.state,
            },
        }

    def load_state(self, ckpt: dict[str, Any], path: str | os.PathLike = "checkpoint") -> None:
        """Continue from ``ckpt`` (read from ``path``); :class:`InputError` naming ``path`` when a
        state in it does not fit this run (a damaged file)."""
        try:
            self._load_state(ckpt)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{path}: damaged DeePSiM checkpoint: cannot resume from it ({type(exc).__name__}: "
                             f"{reason})") from None

    def _load_state(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model_state"])
        if self.loss.discriminator is not None and ckpt["discriminator_state"] is not None:
            self.loss.discriminator.load_state_dict(ckpt["discriminator_state"])
        self.opt_g.load_state_dict(ckpt["opt_g"])
        if self.opt_d is not None and ckpt["opt_d"] is not None:
            self.opt_d.load_state_dict(ckpt["opt_d"])
        self.step = int(ckpt["step"])
        self.history = list(ckpt["history"])
        rng = ckpt["rng"]
        self.torch_rng_state = rng["torch"]
        cuda_states = rng.get("cuda")
        if self.device.type == "cuda" and cuda_states:
            self.cuda_rng_state = list(cuda_states)[: torch.cuda.device_count()]
        try:
            self.noise_rng.set_state(rng["noise"])
        except RuntimeError:
            # CPU and CUDA generators keep states of different kinds: a run resumed on another
            # kind of device restarts the VAE noise stream (such a resume is not bit-exact anyway)
            if self.config.task == "vae":
                warnings.warn(f"resuming on {self.device.type} a run trained on another kind of device: the VAE "
                              "noise stream restarts from the seed", RuntimeWarning, stacklevel=2)
        self.data_rng.bit_generator.state = rng["data"]

    def save(self, name: str) -> Path:
        path = save_checkpoint(self.state(), self.out / name)
        self._write_log()
        return path

    def _write_log(self) -> None:
        if not self.history:
            return
        keys = sorted({k for row in self.history for k in row}, key=lambda k: (k != "step", k))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(self.out / "log.csv", buffer.getvalue())

    # -- the run
    def run(self, progress: bool = True, callback: Callable[[dict[str, float]], None] | None = None) -> Path:
        """Train up to ``config.iterations``; returns the path of ``final.pt``."""
        from tqdm.auto import tqdm

        cfg = self.config
        prepare_output_dir(self.out)
        # dropout draws from the global RNGs: keep the caller's intact
        with torch.random.fork_rng(devices=_cuda_devices(self.device)):
            torch.random.default_generator.set_state(self.torch_rng_state)
            if self.cuda_rng_state is not None:
                torch.cuda.set_rng_state_all(self.cuda_rng_state)
            bar = tqdm(total=cfg.iterations, initial=self.step, disable=not progress,
                       desc=f"deepsim {cfg.task} ({self.device})",
                       dynamic_ncols=True, leave=False)
            while self.step < cfg.iterations:
                batch = self.data.random_batch(cfg.batch_size, self.data_rng)
                parts = self.train_step(batch)
                self.history.append(parts)
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in parts.items()
                                 if k in ("total", "img", "feat", "adv", "discr", "metric")})
                if callback is not None:
                    callback(parts)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.iterations:
                    self.save("last.pt")
            bar.close()
            self.save("last.pt")
            return self.save("final.pt")


def train_generator(config: DeepSimConfig, resume: bool = False, progress: bool = True,
                    data: ImageCrops | None = None) -> Path:
    """Train (or, with ``resume``, continue from ``OUT/last.pt``) and return the path of ``final.pt``.

    On resume the stored configuration wins except ``iterations`` (so a run can be extended),
    ``checkpoint_every`` and ``device`` (a run may continue on another device); ``data`` may name
    another folder (the run's may have moved) but must hold the same images: its fingerprint
    (:func:`folder_fingerprint`) must equal the stored one.

    Everything a user can get wrong is checked before the images are decoded or anything is
    written, each as one :class:`InputError` line: the numbers, ``--device``, an existing run in
    ``OUT`` without ``resume`` (its ``final.pt`` would be overwritten), the checkpoint,
    ``--size`` (:func:`check_size`), the data folder and its fingerprint, and ``OUT``. Temporary
    files that a kill during a checkpoint write left in ``OUT`` are removed. A run stopped before
    it wrote anything (an interruption, an error) removes the folders it made for ``OUT``.
    """
    if config.iterations < 1:
        raise InputError(f"--iterations must be at least 1, got {config.iterations}")
    if config.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {config.batch_size}")
    resolve_device(config.device)  # a bad --device fails before any data is read
    out = Path(config.out)
    ckpt = None
    if resume:
        last = out / "last.pt"
        if not last.is_file():
            raise InputError(f"--resume: {last} does not exist (nothing to resume)")
        ckpt = load_deepsim_checkpoint(last, required=RESUME_FIELDS)
        try:
            stored = dict(ckpt["config"])
            stored["betas"] = tuple(stored["betas"])
            stored.update(iterations=config.iterations, checkpoint_every=config.checkpoint_every, out=config.out,
                          data=config.data or stored["data"], device=config.device)
            config = DeepSimConfig(**stored)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{last}: damaged DeePSiM checkpoint: its configuration does not fit this version "
                             f"({type(exc).__name__}: {exc})") from None
    else:
        for name in ("final.pt", "last.pt"):
            if (out / name).is_file():
                raise InputError(f"{out} already holds a run ({name}); pass --resume to continue it or choose "
                                 f"another --out")
    check_size(config)
    fingerprint = data.fingerprint if data is not None else folder_fingerprint(config.data)
    if ckpt is not None and ckpt.get("data_fingerprint") not in (None, fingerprint):
        stored_data = ckpt["config"].get("data") or "(images given as arrays)"
        raise InputError(f"--resume: --data {config.data or '(arrays)'} is not the data this run was trained on "
                         f"({_describe_fingerprint(fingerprint)}; the run's: "
                         f"{_describe_fingerprint(ckpt['data_fingerprint'])}, from {stored_data}); pass the run's "
                         f"data or choose another --out")
    made = _missing_folders(out)
    try:
        prepare_output_dir(out)
        remove_stale_temporaries(out, RUN_FILES)
        trainer = Trainer(config, data)
        if ckpt is not None:
            trainer.load_state(ckpt, out / "last.pt")
        return trainer.run(progress=progress)
    except BaseException:
        # Stopped (Ctrl-C, SIGTERM, an error) before anything was written: leave no empty folder
        # of this run's making behind. A folder with a checkpoint, or one that was there, stays.
        _remove_empty(made)
        raise


def _missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet (what creating it makes), deepest first."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty; stop at the first that is not."""
    for folder in folders:
        try:
            folder.rmdir()  # refuses a folder that holds anything
        except OSError:
            return
