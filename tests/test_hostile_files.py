"""Hostile files, names and output paths (issue 20): every one is refused in one line before any
work, or written without loss, never a traceback, a hang, a lost result or a silent wrong image.

* output paths (the table, its summary, the resume folder; a matrix's names sidecar) checked
  before anything is computed;
* file names that are not valid UTF-8, written losslessly as text (``\\xHH``);
* names a spreadsheet would run as formulas (``=``, ``+``, ``-``, ``@``), quoted in CSV files;
* FIFOs and other non-regular files, refused without being opened;
* decompression bombs (a header claiming billions of pixels), refused from the header before
  decoding, under a pixel limit that ``--max-pixels`` / ``max_pixels`` /
  ``$PERCEPMETRIC_MAX_PIXELS`` raise; truncated images refused as damaged.

Hostile PNGs are built byte by byte (helpers.png_chunk): no test allocates a huge image.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageFile

from percepmetric import InputError, create_metric, load_image
from percepmetric import io as pio
from percepmetric.compare import compare_folders, resume_folder, summary_path

from helpers import png_chunk, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def pixels(seed: int, shape=(24, 32, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def make_folders(root: Path, names=("0001.png", "0002.png")) -> tuple[Path, Path]:
    for k, name in enumerate(names):
        write_png(root / "A" / name, pixels(k))
        write_png(root / "B" / name, pixels(50 + k))
    return root / "A", root / "B"


def hostile_png(width: int, height: int, rows: int, *, depth: int = 8, colour: int = 2,
                interlace: int = 0, palette: bytes | None = None) -> bytes:
    """A PNG whose header says ``width x height`` and whose image data holds ``rows`` rows of
    zeros in one complete zlib stream: a decompression bomb when the size is huge, a
    truncated image when ``rows < height``. Built by hand, so no decoder has a say in it."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    row_bytes = (width * channels * depth + 7) // 8
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    body = png_chunk(b"IHDR", header)
    if palette is not None:
        body += png_chunk(b"PLTE", palette)
    data = zlib.compress((b"\x00" + bytes(row_bytes)) * rows, 9)
    return PNG_SIGNATURE + body + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def one_error_line(code: int, out: str, err: str) -> str:
    """The one stderr line of a refused command (exit 2, nothing on stdout, no traceback)."""
    assert code == 2, (code, out, err)
    assert out == "", out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("percepmetric: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def no_metric_runs(monkeypatch):
    """Fail the test if PSNR computes anything: a refusal must come before any work."""
    psnr_class = type(create_metric("psnr"))

    def computed(self, x, y):
        raise AssertionError("a metric ran before the refusal")

    monkeypatch.setattr(psnr_class, "formula", computed)


def run_python(code: str, *args: object, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter; a hang fails the test when ``timeout`` runs out (the
    child is killed) instead of blocking the suite forever."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


# ---------------------------------------------------------------- 2. output paths, before any work


def test_a_stray_resume_file_where_the_resume_folder_goes_is_refused_before_any_work(
        tmp_path, capsys, no_metric_runs):
    dir_a, dir_b = make_folders(tmp_path)
    out = tmp_path / "r.csv"
    resume_folder(out).write_text("not a folder")
    line = one_error_line(*run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "--out", out, "--no-progress"))
    assert str(resume_folder(out)) in line and "not a folder" in line
    assert not out.exists() and resume_folder(out).read_text() == "not a folder"


def test_a_summary_path_that_is_a_folder_is_refused_before_any_work(tmp_path, capsys, no_metric_runs):
    dir_a, dir_b = make_folders(tmp_path)
    out = tmp_path / "r.csv"
    summary_path(out).mkdir()
    line = one_error_line(*run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "--out", out, "--no-progress"))
    assert str(summary_path(out)) in line and "folder" in line
    assert not out.exists() and not resume_folder(out).exists()  # nothing written, nothing half done
    with pytest.raises(InputError, match="r.summary.csv"):
        compare_folders(dir_a, dir_b, ["psnr"], out=out)


