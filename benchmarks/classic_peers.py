"""The classic suite against the authors' code, piq and pyiqa, on the same images, in one run.

For each metric: every whole-image reference pair of its committed reference values
(``tests/data/<metric>/``, computed by the authors' MATLAB code under Octave; crops and
non-default options are left out), read from the 8-bit files, ``x`` the reference. Printed as
the markdown table of docs/metrics.md (``metric | pair | authors' code | percepmetric | piq |
pyiqa``), then, per metric, the largest difference of each library from the authors' code.
A library without the metric, or not installed, shows ``-``.

Peers are called as their users call them, on ``[0, 1]`` floats, the distorted image first and
the reference second (both libraries' order: piq's ``x`` is the prediction and ``y`` the target,
pyiqa's FR metrics take ``(distorted, reference)``; it matters for VIF-P, IW-SSIM, MDSI, MAD):
``piq.<fn>(dist, ref, data_range=1.0, reduction="none")`` on the file's channels (a grey file
repeated to three channels only where piq refuses one, as its VSI does) and
``pyiqa.create_metric(name, as_loss=False)(dist, ref)`` on RGB (it refuses one channel). Their own
conventions (colour conversion, resizing, rounding) are what the differences measure.

Usage: ``python benchmarks/classic_peers.py [--metrics gmsd,vsi]``.
"""

from __future__ import annotations

import argparse
import csv
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"

#: name -> (piq function and keyword arguments or None, pyiqa name or None).
PEERS: dict[str, tuple[tuple[str, dict] | None, str | None]] = {
    "gmsd": (("gmsd", {}), "gmsd"),
    "haarpsi": (("haarpsi", {}), None),
    "mdsi": (("mdsi", {}), None),
    "srsim": (("srsim", {"chromatic": False}), None),
    "vsi": (("vsi", {}), "vsi"),
    "vif": (None, "vif"),
    "vifp": (("vif_p", {}), None),
    "iw_ssim": (("information_weighted_ssim", {}), None),
    "cw_ssim": (None, "cw_ssim"),
    "nlpd": (None, "nlpd"),
    "dss": (("dss", {}), None),
    "mad": (None, "mad"),
}
#: Unbounded metrics, compared in relative terms (the issue's parity target: 1e-4 relative).
UNBOUNDED = {"mad", "nlpd"}
#: Metrics whose reference values live in another metric's folder (a ``metric`` column says which).
FOLDER = {"vifp": "vif"}


def _rows(name: str) -> Iterator[tuple[Path, Path, float]]:
    """(reference file, distorted file, authors' value) of each whole-image pair with default options."""
    if name == "gmsd":
        for r in csv.DictReader(open(DATA / "gmsd" / "reference.csv")):
            yield DATA / r["reference"], DATA / r["distorted"], float(r["value"])
    elif name == "haarpsi":
        for r in csv.DictReader(open(DATA / "haarpsi" / "expected.csv")):
            if r["subsample"] == "1":
                folder = DATA / "haarpsi"
                yield folder / f"{r['reference']}.png", folder / f"{r['distorted']}.png", float(r["haarpsi_m"])
    elif name == "mdsi":
        for r in csv.DictReader(open(DATA / "mdsi" / "expected.csv")):
            if (r["first_row"], r["last_row"], r["first_col"], r["last_col"]) == ("1", "0", "1", "0"):
                yield DATA / r["reference"], DATA / r["distorted"], float(r["mdsi_sum"])
    else:
        for r in csv.DictReader(open(DATA / FOLDER.get(name, name) / "expected.csv")):
            if not r.get("crop") and r.get("metric", name) == name:
                yield DATA / r["reference"], DATA / r["distorted"], float(r["value"])


def _peer_functions(name: str) -> dict[str, Callable[[torch.Tensor, torch.Tensor], float] | None]:
    piq_spec, pyiqa_name = PEERS.get(name, (None, None))
    peers: dict[str, Callable | None] = {"piq": None, "pyiqa": None}
    if piq_spec is not None:
        try:
            import piq
        except ImportError:
            pass
        else:
            fn, kwargs = getattr(piq, piq_spec[0]), piq_spec[1]

            def call_piq(x: torch.Tensor, y: torch.Tensor) -> float:
                try:
                    return float(fn(x, y, data_range=1.0, reduction="none", **kwargs)[0])
                except (AssertionError, ValueError, RuntimeError):  # one channel refused
                    return float(fn(_rgb(x), _rgb(y), data_range=1.0, reduction="none", **kwargs)[0])

            peers["piq"] = call_piq
    if pyiqa_name is not None:
        try:
            import pyiqa
        except ImportError:
            pass
        else:
            metric = pyiqa.create_metric(pyiqa_name, device="cpu", as_loss=False)
            peers["pyiqa"] = lambda x, y: float(metric(_rgb(x), _rgb(y)).reshape(-1)[0])
    return peers


def _rgb(image: torch.Tensor) -> torch.Tensor:
    return image.expand(-1, 3, -1, -1).contiguous() if image.shape[1] == 1 else image


def compare(name: str) -> list[dict]:
    import percepmetric
    from percepmetric.io import load_image

    ours = percepmetric.create_metric(name)
    peers = _peer_functions(name)
    rows = []
    for ref, dist, authors in _rows(name):
        x, y = load_image(ref), load_image(dist)
        values = {"authors": authors, "percepmetric": float(ours(x, y)[0])}
        for peer, fn in peers.items():
            values[peer] = fn(y, x) if fn is not None else None  # (distorted, reference)
        label = f"{ref.parent.name}/{ref.name} / {dist.name}"
        rows.append({"metric": name, "pair": label, **values})
    return rows


def main() -> None:
    import percepmetric

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", default=None, help="comma-separated subset (default: every one in PEERS)")
    args = parser.parse_args()
    wanted = args.metrics.split(",") if args.metrics else list(PEERS)
    names = [m for m in wanted if m in percepmetric.list_metrics()]
    warnings.filterwarnings("ignore")
    print("| metric | pair | authors' code | percepmetric | piq | pyiqa |")
    print("|---|---|---|---|---|---|")
    worst: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for name in names:
            for row in compare(name):
                cells = [f"{row[k]:.6f}" if row[k] is not None else "-"
                         for k in ("authors", "percepmetric", "piq", "pyiqa")]
                print(f"| {name} | {row['pair']} | " + " | ".join(cells) + " |")
                for k in ("percepmetric", "piq", "pyiqa"):
                    if row[k] is not None:
                        gap = abs(row[k] - row["authors"])
                        if name in UNBOUNDED and row["authors"] != 0:  # MAD is exactly 0 where HI is
                            gap /= abs(row["authors"])
                        worst.setdefault(name, {})[k] = max(worst.get(name, {}).get(k, 0.0), gap)
    print()
    print("Largest difference from the authors' code over these pairs (relative for "
          f"{', '.join(sorted(UNBOUNDED))}, absolute for the others):")
    for name, gaps in worst.items():
        print(f"  {name:<8} " + ", ".join(f"{k} {v:.1e}" for k, v in gaps.items()))


if __name__ == "__main__":
    main()
