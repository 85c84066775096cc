"""The classic full-reference suite in the MOS benchmark: ``bench --dataset csv:FILE`` on the
embedded MOS set and ``bench --dataset tid2013=DIR`` on a fixture in TID2013's layout, every
classic metric in one run, each with its correlations (the table an IQA paper prints)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_classic_properties import CLASSIC

from percepmetric.data.mos_fixtures import EMBEDDED_CSV, make_mos_fixture, write_embedded_mos
from percepmetric.registry import list_metrics

from helpers import run_cli

N_BOOT = 20


def _classic_args() -> list[str]:
    return [a for name in CLASSIC if name in list_metrics() for a in ("-m", name)]


def _srcc_by_metric(out: str, split: str) -> dict[str, float]:
    payload = json.loads(out)
    return {r["metric"]: r["score"] for r in payload["results"] if r["kind"] == "srcc" and r["split"] == split}


@pytest.mark.parametrize("layout", ["embedded-csv", "tid2013"])
def test_every_classic_metric_correlates_on_a_mos_set(layout, tmp_path, cache, capsys):
    if layout == "tid2013":
        root = make_mos_fixture("tid2013", tmp_path / "tid", references=3, distortions=6, size=(181, 176))
        dataset, split = f"tid2013={root}", "tid2013"
    else:
        root = write_embedded_mos(tmp_path / "embedded")
        dataset, split = f"csv:{root / EMBEDDED_CSV}", None
    code, out, err = run_cli(capsys, "bench", "--dataset", dataset, *_classic_args(), "--bootstrap", N_BOOT,
                             "--json", "--no-progress")
    assert code == 0, err
    payload = json.loads(out)
    splits = {r["split"] for r in payload["results"] if r["kind"] == "srcc" and "/" not in r["split"]}
    srcc = _srcc_by_metric(out, split or splits.pop())
    wanted = [name for name in CLASSIC if name in list_metrics()]
    assert len(srcc) == len(wanted), (sorted(srcc), wanted)
    assert all(np.isfinite(v) for v in srcc.values()), srcc
    if layout == "embedded-csv":
        # oriented so that agreeing with the scores is positive: on the built-in set's 96 pairs
        # (noise, blur, JPEG, a photometric change, each at three strengths) each classic metric
        # agrees clearly (on the 18 pairs of the TID2013 fixture, CW-SSIM and MAD, blind to
        # some of its types, need not)
        assert all(v > 0.3 for v in srcc.values()), sorted(srcc.items(), key=lambda kv: kv[1])


def test_a_metric_larger_than_bapps_patches_is_refused_up_front(fixture_root, cache, capsys):
    """BAPPS patches are 64x64; VIF needs 72x72, IW-SSIM 176x176: one line before any work, saying
    where they can be benchmarked."""
    code, _, err = run_cli(capsys, "bench", "--root", fixture_root, "--split", "val/traditional", "-m", "psnr",
                           "-m", "iw_ssim", "--no-progress")
    assert code == 2 and err.count("\n") == 1, err
    assert "iw_ssim needs 176x176 images, BAPPS patches (val/traditional) are 64x64" in err and "--dataset" in err


#: The compression and rendering metrics (issue 24), those in the registry so far.
COMPRESSION = ("ssimulacra2", "butteraugli", "flip", "cvvdp")


def test_compression_metrics_correlate_on_the_embedded_mos_set(tmp_path, cache, capsys):
    """``bench --dataset csv:FILE -m ssimulacra2 -m butteraugli -m flip -m cvvdp`` on the built-in
    MOS set: each agrees with its scores."""
    wanted = [name for name in COMPRESSION if name in list_metrics()]
    root = write_embedded_mos(tmp_path / "embedded")
    code, out, err = run_cli(capsys, "bench", "--dataset", f"csv:{root / EMBEDDED_CSV}",
                             *[a for name in wanted for a in ("-m", name)], "--bootstrap", N_BOOT, "--json",
                             "--no-progress")
    assert code == 0, err
    payload = json.loads(out)
    split = next(r["split"] for r in payload["results"] if r["kind"] == "srcc")
    srcc = _srcc_by_metric(out, split)
    assert sorted(srcc) == sorted(wanted) and all(v > 0.3 for v in srcc.values()), srcc