def test_a_resume_folder_that_cannot_be_written_is_refused_before_any_work(
        tmp_path, capsys, monkeypatch, no_metric_runs):
    import tempfile

    dir_a, dir_b = make_folders(tmp_path)
    out = tmp_path / "r.csv"
    resume_folder(out).mkdir()
    original = tempfile.mkstemp

    def read_only_resume_folder(*args, **kwargs):  # as a folder without write permission (root writes anyway)
        if Path(kwargs.get("dir", "")) == resume_folder(out):
            raise PermissionError(13, "Permission denied")
        return original(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only_resume_folder)
    line = one_error_line(*run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "--out", out, "--no-progress"))
    assert str(resume_folder(out)) in line and "cannot write" in line and "Permission denied" in line


def test_a_matrix_names_sidecar_that_is_a_folder_is_refused_before_any_work(tmp_path, capsys):
    dir_a, _ = make_folders(tmp_path)
    out = tmp_path / "m.npy"
    (tmp_path / "m.names.json").mkdir()
    line = one_error_line(*run_cli(capsys, "matrix", dir_a, "-m", "psnr", "--out", out, "--no-progress"))
    assert "m.names.json" in line and "folder" in line
    assert not out.exists()


# ---------------------------------------------------------------- 3. names that are not UTF-8

BAD = b"bad\xff\xfe.png"
BAD_TEXT = "bad\\xff\\xfe.png"  # how it is written: each byte that is not UTF-8 as \xHH


def make_bad_name_folders(root: Path) -> tuple[Path, Path]:
    dir_a, dir_b = make_folders(root, names=("good.png",))
    for folder, seed in ((dir_a, 1), (dir_b, 2)):
        image = Image.fromarray(pixels(seed))
        with open(os.fsencode(folder) + b"/" + BAD, "wb") as f:
            image.save(f, format="PNG")
    return dir_a, dir_b


def test_name_text_round_trips_every_name():
    names = [os.fsdecode(BAD), "plain.png", "é/ü.png", "back\\slash.png", "back\\xff.png", "\\", "sub/x\\\\y.png"]
    texts = [pio.name_text(name) for name in names]
    assert texts[0] == BAD_TEXT and texts[1] == "plain.png" and texts[2] == "é/ü.png"
    assert len(set(texts)) == len(names)  # no two names share a text
    for name, text in zip(names, texts):
        text.encode("utf-8")  # writable anywhere
        assert pio.name_from_text(text) == name
        assert os.fsencode(pio.name_from_text(text)) == os.fsencode(name)


def test_folder_names_that_are_not_utf8_are_written_losslessly(tmp_path, capsys):
    dir_a, dir_b = make_bad_name_folders(tmp_path)
    expected = create_metric("psnr")(load_image(os.fsdecode(os.fsencode(dir_a) + b"/" + BAD)),
                                     load_image(os.fsdecode(os.fsencode(dir_b) + b"/" + BAD))).item()
    out = tmp_path / "r.csv"
    code, stdout, err = run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "--out", out, "--no-progress")
    assert code == 0, err
    table = pd.read_csv(out, encoding="utf-8")
    assert list(table["a"]) == [BAD_TEXT, "good.png"] and list(table["b"]) == [BAD_TEXT, "good.png"]
    assert table["psnr"][0] == pytest.approx(expected, abs=1e-5)
    assert os.fsencode(pio.name_from_text(table["a"][0])) == BAD
    assert not resume_folder(out).exists()

    json_out = tmp_path / "r.json"
    code, _, err = run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "--out", json_out, "--no-progress")
    assert code == 0, err
    assert [row["a"] for row in json.loads(json_out.read_text(encoding="utf-8"))] == [BAD_TEXT, "good.png"]

    code, stdout, err = run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "--no-progress")  # printed table
    assert code == 0, err
    assert BAD_TEXT in stdout
    code, stdout, err = run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "--json", "--no-progress")
    assert code == 0, err
    assert json.loads(stdout)["pairs"][0]["a"] == BAD_TEXT


