"""percepmetric.evaluation: the one loop that runs a metric over batches of pairs or triplets,
under the benchmark, the evaluation of a trained LPIPS and DeePSiM's table alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from percepmetric.evaluation import distances_in_batches, metric_distances
from percepmetric.registry import create_metric

N, SIZE = 7, 16


@pytest.fixture(scope="module")
def codes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three uint8 ``(N,H,W,3)`` batches, as image files decode."""
    rng = np.random.default_rng(0)
    return tuple(rng.integers(0, 256, (N, SIZE, SIZE, 3), dtype=np.uint8) for _ in range(3))


def _floats(rows: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(rows).permute(0, 3, 1, 2).float().div(255).to(device)


def _direct_mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """L2 of the LPIPS paper, from its definition: the mean squared difference of x / 255."""
    return ((a / 255.0 - b / 255.0) ** 2).mean(axis=(1, 2, 3))


def test_pairs_and_triplets_in_any_batch_size_give_the_direct_distances(codes):
    ref, p0, p1 = codes
    metric = create_metric("l2")
    for batch_size in (1, 3, N):
        (d,) = metric_distances(metric, (p0, p1), batch_size=batch_size, prepare=_floats)
        np.testing.assert_allclose(d, _direct_mse(p0, p1), rtol=1e-5)
        d0, d1 = metric_distances(metric, (ref, p0, p1), batch_size=batch_size, prepare=_floats)
        np.testing.assert_allclose(d0, _direct_mse(ref, p0), rtol=1e-5)
        np.testing.assert_allclose(d1, _direct_mse(ref, p1), rtol=1e-5)
        assert d0.dtype == np.float64


def test_similarity_metrics_become_distances_and_reduction_does_not_apply(codes):
    """The loop collects one distance per item (``to_distance`` of ``values``), whatever the
    metric's ``reduction``: SSIM gives DSSIM = (1 - SSIM) / 2 per pair."""
    _, p0, p1 = codes
    ssim = create_metric("ssim", convention="lpips")
    (d,) = metric_distances(create_metric("ssim", convention="lpips", reduction="mean"), (p0, p1), batch_size=3,
                            prepare=_floats)
    expected = (1 - ssim.values(_floats(p0, torch.device("cpu")), _floats(p1, torch.device("cpu")))) / 2
    np.testing.assert_allclose(d, expected.double().numpy(), rtol=1e-6)


def test_eight_bit_path_threads_progress_and_start(codes):
    """The benchmark's use: uint8 batches through the 8-bit entry points, several at once in
    threads, from where an interrupted run stopped, with a progress count per batch."""
    ref, p0, p1 = codes
    metric = create_metric("ssim", convention="lpips")

    def uint8(rows, device):
        return torch.from_numpy(np.ascontiguousarray(rows)).to(device)

    serial = metric_distances(metric, (ref, p0, p1), batch_size=2, prepare=uint8, eight_bit=True)
    seen: list[int] = []
    threaded = metric_distances(metric, (ref, p0, p1), batch_size=2, prepare=uint8, eight_bit=True, workers=2,
                                progress=seen.append)
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)
    assert seen == [2, 2, 2, 1] and torch.get_num_threads() == 1  # restored (the suite runs single-threaded)
    as_float = metric_distances(metric, (ref, p0, p1), batch_size=N, prepare=_floats)
    np.testing.assert_allclose(serial[0], as_float[0], rtol=1e-5, atol=1e-7)
    batches = list(distances_in_batches(metric, (ref, p0, p1), batch_size=2, device=torch.device("cpu"),
                                        prepare=uint8, eight_bit=True, start=4))
    assert [(b.first, b.stop) for b in batches] == [(4, 6), (6, 7)]
    np.testing.assert_array_equal(np.concatenate([b.distances[1] for b in batches]), serial[1][4:])


def test_results_are_plain_numpy_after_inference_mode(codes):
    _, p0, p1 = codes
    (d,) = metric_distances(create_metric("l2"), (torch.from_numpy(p0).permute(0, 3, 1, 2) / 255.0,
                                                  torch.from_numpy(p1).permute(0, 3, 1, 2) / 255.0), batch_size=4)
    assert isinstance(d, np.ndarray) and d.shape == (N,)
    assert metric_distances(create_metric("l2"), (p0[:0], p1[:0]), batch_size=4, prepare=_floats)[0].shape == (0,)
