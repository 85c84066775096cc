"""A range option never changes a metric's value on images read from files (issue 19).

Images that arrive as integer codes (files, PIL images, uint8 arrays) span the range the metric
was told: ``data_range=255`` reads them as 0..255, LPIPS's ``input_range=(-1,1)`` as -1..1. So
every metric x every range option x every door that reads files gives the value the metric
gives by default, which is also its value on the float tensors ``codes / 255``. Before this,
``distance a.png b.png -m psnr -o data_range=255`` printed 73.5 dB for a pair of 25.4 dB.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import METRIC_TRUNKS, run_cli, skip_without_weights

#: (metric, range options) pairs: every metric with each range option it takes.
RANGE_OPTIONS = [
    ("l2", {"data_range": 255}),
    ("l1", {"data_range": 255}),
    ("psnr", {"data_range": 255}),
    ("ssim", {"data_range": 255}),
    ("ms_ssim", {"data_range": 255}),
    ("fsim", {"data_range": 255}),
    ("gmsd", {"data_range": 255}),
    ("ms_gmsd", {"data_range": 255}),
    ("haarpsi", {"data_range": 255}),
    ("mdsi", {"data_range": 255}),
    ("mad", {"data_range": 255}),
    ("srsim", {"data_range": 255}),
    ("vsi", {"data_range": 255}),
    ("vifp", {"data_range": 255}),
    ("nlpd", {"data_range": 255}),
    ("dss", {"data_range": 255}),
    ("vif", {"data_range": 255}),
    ("iw_ssim", {"data_range": 255}),
    ("cw_ssim", {"data_range": 255}),
    ("butteraugli", {"data_range": 255}),
    ("ssimulacra2", {"data_range": 255}),
    ("cvvdp", {"data_range": 255}),
    ("flip", {"data_range": 255}),
    ("lpips", {"data_range": 255}),
    ("lpips", {"input_range": (-1, 1)}),
    ("stlpips", {"input_range": (-1, 1)}),
    ("dists", {"data_range": 2}),
]
FORMULA_METRICS = ("l2", "l1", "psnr", "ssim", "ms_ssim", "fsim", "gmsd", "ms_gmsd", "haarpsi", "mdsi", "srsim", "vsi",
                   "nlpd", "vifp", "dss", "mad", "vif", "iw_ssim", "cw_ssim", "butteraugli",
                   "ssimulacra2", "cvvdp", "flip")
#: Images every metric takes (IW-SSIM needs 176x176).
SIZE = 176


def _needs(name: str):
    """The metric with default options, or a skip naming the absent pretrained trunk file."""
    from percepmetric import create_metric

    skip_without_weights(*METRIC_TRUNKS.get(name, ()))
    return create_metric(name)


def _cli_spec(name: str, options: dict) -> str:
    return f"{name}:" + ",".join(f"{k}=({v[0]},{v[1]})" if isinstance(v, tuple) else f"{k}={v}"
                                 for k, v in options.items())


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two SIZE x SIZE RGB PNGs (a smooth scene and a noisy, shifted copy), their codes, and folders
    holding them as a pair of folders."""
    from PIL import Image

    rng = np.random.default_rng(19)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    scene = np.stack([128 + 100 * np.sin(xx / 5.0), 128 + 90 * np.cos(yy / 7.0), (xx * yy) % 256], axis=-1)
    a = np.clip(scene, 0, 255).astype(np.uint8)
    b = np.clip(np.roll(scene, 1, axis=1) + rng.normal(0, 12, scene.shape), 0, 255).astype(np.uint8)
    root = tmp_path_factory.mktemp("range")
    for folder in ("A", "B"):
        (root / folder).mkdir()
    Image.fromarray(a).save(root / "A" / "x.png")
    Image.fromarray(b).save(root / "B" / "x.png")
    Image.fromarray(b).save(root / "A" / "y.png")  # a second image for the matrix
    return {"a": a, "b": b, "path_a": root / "A" / "x.png", "path_b": root / "B" / "x.png", "root": root}


def _truth(name: str, images) -> float:
    """The metric's value by default on the float tensors codes / 255."""
    metric = _needs(name)
    x, y = (torch.from_numpy(images[k]).permute(2, 0, 1)[None].float() / 255.0 for k in ("a", "b"))
    return metric(x, y).item()


