"""percepmetric.weights: published weight files found in their carriers and checked by SHA-256,
hashed once per process; the content identity that keys cached results."""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

import pytest
import torch

from percepmetric import WeightsNotFoundError, create_metric, weights
from percepmetric.weights import (
    PUBLISHED_SHA256,
    content_identity,
    dists_alpha_beta_file,
    loaded_file,
    locate,
    lpips_calibration_file,
)

from helpers import requires_weights


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
        return True
    except metadata.PackageNotFoundError:
        return False


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(not _installed("torchmetrics"), reason="torchmetrics is not installed")
@pytest.mark.parametrize("file", [lpips_calibration_file("alex"), lpips_calibration_file("vgg"),
                                  lpips_calibration_file("squeeze"), dists_alpha_beta_file()],
                         ids=["alex", "vgg", "squeeze", "dists"])
def test_torchmetrics_carries_the_published_bytes(file, monkeypatch):
    """torchmetrics' wheel ships byte-identical copies of lpips 0.1.4's calibration files and
    dists-pytorch 0.1's weights.pt; they are found there first."""
    monkeypatch.delenv(file.env, raising=False)
    found = locate(file)
    assert found.found and found.source.startswith("torchmetrics "), found
    assert _sha256(found.path) == file.sha256
    distribution, member = file.carriers[1]  # the original package, where it is installed
    if _installed(distribution):
        original = Path(str(metadata.distribution(distribution).locate_file(member)))
        assert original.read_bytes() == found.path.read_bytes()


def test_a_carrier_with_other_bytes_is_passed_over(monkeypatch):
    """A carrier whose copy has another SHA-256 is not used: the next carrier is, and where none
    has the file, one line names it, its expected hash and how to get it."""
    file = lpips_calibration_file("alex")
    monkeypatch.delenv(file.env, raising=False)
    real = weights.sha256_digest
    first_member = file.carriers[0][1]
    monkeypatch.setattr(weights, "sha256_digest",
                        lambda path: "0" * 64 if str(path).endswith(first_member) else real(path))
    found = locate(file)
    if _installed(file.carriers[1][0]):
        assert found.found and found.source.startswith(file.carriers[1][0]), found
    monkeypatch.setattr(weights, "sha256_digest", lambda path: "0" * 64)
    missing = locate(file)
    assert not missing.found
    message = missing.missing_message()
    assert len(message.splitlines()) == 1
    assert file.sha256 in message and "pip install" in message and "alex.pth" in message
    with pytest.raises(WeightsNotFoundError, match=file.sha256):
        missing.require()


@requires_weights("alex")
def test_a_metric_refuses_when_no_carrier_has_the_published_file(monkeypatch):
    monkeypatch.delenv("PERCEPMETRIC_LPIPS_WEIGHTS", raising=False)
    monkeypatch.setattr(weights, "sha256_digest", lambda path: "0" * 64)
    with pytest.raises(WeightsNotFoundError) as info:
        create_metric("lpips")
    message = str(info.value)
    assert len(message.splitlines()) == 1 and PUBLISHED_SHA256["lpips-v0.1/alex.pth"] in message
    assert "pip install" in message


def test_a_users_own_file_is_taken_unchecked(tmp_path, monkeypatch):
    own = tmp_path / "weights.pt"
    torch.save({"alpha": torch.ones(1475), "beta": torch.ones(1475)}, own)
    monkeypatch.setenv("PERCEPMETRIC_DISTS_WEIGHTS", str(own))
    found = locate(dists_alpha_beta_file())
    assert found.path == own and found.source == "$PERCEPMETRIC_DISTS_WEIGHTS"


def test_each_file_is_hashed_once_per_version(tmp_path, monkeypatch):
    path = tmp_path / "w.bin"
    path.write_bytes(b"one")
    reads = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        reads.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(weights, "open", counting_open, raising=False)
    first = weights.sha256_digest(path)
    assert weights.sha256_digest(path) == first and len(reads) == 1
    path.write_bytes(b"two")  # another version at the same path is read again
    assert weights.sha256_digest(path) != first and len(reads) == 2


def test_content_identity_names_a_changed_file(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"one")
    entry = loaded_file("calibration", path)
    identity = content_identity("m(a=1)", [entry])
    assert identity.startswith("m(a=1)|calibration=blake2b:")
    path.write_bytes(b"other")
    assert "calibration=changed-since-read" in content_identity("m(a=1)", [entry])
    assert content_identity("m(a=1)", []) == "m(a=1)"
