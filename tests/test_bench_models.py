"""``bench --model KIND:PATH`` reaches models under evaluation through the plugin interface of
``percepmetric.bench.models`` (entry points of the group ``percepmetric.models``), never by
importing an application: DeePSiM is one installed kind, a third-party kind works the same way."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from torch import nn

from percepmetric.bench import models as M
from percepmetric.errors import InputError

from helpers import run_cli


class FakeKind:
    """A third-party kind of model: records what bench hands it and returns a report."""

    name = "fake"
    example = "fake:PATH"
    calls: list[tuple[list[str], str, list[str], Path | None, bool]] = []

    def evaluate(self, paths: Sequence[str], data_dir: str, metrics: Sequence[nn.Module], out_dir: Path | None,
                 plot: bool) -> str:
        FakeKind.calls.append((list(paths), data_dir, [type(m).__name__ for m in metrics], out_dir, plot))
        return "fake report"


FAKE_KIND = FakeKind()
NOT_A_KIND = object()


@pytest.fixture
def with_fake_kind(monkeypatch):
    """The installed entry points plus ``fake`` (this module's FAKE_KIND), ``broken`` (no kind)
    and ``missing`` (a module that does not exist)."""
    installed = M._installed()
    extra = {
        "fake": EntryPoint("fake", f"{__name__}:FAKE_KIND", M.ENTRY_POINT_GROUP),
        "broken": EntryPoint("broken", f"{__name__}:NOT_A_KIND", M.ENTRY_POINT_GROUP),
        "missing": EntryPoint("missing", "no_such_module_here:KIND", M.ENTRY_POINT_GROUP),
    }
    monkeypatch.setattr(M, "_installed", lambda: {**installed, **extra})
    FakeKind.calls.clear()
    return FakeKind.calls


def test_deepsim_is_an_installed_kind():
    from percepmetric.deepsim.evaluate import DEEPSIM_MODELS

    assert "deepsim" in M.known_kinds()
    kind = M.load_kind("deepsim")
    assert kind is DEEPSIM_MODELS and isinstance(kind, M.ModelKind)
    assert kind.example == "deepsim:PATH/TO/final.pt"


def test_a_third_party_kind_is_reached_through_entry_points(capsys, with_fake_kind, tmp_path):
    code, out, err = run_cli(capsys, "bench", "--model", "fake:some/run.bin", "--model", "fake:other.bin",
                             "--data", tmp_path, "-m", "l2", "-m", "psnr", "--out", tmp_path / "out", "--plot")
    assert code == 0, err
    assert out.strip() == "fake report"
    assert with_fake_kind == [(["some/run.bin", "other.bin"], str(tmp_path), ["L2", "PSNR"], tmp_path / "out", True)]


def test_unknown_kind_is_one_line_naming_the_known_kinds(capsys, tmp_path):
    # the message bench --model gave before kinds were plugins, kept word for word
    code, _, err = run_cli(capsys, "bench", "--model", "lpips:x", "--data", tmp_path, "-m", "l2")
    assert code == 2 and err == "percepmetric: error: --model 'lpips:x': expected deepsim:PATH/TO/final.pt\n"


def test_unknown_kind_lists_every_installed_kind(with_fake_kind):
    with pytest.raises(InputError, match=r"expected deepsim:PATH/TO/final.pt or fake:PATH$"):
        M.split_model_spec("lpips:x", ["deepsim", "fake"])


def test_a_broken_plugin_is_one_line(capsys, with_fake_kind, tmp_path):
    with pytest.raises(InputError, match="NOT_A_KIND of kind 'broken' does not implement"):
        M.load_kind("broken")
    code, _, err = run_cli(capsys, "bench", "--model", "missing:x", "--data", tmp_path, "-m", "l2")
    assert code == 2 and err.count("\n") == 1 and "of kind 'missing' does not load (ModuleNotFoundError" in err


def test_models_of_two_kinds_are_one_line(capsys, with_fake_kind, tmp_path):
    code, _, err = run_cli(capsys, "bench", "--model", "fake:a", "--model", "deepsim:b.pt", "--data", tmp_path,
                           "-m", "l2")
    assert code == 2 and err.count("\n") == 1 and "one kind per run (got deepsim, fake)" in err
    assert with_fake_kind == []


def test_a_bare_path_belongs_to_the_only_kind(tmp_path):
    assert M.split_model_spec("run/final.pt", ["deepsim"]) == ("deepsim", "run/final.pt")
    assert M.split_model_spec("deepsim:run/final.pt", ["deepsim"]) == ("deepsim", "run/final.pt")
    assert M.split_model_spec("C:/runs/final.pt", ["deepsim"]) == ("deepsim", "C:/runs/final.pt")
    odd = tmp_path / "with:colon.pt"
    odd.touch()
    assert M.split_model_spec(str(odd), ["deepsim"]) == ("deepsim", str(odd))


def test_no_installed_kind_is_one_line():
    with pytest.raises(InputError, match="no kind of model is installed"):
        M.split_model_spec("deepsim:x.pt", [])


def test_bench_reaches_deepsim_through_its_plugin(capsys, tmp_path):
    # deepsim's own one-line message for a missing checkpoint, through DEEPSIM_MODELS
    code, _, err = run_cli(capsys, "bench", "--model", f"deepsim:{tmp_path / 'none.pt'}", "--data", tmp_path,
                           "-m", "l2")
    assert code == 2 and err.count("\n") == 1 and "none.pt" in err and "no such checkpoint" in err
