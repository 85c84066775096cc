"""What pyproject.toml promises users who install percepmetric next to their own stack."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

# Exact pins a user's resolver must accept, each for a reason pyproject.toml states beside it.
# They carry the LPIPS v0.1 calibration, DISTS's alpha-beta, ST-LPIPS's networks: the files are the data;
# and, in the test extra only, the reference releases whose numbers the parity tests reproduce
# (the compression and rendering metrics').
DATA_PINS = {"lpips", "dists-pytorch", "stlpips-pytorch", "ssimulacra2", "flip-evaluator", "cvvdp"}


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return project["dependencies"] + extras


def _name_and_operators(requirement: str) -> tuple[str, list[str]]:
    """``"torch>=2.1,<3"`` -> ``("torch", [">=", "<"])`` (environment markers ignored)."""
    spec = requirement.split(";")[0]
    name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    assert name, requirement
    return name.group(1).lower(), re.findall(r"(===|==|~=|!=|<=|>=|<|>)", spec[name.end():])


def test_no_dependency_is_capped_from_above():
    # A cap such as torch<=2.14.1 makes percepmetric uninstallable next to a newer torch.
    capped = [r for r in _requirements() if {"<", "<=", "~="} & set(_name_and_operators(r)[1])]
    assert not capped, capped


def test_exact_pins_are_only_the_data_carriers():
    pinned = {_name_and_operators(r)[0] for r in _requirements() if {"==", "==="} & set(_name_and_operators(r)[1])}
    assert pinned <= DATA_PINS, pinned - DATA_PINS


def test_torch_and_torchvision_keep_their_lower_bounds():
    operators = dict(_name_and_operators(r) for r in _requirements())
    assert operators["torch"] == [">="] and operators["torchvision"] == [">="]