def test_matrix_names_that_are_not_utf8_are_written_losslessly(tmp_path, capsys):
    dir_a, _ = make_bad_name_folders(tmp_path)
    out = tmp_path / "m.csv"
    code, stdout, err = run_cli(capsys, "matrix", dir_a, "-m", "psnr", "--out", out, "--no-progress")
    assert code == 0, err
    assert BAD_TEXT in stdout  # the closest pairs name it
    rows = out.read_text(encoding="utf-8").splitlines()
    assert rows[0] == f",{BAD_TEXT},good.png" and rows[1].startswith(f"{BAD_TEXT},")
    code, _, err = run_cli(capsys, "matrix", dir_a, "-m", "psnr", "--out", tmp_path / "m.npy", "--no-progress")
    assert code == 0, err
    names = json.loads((tmp_path / "m.names.json").read_text(encoding="utf-8"))
    assert names["rows"] == [BAD_TEXT, "good.png"] == names["columns"]


# ---------------------------------------------------------------- 4. CSV formula injection

FORMULA_NAMES = ["+1.png", "-2.png", "=HYPERLINK(1).png", "@x.png", "'quoted.png", "plain.png"]


def test_names_a_spreadsheet_would_run_are_quoted_in_csv_and_numbers_are_not(tmp_path):
    dir_a, dir_b = tmp_path / "A", tmp_path / "B"
    for k, name in enumerate(FORMULA_NAMES):
        a = pixels(k)
        write_png(dir_a / name, a)
        write_png(dir_b / name, 255 - a)  # inverted noise: a negative SSIM
    out = tmp_path / "r.csv"
    compare_folders(dir_a, dir_b, ["ssim"], out=out)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("a,b,ssim")
    cells = [line.split(",") for line in lines[1:]]
    assert [c[0] for c in cells] == ["''quoted.png", "'+1.png", "'-2.png", "'=HYPERLINK(1).png", "'@x.png",
                                     "plain.png"]  # rows in the order of the names
    assert all(c[0] == c[1] for c in cells)
    assert all(c[2].startswith("-0.") for c in cells)  # negative values: numbers, written as they are
    table = pd.read_csv(out)
    assert [pio.name_from_text(n, csv=True) for n in table["a"]] == sorted(FORMULA_NAMES)
    # the summary's text cells follow the same rule; its numbers stay numbers
    summary = summary_path(out).read_text().splitlines()
    assert summary[1].startswith("ssim") and ",-0." in summary[1]


def test_matrix_csv_quotes_names_and_not_numbers(tmp_path, capsys):
    from percepmetric.matrix_command import write_matrix

    names = ["=a.png", "b.png"]
    target = write_matrix(tmp_path / "m.csv", torch.tensor([[0.0, -0.5], [-0.5, 0.0]]), names, names, {})[0]
    assert target.read_text().splitlines() == [",'=a.png,b.png", "'=a.png,0,-0.5", "b.png,-0.5,0"]

    folder = tmp_path / "imgs"
    for k, name in enumerate(["-x.png", "@y.png"]):
        write_png(folder / name, pixels(k))
    code, _, err = run_cli(capsys, "matrix", folder, "-m", "psnr", "--out", tmp_path / "f.csv", "--no-progress")
    assert code == 0, err
    assert (tmp_path / "f.csv").read_text().splitlines()[0] == ",'-x.png,'@y.png"


def test_csv_cell_quotes_text_only():
    assert pio.csv_cell("=1+1") == "'=1+1" and pio.csv_cell("\tx") == "'\tx" and pio.csv_cell("x") == "x"
    assert pio.csv_cell("") == ""
    assert pio.csv_cell(-0.5) == -0.5 and pio.csv_cell(3) == 3  # numbers are not text


