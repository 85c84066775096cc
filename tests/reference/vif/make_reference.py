"""Reference values of VIF (``vifvec.m``) and VIF-P (``vifp_mscale.m``) from the authors' MATLAB code under GNU Octave.

Usage (from the repository root; needs Pillow, NumPy, ``octave`` with the image package)::

    python tests/reference/vif/make_reference.py VIFVEC_DIR VIFP_DIR PYRTOOLS_DIR

- ``VIFVEC_DIR``: the LIVE release ``vifvec_release`` (H. R. Sheikh, 2005: ``vifvec.m``,
  ``vifsub_est_M.m``, ``refparams_vecgsm.m``, ``ind2wtree.m``); ``VIFP_DIR``: ``vifp_release``
  (``vifp_mscale.m``). The copies used are those MeTriX MuX redistributes, in the public GitHub
  repository ``codeslake/PVDNet``, folder
  ``evaluation/evaluation_code/image_quality_algorithms/metrix_mux/metrix/vif/``, commit
  f29db89ceac0ed521faf6fa25322a534f660cc58 (md5: vifvec.m 81e7662376a0c621b901ddff34412624,
  vifsub_est_M.m 156ea32906dba4e5352560abed2827de, refparams_vecgsm.m
  1d8d516b4bef2fdbc555af141b730a79, ind2wtree.m 858f544b731c841e7ba914039897214c,
  vifp_mscale.m 4bee37a3ea303ecc2fc5094e76c4a6af).
- ``PYRTOOLS_DIR``: matlabPyrTools' ``buildSpyr.m``, ``buildSpyrLevs.m``, ``sp5Filters.m``,
  ``maxPyrHt.m`` (same repository, ``.../metrix_mux/utilities/matlabPyrTools/``) and the MEX
  ``corrDn`` built for Octave from matlabPyrTools' C sources (``MEX/corrDn.c convolve.c wrap.c
  edges.c``) with ``mkoctfile --mex -I. -o corrDn.mex corrDn.c convolve.c wrap.c edges.c`` and a
  one-line ``matrix.h`` holding ``#include "mex.h"`` (MATLAB's header, absent from Octave). As in
  MATLAB, where the authors ran the compiled MEX, ``corrDn`` is the C code (``reflect1`` edges).
  Only those four M-files go on the path: the whole toolbox would shadow Octave's ``shift``,
  ``factorial`` and ``ifftshift``.

None of this code is kept in this repository.

Octave-vs-MATLAB: ``vifvec.m`` (line 82) calls ``vifsub_est_m`` while the release ships
``vifsub_est_M.m``; MATLAB on Windows/macOS (case-insensitive file systems) finds it, Octave on
Linux does not. ``tests/reference/vif/vifsub_est_m.m`` (ours, three lines) forwards the call to
``vifsub_est_M`` unchanged and goes on the path. Nothing else differs: the code uses ``conv2``-free
MEX correlation, ``inv``, ``eig``, ``log2`` (VIF), ``fspecial('gaussian')``, ``filter2 'valid'``
and ``log10`` (VIF-P), all alike in Octave and MATLAB.

Input conversion (what an evaluation gives the code: grey ``double`` on 0..255): an RGB image gets
MATLAB's ``rgb2gray`` of the uint8 array, emulated as in ``tests/reference/gmsd`` (Octave's own
rgb2gray uses six-digit coefficients): ``uint8(0.298936021293775 R + 0.587043074451121 G +
0.114020904255103 B)`` computed in double (``uint8()`` rounds halves away from zero); a grey image
goes in as ``double`` of its 8-bit values. Some pairs are a crop ``img(r0+1:r0+h, c0+1:c0+w, :)``
taken in Octave (``crop`` column ``r0 c0 h w``).

Writes the images of ``tests/data/vif/`` (deterministic crops of the committed tid2013-pair and
goldhill images with a contrast stretch, PIL blur, JPEG; a synthetic image with flat regions) and
``tests/data/vif/expected.csv``: ``reference,distorted,crop,metric,value`` (metric ``vif`` or
``vifp``; ``vif`` only for pairs of at least 72x72, the smallest a 4-level sp5 pyramid takes).
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
DATA = HERE.parents[1] / "data"
OUT = DATA / "vif"
VIF_MIN = 72  # maxPyrHt(size, 9) >= 4
VIFP_MIN = 41


def _save(array: np.ndarray, name: str) -> str:
    Image.fromarray(array).save(OUT / name, optimize=True)
    return f"vif/{name}"


def _contrast(a: np.ndarray, gain: float) -> np.ndarray:
    """A contrast stretch about mid-grey (VIF above 1: the authors' contrast-enhancement case)."""
    return np.clip(np.round((a.astype(np.float64) - 128.0) * gain + 128.0), 0, 255).astype(np.uint8)


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(radius)))


def _jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    img = Image.fromarray(a)
    img.save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert(img.mode))


