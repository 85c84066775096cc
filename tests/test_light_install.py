"""``pip install percepmetric`` without extras: the metric library and the commands distance (two
images), score, metrics, weights and matrix run; every other command or option says in one line
which extra to install (exit code 2).

The plain install is imitated in a fresh interpreter by hiding the modules only extras bring
(``sys.modules[name] = None`` makes ``import name`` fail as if it were not installed), and the
packages whose weight files torchmetrics carries as well (lpips, DISTS_pytorch).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

from helpers import REFERENCE_DIR, requires_weights, run_cli

#: What the plain install leaves out (top-level module names).
EXTRA_MODULES = ("pandas", "matplotlib", "scipy", "skimage", "numba", "llvmlite", "imagecodecs", "sklearn")
HIDDEN = (*EXTRA_MODULES, "lpips", "DISTS_pytorch")

TRIPLET = REFERENCE_DIR / "lpips-example-triplet"
REF, P0, P1 = (TRIPLET / name for name in ("ex_ref.png", "ex_p0.png", "ex_p1.png"))

_PRELUDE = f"""
import sys
for name in {HIDDEN!r}:
    sys.modules[name] = None
"""


def _run(code: str, hide: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -c CODE`` in a fresh interpreter, the extras' modules hidden when ``hide``."""
    source = (_PRELUDE if hide else "") + textwrap.dedent(code)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, check=False, env=env,
                          timeout=300, cwd=ROOT)


def _cli(*args: object, hide: bool = True) -> subprocess.CompletedProcess[str]:
    """``percepmetric ARGS`` in a fresh interpreter, the extras' modules hidden when ``hide``."""
    return _run(f"import percepmetric.cli\npercepmetric.cli.main({[str(a) for a in args]!r})", hide=hide)


_MANY_DRIVER = """
import contextlib, io, json
import percepmetric.cli
results = []
for argv in ARGVS:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            percepmetric.cli.main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def _cli_many(*argvs: tuple[object, ...]) -> list[tuple[int, str, str]]:
    """``percepmetric ARGV`` for each ``argv``, one after another in one fresh interpreter with the
    extras' modules hidden (one interpreter start for all): ``(exit code, stdout, stderr)`` each."""
    run = _run(_MANY_DRIVER.replace("ARGVS", repr([[str(a) for a in argv] for argv in argvs])))
    assert run.returncode == 0, run.stderr
    return [tuple(result) for result in json.loads(run.stdout.splitlines()[-1])]


# ---------------------------------------------------------------- what the plain install runs

def test_importing_percepmetric_imports_no_module_of_an_extra() -> None:
    run = _run(f"""
        import sys
        import percepmetric, percepmetric.functional, percepmetric.cli
        print(sorted(name for name in {EXTRA_MODULES!r} if name in sys.modules))
    """, hide=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]", run.stdout


@requires_weights("alex")
def test_distance_of_two_images_with_lpips_and_ssim() -> None:
    plain = _cli("distance", REF, P0, "-m", "lpips", "-m", "ssim")
    assert plain.returncode == 0, plain.stderr
    assert [line.split()[0] for line in plain.stdout.splitlines()] == [
        "lpips(net=alex,variant=lin,weights=v0.1)", "ssim(color=grey)"], plain.stdout
    full = _cli("distance", REF, P0, "-m", "lpips", "-m", "ssim", hide=False)
    assert plain.stdout == full.stdout


@requires_weights("alex")
def test_the_library_distance() -> None:
    run = _run("""
        import torch, percepmetric
        x, y = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)).unbind(0)
        print(percepmetric.distance(x[None], y[None]).item())
        print(percepmetric.create_metric("ssim")(x[None], y[None]).item())
    """)
    assert run.returncode == 0, run.stderr
    lpips_value, ssim_value = map(float, run.stdout.split())
    assert 0 < lpips_value < 2 and 0 < ssim_value < 1


