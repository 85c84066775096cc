"""Training speed: one epoch of LPIPS training, percepmetric against the original training loop, same run.

The original (``lpips`` 0.1.4's ``Trainer``, driven as the PerceptualSimilarity ``train.py``
drives it) is re-created faithfully: a ``Dataset`` that opens the three PNGs and the judge
``.npy`` of each triplet per item (PIL, ``Resize(64)``, ``ToTensor``, ``Normalize`` to [-1, 1]),
a ``DataLoader`` with batch 50 and shuffling, and ``Trainer.optimize_parameters()`` per batch
(two trunk passes per triplet, inputs with ``requires_grad=True``, BCE ranking loss, Adam,
clamping of the 1x1 weights). ``num_workers=0``: on a CPU, loader worker processes would
compete with the training computation for the same cores.

percepmetric is timed end to end for ``train_lpips(epochs=1)`` -- model construction, the trunk
statistics of every triplet (``lin``), the epoch, the checkpoint and ``final.pt`` -- on triplets
already in memory (its data loader decodes each split once and caches it; that load is timed
separately). Reported: triplets per second and the ratio percepmetric / original.

Speed does not depend on weight values: when a pretrained trunk is not in torchvision's cache,
both sides use a random trunk of the same architecture (said in the output).

    python benchmarks/train_speed.py                          # alex + squeeze, lin + tune, 300 triplets
    python benchmarks/train_speed.py --nets alex --variants lin --triplets 600 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def reference_epoch(root: Path, net: str, variant: str, pretrained: bool, batch_size: int = 50) -> tuple[int, float]:
    """One epoch of the original training loop over ROOT/2afc/train/*; returns (triplets, seconds)."""
    import lpips
    import torchvision.transforms as T
    from PIL import Image
    from torch.utils.data import ConcatDataset, DataLoader, Dataset

    class TwoAFCDataset(Dataset):  # as the original data/dataset/twoafc_dataset.py: files read per item
        def __init__(self, folder: Path) -> None:
            self.paths = {k: sorted((folder / k).iterdir()) for k in ("ref", "p0", "p1", "judge")}
            self.transform = T.Compose([T.Resize(64), T.ToTensor(), T.Normalize((0.5,) * 3, (0.5,) * 3)])

        def __len__(self) -> int:
            return len(self.paths["judge"])

        def __getitem__(self, i: int) -> dict:
            item = {k: self.transform(Image.open(self.paths[k][i]).convert("RGB")) for k in ("ref", "p0", "p1")}
            item["judge"] = torch.from_numpy(np.load(self.paths["judge"][i]).reshape((1, 1, 1)))
            return item

    dataset = ConcatDataset([TwoAFCDataset(root / "2afc" / "train" / c) for c in ("traditional", "cnn", "mix")])
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    trainer = lpips.Trainer()
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.initialize(model="lpips", net=net, use_gpu=False, is_train=True, pnet_rand=not pretrained,
                           pnet_tune=variant != "lin")
    started = time.perf_counter()
    for data in loader:
        trainer.set_input(data)
        trainer.optimize_parameters()
    return len(dataset), time.perf_counter() - started


def percepmetric_epoch(data, net: str, variant: str, out: Path, batch_size: int = 50) -> float:
    from percepmetric.train import LpipsTrainConfig, train_lpips

    started = time.perf_counter()
    train_lpips(LpipsTrainConfig(net=net, variant=variant, epochs=1, batch_size=batch_size), data, out,
                progress=False, log=lambda _msg: None)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", type=int, default=300, help="training triplets (split over the 3 train splits)")
    parser.add_argument("--nets", nargs="+", default=["alex", "squeeze"])
    parser.add_argument("--variants", nargs="+", default=["lin", "tune"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TORCH_HOME", str(Path(__file__).resolve().parents[1].parent / "shared" / "torch_home"))

    import percepmetric.metrics.lpips as lpips_module
    from percepmetric.data.fixtures import make_fixture
    from percepmetric.nets.backbones import trunk_weights_path
    from percepmetric.train.data import load_training_triplets

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["PERCEPMETRIC_CACHE"] = str(tmp / "cache")
        root = make_fixture(tmp / "bapps", size=-(-args.triplets // 3))
        started = time.perf_counter()
        data = load_training_triplets(str(root), ["train"], [])
        decode = time.perf_counter() - started
        started = time.perf_counter()
        load_training_triplets(str(root), ["train"], [])
        cached = time.perf_counter() - started
        print(f"{len(data)} synthetic 64x64 triplets; torch threads {args.threads}; "
              f"percepmetric data load: {decode:.2f} s first (decode + cache), {cached:.2f} s cached")
        print(f"{'net':<8} {'variant':<8} {'percepmetric trip/s':>20} {'original trip/s':>16} {'ratio':>7}  note")
        original_build = lpips_module.build_backbone
        for net in args.nets:
            pretrained = trunk_weights_path(net).is_file()
            note = "" if pretrained else f"random trunk ({trunk_weights_path(net).name} absent)"
            if not pretrained:  # same architecture, random weights: same work
                lpips_module.build_backbone = lambda n, pretrained=True, seed=None: original_build(n, False, seed)
            for variant in args.variants:
                ours = percepmetric_epoch(data, net, variant, tmp / f"run-{net}-{variant}")
                n, theirs = reference_epoch(root, net, variant, pretrained)
                print(f"{net:<8} {variant:<8} {len(data) / ours:>20.1f} {n / theirs:>16.1f} "
                      f"{theirs / ours:>6.2f}x  {note}", flush=True)
            lpips_module.build_backbone = original_build


if __name__ == "__main__":
    sys.exit(main())
