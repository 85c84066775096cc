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
        root = make_mos_fixture("tid2013", tmp_path / "tid", references=3, distortions=6)
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
    # every metric is oriented so that agreeing with the scores is positive; on these distortions
    # (noise, blur, JPEG, contrast at growing levels) each classic metric agrees clearly
    assert all(np.isfinite(v) and v > 0.3 for v in srcc.values()), srcc
