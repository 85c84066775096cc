"""Reference values of SR-SIM from the authors' MATLAB code run under GNU Octave.

Usage::

    python tests/reference/srsim/make_reference.py AUTHORS_DIR

``AUTHORS_DIR`` holds the authors' ``SR_SIM.m`` (Lin Zhang's SR-SIM code, Version 1.0; the copy
used: GitHub ``paulwong16/ldr2hdr``, path ``SR_SIM.m``, commit
0dd85683d7a34293394f711333f70164b0cabd5d, md5 80dbd62c2327ae3ab834911271c352f6). It is not
part of this repository (its licence forbids rewriting it into a product); Octave and it are
only needed to regenerate ``tests/data/srsim/expected.csv``, never to run the tests.

The script

1. makes the test images deterministically (crops of the committed ``tid2013-pair`` and
   ``lpips-example-triplet`` images with Gaussian noise, blur or JPEG) and saves them as PNGs
   in ``tests/data/srsim/`` (8-bit, RGB or grey);
2. runs ``SR_SIM(imread(ref), imread(dist))`` in Octave on each pair (the images as uint8
   arrays, RGB ones as H x W x 3, exactly what the code receives from ``imread``; some pairs are
   a crop ``img(r0+1:r0+h, c0+1:c0+w, :)`` of the images taken in Octave);
3. writes ``tests/data/srsim/expected.csv``.

Octave-vs-MATLAB: ``SR_SIM.m`` calls ``imresize`` twice (bicubic, antialiased when it shrinks
by 0.25). Octave's image-package ``imresize`` does not follow MATLAB's weights on every resize
(the issue: no renormalisation; a 37x50 -> 20x13 bilinear shrink differs by up to 4.8 grey
levels), so ``tests/reference/srsim/imresize.m`` (our own MATLAB-semantics imresize, see its
header) is put first on Octave's path to shadow it; the script checks with ``which imresize``
that it does. (On this script's calls Octave's bicubic agrees with it to 1e-12.)
Everything else SR_SIM.m uses (conv2, fft2, imfilter with
'replicate' and zero borders, fspecial, mat2gray) behaves as MATLAB's in Octave.
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
OUT = DATA / "srsim"


def _save(array: np.ndarray, name: str) -> str:
    Image.fromarray(array).save(OUT / name, optimize=True)
    return f"srsim/{name}"


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
    gold = np.asarray(Image.open(DATA / "tid2013-pair" / "goldhill.gif").convert("L"))
    pairs = [
        ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp", ""),  # 384x512 RGB, downsampled by 2
        ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", ""),  # 512x512 grey
        ("tid2013-pair/I01.BMP", "tid2013-pair/i01_01_5.bmp", "3 5 381 467"),  # odd, F = 1 (381/256 -> 1)
        ("tid2013-pair/goldhill.gif", "tid2013-pair/goldhill_jpeg.gif", "10 20 401 385"),  # odd, F = 2
        ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p0.png", ""),
        ("lpips-example-triplet/ex_ref.png", "lpips-example-triplet/ex_p1.png", ""),
    ]
    a = tid[40:137, 200:331].copy()  # 97 x 131 RGB
    ref = _save(a, "rgb_97x131.png")
    pairs += [(ref, _save(_noise(a, 12.0, 1), "rgb_97x131_noise.png"), ""),
              (ref, _save(_blur(a, 1.5), "rgb_97x131_blur.png"), "")]
    b = tid[150:213, 300:345].copy()  # 63 x 45 RGB
    ref = _save(b, "rgb_63x45.png")
    pairs += [(ref, _save(_jpeg(b, 15), "rgb_63x45_jpeg.png"), "")]
    g = gold[200:321, 100:188].copy()  # 121 x 88 grey
    ref = _save(g, "grey_121x88.png")
    pairs += [(ref, _save(_blur(g, 2.0), "grey_121x88_blur.png"), ""),
              (ref, _save(_jpeg(g, 10), "grey_121x88_jpeg.png"), ""),
              (ref, _save(_noise(g, 20.0, 2), "grey_121x88_noise.png"), "")]
    return pairs


def run_octave(authors_dir: Path, pairs: list[tuple[str, str, str]]) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copy(authors_dir / "SR_SIM.m", work / "SR_SIM.m")
        shutil.copy(HERE / "imresize.m", work / "imresize.m")
        check = f"w = which('imresize'); if isempty(strfind(w, '{work}')), error('imresize not shadowed: %s', w); end"
        lines = ["pkg load image;", f"cd('{work}');", check]
        for ref, dist, crop in pairs:
            lines.append(f"A = imread('{DATA / ref}'); B = imread('{DATA / dist}');")
            if crop:
                r0, c0, h, w = map(int, crop.split())
                box = f"{r0 + 1}:{r0 + h}, {c0 + 1}:{c0 + w}, :"
                lines.append(f"A = A({box}); B = B({box});")
            lines.append("printf('%.12f\\n', SR_SIM(A, B));")
        script = work / "run.m"
        script.write_text("\n".join(lines) + "\n")
        out = subprocess.run(["octave", "--no-gui", "--quiet", str(script)], capture_output=True, text=True, check=True)
        return [float(v) for v in out.stdout.split()]


def main() -> None:
    authors_dir = Path(sys.argv[1])
    pairs = make_images()
    values = run_octave(authors_dir, pairs)
    assert len(values) == len(pairs), values
    with open(OUT / "expected.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["reference", "distorted", "crop", "value"])
        for (ref, dist, crop), value in zip(pairs, values):
            writer.writerow([ref, dist, crop, f"{value:.10f}"])


if __name__ == "__main__":
    main()
