"""Reference values of DSS from the authors' MATLAB code ``dss_index.m`` run under GNU Octave.

Usage (from the repository root; needs Pillow and ``octave`` with the image package)::

    python tests/reference/dss/make_reference.py /path/to/dss_index.m

``dss_index.m`` is the authors' code (Balanov, Schwartz, Moshe, Peleg, ICIP 2015; Version 1.00,
(c) 2015 Yair Moshe, SIPL Technion; MATLAB File Exchange 53708, which piq's ``dss`` cites). The
copy used: the public repository ``CCchuxin/VOCEA``, path ``Copy_of_dss_index.m`` (the same
repository's ``dss_index.m`` is a modified version: its DCT is replaced; do not use it), commit
e6ef71435fbc5cff9415074d5cf1e3ebf1066e99, md5 1024f70d4b8ec8c774d2331bee26fee6 (CRLF line ends).
It is not kept in this repository; the script copies it to a temporary folder as ``dss_index.m``.

The script uses only images already committed (``tid2013-pair``, ``lpips-example-triplet``, and
the crops made by the GMSD and SR-SIM reference scripts); it

1. writes every image of every pair as an 8-bit PNG to a temporary folder (GIFs as grey);
2. runs Octave on each pair: the images as ``imread`` gives them (uint8), cut to the row's crop
   ``img(r0+1:r0+h, c0+1:c0+w, :)`` when it has one, an RGB image turned grey by MATLAB's
   ``rgb2gray`` emulated (Octave's own ``rgb2gray`` uses six-digit coefficients):
   ``uint8(0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B)`` in double,
   ``uint8()`` rounding halves away from zero as MATLAB's ``imapplymatrix``; then
   ``dss_index(Ydist, Yref)`` on the uint8 grey images (the code's own example passes uint8
   images; it takes ``double`` of them, so values are on 0..255). A grey image goes in as it is.
3. writes ``tests/data/dss/expected.csv`` (``reference,distorted,crop,value``, paths relative to
   ``tests/data``, values with 17 significant digits).

Octave-vs-MATLAB: Octave's image package has no ``dctmtx``; ``tests/reference/dss/dctmtx.m`` (our
own, from the formula MATLAB documents) is put on the path. ``imfilter`` (zero border),
``fspecial('gaussian', 3, 1.5)``, ``sort`` and ``round`` behave as MATLAB's.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "data"
OUT = DATA / "dss"

TID = ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp")
GOLD = ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif")

#: ``(reference, distorted, crop)``, crop ``"r0 c0 h w"`` (0-based offset, size) or "".
PAIRS = [
    (*TID, ""),  # 384 x 512 RGB
    (*TID, "3 5 381 467"),  # odd sizes, cropped to 376 x 464 by the code
    (*GOLD, ""),  # 512 x 512 grey
    (*GOLD, "10 20 401 385"),
    ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p0.png", ""),  # 64 x 64 RGB
    ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p1.png", ""),
    ("gmsd/rgb_61x79.png", "gmsd/rgb_61x79_noise.png", ""),
    ("gmsd/rgb_61x79.png", "gmsd/rgb_61x79_blur.png", ""),
    ("gmsd/rgb_61x79.png", "gmsd/rgb_61x79_jpeg.png", ""),
    ("gmsd/grey_75x50.png", "gmsd/grey_75x50_noise.png", ""),
    ("gmsd/grey_75x50.png", "gmsd/grey_75x50_jpeg.png", ""),
    ("srsim/rgb_97x131.png", "srsim/rgb_97x131_noise.png", ""),
    ("srsim/rgb_97x131.png", "srsim/rgb_97x131_blur.png", ""),
    ("srsim/rgb_63x45.png", "srsim/rgb_63x45_jpeg.png", ""),
    ("srsim/grey_121x88.png", "srsim/grey_121x88_blur.png", ""),
    ("srsim/grey_121x88.png", "srsim/grey_121x88_jpeg.png", ""),
    ("srsim/grey_121x88.png", "srsim/grey_121x88_noise.png", ""),
    # small crops: 16 blocks (the minimum size), and k = round(0.05 * blocks) at halves
    (*TID, "50 60 32 32"),  # 4 x 4 blocks, k = 1
    (*TID, "50 60 39 47"),  # 4 x 5 blocks
    (*TID, "100 100 40 80"),  # 5 x 10 blocks: k = round(2.5) = 3
    (*TID, "100 100 40 48"),  # 5 x 6 blocks: k = round(1.5) = 2
    (*TID, "0 0 32 250"),
    (*GOLD, "200 150 47 33"),
]

OCTAVE_DRIVER = r"""
pkg load image
addpath('{code_dir}');
w = which('dctmtx');
if isempty(strfind(w, '{code_dir}')), error('dctmtx not ours: %s', w); end
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
    Y{{j}} = im;
  end
  fprintf(fid, '%.17g\n', dss_index(Y{{2}}, Y{{1}}));  % distorted first, the reference second
end
fclose(fid);
"""


def run_octave(code: Path) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        shutil.copy(code, tmpdir / "dss_index.m")
        shutil.copy(HERE / "dctmtx.m", tmpdir / "dctmtx.m")
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
        script = OCTAVE_DRIVER.format(code_dir=tmpdir, listing=tmpdir / "list.txt", crops=tmpdir / "crops.txt",
                                      result=tmpdir / "result.txt")
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