def test_score_metrics_weights_matrix_and_help() -> None:
    score, listing, weights, matrix, usage = _cli_many(
        ("score", REF, P0, P1, "-m", "psnr", "-m", "ssim", "-m", "fsim"), ("metrics",), ("weights",),
        ("matrix", TRIPLET, "-m", "psnr", "--no-progress"), ("--help",))
    assert score[0] == 0, score[2]
    assert [line.split()[0] for line in score[1].splitlines()[-3:]] == ["psnr", "ssim(color=grey)", "fsim"]
    assert listing[0] == 0 and "lpips" in listing[1], listing[2]
    assert weights[0] == 0, weights[2]
    assert matrix[0] == 0 and "closest pairs" in matrix[1], matrix[2]
    assert usage[0] == 0, usage[2]
    text = " ".join(usage[1].split())
    for command in ("distance", "score", "metrics", "weights", "matrix", "bench", "train", "deepsim"):
        assert f" {command} " in text, command
    assert "pip install 'percepmetric[bench]'" in text


# ---------------------------------------------------------------- what needs an extra: one line, exit 2

NEEDS_AN_EXTRA = [
    (("bench",), "bench"),
    (("bench", "--help"), "bench"),
    (("make-fixture", "--out", "unused"), "bench"),
    (("distance", TRIPLET, TRIPLET), "folders"),
    (("distance", REF, P0, "-m", "psnr", "--map", "unused.png"), "plot"),
    (("score", "--demo", "-m", "psnr"), "bench"),
    (("deepsim", "demo", "--out", "unused"), "bench"),
]


def test_a_command_or_option_that_needs_an_extra_says_which_in_one_line() -> None:
    results = _cli_many(*(args for args, _ in NEEDS_AN_EXTRA))
    for (args, extra), (code, out, err) in zip(NEEDS_AN_EXTRA, results):
        assert code == 2, (args, out + err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("percepmetric: error: "), (args, err)
        assert lines[0].endswith(f"pip install 'percepmetric[{extra}]'"), (args, lines[0])
        assert out == "", (args, out)


def test_a_metric_that_needs_a_missing_extra_is_na_while_the_others_run(capsys, monkeypatch) -> None:
    from percepmetric import registry
    from percepmetric.extras import MissingExtraError

    create = registry.create_metric

    def create_without_fsim_extra(name, **options):
        if name == "fsim":
            raise MissingExtraError("fsim", "scipy")
        return create(name, **options)

    monkeypatch.setattr(registry, "create_metric", create_without_fsim_extra)
    code, out, err = run_cli(capsys, "distance", REF, P0, "-m", "psnr", "-m", "fsim")
    assert code == 0, err
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert rows["psnr"].endswith("dB")
    assert rows["fsim"].startswith("n/a: it needs an extra")
    assert "percepmetric: fsim: fsim needs scipy" in err and "pip install 'percepmetric[bench]'" in err


def test_require_names_the_extra_and_leaves_other_import_errors_alone(tmp_path, monkeypatch) -> None:
    from percepmetric.extras import MissingExtraError, require

    assert require("json", "anything").dumps([]) == "[]"
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingExtraError, match=r"^tables needs pandas, .*: pip install 'percepmetric\[folders\]'$"):
        require("pandas", "tables")
    # A module that is there but whose own import fails is a broken install, not a missing extra.
    (tmp_path / "half_installed.py").write_text("import surely_absent_module_4711\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="surely_absent_module_4711"):
        require("half_installed", "x")


# ---------------------------------------------------------------- what pyproject.toml declares

def _name(requirement: str) -> str:
    return requirement.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()


def test_the_plain_dependencies_leave_the_harness_to_extras() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    plain = {_name(r) for r in project["dependencies"]}
    assert plain == {"torch", "torchvision", "numpy", "pillow", "click", "tqdm", "torchmetrics"}, plain
    assert "torchmetrics>=1.7" in project["dependencies"]  # the first release with LPIPS's and DISTS's files
    extras = project["optional-dependencies"]
    assert {"folders", "plot", "images", "bench", "stlpips", "all", "test"} <= set(extras)
    assert "percepmetric[bench,stlpips]" in extras["all"] and "percepmetric[all]" in extras["test"]
    bench = {_name(r) for r in extras["bench"]} | {"pandas", "matplotlib", "imagecodecs"}
    assert {"scipy", "scikit-image", "numba", "pandas", "matplotlib", "imagecodecs"} <= bench