# ---------------------------------------------------------------- 5. FIFOs and other non-regular files


def test_listing_refuses_a_fifo_named_like_an_image(tmp_path):
    dir_a, _ = make_folders(tmp_path)
    os.mkfifo(dir_a / "x.png")
    with pytest.raises(InputError, match=r"x\.png: not a regular file \(a FIFO"):
        pio.list_image_files(dir_a)
    (dir_a / "x.png").unlink()
    os.mkfifo(dir_a / ".hidden.png")  # hidden: not an image of the set, as before
    os.mkfifo(dir_a / "pipe")  # not an image name: not looked at
    assert pio.list_image_files(dir_a) == ["0001.png", "0002.png"]


def test_a_fifo_is_refused_without_being_opened_by_reading_distance_and_matrix(tmp_path):
    """A FIFO opened for reading blocks until something writes to it: each door must refuse it
    from its file type. Run in a fresh interpreter so that a hang fails on the timeout."""
    dir_a, dir_b = make_folders(tmp_path)
    fifo = dir_a / "x.png"
    os.mkfifo(fifo)
    write_png(dir_b / "x.png", pixels(9))
    proc = run_python("""
        import contextlib, io, json, sys
        from percepmetric.cli import main
        from percepmetric.errors import InputError
        from percepmetric.io import read_image_array, read_image_header
        fifo, dir_a, dir_b = sys.argv[1:4]
        report = {}
        for name, read in (("array", read_image_array), ("header", read_image_header)):
            try:
                read(fifo)
                report[name] = "read"
            except InputError as exc:
                report[name] = str(exc)
        for name, args in (("distance", ["distance", dir_a, dir_b, "-m", "psnr", "--no-progress"]),
                           ("matrix", ["matrix", dir_a, "-m", "psnr", "--no-progress"])):
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    main(args)
                    code = 0
                except SystemExit as exc:
                    code = exc.code
            report[name] = [code, err.getvalue()]
        print(json.dumps(report))
    """, fifo, dir_a, dir_b)
    report = json.loads(proc.stdout)
    assert report["array"] == report["header"] == f"{fifo}: not a regular file (a FIFO); give an image file"
    for name in ("distance", "matrix"):
        code, err = report[name]
        assert code == 2 and err.count("\n") == 1 and "x.png: not a regular file (a FIFO" in err, err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


# ---------------------------------------------------------------- 6. bombs, truncated images, the pixel limit


