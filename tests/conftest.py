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

# Most test tensors are small: with two intra-op threads on a 2-core machine that is doing
# anything else, each elementwise op waits on the other thread (measured: 6 ms instead of
# 40 us). One thread keeps the suite fast and its timing steady; subprocess tests use defaults.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data folder {REFERENCE} is missing (it ships in ../shared/reference)")
    return REFERENCE


def requires_cuda():
    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is present on this machine")
