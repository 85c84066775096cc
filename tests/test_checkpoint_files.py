"""Every ``.pt`` file goes through one atomic writer and one trusted reader (issue 12):
:func:`percepmetric.checkpoints.save_checkpoint` and :func:`~percepmetric.checkpoints.load_checkpoint_file`.
The only other reads are torchvision's of the ImageNet trunks in ``$TORCH_HOME``, and those are
``weights_only`` too. A file holding pickled objects is refused, and nothing in it runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import percepmetric
from percepmetric.errors import InputError, WeightsNotFoundError

PACKAGE = Path(percepmetric.__file__).parent


class _TouchOnLoad:
    """Unpickling this calls ``Path(marker).touch()``: stands in for a payload that runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


def test_torch_save_and_load_appear_in_checkpoints_py_alone():
    offenders = []
    for source in sorted(PACKAGE.rglob("*.py")):
        text = source.read_text()
        name = source.relative_to(PACKAGE).as_posix()
        # A call, not a mention in ``backticks`` of a docstring.
        if name != "checkpoints.py" and re.search(r"(?<!`)torch\.(save|load)\(", text):
            offenders.append(f"{name}: torch.save/torch.load")
        offenders += [f"{name}: {call}" for call in re.findall(r"get_state_dict\([^)]*\)", text)
                      if "weights_only=True" not in call]
    assert offenders == []


def test_an_lpips_weight_file_with_a_pickled_payload_is_refused_unrun(tmp_path):
    from percepmetric.registry import create_metric

    marker, hostile = tmp_path / "MARKER", tmp_path / "weights.pt"
    torch.save({"format": "percepmetric-lpips", "version": 1, "net": _TouchOnLoad(marker)}, hostile)
    with pytest.raises(InputError, match=r"weights\.pt: refused: the file holds pickled Python objects") as info:
        create_metric("lpips", weights=str(hostile))
    assert len(str(info.value).splitlines()) == 1 and not marker.exists()


def test_a_calibration_file_with_a_pickled_payload_is_refused_unrun(tmp_path, monkeypatch):
    from percepmetric.metrics.lpips import load_official_calibration, official_calibration_path

    monkeypatch.setenv("PERCEPMETRIC_LPIPS_WEIGHTS", str(tmp_path))
    path = official_calibration_path("alex")
    path.parent.mkdir(parents=True)
    marker = tmp_path / "MARKER"
    torch.save({"lin0.model.1.weight": _TouchOnLoad(marker)}, path)
    with pytest.raises(InputError, match="refused: the file holds pickled Python objects") as info:
        load_official_calibration("alex")
    assert len(str(info.value).splitlines()) == 1 and not marker.exists()


def test_a_trunk_file_in_torch_home_with_a_pickled_payload_is_not_run(tmp_path, monkeypatch):
    from percepmetric.nets.backbones import load_pretrained_features, trunk_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    path = trunk_weights_path("alex")
    path.parent.mkdir(parents=True)
    marker = tmp_path / "MARKER"
    torch.save({"features.0.weight": _TouchOnLoad(marker)}, path)
    with pytest.raises(WeightsNotFoundError, match=re.escape(path.name)) as info:
        load_pretrained_features("alex")
    assert not marker.exists()
    # One line, in words, not torch's many-line message (issue 20, item 9).
    assert len(str(info.value).splitlines()) == 1 and "pickled Python objects" in str(info.value)


@pytest.mark.parametrize("damage", ["random bytes", "truncated zip"])
def test_a_damaged_trunk_file_in_torch_home_is_one_line(tmp_path, monkeypatch, damage):
    from percepmetric.nets.backbones import load_pretrained_features, trunk_weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    path = trunk_weights_path("alex")
    path.parent.mkdir(parents=True)
    if damage == "random bytes":
        path.write_bytes(bytes(range(256)) * 4)
    else:
        torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, path)
        path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(WeightsNotFoundError, match=re.escape(path.name)) as info:
        load_pretrained_features("alex")
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "damaged or truncated" in message and len(message) < 400
