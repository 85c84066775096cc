"""The harness that checks metrics against people (BAPPS 2AFC and JND, Zhang et al. 2018).

Scores (:mod:`percepmetric.stats`, which train and deepsim use too; exported here as documented
in docs/bench.md): :func:`two_afc_score`, :func:`human_ceiling`, :func:`jnd_map`,
:func:`bootstrap_ci`, :func:`paired_test`. Running metrics over splits (:mod:`.runner`):
:func:`compute_distances`, :func:`run_benchmark`. Tables and figures: :mod:`.report`.
"""

from ..stats import (
    PairedTest,
    average_precision,
    bootstrap_ci,
    human_ceiling,
    jnd_map,
    paired_test,
    precision_recall,
    two_afc_credit,
    two_afc_score,
)
from .runner import BenchResult, DistanceStore, compute_distances, run_benchmark

__all__ = [
    "BenchResult",
    "DistanceStore",
    "PairedTest",
    "average_precision",
    "bootstrap_ci",
    "compute_distances",
    "human_ceiling",
    "jnd_map",
    "paired_test",
    "precision_recall",
    "run_benchmark",
    "two_afc_credit",
    "two_afc_score",
]
