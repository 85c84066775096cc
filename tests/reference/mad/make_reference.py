"""Reference values of MAD from the authors' MATLAB code run under GNU Octave.

Usage (from the repository root; needs NumPy, Pillow, ``octave`` with the image package and
``mkoctfile``)::

    python tests/reference/mad/make_reference.py AUTHORS_DIR

``AUTHORS_DIR`` holds the authors' files (E. Larson and D. Chandler, not kept in this repository):

- ``MAD_index.m``, the September 2011 release ("Mad is now faster!"): the copy in GitHub
  ``MaxiaoyuHehe/FRIQA``, path ``MAD_index.m``, commit 0211cd19917e60955cfaefe51fc55c91619aac88,
  md5 1d7b63734acf85e17312d8c0b6345380 (CRLF; the authors' release with a first output ``score``
  added, printed without a semicolon);
- ``ical_std.c`` and ``ical_stat.c``, the MEX files of the same distribution: the copies in GitHub
  ``hanwei0912/SmoothAdversarialExamples``, paths ``mad/ical_std.c``, ``mad/ical_stat.c``,
  commit 7db8784fe52445cedca549775494ac3e606ddbc9, md5 4f309daa2b9f4c0e71eff1fb12fa1fa0 and
  d266c2b251a7268ff4355d1068b4d1b5.

The script copies them to a temporary folder and patches them there (MATLAB semantics under
Octave; each patch is asserted to apply):

1. ``MAD_index.m`` lines 171-173: ``Ci_ref``/``Ci_dst`` are complex wherever the CSF-filtered
   reference has a negative local mean (``log`` of a negative ratio). MATLAB's ``<``, ``>``,
   ``<=`` compare the real parts of complex operands; Octave's compare magnitudes (so the
   ``-inf`` set where ``m1_1 < G`` counts as ``+inf`` and the mask fills with infinities: MAD is
   then Inf/NaN). Every operand of those comparisons is wrapped in ``real()``.
2. ``ical_std.c`` line 144: ``mxDestroyArray(TMP)`` is given the data pointer of a temporary
   array instead of the array (MATLAB tolerates it, Octave crashes or corrupts its heap). The
   patch keeps the ``mxArray *`` and destroys that; the computed values are unchanged.
3. Progress printing (``fprintf`` in lo_index/gaborconvolve, ``score=index.MAD`` without a
   semicolon) is silenced. The MEX files are built with ``mkoctfile --mex``.

Inputs as the authors' evaluations fed the code: ``MAD_index(ref, dst)`` on uint8 grey images;
an RGB image becomes MATLAB's ``rgb2gray`` of the uint8 array, emulated as
``uint8(0.298936021293775 R + 0.587043074451121 G + 0.114020904255103 B)`` in double (Octave's
own rgb2gray uses other coefficients); a crop ``r0 c0 h w`` is taken in Octave on the uint8 arrays.

Writes ``tests/data/mad/expected.csv``: ``reference,distorted,crop,value,hi,lo`` (``index.MAD``,
``index.HI``, ``index.LO``, 17 significant digits) and the derived test images in
``tests/data/mad/``.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "data"
OUT = DATA / "mad"

PATCHES = {
    "MAD_index.m": [
        ("idx1      = find( (Ci_ref > Ci_thrsh) ...\n  & (Ci_dst > (C_slope * (Ci_ref - Ci_thrsh) + Cd_thrsh) ) );\n"
         "idx2      = find( (Ci_ref <= Ci_thrsh) & (Ci_dst > Cd_thrsh) );",
         "% PATCH: MATLAB compares the real parts of complex operands, Octave their magnitudes\n"
         "idx1      = find( (real(Ci_ref) > Ci_thrsh) ...\n"
         "  & (real(Ci_dst) > real(C_slope * (Ci_ref - Ci_thrsh) + Cd_thrsh) ) );\n"
         "idx2      = find( (real(Ci_ref) <= Ci_thrsh) & (real(Ci_dst) > Cd_thrsh) );"),
        ("score=index.MAD\n", "score=index.MAD;\n"),
        ("    fprintf('%d ',im_k)\n", ""),
        ("fprintf('\\n ')\n", ""),
        ("  fprintf('.');\n", ""),
    ],
    "ical_std.c": [
        ("    double *TMP;\n", "    double *TMP;\n    mxArray *tmpArray; /* PATCH: destroy the array */\n"),
        ("TMP = mxGetPr( mxCreateDoubleMatrix(colLen, rowLen, mxREAL) );",
         "tmpArray = mxCreateDoubleMatrix(colLen, rowLen, mxREAL);\n    TMP = mxGetPr( tmpArray );"),
        ("mxDestroyArray(TMP);", "mxDestroyArray(tmpArray);"),
    ],
    "ical_stat.c": [],
}


def _save(array: np.ndarray, name: str) -> str:
    Image.fromarray(array).save(OUT / name, optimize=True)
    return f"mad/{name}"


def _noise(a: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.round(a + rng.normal(0.0, sigma, a.shape)), 0, 255).astype(np.uint8)


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(radius)))


def _jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(Image.fromarray(a).mode))


def make_images() -> list[tuple[str, str, str]]:
    """``(reference, distorted, crop)`` rows, paths relative to tests/data; crop ``r0 c0 h w`` or ''."""
    OUT.mkdir(parents=True, exist_ok=True)
    tid = np.asarray(Image.open(DATA / "tid2013-pair" / "I01.BMP").convert("RGB"))
    pairs = [
        ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp", ""),  # 384x512 RGB: (H-16) % 4 == 0
        ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", ""),  # grey
        ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp", "3 5 381 467"),  # odd, (H-16) % 4 == 1
        ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", "10 20 401 386"),  # odd x even
        ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p0.png", ""),  # 64x64
        ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p1.png", ""),
        ("srsim/rgb_97x131.png", "srsim/rgb_97x131_noise.png", ""),
        ("srsim/rgb_97x131.png", "srsim/rgb_97x131_blur.png", ""),
        ("srsim/rgb_63x45.png", "srsim/rgb_63x45_jpeg.png", ""),
        ("srsim/grey_121x88.png", "srsim/grey_121x88_blur.png", ""),
        ("srsim/grey_121x88.png", "srsim/grey_121x88_jpeg.png", ""),
        ("srsim/grey_121x88.png", "srsim/grey_121x88_noise.png", ""),
        ("gmsd/rgb_61x79.png", "gmsd/rgb_61x79_noise.png", ""),
        ("gmsd/grey_75x50.png", "gmsd/grey_75x50_jpeg.png", ""),
    ]
    # The smallest size (34x34) and an odd size next to it; a high-contrast crop with much of
    # its grey saturated at 255 and dark parts (luminance below G): the uint8 table's
    # saturation (255 reads the entry of 254) and the G threshold matter there.
    a = tid[100:134, 100:134].copy()
    ref = _save(a, "rgb_34x34.png")
    pairs.append((ref, _save(_blur(a, 1.5), "rgb_34x34_blur.png"), ""))
    b = tid[200:235, 300:337].copy()
    ref = _save(b, "rgb_35x37.png")
    pairs.append((ref, _save(_jpeg(b, 10), "rgb_35x37_jpeg.png"), ""))
    c = tid[60:110, 100:157].astype(np.float64)
    c = np.clip(np.round((c - 40.0) * 3.5), 0, 255).astype(np.uint8)  # 50 x 57
    ref = _save(c, "rgb_50x57_contrast.png")
    pairs += [(ref, _save(_blur(c, 1.5), "rgb_50x57_contrast_blur.png"), ""),
              (ref, _save(_noise(c, 10.0, 2), "rgb_50x57_contrast_noise.png"), "")]
    # Bright rectangles on black: the CSF filter rings below zero next to their edges, so some
    # blocks have a negative mean luminance, where log(std_1 ./ m1_1) is complex and the
    # Octave-vs-MATLAB comparison patch below matters (unpatched Octave: MAD 33.55 instead of
    # 28.09 on the first pair).
    d = np.zeros((80, 90), np.uint8)
    for r, c, h, w, v in ((10, 12, 20, 25, 255), (45, 8, 12, 30, 230), (20, 50, 40, 10, 255), (60, 55, 12, 25, 180)):
        d[r : r + h, c : c + w] = v
    ref = _save(d, "grey_80x90_rects.png")
    e = d.copy()
    e[14:26, 17:33] = 150
    pairs += [(ref, _save(_noise(d, 8.0, 3), "grey_80x90_rects_noise.png"), ""),
              (ref, _save(e, "grey_80x90_rects_patch.png"), "")]
    return pairs


def prepare(authors_dir: Path, work: Path) -> None:
    for name, patches in PATCHES.items():
        text = (authors_dir / name).read_text().replace("\r\n", "\n")
        for old, new in patches:
            if old not in text:
                raise SystemExit(f"patch does not apply to {name}: {old[:60]!r}")
            text = text.replace(old, new)
        (work / name).write_text(text)
    for name in ("ical_std.c", "ical_stat.c"):
        subprocess.run(["mkoctfile", "--mex", name], cwd=work, check=True, capture_output=True)


OCTAVE_DRIVER = r"""
pkg load image
cd('{work}');
c = [0.298936021293775 0.587043074451121 0.114020904255103];
fid = fopen('{result}', 'w');
pairs = {pairs};
for k = 1:size(pairs, 1)
  Y = cell(1, 2);
  for j = 1:2
    im = imread(pairs{{k, j}});
    if ndims(im) == 3
      d = double(im);
      im = uint8(d(:,:,1) * c(1) + d(:,:,2) * c(2) + d(:,:,3) * c(3));  % MATLAB rgb2gray, uint8
    end
    crop = pairs{{k, 3}};
    if numel(crop)
      im = im(crop(1)+1:crop(1)+crop(3), crop(2)+1:crop(2)+crop(4));
    end
    Y{{j}} = im;
  end
  [s, idx] = MAD_index(Y{{1}}, Y{{2}});
  fprintf(fid, '%.17g %.17g %.17g\n', idx.MAD, idx.HI, idx.LO);
end
fclose(fid);
"""


def run_octave(authors_dir: Path, pairs: list[tuple[str, str, str]]) -> list[list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare(authors_dir, work)
        cells = ";\n".join(f"'{DATA / r}', '{DATA / d}', [{crop}]" for r, d, crop in pairs)
        script = OCTAVE_DRIVER.format(work=work, result=work / "result.txt", pairs="{" + cells + "}")
        (work / "driver.m").write_text(script)
        subprocess.run(["octave", "--no-gui", "--quiet", str(work / "driver.m")], check=False)
        rows = [[float(v) for v in line.split()] for line in (work / "result.txt").read_text().splitlines()]
        shutil.rmtree(work, ignore_errors=True)
        return rows


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    pairs = make_images()
    values = run_octave(Path(sys.argv[1]), pairs)
    assert len(values) == len(pairs), values
    with open(OUT / "expected.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["reference", "distorted", "crop", "value", "hi", "lo"])
        for (ref, dist, crop), (v, hi, lo) in zip(pairs, values):
            writer.writerow([ref, dist, crop, repr(v), repr(hi), repr(lo)])
    print((OUT / "expected.csv").read_text())


if __name__ == "__main__":
    main()
