"""Helpers several test files share (imported as ``helpers``: pytest puts tests/ on sys.path).

Test files import from here or from ``conftest``, never from one another: a test module is
collected on its own, and importing one from another runs its module-level set-up twice.
Imports of the package sit inside the functions, so a helper's dependencies load only for the
tests that use it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest
import torch

if TYPE_CHECKING:
    from percepmetric.data.bapps import TwoAFCSplit
    from percepmetric.metrics.lpips import LPIPS

# ---------------------------------------------------------------- the command line


#: Items per split of the session-wide synthetic BAPPS (conftest.py: fixture_root).
FIXTURE_SIZE = 12


def run_cli(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """``percepmetric ARGS`` in this process: (exit code, stdout, stderr)."""
    from percepmetric.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def run_cli_subprocess(
    *args: object,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
    check_rc: int | None = None,
    module: str = "percepmetric.cli",
) -> subprocess.CompletedProcess[str]:
    """``python -m percepmetric.cli ARGS`` in a fresh interpreter, as a user runs it.

    ``env``: the whole environment (default: this process's). ``check_rc``: the exit code the
    caller expects; anything else fails with the command's output in the message.
    """
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, check=False,
                          env=None if env is None else dict(env), timeout=timeout)
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr + proc.stdout
    return proc


# ---------------------------------------------------------------- reference data

#: The reference outputs of the original implementations, with their images (tests/data/README.md),
#: in the repository itself, so a fresh clone runs every parity test.
REFERENCE_DIR = Path(__file__).resolve().parent / "data"


# ---------------------------------------------------------------- weights

#: Start of every skip reason for an absent pretrained file; the CI's skip check (.ci/check_skips.py)
#: reads the file name that follows it.
MISSING_WEIGHTS = "missing pretrained weights"

# The answer for each trunk file looked for this session (path -> skip reason, None: present), so
# a download is tried once per file, not once per test.
_weights_checked: dict[Path, str | None] = {}


def missing_weights(*nets: str) -> str | None:
    """Why a test needing the ImageNet trunks of ``nets`` (``alex``, ``vgg``, ``squeeze``) cannot
    run, or None when it can.

    A trunk is present when torchvision's cache holds its file (``$TORCH_HOME/hub/checkpoints``,
    read when called, so a test's ``monkeypatch.setenv`` is followed). Otherwise it is fetched as
    the package fetches it (where there is a network it downloads, as before this helper); where
    that fails the reason names the file, the folder it belongs in and how to get it.
    """
    from percepmetric import WeightsNotFoundError
    from percepmetric.nets.backbones import load_pretrained_features, trunk_weights_path

    for net in nets:
        path = trunk_weights_path(net)
        if path.is_file():
            continue
        if path not in _weights_checked:
            try:
                load_pretrained_features(net)
                _weights_checked[path] = None
            except WeightsNotFoundError as exc:
                # The package's message says where the file belongs, its URL and TORCH_HOME.
                _weights_checked[path] = f"{MISSING_WEIGHTS} {path.name}: {exc}; `percepmetric weights` lists them all"
        if _weights_checked[path] is not None:
            return _weights_checked[path]
    return None


def skip_without_weights(*nets: str) -> None:
    """Skip the running test (or fixture) where a trunk of ``nets`` is absent: see
    :func:`missing_weights`. Tests say it with :func:`requires_weights`; this is for fixtures and
    helpers, and before a subprocess that would load the trunk."""
    reason = missing_weights(*nets)
    if reason is not None:
        pytest.skip(reason)


def requires_weights(*nets: str) -> pytest.MarkDecorator:
    """``@requires_weights("alex")`` (or ``pytest.param(..., marks=requires_weights("vgg"))``): the
    test needs the pretrained trunks of ``nets`` and skips, naming the file and how to get it,
    where one is absent. Checked when the test is set up (conftest.py), not when it is collected."""
    return pytest.mark.weights(*nets)


#: The pretrained trunks each registry metric loads with its default options; the others load none
#: (ST-LPIPS's networks come whole with the stlpips-pytorch package).
METRIC_TRUNKS: dict[str, tuple[str, ...]] = {"lpips": ("alex",), "dists": ("vgg",)}


def metric_params(names: Iterable[str]) -> list[object]:
    """Metric names for ``pytest.mark.parametrize``, those of :data:`METRIC_TRUNKS` marked with
    :func:`requires_weights` (so only their cases skip where a trunk is absent)."""
    return [pytest.param(name, marks=requires_weights(*METRIC_TRUNKS[name])) if name in METRIC_TRUNKS else name
            for name in names]


def pretrained_lpips(net: str = "alex", **options: object) -> LPIPS:
    """``create_metric("lpips", net=net, ...)`` with the ImageNet trunk; skips the test, naming
    the missing file and how to get it, where torchvision's cache lacks it."""
    from percepmetric import create_metric

    skip_without_weights(net)
    return create_metric("lpips", net=net, **options)  # type: ignore[return-value]


ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # the file name of torchvision's AlexNet IMAGENET1K_V1 URL


def alexnet_file() -> Path:
    """Where torchvision looks for its pretrained AlexNet: ``torch.hub.get_dir()/checkpoints/``,
    i.e. ``$TORCH_HOME/hub/checkpoints`` (else ``$XDG_CACHE_HOME/torch/hub``, else
    ``~/.cache/torch/hub``), read when called, so a test's ``monkeypatch.setenv`` is followed."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def alexnet_torch_home(folder: Path, classifier: Literal["zeros", "nonzero"]) -> Path:
    """A ``TORCH_HOME`` whose AlexNet file has the convolution weights of the one under test
    (``$TORCH_HOME``) and a classifier of the test's choosing.

    A test that needs the classifier zero, or not zero, makes it so here instead of relying on
    whichever file the machine has: torchvision's genuine file has a trained classifier, a
    trimmed copy may have zeros. ``"nonzero"`` gives each fully connected layer seeded random
    rows repeated (stride 0 along the output axis), so the file stays as small as the
    convolutions.
    """
    skip_without_weights("alex")
    source = alexnet_file()
    state = torch.load(source, map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(0)
    for key in [k for k in state if k.startswith("classifier.")]:
        shape = state[key].shape
        if classifier == "zeros":
            state[key] = torch.zeros(()).expand(shape)
        else:
            row = torch.randn(shape[1:], generator=generator) * 0.01
            state[key] = row.expand(shape)
    home = folder / "torch_home"
    (home / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(state, home / "hub" / "checkpoints" / ALEXNET_FILE)
    return home


# ---------------------------------------------------------------- data


def png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    """One PNG chunk: length, type, body, CRC-32 of type + body (``crc`` overrides it, to make
    a damaged file). Tests build PNGs by hand with it, independently of every decoder under test."""
    import struct
    import zlib

    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)



def synthetic_bapps_root(tmp_path_factory: pytest.TempPathFactory, size: int, seed: int = 0) -> Path:
    """One synthetic BAPPS per (size, seed) for the whole test session, shared by every file
    that asks for the same one."""
    from percepmetric.data import fixtures

    root = tmp_path_factory.getbasetemp() / f"bapps-fixture-n{size}-s{seed}"
    if not fixtures.is_synthetic(root):  # the marker is written last: its presence means complete
        fixtures.make_fixture(root, size=size, seed=seed)
    return root


# Keyword arguments that keep percepmetric.train's train() silent.
QUIET: dict[str, object] = {"progress": False, "log": lambda _msg: None}


def calibration_split(n: int, seed: int) -> TwoAFCSplit:
    """``2n`` triplets: n fixture sentinels + n blur-vs-noise with "people" preferring blur.

    On the plain fixture the uncalibrated baseline already orders every triplet as the
    simulated people do; the blur-vs-noise half is what it gets wrong more often than not, so
    calibration has something to learn.
    """
    import numpy as np

    from percepmetric.data.bapps import TwoAFCSplit
    from percepmetric.data.fixtures import distort, photo_patches, sentinel_triplets

    rng = np.random.default_rng(seed)
    ref = photo_patches(n, 64, seed=seed)
    blur = distort(ref, "blur", rng.uniform(0.3, 1.0, n), seed)
    noise = distort(ref, "noise", rng.uniform(0.05, 0.4, n), seed + 1)
    p1_blur = rng.random(n) < 0.5
    p0 = np.where(p1_blur[:, None, None, None], noise, blur)
    p1 = np.where(p1_blur[:, None, None, None], blur, noise)
    s_ref, s_p0, s_p1, s_judge = sentinel_triplets(n, "traditional", seed=seed)
    cat = np.concatenate
    return TwoAFCSplit(f"calibration-{seed}", cat([ref, s_ref]), cat([p0, s_p0]), cat([p1, s_p1]),
                       cat([p1_blur.astype(np.float32), s_judge]), [f"{i:06d}" for i in range(2 * n)])


def write_split_folder(folder: Path, split: TwoAFCSplit) -> Path:
    """``split`` as a 2AFC folder in BAPPS layout (``ref/ p0/ p1/`` PNGs, ``judge/`` .npy)."""
    import numpy as np
    from PIL import Image

    for sub in ("ref", "p0", "p1", "judge"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(len(split.judge)):  # one file per item: that is the layout
        for sub in ("ref", "p0", "p1"):
            Image.fromarray(getattr(split, sub)[i]).save(folder / sub / f"{i:06d}.png")
        np.save(folder / "judge" / f"{i:06d}.npy", split.judge[i:i + 1])
    return folder


# ---------------------------------------------------------------- several processes

#: What each process of :func:`run_ranks` runs: ``driver.py TESTS_DIR PART_FILE RANK WORLD INIT_FILE OUT_FILE``
#: joins a gloo process group of WORLD processes through INIT_FILE, calls ``part(rank, world)`` of
#: PART_FILE, leaves the group and writes the result as JSON to OUT_FILE.
_RANK_DRIVER = """
import datetime, json, runpy, sys
import torch
import torch.distributed as dist

tests_dir, part_file, rank, world, init_file, out_file = sys.argv[1:]
rank, world = int(rank), int(world)
sys.path.insert(0, tests_dir)
torch.set_num_threads(1)  # as the test process (conftest.py), so per-image values are bit for bit the same
part = runpy.run_path(part_file)["part"]
dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world,
                        timeout=datetime.timedelta(minutes=10))
