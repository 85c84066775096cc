"""Reference values of VSI from the authors' MATLAB code run under GNU Octave.

Usage::

    python tests/reference/vsi/make_reference.py AUTHORS_DIR

``AUTHORS_DIR`` holds the authors' ``VSI.m`` (Lin Zhang's VSI code with its SDSP saliency,
``RGB2Lab`` and ``logGabor`` subfunctions; the copy used: GitHub ``zhouk369/Watermarking``, path
``VSI.m``, commit bb91833fec79debb673487690d577b7e6279fc47, md5
18b476a9c01bfad5a0feef07f4ae0037). It is not part of this repository; Octave and it are only
needed to regenerate ``tests/data/vsi/expected.csv``, never to run the tests.

The pairs are the SR-SIM reference pairs (``tests/data/srsim/expected.csv``: images made by
``tests/reference/srsim/make_reference.py``, run that first). Each is passed as
``VSI(A, B)`` with ``A``, ``B`` the uint8 arrays ``imread`` gives, a grey image as three equal
channels (``cat(3, A, A, A)``: VSI.m indexes ``image(:,:,1..3)``), cropped in Octave where the
row says so.

Octave-vs-MATLAB: VSI.m calls ``imresize(.., [256 256], 'bilinear')`` and
``imresize(.., [rows cols], 'bilinear')``. Octave's image-package ``imresize`` does not follow
MATLAB on every shrink (a 37x50 -> 20x13 bilinear shrink differs by up to 4.8 grey levels; on
this script's pairs it happens to agree to 1e-13), so ``tests/reference/srsim/imresize.m`` (our
MATLAB-semantics imresize) shadows it; the script checks with ``which imresize``.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "data"
OUT = DATA / "vsi"


def run_octave(authors_dir: Path, pairs: list[tuple[str, str, str]]) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(authors_dir / "VSI.m", work / "VSI.m")
        shutil.copy(HERE.parent / "srsim" / "imresize.m", work / "imresize.m")
        check = f"w = which('imresize'); if isempty(strfind(w, '{work}')), error('imresize not shadowed: %s', w); end"
        lines = ["pkg load image;", f"cd('{work}');", check]
        for ref, dist, crop in pairs:
            lines.append(f"A = imread('{DATA / ref}'); B = imread('{DATA / dist}');")
            if crop:
                r0, c0, h, w = map(int, crop.split())
                box = f"{r0 + 1}:{r0 + h}, {c0 + 1}:{c0 + w}, :"
                lines.append(f"A = A({box}); B = B({box});")
            lines.append("if size(A, 3) == 1, A = cat(3, A, A, A); B = cat(3, B, B, B); end")
            lines.append("printf('%.12f\\n', VSI(A, B));")
        script = work / "run.m"
        script.write_text("\n".join(lines) + "\n")
        out = subprocess.run(["octave", "--no-gui", "--quiet", str(script)], capture_output=True, text=True, check=True)
        return [float(v) for v in out.stdout.split()]


def main() -> None:
    authors_dir = Path(sys.argv[1])
    with open(DATA / "srsim" / "expected.csv", newline="") as f:
        pairs = [(r["reference"], r["distorted"], r["crop"]) for r in csv.DictReader(f)]
    values = run_octave(authors_dir, pairs)
    assert len(values) == len(pairs), values
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "expected.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["reference", "distorted", "crop", "value"])
        for (ref, dist, crop), value in zip(pairs, values):
            writer.writerow([ref, dist, crop, f"{value:.10f}"])


if __name__ == "__main__":
    main()
