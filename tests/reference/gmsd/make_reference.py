"""Make the GMSD test images and the reference values of the authors' GMSD.m under GNU Octave.

Usage (from the repository root; needs Pillow, NumPy and ``octave`` with the image package)::

    python tests/reference/gmsd/make_reference.py /path/to/GMSD.m

``GMSD.m`` is the authors' code (Xue, Zhang, Mou, Bovik 2014; www.comp.polyu.edu.hk/~cslzhang/IQA/GMSD/).
The values committed in ``tests/data/gmsd/reference.csv`` were made with the copy in the public
repository ``chaofengc/Face-Sketch-Wild``, path ``GMSD.m``, commit
1486095eb74d09c37c46928dc1e6bb98ed1b8732 (identical to the authors' release: T = 170,
Down_step = 2, Prewitt / 3, std2). It is not kept in this repository.

1. Writes the derived test images (deterministic: fixed crops of the committed TID2013 and
   goldhill images, seeded noise, PIL Gaussian blur, PIL JPEG) to ``tests/data/gmsd/``.
2. Writes every pair as 8-bit PNG to a temporary folder and runs Octave on it: an RGB image
   gets MATLAB's ``rgb2gray`` of the uint8 array, emulated (Octave's own rgb2gray uses
   six-digit coefficients): ``uint8(0.298936021293775 R + 0.587043074451121 G +
   0.114020904255103 B)`` computed in double, ``uint8()`` rounding halves away from zero as
   MATLAB's ``imapplymatrix`` does; then ``GMSD(double(Y_ref), double(Y_dist))``. A grey
   image goes in as ``double`` of its 8-bit values.
3. Writes ``tests/data/gmsd/reference.csv``: ``reference,distorted,value`` (paths relative to
   ``tests/data``), values printed with 17 significant digits.
4. MS-GMSD has no public code of its authors: writes ``tests/data/gmsd/ms_gmsd_piq.csv``,
   ``reference,distorted,chromatic,value`` from piq's ``multi_scale_gmsd`` (piq 0.8.0, float64,
   images as ``code / 255``, default parameters, ``reduction="none"``; piq takes the distorted
   image first), the implementation ``ms_gmsd`` is compared with.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

DATA = Path(__file__).resolve().parents[2] / "data"
OUT = DATA / "gmsd"


def _save(img: Image.Image, name: str) -> str:
    img.save(OUT / name, optimize=True)
    return f"gmsd/{name}"


def _noisy(img: Image.Image, sigma: float, seed: int) -> Image.Image:
    a = np.asarray(img).astype(np.float64)
    a = a + np.random.default_rng(seed).normal(0.0, sigma, a.shape)
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), img.mode)


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert(img.mode)


def make_images() -> list[tuple[str, str]]:
    OUT.mkdir(exist_ok=True)
    pairs = [
        ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p0.png"),
        ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p1.png"),
        ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp"),
        ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif"),
    ]
    tid = Image.open(DATA / "tid2013-pair/I01.BMP").convert("RGB")
    rgb = tid.crop((200, 120, 279, 181))  # 79 x 61 (W x H), odd and non-square
    ref = _save(rgb, "rgb_61x79.png")
    pairs += [
        (ref, _save(_noisy(rgb, 12.0, 1), "rgb_61x79_noise.png")),
        (ref, _save(rgb.filter(ImageFilter.GaussianBlur(1.5)), "rgb_61x79_blur.png")),
        (ref, _save(_jpeg(rgb, 15), "rgb_61x79_jpeg.png")),
    ]
    grey = Image.open(DATA / "tid2013-pair/goldhill.gif").convert("L").crop((100, 300, 150, 375))  # 50 x 75
    gref = _save(grey, "grey_75x50.png")
    pairs += [
        (gref, _save(_noisy(grey, 20.0, 2), "grey_75x50_noise.png")),
        (gref, _save(_jpeg(grey, 10), "grey_75x50_jpeg.png")),
    ]
    # A small RGB pair with flat regions (zero gradients) at an odd size near the minimum.
    rng = np.random.default_rng(3)
    flat = np.zeros((9, 7, 3), np.uint8)
    flat[:, :4] = (200, 30, 90)
    flat[4:, 4:] = rng.integers(0, 256, (5, 3, 3), dtype=np.uint8)
    fref = _save(Image.fromarray(flat), "rgb_9x7_flat.png")
    pairs.append((fref, _save(_noisy(Image.fromarray(flat), 30.0, 4), "rgb_9x7_flat_noise.png")))
    tiny = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    tref = _save(Image.fromarray(tiny), "rgb_3x5.png")
    pairs.append((tref, _save(_noisy(Image.fromarray(tiny), 40.0, 5), "rgb_3x5_noise.png")))
    return pairs


OCTAVE_DRIVER = r"""
pkg load image
addpath('{gmsd_dir}');
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
    Y{{j}} = double(im);
  end
  fprintf(fid, '%.17g\n', GMSD(Y{{1}}, Y{{2}}));
end
fclose(fid);
"""


def run_octave(gmsd_m: Path, pairs: list[tuple[str, str]]) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        listing = []
        for i, pair in enumerate(pairs):
            for j, rel in enumerate(pair):
                img = Image.open(DATA / rel)
                img = img.convert("L" if img.mode in ("L", "P") and rel.endswith(".gif") else img.mode)
                path = tmpdir / f"{i:03d}_{j}.png"
                img.save(path)
                listing.append(str(path))
        (tmpdir / "list.txt").write_text("\n".join(listing) + "\n")
        script = OCTAVE_DRIVER.format(gmsd_dir=gmsd_m.resolve().parent, listing=tmpdir / "list.txt",
                                      result=tmpdir / "result.txt")
        (tmpdir / "driver.m").write_text(script)
        subprocess.run(["octave", "--no-gui", "--quiet", str(tmpdir / "driver.m")], check=True)
        return [float(v) for v in (tmpdir / "result.txt").read_text().split()]


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    pairs = make_images()
    values = run_octave(Path(sys.argv[1]), pairs)
    with open(OUT / "reference.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["reference", "distorted", "value"])
        for (ref, dist), v in zip(pairs, values):
            w.writerow([ref, dist, repr(v)])
    print((OUT / "reference.csv").read_text())
    write_piq_ms_gmsd(pairs)


def write_piq_ms_gmsd(pairs: list[tuple[str, str]]) -> None:
    import piq  # the peer MS-GMSD is compared with
    import torch

    def load(rel: str) -> torch.Tensor:
        a = np.asarray(Image.open(DATA / rel).convert("L" if rel.endswith(".gif") else None), dtype=np.float64)
        a = a[..., None] if a.ndim == 2 else a
        return torch.from_numpy(a / 255.0).permute(2, 0, 1)[None]

    with open(OUT / "ms_gmsd_piq.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["reference", "distorted", "chromatic", "value"])
        for ref, dist in pairs:
            x, y = load(ref), load(dist)
            if min(x.shape[-2:]) < 17:
                continue
            for chromatic in (False, True) if x.shape[1] == 3 else (False,):
                v = piq.multi_scale_gmsd(y, x, data_range=1.0, chromatic=chromatic, reduction="none").item()
                w.writerow([ref, dist, chromatic, repr(v)])


if __name__ == "__main__":
    main()
