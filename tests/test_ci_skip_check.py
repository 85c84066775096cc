"""The CI's skip check: tests/conftest.py's skip report and .ci/check_skips.py, which fails CI when
a test was skipped for any reason but the known ones (CUDA-only, SqueezeNet's weights).

Also that the suite stays in the repository: no test reads ../shared, the reference data is in
tests/data with its licences.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import MISSING_WEIGHTS, REFERENCE_DIR

ROOT = Path(__file__).resolve().parents[1]
CHECKER = ROOT / ".ci" / "check_skips.py"

SQUEEZE = (f"{MISSING_WEIGHTS} squeezenet1_1-b8a52dc0.pth: pretrained squeezenet1_1 weights squeezenet1_1-b8a52dc0.pth "
           "are not in /x/hub/checkpoints and could not be downloaded (URLError: no network)")
ALEX = (f"{MISSING_WEIGHTS} alexnet-owt-7be5be79.pth: pretrained alexnet weights alexnet-owt-7be5be79.pth are not "
        "in /x/hub/checkpoints and could not be downloaded (URLError: no network)")
CUDA = "needs a CUDA GPU; none is available"


def _checker():
    spec = importlib.util.spec_from_file_location("check_skips", CHECKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_checker(report: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECKER), str(report)], capture_output=True, text=True, check=False,
                          timeout=60)


def _report(tmp_path: Path, *reasons: str) -> Path:
    path = tmp_path / "skips.json"
    skipped = [{"test": f"tests/test_x.py::test_{k}", "reason": reason} for k, reason in enumerate(reasons)]
    path.write_text(json.dumps({"exitstatus": 0, "collected": 10, "skipped": skipped}))
    return path


def test_the_marker_text_is_the_helpers():
    assert _checker().MISSING_WEIGHTS == MISSING_WEIGHTS


@pytest.mark.parametrize("reason,kind", [
    (CUDA, "CUDA-only"),
    ("needs a CUDA GPU (torch.cuda.is_available() is False)", "CUDA-only"),
    (SQUEEZE, "SqueezeNet weights"),
    (ALEX, None),
    (ALEX.replace("no network", "no CUDA"), None),  # a missing AlexNet stays unknown whatever it says
    (f"{MISSING_WEIGHTS} vgg16-397923af.pth: ...", None),
    ("reference data folder /x/shared/reference is missing", None),
    ("could not import 'lpips': No module named 'lpips'", None),
])
def test_known_kinds(reason, kind):
    assert _checker().known_kind(reason) == kind


def test_only_known_skips_pass_with_one_line(tmp_path):
    run = _run_checker(_report(tmp_path, CUDA, SQUEEZE, CUDA))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("\n") == 1 and run.stdout.startswith("check_skips: OK, 3 skipped") and not run.stderr
    run = _run_checker(_report(tmp_path))
    assert run.returncode == 0 and "0 skipped" in run.stdout


def test_another_skip_fails_with_one_line_naming_it(tmp_path):
    report = _report(tmp_path, CUDA, ALEX, SQUEEZE, "reference data folder is missing")
    run = _run_checker(report)
    assert run.returncode == 1 and not run.stderr
    assert run.stdout.count("\n") == 1, run.stdout
    line = run.stdout.strip()
    assert line.startswith("check_skips: FAIL, 2 of 4 skipped tests are not known skips")
    assert "tests/test_x.py::test_1" in line and "alexnet-owt-7be5be79.pth" in line and "1 more" in line
    assert str(report) in line


def test_an_absent_or_broken_report_fails(tmp_path):
    run = _run_checker(tmp_path / "nowhere.json")
    assert run.returncode == 2 and run.stdout.startswith("check_skips: FAIL, no skip report")
    (tmp_path / "broken.json").write_text("{")
    assert _run_checker(tmp_path / "broken.json").returncode == 2


def test_conftest_writes_the_report_the_checker_reads(tmp_path):
    """End to end: a pytest session with this suite's conftest.py as a plugin, on a file with a
    pass, the known skips and an unknown one; then the checker on the report it wrote."""
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "from helpers import requires_weights\n\n"
        "def test_passes():\n    pass\n\n"
        f"@pytest.mark.skipif(True, reason={CUDA!r})\n"
        "def test_cuda():\n    pass\n\n"
        f"def test_squeeze():\n    pytest.skip({SQUEEZE!r})\n\n"
        "@requires_weights('alex')\n"
        "def test_alex():\n    pass\n\n"
        "def test_other():\n    pytest.skip('some data is missing')\n")
    report = tmp_path / "report.json"
    home = tmp_path / "empty_torch_home"
    # No weights (an empty TORCH_HOME) and no download: every URL goes to a closed local port.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PERCEPMETRIC_", "XDG_", "PYTEST_")) and k.lower() not in ("http_proxy", "https_proxy",
                                                                                          "no_proxy")}
    env.update(PERCEPMETRIC_SKIP_REPORT=str(report), PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
               TORCH_HOME=str(home), http_proxy=proxy, https_proxy=proxy, HTTP_PROXY=proxy, HTTPS_PROXY=proxy,
               no_proxy="", NO_PROXY="")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                          "--rootdir", str(tmp_path), str(tmp_path / "test_sample.py")],
                         capture_output=True, text=True, check=False, env=env, cwd=tmp_path, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    skipped = {entry["test"].split("::")[-1]: entry["reason"] for entry in json.loads(report.read_text())["skipped"]}
    assert set(skipped) == {"test_cuda", "test_squeeze", "test_alex", "test_other"}, skipped
    # requires_weights names the file and where it belongs
    assert skipped["test_alex"].startswith(f"{MISSING_WEIGHTS} alexnet-owt-7be5be79.pth: ")
    assert str(home / "hub" / "checkpoints") in skipped["test_alex"] and "TORCH_HOME" in skipped["test_alex"]
    check = _run_checker(report)
    assert check.returncode == 1 and "2 of 4" in check.stdout and "test_alex" in check.stdout, check.stdout


# ---------------------------------------------------------------- nothing read from outside the repository


def test_no_test_reads_the_shared_folder():
    # ../shared (the project's neighbour on the developers' machines) is absent from a clone.
    outside = re.compile(r"(\.parents?\b|\.\.).*[\"/]shared\b")
    offenders = [f"{path.name}:{number}" for path in sorted(Path(__file__).parent.glob("*.py"))
                 if path.name != Path(__file__).name
                 for number, line in enumerate(path.read_text().splitlines(), 1) if outside.search(line)]
    assert not offenders, offenders


@pytest.mark.parametrize("folder,licence", [("tid2013-pair", "Apache License"),
                                            ("lpips-example-triplet", "Redistribution and use in source and binary")])
def test_reference_data_is_in_the_repository_with_its_licence(folder, licence):
    assert licence in (REFERENCE_DIR / folder / "LICENSE").read_text()
    assert (REFERENCE_DIR / folder / "expected.csv").is_file()
