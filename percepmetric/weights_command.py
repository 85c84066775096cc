"""``percepmetric weights``: which weight files LPIPS, DISTS and ST-LPIPS use, which are present, and where the
missing ones belong. Attached to ``percepmetric`` by ``percepmetric.cli``.

A command, so it lives beside the CLI rather than in ``nets/`` (the core, which never imports
the command line); it reads the core's paths (:mod:`percepmetric.nets.backbones`,
:mod:`percepmetric.metrics.lpips`)."""

from __future__ import annotations

import json

import click


def weights_table() -> list[dict]:
    """For each LPIPS net: the ImageNet trunk file (torchvision cache) and the v0.1 calibration
    file; then DISTS's: the VGG16 trunk (the same file as LPIPS vgg's) and its alpha/beta; then
    ST-LPIPS's: one complete network per net (kind ``network:<net>``), from the optional
    ``stlpips-pytorch`` package."""
    from .metrics.dists import dists_weights_path
    from .metrics.lpips import official_calibration_path
    from .metrics.stlpips import stlpips_weights_path
    from .nets.antialiased import ST_NETS
    from .nets.backbones import NETS, backbone_spec, trunk_weights_path

    rows = []
    for net in NETS:
        trunk = trunk_weights_path(net)
        calib = official_calibration_path(net)
        rows.append({"net": net, "kind": "trunk", "what": f"{backbone_spec(net).builder} ImageNet (torchvision)",
                     "path": str(trunk), "present": trunk.is_file()})
        rows.append({"net": net, "kind": "calibration", "what": "LPIPS v0.1 lin (lpips package)",
                     "path": str(calib), "present": calib.is_file()})
    trunk, alpha_beta = trunk_weights_path("vgg"), dists_weights_path()
    rows.append({"net": "dists", "kind": "trunk", "what": "vgg16 ImageNet (torchvision)",
                 "path": str(trunk), "present": trunk.is_file()})
    rows.append({"net": "dists", "kind": "alpha_beta", "what": "DISTS alpha/beta (dists-pytorch package, MIT)",
                 "path": str(alpha_beta), "present": alpha_beta.is_file()})
    for net in ST_NETS:
        network = stlpips_weights_path(net)
        rows.append({"net": "stlpips", "kind": f"network:{net}",
                     "what": f"ST-LPIPS {net} shift-tolerant network (stlpips-pytorch package, BSD-2, optional)",
                     "path": str(network), "present": network.is_file()})
    return rows


def missing_weights_advice(rows: list[dict]) -> list[str]:
    """How to get the files :func:`weights_table` found missing: one short line per step."""
    import os

    import torch

    lines = []
    if any(r["kind"] == "trunk" and not r["present"] for r in rows):
        home = os.environ.get("TORCH_HOME")
        lines += [
            "Missing trunks are downloaded on first use where there is internet (e.g. `percepmetric",
            "distance a.png b.png -m lpips`). Offline, copy them from a machine that has them into",
            f"{torch.hub.get_dir()}/checkpoints/, or point TORCH_HOME at a folder holding",
            "hub/checkpoints/<file> (TORCH_HOME is " + (f"{home})." if home else "not set)."),
        ]
    if any(r["kind"] == "calibration" and not r["present"] for r in rows):
        lines += [
            "Missing calibration files ship with the lpips package: pip install lpips==0.1.4, or set",
            "PERCEPMETRIC_LPIPS_WEIGHTS to a folder holding v0.1/<net>.pth.",
        ]
    if any(r["kind"] == "alpha_beta" and not r["present"] for r in rows):
        lines += [
            "DISTS's alpha/beta ship with the dists-pytorch package (MIT): pip install dists-pytorch==0.1,",
            "or set PERCEPMETRIC_DISTS_WEIGHTS to the path of its weights.pt.",
        ]
    if any(r["kind"].startswith("network:") and not r["present"] for r in rows):
        lines += [
            "ST-LPIPS's networks ship with the stlpips-pytorch package (BSD-2, 64 MB, optional):",
            "pip install 'percepmetric[stlpips]' (or stlpips-pytorch==0.0.2), or set",
            "PERCEPMETRIC_STLPIPS_WEIGHTS to a folder holding <net>_shift_tolerant.pth.",
        ]
    return lines


@click.command("weights")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def weights_command(as_json: bool) -> None:
    """List the weight files LPIPS, DISTS and ST-LPIPS use: which are present and where; how to get the missing ones.

    Trunks live in torchvision's cache ($TORCH_HOME/hub/checkpoints); a missing one is
    downloaded on first use when there is internet, or can be copied there by hand.
    """
    rows = weights_table()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        state = "present" if r["present"] else "MISSING"
        click.echo(f"{r['net']:<8} {r['kind']:<12} {state:<8} {r['path']}")
    advice = missing_weights_advice(rows)
    if advice:
        click.echo("")
        click.echo("\n".join(advice))


COMMANDS: list = [weights_command]