def make_pairs() -> list[tuple[str, str, str]]:
    """``(reference, distorted, crop)`` rows, paths relative to tests/data; crop ``r0 c0 h w`` or ''."""
    OUT.mkdir(parents=True, exist_ok=True)
    tid = np.asarray(Image.open(DATA / "tid2013-pair" / "I01.BMP").convert("RGB"))
    gold = np.asarray(Image.open(DATA / "tid2013-pair" / "goldhill.gif").convert("L"))
    pairs = [
        ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp", ""),  # 384x512 RGB, additive noise
        ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", ""),  # 512x512 grey, JPEG
        ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp", "3 5 381 467"),  # odd
        ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", "10 20 401 385"),  # odd, tall
        ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", "100 50 72 72"),  # VIF's minimum
        ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp", "31 7 73 143"),
        ("srsim/rgb_97x131.png", "srsim/rgb_97x131_noise.png", ""),
        ("srsim/rgb_97x131.png", "srsim/rgb_97x131_blur.png", ""),
        ("srsim/grey_121x88.png", "srsim/grey_121x88_blur.png", ""),
        ("srsim/grey_121x88.png", "srsim/grey_121x88_jpeg.png", ""),
        ("srsim/grey_121x88.png", "srsim/grey_121x88_noise.png", ""),
        ("srsim/rgb_63x45.png", "srsim/rgb_63x45_jpeg.png", ""),  # VIF-P only
        ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p0.png", ""),  # VIF-P only
        ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p1.png", ""),  # VIF-P only
        ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", "0 0 41 50"),  # VIF-P's minimum
    ]
    g = gold[300:389, 200:273].copy()  # 89 x 73 grey
    ref = _save(g, "grey_89x73.png")
    pairs += [(ref, _save(_contrast(g, 1.3), "grey_89x73_contrast.png"), ""),
              (ref, _save(_blur(g, 1.0), "grey_89x73_blur.png"), "")]
    a = tid[250:325, 300:401].copy()  # 75 x 101 RGB
    ref = _save(a, "rgb_75x101.png")
    pairs += [(ref, _save(_contrast(a, 1.2), "rgb_75x101_contrast.png"), ""),
              (ref, _save(_jpeg(a, 20), "rgb_75x101_jpeg.png"), "")]
    # Flat regions (a constant colour, black and white bands) beside texture: the code's
    # zero-variance clean-ups at work, where float rounding is all that is left.
    f = np.empty((80, 96, 3), np.uint8)
    f[:] = (200, 30, 90)
    f[:, 48:] = tid[100:180, 100:148]
    f[60:70, :40] = 0
    f[:12, 20:70] = 255
    ref = _save(f, "rgb_80x96_flat.png")
    pairs += [(ref, _save(_jpeg(f, 30), "rgb_80x96_flat_jpeg.png"), "")]
    return pairs


def _size(rel: str, crop: str) -> tuple[int, int]:
    if crop:
        h, w = map(int, crop.split()[2:])
        return h, w
    w, h = Image.open(DATA / rel).size
    return h, w


OCTAVE_DRIVER = r"""
pkg load image
addpath('{pyrtools}'); addpath('{vifvec}'); addpath('{vifp}'); addpath('{shim}');
w = which('vifsub_est_m'); if isempty(strfind(w, '{shim}')), error('shim not found: %s', w); end
w = which('corrDn'); if isempty(strfind(w, '.mex')), error('corrDn is not the MEX: %s', w); end
c = [0.298936021293775 0.587043074451121 0.114020904255103];
rows = strsplit(strtrim(fileread('{listing}')), "\n");
fid = fopen('{result}', 'w');
for k = 1:numel(rows)
  f = strsplit(rows{{k}}, "\t", "CollapseDelimiters", false);
  Y = cell(1, 2);
  for j = 1:2
    im = imread(f{{j}});
    if ndims(im) == 3
      d = double(im);
      im = uint8(d(:,:,1) * c(1) + d(:,:,2) * c(2) + d(:,:,3) * c(3));  % MATLAB rgb2gray, uint8
    end
    if ~isempty(f{{3}})
      b = str2double(strsplit(f{{3}}, ' '));
      im = im(b(1)+1:b(1)+b(3), b(2)+1:b(2)+b(4));
    end
    Y{{j}} = double(im);
  end
  if strcmp(f{{4}}, 'vif')
    v = vifvec(Y{{1}}, Y{{2}});
  else
    v = vifp_mscale(Y{{1}}, Y{{2}});
  end
  fprintf(fid, '%.17g\n', v);
end
fclose(fid);
"""


def run_octave(dirs: list[Path], jobs: list[tuple[str, str, str, str]]) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shim = work / "shim"
        shim.mkdir()
        shutil.copy(HERE / "vifsub_est_m.m", shim / "vifsub_est_m.m")
        lines = []
        for ref, dist, crop, metric in jobs:
            paths = []
            for rel in (ref, dist):
                img = Image.open(DATA / rel)
                img = img.convert("L" if img.mode in ("L", "P") and rel.endswith(".gif") else img.mode)
                path = work / (rel.replace("/", "_") + ".png")
                img.save(path)
                paths.append(str(path))
            lines.append("\t".join([*paths, crop, metric]))
        (work / "list.txt").write_text("\n".join(lines) + "\n")
        vifvec, vifp, pyrtools = (d.resolve() for d in dirs)
        script = OCTAVE_DRIVER.format(pyrtools=pyrtools, vifvec=vifvec, vifp=vifp, shim=shim,
                                      listing=work / "list.txt", result=work / "result.txt")
        (work / "driver.m").write_text(script)
        subprocess.run(["octave", "--no-gui", "--quiet", "--norc", str(work / "driver.m")], check=True)
        return [float(v) for v in (work / "result.txt").read_text().split()]


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    pairs = make_pairs()
    jobs = []
    for ref, dist, crop in pairs:
        h, w = _size(ref, crop)
        if min(h, w) >= VIF_MIN:
            jobs.append((ref, dist, crop, "vif"))
        if min(h, w) >= VIFP_MIN:
            jobs.append((ref, dist, crop, "vifp"))
    values = run_octave([Path(a) for a in sys.argv[1:]], jobs)
    assert len(values) == len(jobs), (len(values), len(jobs))
    with open(OUT / "expected.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["reference", "distorted", "crop", "metric", "value"])
        for (ref, dist, crop, metric), value in zip(jobs, values):
            writer.writerow([ref, dist, crop, metric, repr(value)])
    print((OUT / "expected.csv").read_text())


if __name__ == "__main__":
    main()
