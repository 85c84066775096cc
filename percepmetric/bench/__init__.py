"""The harness that checks metrics against people (BAPPS 2AFC and JND, Zhang et al. 2018).

Pure scores (:mod:`.scores`): :func:`two_afc_score`, :func:`human_ceiling`, :func:`jnd_map`,
:func:`bootstrap_ci`, :func:`paired_test`. Running metrics over splits (:mod:`.runner`):
:func:`compute_distances`, :func:`run_benchmark`. Tables and figures: :mod:`.report`.
"""

from .runner import BenchResult, DistanceStore, compute_distances, run_benchmark
from .scores import (
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

__all__ = [
    "two_afc_score",
    "two_afc_credit",
    "human_ceiling",
    "jnd_map",
    "precision_recall",
    "average_precision",
    "bootstrap_ci",
    "paired_test",
    "PairedTest",
    "compute_distances",
    "run_benchmark",
    "BenchResult",
    "DistanceStore",
]