try:
    result = part(rank, world)
    dist.barrier()
finally:
    dist.destroy_process_group()
with open(out_file, "w") as f:
    json.dump(result, f)
"""


def _part_file(code: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part.py"
    path.write_text(code)
    return path


#: The batches of the two-process tests (source for :func:`run_ranks`' code): five batches of
#: 32x32 pairs, the same tensors in every process. With ``i % world == rank``, rank 0 of two
#: holds 3 batches (8 images) and rank 1 holds 2 (4 images): ranks of unequal sizes.
RANK_BATCHES = """
import torch

SIZES = (3, 2, 4, 2, 1)


def batches():
    generator = torch.Generator().manual_seed(0)
    for size in SIZES:
        x = torch.rand(size, 3, 32, 32, generator=generator)
        y = (x + 0.1 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
        yield x, y
"""


def run_ranks(code: str, folder: Path, world: int = 2, timeout: float = 900) -> list[object]:
    """``part(rank, world)`` of the Python source ``code`` in ``world`` fresh interpreters joined
    in one ``torch.distributed`` gloo group (CPU, set up through a file in ``folder``, no port):
    each rank's JSON-able result, in rank order.

    A rank that fails stops the others (they would wait for it in a collective) and fails the
    test with its stderr; ``timeout`` (seconds, for the whole run) only guards against a hang, as
    a loaded machine may be slow.
    """
    import json
    import os
    import time

    part = _part_file(code, folder)
    driver = folder / "driver.py"
    driver.write_text(_RANK_DRIVER)
    init_file = folder / "gloo-init"
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    logs = [(folder / f"rank{rank}.out", folder / f"rank{rank}.err") for rank in range(world)]
    processes = []
    for rank, (out, err) in enumerate(logs):
        with open(out, "w") as stdout, open(err, "w") as stderr:
            processes.append(subprocess.Popen(
                [sys.executable, str(driver), str(Path(__file__).resolve().parent), str(part), str(rank),
                 str(world), str(init_file), str(folder / f"rank{rank}.json")],
                stdout=stdout, stderr=stderr, env=env))
    deadline = time.monotonic() + timeout
    failed: int | None = None
    while any(p.poll() is None for p in processes):
        failed = next((rank for rank, p in enumerate(processes) if p.poll() not in (None, 0)), None)
        if failed is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for p in processes:
        if p.poll() is None:
            p.kill()
        p.wait()
    if failed is None:
        failed = next((rank for rank, p in enumerate(processes) if p.returncode != 0), None)
    if failed is not None:
        pytest.fail(f"rank {failed} of {world} failed (exit {processes[failed].returncode}):\n"
                    + logs[failed][1].read_text())
    return [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(world)]


def run_alone(code: str, folder: Path) -> object:
    """``part(0, 1)`` of the Python source ``code`` in this process, with no process group: the
    one-process result :func:`run_ranks` is compared with."""
    import runpy

    return runpy.run_path(str(_part_file(code, folder)))["part"](0, 1)


def cli_distance_value(reference: Path, distorted: Path, metric: str) -> float:
    """The number ``percepmetric distance REFERENCE DISTORTED -m METRIC`` prints for ``metric``
    (run as a user runs it, in a subprocess; a failure fails the test with its stderr)."""
    done = subprocess.run([sys.executable, "-m", "percepmetric.cli", "distance", str(reference), str(distorted),
                           "-m", metric], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith(metric), done.stdout
    return float(line.split()[-1])


# ---------------------------------------------------------------- reference values of the authors' code

def reference_rows(reference_dir: Path, folder: str) -> list[dict[str, str]]:
    """The rows of ``tests/data/<folder>/expected.csv`` (``reference``, ``distorted``, ``crop``,
    ``value``, ...), as the classic metrics' reference scripts write them."""
    import csv

    with open(reference_dir / folder / "expected.csv", newline="") as f:
        return list(csv.DictReader(f))


def load_reference_pair(reference_dir: Path, row: Mapping[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The row's two images, ``(1,C,H,W)`` in [0, 1], cropped as its ``crop`` (``r0 c0 h w``,
    0-based, both images) says."""
    from percepmetric.io import load_image

    x = load_image(reference_dir / row["reference"])
    y = load_image(reference_dir / row["distorted"])
    if row.get("crop"):
        r0, c0, h, w = map(int, row["crop"].split())
        x, y = x[..., r0 : r0 + h, c0 : c0 + w], y[..., r0 : r0 + h, c0 : c0 + w]
    return x, y


def reference_shapes(reference_dir: Path, folder: str) -> set[tuple[int, ...]]:
    """The ``(1, C, H, W)`` shapes of the reference pairs of ``tests/data/<folder>`` (as cropped)."""
    return {tuple(load_reference_pair(reference_dir, r)[0].shape) for r in reference_rows(reference_dir, folder)}


def reference_errors(reference_dir: Path, folder: str, metric: str, dtype: torch.dtype,
                     relative: bool = False) -> Iterable[tuple[dict[str, str], float]]:
    """Each reference row of ``tests/data/<folder>`` with the difference between ``metric``'s
    value (default options, inputs in ``dtype``) and the authors' value: absolute, or relative
    to the authors' value. The value's shape and dtype are asserted on the way."""
    from percepmetric import create_metric

    m = create_metric(metric)
    for row in reference_rows(reference_dir, folder):
        x, y = load_reference_pair(reference_dir, row)
        got = m(x.to(dtype), y.to(dtype))
        assert got.shape == (1,) and got.dtype == dtype
        want = float(row["value"])
        yield row, abs(got.item() - want) / (abs(want) if relative else 1.0)
