"""Shared test set-up: where ../shared is, and TORCH_HOME pointing at its weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference"
TORCH_HOME = SHARED / "torch_home"

if "TORCH_HOME" not in os.environ and TORCH_HOME.is_dir():
    os.environ["TORCH_HOME"] = str(TORCH_HOME)

# Most test tensors are small: split over several intra-op threads on a machine that is busy
# with anything else, each elementwise op waits for the slowest thread (a 40 us op can take
# milliseconds). One thread keeps the suite fast and its timing steady; subprocess tests use
# the defaults.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data folder {REFERENCE} is missing (it ships in ../shared/reference)")
    return REFERENCE


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