@pytest.fixture
def never_decoded(monkeypatch):
    """Fail the test if any image data is decoded (PIL or imagecodecs)."""
    import imagecodecs

    def decoded(*args, **kwargs):
        raise AssertionError("image data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decoded)
    monkeypatch.setattr(imagecodecs, "png_decode", decoded)
    monkeypatch.setattr(imagecodecs, "tiff_decode", decoded)


def test_a_decompression_bomb_is_refused_from_its_header_before_decoding(tmp_path, never_decoded):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(hostile_png(20000, 12000, rows=1))
    assert bomb.stat().st_size < 200
    for read in (pio.read_image_array, pio.load_image, pio.read_image_header):
        with pytest.raises(InputError) as caught:
            read(bomb)
        message = str(caught.value)
        assert message.startswith(f"{bomb}: 20000x12000 ") and "100,000,000" in message
        assert "--max-pixels" in message and "PERCEPMETRIC_MAX_PIXELS" in message and "\n" not in message
    with pytest.raises(InputError, match="20000x12000"):
        pio.as_batch(bomb)


def test_the_commands_refuse_a_bomb_in_one_line(tmp_path, capsys, no_metric_runs):
    dir_a, dir_b = make_folders(tmp_path)
    for folder in (dir_a, dir_b):
        (folder / "bomb.png").write_bytes(hostile_png(20000, 12000, rows=1))
    bomb, good = dir_a / "bomb.png", dir_a / "0001.png"
    for args in (["distance", bomb, good, "-m", "psnr"],
                 ["distance", dir_a, dir_b, "-m", "psnr", "--no-progress"],
                 ["score", good, bomb, good, "-m", "psnr"],
                 ["matrix", dir_a, "-m", "psnr", "--no-progress"]):
        line = one_error_line(*run_cli(capsys, *args))
        assert "bomb.png: 20000x12000" in line and "--max-pixels" in line, (args, line)


@pytest.mark.parametrize(("colour", "depth", "interlace", "palette"), [
    (2, 8, 0, None),  # RGB
    (0, 8, 0, None),  # grey
    (0, 16, 0, None),  # 16-bit grey (PIL)
    (6, 8, 1, None),  # RGBA, interlaced
    (3, 8, 0, bytes(range(6))),  # palette
    (2, 16, 0, None),  # 16-bit colour (imagecodecs)
])
def test_a_truncated_png_is_refused_as_damaged(tmp_path, colour, depth, interlace, palette):
    path = tmp_path / "cut.png"
    path.write_bytes(hostile_png(64, 48, rows=4, colour=colour, depth=depth, interlace=interlace, palette=palette))
    with pytest.raises(InputError) as caught:
        pio.read_image_array(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: damaged image") and "truncated" in message and "\n" not in message
    assert message.count(str(path)) == 1  # one statement, not a message wrapped in another
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_a_complete_hand_made_png_is_still_read(tmp_path):
    """The truncation check counts the image data as PNG lays it out (filter bytes, bit depths,
    Adam7 passes): a complete file of each kind reads as before."""
    for colour, depth, interlace, palette in [(2, 8, 0, None), (0, 1, 0, None), (0, 4, 1, None), (4, 16, 1, None),
                                              (3, 2, 0, bytes(range(12))), (6, 8, 1, None)]:
        path = tmp_path / f"ok-{colour}-{depth}-{interlace}.png"
        if interlace:
            path.write_bytes(_interlaced_png(13, 7, colour, depth))
        else:
            path.write_bytes(hostile_png(13, 7, rows=7, colour=colour, depth=depth, palette=palette))
        array = pio.read_image_array(path)
        assert array.shape[:2] == (7, 13)


def _interlaced_png(width: int, height: int, colour: int, depth: int) -> bytes:
    """A complete Adam7 PNG of zeros: each pass's rows, each with its filter byte."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    raw = b""
    for x0, y0, dx, dy in ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
                           (0, 1, 1, 2)):
        pass_width = (width - x0 + dx - 1) // dx if width > x0 else 0
        pass_height = (height - y0 + dy - 1) // dy if height > y0 else 0
        if pass_width and pass_height:
            raw += (b"\x00" + bytes((pass_width * channels * depth + 7) // 8)) * pass_height
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 1)
    return (PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(raw))
            + png_chunk(b"IEND", b""))


def test_cut_files_of_each_format_are_refused_as_damaged(tmp_path):
    import io

    for fmt, suffix in (("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("TIFF", "tif"), ("GIF", "gif")):
        buffer = io.BytesIO()
        Image.fromarray(pixels(3, (64, 64, 3))).save(buffer, format=fmt)
        data = buffer.getvalue()
        path = tmp_path / f"cut.{suffix}"
        path.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(InputError, match=f"^{path}: (damaged image|not a readable image)") as caught:
            pio.read_image_array(path)
        assert "\n" not in str(caught.value)


def test_refusals_keep_memory_small(tmp_path):
    """Under an address-space limit 200 MB above what the interpreter holds, a 10000x10000 PNG
    with 4 rows of data (300 MB if decoded) and a 20000x12000 bomb read with the limit raised
    are both refused: neither is decoded."""
    resource = pytest.importorskip("resource")
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the address space in use")
    truncated, bomb = tmp_path / "truncated.png", tmp_path / "bomb.png"
    truncated.write_bytes(hostile_png(10000, 10000, rows=4))
    bomb.write_bytes(hostile_png(20000, 12000, rows=4))
    assert resource  # the child imports it
    proc = run_python("""
        import json, resource, sys
        from percepmetric.errors import InputError
        from percepmetric.io import read_image_array
        in_use = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
        limit = in_use + 200 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        report = []
        for path, options in ((sys.argv[1], {}), (sys.argv[2], {"max_pixels": 10**9})):
            try:
                read_image_array(path, **options)
                report.append("decoded")
            except InputError as exc:
                report.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - reported to the test
                report.append(type(exc).__name__)
        print(json.dumps(report))
    """, truncated, bomb)
    first, second = json.loads(proc.stdout)
    assert first.startswith(f"{truncated}: damaged image: the file is truncated, its image data stops after ")
    assert first.endswith(" of the 300,010,000 bytes its 10000x10000 header needs")
    assert second.startswith(f"{bomb}: damaged image: the file is truncated") and "20000x12000" in second


def test_the_pixel_limit_from_the_argument_the_environment_or_the_default(tmp_path, monkeypatch, never_decoded):
    path = write_png(tmp_path / "small.png", pixels(0))  # 32x24 = 768 pixels
    assert pio.max_pixels_limit() == pio.DEFAULT_MAX_PIXELS == 100_000_000
    with pytest.raises(InputError, match=r"small\.png: 32x24 is 768 pixels, more than the limit of 700 "):
        pio.read_image_array(path, max_pixels=700)  # from the header: nothing decoded
    monkeypatch.undo()  # decoding allowed from here
    monkeypatch.setenv("PERCEPMETRIC_MAX_PIXELS", "700")
    with pytest.raises(InputError, match="limit of 700"):
        load_image(path)  # read when called
    assert pio.read_image_array(path, max_pixels=768).shape == (24, 32, 3)  # the argument wins
    with pio.pixel_limit(768):
        assert load_image(path).shape == (1, 3, 24, 32)
    with pytest.raises(InputError, match="limit of 700"):
        load_image(path)  # the block's limit ends with it
    for bad in ("many", "0", "-5", "1.5"):
        monkeypatch.setenv("PERCEPMETRIC_MAX_PIXELS", bad)
        with pytest.raises(InputError, match=f"PERCEPMETRIC_MAX_PIXELS={bad!r}: "):
            load_image(path)
    with pytest.raises(InputError, match="max_pixels"):
        pio.read_image_array(path, max_pixels=0)
    assert Image.MAX_IMAGE_PIXELS == int(1024 * 1024 * 1024 // 4 // 3)  # PIL's own limit untouched


def test_max_pixels_options_raise_and_lower_the_limit(tmp_path, capsys, monkeypatch):
    dir_a, dir_b = make_folders(tmp_path)  # 32x24 images
    a, b = dir_a / "0001.png", dir_b / "0001.png"
    monkeypatch.setenv("PERCEPMETRIC_MAX_PIXELS", "100")
    for args in (["distance", a, b], ["distance", dir_a, dir_b, "--no-progress"], ["score", a, a, b],
                 ["matrix", dir_a, "--no-progress"]):
        line = one_error_line(*run_cli(capsys, *args, "-m", "psnr"))
        assert "32x24 is 768 pixels, more than the limit of 100" in line, (args, line)
        code, out, err = run_cli(capsys, *args, "-m", "psnr", "--max-pixels", 768)
        assert code == 0 and err == "", (args, err)
    monkeypatch.delenv("PERCEPMETRIC_MAX_PIXELS")
    line = one_error_line(*run_cli(capsys, "distance", dir_a, dir_b, "-m", "psnr", "--max-pixels", 767,
                                   "--no-progress"))
    assert "limit of 767" in line
    line = one_error_line(*run_cli(capsys, "distance", a, b, "-m", "psnr", "--max-pixels", 0))
    assert "--max-pixels" in line
    assert compare_folders(dir_a, dir_b, ["psnr"], max_pixels=768)["psnr"].notna().all()
