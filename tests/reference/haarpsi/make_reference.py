"""Make the HaarPSI (and MDSI) parity data: test images and the authors' MATLAB values under Octave.

Usage (from the repository root, with the venv active)::

    python tests/reference/haarpsi/make_reference.py --images          # (re)write tests/data/haarpsi/*.png
    python tests/reference/haarpsi/make_reference.py --haarpsi DIR     # run DIR/HaarPSI.m in Octave

``DIR`` holds the authors' ``HaarPSI.m`` (Rafael Reisenhofer, "Built on 08/05/2017"). The copy used
for ``tests/data/haarpsi/expected.csv``: repository ``Skythianos/FRIQA-ActMapFeat``, path ``HaarPSI.m``,
commit ``29e61cb2eddf82a91400b9acd03dbc4e018af79d`` (a verbatim copy of the authors' release,
http://www.haarpsi.org). Octave 7.3.0, no patch needed: the file uses only ``conv2``, ``abs``,
``exp``, ``log`` and ``sum``, which Octave and MATLAB compute alike.

The images are made deterministically from the committed test images (``tests/data/tid2013-pair``,
``tests/data/lpips-example-triplet``): crops of odd and non-square sizes, RGB and grey, with
Gaussian noise (seeded), Gaussian blur and JPEG (PIL) distortions. Octave reads each PNG with
``imread`` (uint8) and passes ``double(img)`` (0..255) to ``HaarPSI``, as the authors' example
does; a grey PNG is an ``HxW`` matrix (HaarPSI.m's grey path), an RGB one ``HxWx3`` (YIQ path).
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data"
OUT = DATA / "haarpsi"

def _crop(img: Image.Image, left: int, top: int, width: int, height: int) -> Image.Image:
    return img.crop((left, top, left + width, top + height))


def _noise(img: Image.Image, sigma: float, seed: int) -> Image.Image:
    a = np.asarray(img).astype(np.float64)
    rng = np.random.default_rng(seed)
    return Image.fromarray(np.clip(np.round(a + rng.normal(0.0, sigma, a.shape)), 0, 255).astype(np.uint8))


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert(img.mode)


def make_images() -> dict[str, Image.Image]:
    """name -> image (the names carry the size as width x height)."""
    tid = Image.open(DATA / "tid2013-pair" / "I01.BMP").convert("RGB")
    tid_dist = Image.open(DATA / "tid2013-pair" / "i01_01_5.bmp").convert("RGB")
    gold = Image.open(DATA / "tid2013-pair" / "goldhill.gif").convert("L")
    gold_jpeg = Image.open(DATA / "tid2013-pair" / "goldhill_jpeg.gif").convert("L")
    lp = DATA / "lpips-example-triplet"
    images = {
        "rgb_101x77": _crop(tid, 200, 150, 101, 77),
        "rgb_101x77_tid": _crop(tid_dist, 200, 150, 101, 77),
        "rgb_64x64": Image.open(lp / "ex_ref.png").convert("RGB"),
        "rgb_64x64_p0": Image.open(lp / "ex_p0.png").convert("RGB"),
        "rgb_64x64_p1": Image.open(lp / "ex_p1.png").convert("RGB"),
        "rgb_58x83": _crop(tid, 31, 260, 58, 83),
        "grey_95x66": _crop(gold, 210, 240, 95, 66),
        "grey_95x66_jpeg": _crop(gold_jpeg, 210, 240, 95, 66),
        "grey_47x33": _crop(tid, 400, 60, 47, 33).convert("L"),
        "grey_17x16": _crop(gold, 100, 100, 17, 16),
    }
    images["rgb_58x83_noise"] = _noise(images["rgb_58x83"], 12.0, seed=22)
    images["rgb_58x83_blur"] = images["rgb_58x83"].filter(ImageFilter.GaussianBlur(1.5))
    images["rgb_101x77_jpeg"] = _jpeg(images["rgb_101x77"], 15)
    images["grey_47x33_noise"] = _noise(images["grey_47x33"], 20.0, seed=7)
    images["grey_47x33_blur"] = images["grey_47x33"].filter(ImageFilter.GaussianBlur(2.0))
    images["grey_17x16_noise"] = _noise(images["grey_17x16"], 25.0, seed=3)
    return images


# (reference name, distorted name): every pair the parity tests check.
PAIRS: list[tuple[str, str]] = [
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


def write_images() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, img in make_images().items():
        img.save(OUT / f"{name}.png", optimize=True)


OCTAVE_HAARPSI = """
pkg load image
addpath('{code}');
pairs = {pairs};
fid = fopen('{out}', 'w');
fprintf(fid, 'reference,distorted,subsample,value\\n');
for i = 1:size(pairs, 1)
  ref = double(imread(fullfile('{data}', [pairs{{i, 1}} '.png'])));
  dist = double(imread(fullfile('{data}', [pairs{{i, 2}} '.png'])));
  for sub = [1 0]
    fprintf(fid, '%s,%s,%d,%.12f\\n', pairs{{i, 1}}, pairs{{i, 2}}, sub, HaarPSI(ref, dist, sub));
  end
end
fclose(fid);
"""


def _cell(pairs: list[tuple[str, str]]) -> str:
    return "{" + "; ".join(f"'{a}', '{b}'" for a, b in pairs) + "}"


def run_haarpsi(code: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "values.csv"
        script = OCTAVE_HAARPSI.format(code=code.resolve(), pairs=_cell(PAIRS), out=out, data=OUT)
        subprocess.run(["octave", "--no-gui", "--quiet", "--eval", script], check=True)
        rows = list(csv.DictReader(out.open()))
    with (OUT / "expected.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["reference", "distorted", "subsample", "haarpsi_m"])
        for row in rows:
            writer.writerow([row["reference"], row["distorted"], row["subsample"], row["value"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", action="store_true", help="write the test images")
    parser.add_argument("--haarpsi", type=Path, help="folder holding the authors' HaarPSI.m")
    args = parser.parse_args()
    if args.images:
        write_images()
    if args.haarpsi:
        run_haarpsi(args.haarpsi)


if __name__ == "__main__":
    main()
