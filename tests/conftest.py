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

# Two cores here: keep tests from oversubscribing them.
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data folder {REFERENCE} is missing (it ships in ../shared/reference)")
    return REFERENCE


def requires_cuda():
    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; none is present on this machine")
