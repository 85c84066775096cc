"""Reference values of NLPD from the authors' MATLAB code ``NLP_dist.m`` run under GNU Octave.

Usage (from the repository root; needs Pillow, NumPy and ``octave`` with the image package)::

    python tests/reference/nlpd/make_reference.py /path/to/NLP_dist.m

``NLP_dist.m`` is the authors' code (Laparra, Ballé, Berardino, Simoncelli 2016; published at
www.cns.nyu.edu/~lcv/NLPyr/NLP_dist.m, the address pyiqa's ``nlpd`` cites). The copy used: the
public repository ``SMBU-MM/OF_BIQA``, path ``FR-IQAs/NLP_dist.m``, commit
0b1fe934c94f086b1f39a35797dc4129b2d35f78, md5 10bec25ecb8e384eba364f4f5cfcb619. It is not kept
in this repository. Run unchanged, it reproduces pyiqa's "official" NLPD values of its five
TID2013 calibration pairs (``ResultsCalibra/results_official.csv``) to 3e-15.

The script uses only images already committed (``tid2013-pair``, ``lpips-example-triplet``, and
the crops made by the GMSD and SR-SIM reference scripts); it

1. writes every image of every pair as an 8-bit PNG to a temporary folder (GIFs as grey);
2. runs Octave on each pair: the images as ``imread`` gives them (uint8), cut to the row's crop
   ``img(r0+1:r0+h, c0+1:c0+w, :)`` when it has one, an RGB image turned grey by MATLAB's
   ``rgb2gray`` emulated (Octave's own ``rgb2gray`` uses six-digit coefficients):
   ``uint8(0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B)`` in double,
   ``uint8()`` rounding halves away from zero as MATLAB's ``imapplymatrix``; then
   ``NLP_dist(double(Yref) / 255, double(Ydist) / 255)``, the call of the evaluations (e.g.
   ``FR-IQAs/predictions.m`` of the same repository; NLP_dist.m's header asks for grey images
   between 0 and 1). A grey image goes in as ``double`` of its 8-bit values / 255.
3. writes ``tests/data/nlpd/expected.csv`` (``reference,distorted,crop,value``, paths relative to
   ``tests/data``, values with 17 significant digits).

Octave-vs-MATLAB: NLP_dist.m uses ``imfilter`` (``'symmetric'`` and zero borders), ``padarray``
(``'replicate'``) and ``conv2(..., 'same')``, which Octave's image package implements with
MATLAB's semantics, also for a mirrored border wider than the image (the 1- and 2-pixel crops
below). No emulation is needed besides ``rgb2gray``.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

DATA = Path(__file__).resolve().parents[2] / "data"
OUT = DATA / "nlpd"

TID = ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp")
GOLD = ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif")

#: ``(reference, distorted, crop)``, crop ``"r0 c0 h w"`` (0-based offset, size) or "".
PAIRS = [
    (*TID, ""),  # 384 x 512 RGB
    (*TID, "3 5 381 467"),  # odd sizes
    (*GOLD, ""),  # 512 x 512 grey
    (*GOLD, "10 20 401 385"),
    ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p0.png", ""),  # 64 x 64 RGB
    ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p1.png", ""),
    ("gmsd/rgb_61x79.png", "gmsd/rgb_61x79_noise.png", ""),
    ("gmsd/rgb_61x79.png", "gmsd/rgb_61x79_blur.png", ""),
    ("gmsd/rgb_61x79.png", "gmsd/rgb_61x79_jpeg.png", ""),
    ("gmsd/grey_75x50.png", "gmsd/grey_75x50_noise.png", ""),
    ("gmsd/grey_75x50.png", "gmsd/grey_75x50_jpeg.png", ""),
    ("gmsd/rgb_9x7_flat.png", "gmsd/rgb_9x7_flat_noise.png", ""),
    ("gmsd/rgb_3x5.png", "gmsd/rgb_3x5_noise.png", ""),
    ("srsim/rgb_97x131.png", "srsim/rgb_97x131_noise.png", ""),
    ("srsim/rgb_97x131.png", "srsim/rgb_97x131_blur.png", ""),
    ("srsim/rgb_63x45.png", "srsim/rgb_63x45_jpeg.png", ""),
    ("srsim/grey_121x88.png", "srsim/grey_121x88_blur.png", ""),
    ("srsim/grey_121x88.png", "srsim/grey_121x88_jpeg.png", ""),
    ("srsim/grey_121x88.png", "srsim/grey_121x88_noise.png", ""),
    # small crops: mirrored borders wider than the image at the coarse levels
    (*TID, "100 100 1 1"),
    (*TID, "100 100 2 3"),
    (*TID, "50 60 16 16"),
    (*TID, "50 60 17 33"),
    (*TID, "7 9 5 40"),
    (*TID, "0 0 33 1"),
    (*GOLD, "200 150 3 2"),
    (*GOLD, "200 150 31 18"),
]

OCTAVE_DRIVER = r"""
pkg load image
addpath('{code_dir}');
c = [0.298936021293775 0.587043074451121 0.114020904255103];
files = strsplit(strtrim(fileread('{listing}')), "\n");
crops = strsplit(fileread('{crops}'), "\n", "CollapseDelimiters", false);
fid = fopen('{result}', 'w');
for k = 1:2:numel(files)
  box = str2num(crops{{(k + 1) / 2}});
  Y = cell(1, 2);
  for j = 1:2
    im = imread(files{{k + j - 1}});
    if ~isempty(box)
      im = im(box(1) + 1:box(1) + box(3), box(2) + 1:box(2) + box(4), :);
    end
    if ndims(im) == 3
      d = double(im);
      im = uint8(d(:,:,1) * c(1) + d(:,:,2) * c(2) + d(:,:,3) * c(3));  % MATLAB rgb2gray, uint8
    end
    Y{{j}} = double(im) / 255;
  end
  fprintf(fid, '%.17g\n', NLP_dist(Y{{1}}, Y{{2}}));
end
fclose(fid);
"""


def run_octave(code: Path) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        listing = []
        for i, (ref, dist, _) in enumerate(PAIRS):
            for j, rel in enumerate((ref, dist)):
                img = Image.open(DATA / rel)
                img = img.convert("L" if rel.endswith(".gif") else img.mode)
                path = tmpdir / f"{i:03d}_{j}.png"
                img.save(path)
                listing.append(str(path))
        (tmpdir / "list.txt").write_text("\n".join(listing) + "\n")
        (tmpdir / "crops.txt").write_text("\n".join(crop for _, _, crop in PAIRS) + "\n")
        script = OCTAVE_DRIVER.format(code_dir=code.resolve().parent, listing=tmpdir / "list.txt",
                                      crops=tmpdir / "crops.txt", result=tmpdir / "result.txt")
        (tmpdir / "driver.m").write_text(script)
        subprocess.run(["octave", "--no-gui", "--quiet", str(tmpdir / "driver.m")], check=True)
        return [float(v) for v in (tmpdir / "result.txt").read_text().split()]


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    values = run_octave(Path(sys.argv[1]))
    assert len(values) == len(PAIRS), values
    OUT.mkdir(exist_ok=True)
    with open(OUT / "expected.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["reference", "distorted", "crop", "value"])
        for (ref, dist, crop), v in zip(PAIRS, values):
            w.writerow([ref, dist, crop, repr(v)])
    print((OUT / "expected.csv").read_text())


if __name__ == "__main__":
    main()
