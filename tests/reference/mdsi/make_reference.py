"""Make the MDSI parity values: the authors' MDSI.m under Octave on the HaarPSI test images and on
crops of the committed TID2013 images (large enough for MDSI.m's downsampling by 2).

Usage (from the repository root, with the venv active; the images of tests/data/haarpsi must exist,
see tests/reference/haarpsi/make_reference.py)::

    python tests/reference/mdsi/make_reference.py DIR     # DIR holds the authors' MDSI.m

The copy of ``MDSI.m`` used for ``tests/data/mdsi/expected.csv`` (Hossein Ziaei Nafchi et al., the
code of the IEEE Access 2016 paper): repository ``chaofengc/Face-Sketch-Wild``, path ``MDSI.m``, commit
``1486095eb74d09c37c46928dc1e6bb98ed1b8732`` (removed from that repository later). Octave 7.3.0 with
the image package (``fspecial``), no patch: ``mad`` (mean absolute deviation, ``opt = 0``), ``conv2``,
``round`` and the complex powers of negative numbers behave as in MATLAB.

Each image is read with ``imread`` (uint8), a grey one repeated to three channels
(``repmat(img, [1 1 3])``: MDSI.m indexes ``Ref(:, :, 1..3)``), cropped as :data:`PAIRS` says, and
passed to ``MDSI`` as it is (MDSI.m applies ``double`` itself), with ``combMethod`` 'sum' and 'mult'.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data"
OUT = DATA / "mdsi"

HAARPSI_PAIRS = [
    ("rgb_101x77", "rgb_101x77_tid"),
    ("rgb_101x77", "rgb_101x77_jpeg"),
    ("rgb_64x64", "rgb_64x64_p0"),
    ("rgb_64x64", "rgb_64x64_p1"),
    ("rgb_58x83", "rgb_58x83_noise"),
    ("rgb_58x83", "rgb_58x83_blur"),
    ("grey_95x66", "grey_95x66_jpeg"),
    ("grey_47x33", "grey_47x33_noise"),
    ("grey_47x33", "grey_47x33_blur"),
    ("grey_17x16", "grey_17x16_noise"),
]

# (reference path, distorted path, first row, last row, first column, last column): 1-based,
# inclusive, as MATLAB indexes; 0 for "to the end". Paths relative to tests/data.
PAIRS: list[tuple[str, str, int, int, int, int]] = [
    *((f"haarpsi/{a}.png", f"haarpsi/{b}.png", 1, 0, 1, 0) for a, b in HAARPSI_PAIRS),
    ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp", 1, 0, 1, 0),  # 384x512: f = 2
    ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp", 1, 383, 2, 510),  # 383x509: f = 1 (1.496)
    ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", 1, 0, 1, 0),  # 512x512 grey: f = 2
    ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", 20, 468, 61, 445),  # 449x385: f = 2
    ("mdsi/red_21x20.png", "mdsi/cyan_21x20.png", 1, 0, 1, 0),  # GS_HVS < 0 and CS < 0: complex powers
]


def write_images() -> None:
    """Saturated reds against shifted cyans (21 wide, 20 high): opposite chroma makes CS negative
    and the edge misalignment GS_HVS, so that MDSI.m takes powers of negative numbers."""
    rng = np.random.default_rng(8)
    red = np.zeros((20, 21, 3), dtype=np.uint8)
    red[..., 0] = np.where(rng.random((20, 21)) > 0.5, 255, 128)
    cyan = np.zeros_like(red)
    cyan[..., 1] = cyan[..., 2] = np.roll(red[..., 0], 1, axis=1)  # edges one pixel to the right
    OUT.mkdir(parents=True, exist_ok=True)
    Image.fromarray(red).save(OUT / "red_21x20.png")
    Image.fromarray(cyan).save(OUT / "cyan_21x20.png")

OCTAVE = """
pkg load image
addpath('{code}');
pairs = {pairs};
fid = fopen('{out}', 'w');
for i = 1:size(pairs, 1)
  ref = imread(fullfile('{data}', pairs{{i, 1}}));
  dist = imread(fullfile('{data}', pairs{{i, 2}}));
  if size(ref, 3) == 1
    ref = repmat(ref, [1 1 3]); dist = repmat(dist, [1 1 3]);
  end
  r = pairs{{i, 3}}; if pairs{{i, 4}} == 0, r = r:size(ref, 1); else, r = r:pairs{{i, 4}}; end
  c = pairs{{i, 5}}; if pairs{{i, 6}} == 0, c = c:size(ref, 2); else, c = c:pairs{{i, 6}}; end
  ref = ref(r, c, :); dist = dist(r, c, :);
  fprintf(fid, '%d,%d,%.12f,%.12f,%d,%d\\n', size(ref, 1), size(ref, 2), MDSI(ref, dist, 'sum'), ...
          MDSI(ref, dist, 'mult'), sum(double(ref(:))), sum(double(dist(:))));
end
fclose(fid);
"""


def _cell() -> str:
    return "{" + "; ".join(f"'{a}', '{b}', {r0}, {r1}, {c0}, {c1}" for a, b, r0, r1, c0, c1 in PAIRS) + "}"


def _codes(path: Path, crop: tuple[int, ...]) -> np.ndarray:
    """The crop of an image file's 8-bit codes, grey repeated to three channels, as MDSI.m sees it."""
    a = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    r0, r1, c0, c1 = crop
    return a[r0 - 1 : (r1 or None), c0 - 1 : (c1 or None)]


def run(code: Path) -> None:
    write_images()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "values.csv"
        script = OCTAVE.format(code=code.resolve(), pairs=_cell(), out=out, data=DATA)
        subprocess.run(["octave", "--no-gui", "--quiet", "--eval", script], check=True)
        values = list(csv.reader(out.open()))
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "expected.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["reference", "distorted", "first_row", "last_row", "first_col", "last_col",
                         "height", "width", "mdsi_sum", "mdsi_mult"])
        for pair, row in zip(PAIRS, values):
            # Octave's imread must see the codes PIL sees (GraphicsMagick reads some PNGs of
            # constant channels as 0/1 images): compare the sums of the cropped images.
            for path, total in zip(pair[:2], row[4:]):
                codes = _codes(DATA / path, pair[2:])
                assert int(total) == int(codes.sum()), (path, total, codes.sum())
            writer.writerow([*pair, *row[:4]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("code", type=Path, help="folder holding the authors' MDSI.m")
    run(parser.parse_args().code)


if __name__ == "__main__":
    main()
