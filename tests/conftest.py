"""Shared test set-up: one torch thread, the ``weights`` marker (tests that need pretrained
trunks skip where they are absent), shared fixtures, and the skip report CI checks.

Nothing here reads outside the repository: the reference data is in tests/data (helpers.py:
REFERENCE_DIR), and the pretrained trunks are wherever torchvision's cache is, i.e.
``$TORCH_HOME/hub/checkpoints`` as the user (or .ci/run) sets it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from helpers import REFERENCE_DIR, skip_without_weights

ROOT = Path(__file__).resolve().parents[1]

#: Where set, the path of a JSON file that lists every skipped test and its reason at the end of
#: the session (.ci/run sets it; .ci/check_skips.py reads it).
SKIP_REPORT_ENV = "PERCEPMETRIC_SKIP_REPORT"

# Most test tensors are small: split over several intra-op threads on a machine that is busy
# with anything else, each elementwise op waits for the slowest thread (a 40 us op can take
# milliseconds). One thread keeps the suite fast and its timing steady; subprocess tests use
# the defaults.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """tests/data: the reference outputs of the original implementations, with their images."""
    return REFERENCE_DIR


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "weights(*nets): needs the pretrained trunks of these nets (alex, vgg, squeeze); "
        "skips, naming the file and how to get it, where one is absent (helpers.requires_weights)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("weights"):
        skip_without_weights(*mark.args)


# ---------------------------------------------------------------- the skip report

_skipped: list[dict[str, str]] = []


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append({"test": report.nodeid, "reason": _skip_reason(report)})


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a whole module skipped (pytest.importorskip, allow_module_level)
        _skipped.append({"test": report.nodeid, "reason": _skip_reason(report)})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(SKIP_REPORT_ENV)
    if path:
        Path(path).write_text(json.dumps({"exitstatus": int(exitstatus), "collected": session.testscollected,
                                          "skipped": _skipped}, indent=1) + "\n")


def requires_cuda() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is available")


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory) -> Path:
    """A synthetic BAPPS of FIXTURE_SIZE items per split, built once per test session."""
    from helpers import FIXTURE_SIZE, synthetic_bapps_root

    return synthetic_bapps_root(tmp_path_factory, size=FIXTURE_SIZE)


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """The split cache in this test's own folder."""
    from percepmetric.data import bapps

    path = tmp_path / "cache"
    monkeypatch.setenv(bapps.ENV_CACHE, str(path))
    return path


@pytest.fixture(scope="module")
def small_triplets():
    """Ten 2AFC sentinel triplets as one training split (for the trainers' tests)."""
    from percepmetric.data.bapps import TwoAFCSplit
    from percepmetric.data.fixtures import sentinel_triplets
    from percepmetric.train.data import join_splits

    ref, p0, p1, judge = sentinel_triplets(10, "mix", seed=3)
    return join_splits([("mix", TwoAFCSplit("mix", ref, p0, p1, judge, []))])
