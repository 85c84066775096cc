"""Reference values of CW-SSIM from the authors' MATLAB code run under GNU Octave.

Usage (from the repository root; needs Pillow, NumPy and ``octave`` 7 with the image package)::

    python tests/reference/cw_ssim/make_reference.py AUTHORS_DIR PYRTOOLS_DIR

``AUTHORS_DIR`` holds the authors' ``cwssim_index.m`` (M. Sampat, Z. Wang, A. Bovik, CW-SSIM
Index version 1.0, MATLAB Central File Exchange 43017; see ``tests/data/cw_ssim/README.md`` for
the copy used). ``PYRTOOLS_DIR`` is matlabPyrTools (GitHub
``LabForComputationalVision/matlabPyrTools``, commit f02ab059d0f220fdee840c5a06769104c3e73d37)
with ``MEX/pointOp.c`` compiled for Octave (``mkoctfile --mex``; a ``matrix.h`` that includes
``mex.h`` on the include path), the ``.mex`` next to the ``.m`` files. Neither is part of this
repository; they are only needed to regenerate ``tests/data/cw_ssim/expected.csv``.

Every pair (cropped ``img(r0+1:r0+h, c0+1:c0+w, :)`` where the row says so) is written as 8-bit
PNGs to a temporary folder; Octave runs ``cwssim_index(double(Yref), double(Ydist), 4, 8, 0, 0)``
(the issue's and pyiqa's parameters: 4 levels, 8 orientations, guardb 0, K 0), an RGB image
first turned grey by MATLAB's ``rgb2gray`` of the uint8 array, emulated as in the IW-SSIM
script (``uint8(0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B)``). The values
go to ``tests/data/cw_ssim/expected.csv`` (``reference,distorted,crop,value``). No new images:
the pairs are the committed ones of ``tid2013-pair``, ``srsim``, ``lpips-example-triplet`` and
``iw_ssim``. Octave-vs-MATLAB: nothing used here differs (fft2, fspecial, filter2 on complex
input, abs, conj; no complex comparisons, no imresize).
"""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "data"
OUT = DATA / "cw_ssim"

_spec = importlib.util.spec_from_file_location("iw_ssim_reference", HERE.parent / "iw_ssim" / "make_reference.py")
assert _spec is not None and _spec.loader is not None
_iw = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_iw)

PAIRS = [
    ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp", ""),  # 384 x 512 RGB, noise
    ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", ""),  # 512 x 512 grey, JPEG
    ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp", "3 5 381 467"),  # odd, non-square
    ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", "10 20 401 385"),
    ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp", "7 9 64 77"),  # the 64 minimum
    ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", "1 2 65 64"),
    ("srsim/rgb_97x131.png", "srsim/rgb_97x131_noise.png", ""),
    ("srsim/rgb_97x131.png", "srsim/rgb_97x131_blur.png", ""),
    ("srsim/grey_121x88.png", "srsim/grey_121x88_blur.png", ""),
    ("srsim/grey_121x88.png", "srsim/grey_121x88_jpeg.png", ""),
    ("srsim/grey_121x88.png", "srsim/grey_121x88_noise.png", ""),
    ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p0.png", ""),
    ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p1.png", ""),
    ("iw_ssim/rgb_179x197.png", "iw_ssim/rgb_179x197_blur.png", ""),
    ("iw_ssim/grey_193x183.png", "iw_ssim/grey_193x183_blur.png", ""),
]

DRIVER = _iw.DRIVER.replace("Y{{j}} = im;", "Y{{j}} = double(im);").replace(
    "iwssim(Y{{1}}, Y{{2}})", "cwssim_index(Y{{1}}, Y{{2}}, 4, 8, 0, 0)")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    values = _iw.run_octave(Path(sys.argv[1]), Path(sys.argv[2]), PAIRS, DRIVER)
    assert len(values) == len(PAIRS), values
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "expected.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["reference", "distorted", "crop", "value"])
        for (ref, dist, crop), value in zip(PAIRS, values):
            writer.writerow([ref, dist, crop, repr(value)])
    print((OUT / "expected.csv").read_text())


if __name__ == "__main__":
    main()