@pytest.mark.parametrize(("name", "options"), RANGE_OPTIONS)
def test_python_api_doors(name, options, images):
    """create_metric(...)(paths / PIL images / uint8 arrays), percepmetric.distance and the
    functional twin give the default value whatever the declared range."""
    from PIL import Image

    import percepmetric
    from percepmetric import create_metric, functional

    truth = _truth(name, images)
    metric = create_metric(name, **options)
    doors = {
        "paths": (str(images["path_a"]), str(images["path_b"])),
        "PIL": (Image.open(images["path_a"]), Image.open(images["path_b"])),
        "uint8 arrays": (images["a"], images["b"]),
    }
    for door, (x, y) in doors.items():
        assert metric(x, y).item() == pytest.approx(truth, rel=1e-5, abs=1e-6), door
    default = create_metric(name)
    expected_distance = default.to_distance(torch.tensor(truth)).item()
    assert percepmetric.distance(str(images["path_a"]), images["b"], name, **options).item() == \
        pytest.approx(expected_distance, rel=1e-5, abs=1e-7)
    assert getattr(functional, name)(images["a"], str(images["path_b"]), **options).item() == \
        pytest.approx(truth, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(("name", "options"), RANGE_OPTIONS)
def test_float_tensors_in_the_declared_range_give_the_same_value(name, options, images):
    """The meaning the option has for tensors: data in [0, 255] (or [-1, 1]) is that image."""
    from percepmetric import create_metric

    truth = _truth(name, images)
    lo, hi = options.get("input_range", (0, options.get("data_range", 1)))
    x, y = (torch.from_numpy(images[k]).permute(2, 0, 1)[None].double() / 255.0 * (hi - lo) + lo for k in ("a", "b"))
    assert create_metric(name, **options)(x, y).item() == pytest.approx(truth, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(("name", "options"), RANGE_OPTIONS)
def test_cli_two_images_score_and_folders(name, options, images, capsys):
    """distance A B, score REF A B and distance DIR DIR: the option changes no value."""
    truth = _truth(name, images)
    spec = _cli_spec(name, options)
    a, b = images["path_a"], images["path_b"]
    code, out, err = run_cli(capsys, "distance", a, b, "-m", name, "-m", spec, "--json")
    assert code == 0, err
    values = [r["value"] for r in json.loads(out)["results"]]
    assert values == pytest.approx([truth, truth], rel=1e-5, abs=1e-6)

    code, out, err = run_cli(capsys, "score", a, b, a, "-m", spec, "--json")
    assert code == 0, err
    (row,) = json.loads(out)["results"]
    assert row["ref_a"] == pytest.approx(truth, rel=1e-5, abs=1e-6)

    root = images["root"]
    code, out, err = run_cli(capsys, "distance", root / "A", root / "B", "-m", spec, "--json", "--allow-missing",
                             "--no-progress")
    assert code == 0, err
    (pair,) = json.loads(out)["pairs"]
    (value,) = [v for k, v in pair.items() if k not in ("a", "b")]
    assert value == pytest.approx(truth, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(("name", "options"), RANGE_OPTIONS)
def test_matrix_and_pairwise(name, options, images, tmp_path, capsys):
    """matrix DIR and pairwise(list of paths): entries are the default metric's distances."""
    from percepmetric import create_metric, pairwise

    truth = _truth(name, images)
    expected = create_metric(name).to_distance(torch.tensor(truth)).item()
    files = [str(images["path_a"]), str(images["path_b"])]
    for matrix in (pairwise(files, metric=name, **options), pairwise(np.stack([images["a"], images["b"]]),
                                                                     metric=name, **options)):
        assert matrix[0, 1].item() == pytest.approx(expected, rel=1e-5, abs=1e-7)
    folder = tmp_path / "m"
    folder.mkdir()
    for path in files:
        (folder / f"{len(list(folder.iterdir()))}.png").write_bytes(open(path, "rb").read())
    out = tmp_path / "m.npy"
    code, _, err = run_cli(capsys, "matrix", folder, "-m", _cli_spec(name, options), "--out", out, "--no-progress")
    assert code == 0, err
    assert np.load(out)[0, 1] == pytest.approx(expected, rel=1e-5, abs=1e-7)


@pytest.mark.parametrize(("name", "options"), [r for r in RANGE_OPTIONS if r[0] in FORMULA_METRICS + ("lpips",)])
def test_mos_benchmark(name, options, tmp_path):
    """bench --dataset: the per-pair values of a MOS set do not change with the range option."""
    from PIL import Image

    from percepmetric import create_metric
    from percepmetric.bench.mos import compute_mos_values
    from percepmetric.data.mos import load_mos_dataset

    _needs(name)
    rng = np.random.default_rng(5)
    reference = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(reference).save(tmp_path / "ref.png")
    rows = ["distorted,reference,score"]
    for k in range(3):
        noisy = np.clip(reference.astype(int) + rng.integers(-20 * (k + 1), 20 * (k + 1) + 1, reference.shape), 0, 255)
        Image.fromarray(noisy.astype(np.uint8)).save(tmp_path / f"d{k}.png")
        rows.append(f"d{k}.png,ref.png,{5 - k}")
    (tmp_path / "scores.csv").write_text("\n".join(rows) + "\n")
    dataset = load_mos_dataset("csv", tmp_path / "scores.csv")
    default, ranged = compute_mos_values([create_metric(name), create_metric(name, **options)], dataset)
    np.testing.assert_allclose(ranged, default, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("name", "options"), [r for r in RANGE_OPTIONS if r[0] in (
    "l2", "psnr", "ssim", "lpips", "ssimulacra2", "butteraugli", "flip", "cvvdp")])
def test_bapps_benchmark(name, options, fixture_root, tmp_path, capsys):
    """bench on BAPPS: the range option changes no 2AFC or JND score (8-bit codes span the range)."""
    _needs(name)
    scores = {}
    for label, spec in (("default", name), ("ranged", _cli_spec(name, options))):
        out = tmp_path / label
        code, _, err = run_cli(capsys, "bench", "--root", fixture_root, "-m", spec, "--out", out, "--no-progress")
        assert code == 0, err
        import pandas as pd

        scores[label] = pd.read_csv(out / "results.csv")["score"].to_numpy()
    np.testing.assert_allclose(scores["ranged"], scores["default"], rtol=1e-6)


def test_deepsim_generator_evaluation(tmp_path):
    """bench --model deepsim:FILE: a generator's mean distance does not change with the range option."""
    from PIL import Image

    from percepmetric import create_metric
    from percepmetric.deepsim.evaluate import bench_models
    from percepmetric.deepsim.train import DeepSimConfig, train_generator

    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    rng = np.random.default_rng(9)
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (SIZE + 8, SIZE + 8, 3), dtype=np.uint8)).save(train / f"t{k}.png")
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(test / f"v{k}.png")
    config = DeepSimConfig(task="autoencoder", size=SIZE, data=str(train), out=str(tmp_path / "run"), iterations=1,
                           batch_size=2, width=0.125, discriminator_width=0.125, comparator_pretrained=False,
                           checkpoint_every=1, seed=3, loss="image")
    checkpoint = train_generator(config, progress=False)
    names = [name for name, _ in RANGE_OPTIONS if name in FORMULA_METRICS]
    metrics = [create_metric(n, **o) for name, options in RANGE_OPTIONS if name in FORMULA_METRICS
               for n, o in ((name, {}), (name, options))]
    table = bench_models([f"deepsim:{checkpoint}"], str(test), metrics, None, plot=False, device="cpu")
    means = table["mean_distance"].to_numpy()
    # An untrained generator's outputs are nearly flat, where VIF's and VIF-P's ratios of small
    # variances amplify the float32 rounding of ``x * 255`` (1e-7) about 1000-fold, IW-SSIM's
    # information weights about 100-fold; the others keep 1e-5.
    ill_conditioned = {"vif": 1e-3, "vifp": 1e-3, "iw_ssim": 1e-4}
    rtol = np.array([ill_conditioned.get(name, 1e-5) for name in names])
    np.testing.assert_array_less(np.abs(means[1::2] - means[0::2]), rtol * np.abs(means[0::2]) + 1e-9)


@pytest.mark.parametrize("name", ["flip", "butteraugli", "cvvdp"])
def test_distance_map_of_the_metrics_that_draw_one(name, images, tmp_path, capsys):
    """``distance A B -m NAME --map MAP.png``: the metrics whose reference tool gives an error map."""
    target = tmp_path / f"{name}.png"
    code, out, err = run_cli(capsys, "distance", images["path_a"], images["path_b"], "-m", name, "--map", target)
    assert code == 0 and target.stat().st_size > 0, err

