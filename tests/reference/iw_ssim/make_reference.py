"""Reference values of IW-SSIM from the authors' MATLAB code run under GNU Octave.

Usage (from the repository root; needs Pillow, NumPy and ``octave`` 7 with the image package)::

    python tests/reference/iw_ssim/make_reference.py AUTHORS_DIR PYRTOOLS_DIR

``AUTHORS_DIR`` holds the authors' ``iwssim.m``, ``scale_quality_maps.m``,
``info_content_weight_map.m`` and ``imenlarge2.m`` (Z. Wang's ``iwssim_iwpsnr.zip``; the
copies used: GitHub ``obartra/ssim``, folder ``assets/iw-ssim/``, commits
e9886b3737cb3cf9d9b0a2f3667a3473ddf5bc57 (iwssim.m, scale_quality_maps.m, imenlarge2.m) and
1e6c6987ad50e9b458879b24544285fba064fa8f (info_content_weight_map.m); md5 sums in
``tests/data/iw_ssim/README.md``). ``PYRTOOLS_DIR`` is matlabPyrTools (GitHub
``LabForComputationalVision/matlabPyrTools``, commit f02ab059d0f220fdee840c5a06769104c3e73d37)
with its MEX files compiled for Octave (``mkoctfile --mex`` of ``MEX/corrDn.c``,
``MEX/upConv.c`` with ``convolve.c wrap.c edges.c``, and ``MEX/innerProd.c``; a ``matrix.h``
that includes ``mex.h`` on the include path), the ``.mex`` files copied next to the ``.m``
files. Neither is part of this repository; they are only needed to regenerate
``tests/data/iw_ssim/expected.csv``, never to run the tests.

The script

1. makes the derived test images deterministically (crops of the committed ``tid2013-pair``
   images with PIL Gaussian blur) and saves them as PNGs in ``tests/data/iw_ssim/``;
2. writes every pair (cropped ``img(r0+1:r0+h, c0+1:c0+w, :)`` where the row says so) as 8-bit
   PNGs to a temporary folder and runs ``iwssim(Y_ref, Y_dist)`` in Octave with its defaults:
   an RGB image becomes MATLAB's ``rgb2gray`` of the uint8 array, emulated (Octave's uses
   six-digit coefficients): ``uint8(0.298936021293775 R + 0.587043074451121 G +
   0.114020904255103 B)`` in double (``uint8()`` rounds halves away from zero, as MATLAB's
   ``imapplymatrix``); a grey image goes in as it is; ``iwssim`` takes ``double()`` itself;
3. writes ``tests/data/iw_ssim/expected.csv`` (``reference,distorted,crop,value``).

Octave-vs-MATLAB: ``imenlarge2.m`` calls ``imresize(im, [4M-3 4N-3], 'bilinear')``; Octave's
image-package ``imresize`` does not renormalise its weights as MATLAB does, so
``tests/reference/srsim/imresize.m`` (MATLAB semantics) is put first on the path to shadow it
(checked with ``which``). ``filter2``, ``eig``, ``inv``, ``fspecial`` behave as MATLAB's.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "data"
OUT = DATA / "iw_ssim"
IMRESIZE = HERE.parent / "srsim" / "imresize.m"


def _load(rel: str) -> np.ndarray:
    img = Image.open(DATA / rel)
    return np.asarray(img.convert("L" if img.mode in ("L", "P") else "RGB"))


def _save(array: np.ndarray, name: str) -> str:
    Image.fromarray(array).save(OUT / name, optimize=True)
    return f"iw_ssim/{name}"


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(radius)))


def make_images() -> list[tuple[str, str, str]]:
    """``(reference, distorted, crop)`` rows, paths relative to tests/data; crop ``r0 c0 h w`` or ''."""
    OUT.mkdir(parents=True, exist_ok=True)
    tid, gold = "tid2013-pair/I01.BMP", "tid2013-pair/goldhill.gif"
    tid_noise, gold_jpeg = "tid2013-pair/i01_01_5.bmp", "tid2013-pair/goldhill_jpeg.gif"
    pairs = [
        (tid, tid_noise, ""),  # 384 x 512 RGB, Gaussian noise
        (gold, gold_jpeg, ""),  # 512 x 512 grey, JPEG
        (tid, tid_noise, "3 5 381 467"),  # odd, non-square
        (gold, gold_jpeg, "10 20 401 385"),  # odd, non-square
        (tid, tid_noise, "100 37 177 203"),  # near the 176 minimum
        (gold, gold_jpeg, "0 0 176 251"),  # exactly the minimum height
        (gold, gold_jpeg, "33 71 245 199"),
    ]
    rgb = _load(tid)[150:329, 40:237].copy()  # 179 x 197 RGB
    ref = _save(rgb, "rgb_179x197.png")
    pairs.append((ref, _save(_blur(rgb, 1.5), "rgb_179x197_blur.png"), ""))
    grey = _load(gold)[260:453, 300:483].copy()  # 193 x 183 grey
    ref = _save(grey, "grey_193x183.png")
    pairs.append((ref, _save(_blur(grey, 2.0), "grey_193x183_blur.png"), ""))
    return pairs


DRIVER = r"""
pkg load image
addpath('{pyrtools}');
addpath('{authors}');
addpath('{work}');
w = which('imresize'); if isempty(strfind(w, '{work}')), error('imresize not shadowed: %s', w); end
c = [0.298936021293775 0.587043074451121 0.114020904255103];
files = strsplit(strtrim(fileread('{listing}')), "\n");
fid = fopen('{result}', 'w');
for k = 1:2:numel(files)
  Y = cell(1, 2);
  for j = 1:2
    im = imread(files{{k + j - 1}});
    if ndims(im) == 3
      d = double(im);
      im = uint8(d(:,:,1) * c(1) + d(:,:,2) * c(2) + d(:,:,3) * c(3));  % MATLAB rgb2gray, uint8
    end
    Y{{j}} = im;
  end
  fprintf(fid, '%.17g\n', iwssim(Y{{1}}, Y{{2}}));
end
fclose(fid);
"""


def run_octave(authors: Path, pyrtools: Path, pairs: list[tuple[str, str, str]], script: str = DRIVER) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(IMRESIZE, work / "imresize.m")
        listing = []
        for i, (ref, dist, crop) in enumerate(pairs):
            for j, rel in enumerate((ref, dist)):
                a = _load(rel)
                if crop:
                    r0, c0, h, w = map(int, crop.split())
                    a = a[r0 : r0 + h, c0 : c0 + w]
                path = work / f"{i:03d}_{j}.png"
                Image.fromarray(np.ascontiguousarray(a)).save(path)
                listing.append(str(path))
        (work / "list.txt").write_text("\n".join(listing) + "\n")
        driver = script.format(pyrtools=pyrtools.resolve(), authors=authors.resolve(), work=work,
                               listing=work / "list.txt", result=work / "result.txt")
        (work / "driver.m").write_text(driver)
        subprocess.run(["octave", "--no-gui", "--quiet", str(work / "driver.m")], check=True)
        return [float(v) for v in (work / "result.txt").read_text().split()]


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    pairs = make_images()
    values = run_octave(Path(sys.argv[1]), Path(sys.argv[2]), pairs)
    assert len(values) == len(pairs), values
    with open(OUT / "expected.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["reference", "distorted", "crop", "value"])
        for (ref, dist, crop), value in zip(pairs, values):
            writer.writerow([ref, dist, crop, repr(value)])
    print((OUT / "expected.csv").read_text())


if __name__ == "__main__":
    main()
