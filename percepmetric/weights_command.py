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


#: Longest line the command prints (the docs promise under 100 columns).
LINE_WIDTH = 99
INDENT = "  "


def _paragraph(text: str, first: str = "", rest: str = INDENT) -> list[str]:
    """``text`` wrapped to :data:`LINE_WIDTH` (first line indented by ``first``, the others by
    ``rest``), never inside a word, a path, a `command in backticks` or a ``pip install ...``
    command (so that each can be read and copied whole)."""
    import re
    import textwrap

    # NUL stands for a space not to break at while wrapping
    keep = re.sub(r"`[^`]*`|pip install \S+", lambda m: m.group(0).replace(" ", "\0"), text)
    lines = textwrap.wrap(keep, width=LINE_WIDTH, initial_indent=first, subsequent_indent=rest,
                          break_long_words=False, break_on_hyphens=False)
    return [line.replace("\0", " ") for line in lines]


def missing_weights_advice(rows: list[dict]) -> list[str]:
    """How to get the files :func:`weights_table` found missing, in lines of at most
    :data:`LINE_WIDTH` columns: a paragraph per kind of file, its first line unindented; a folder
    to copy files into is on a line of its own, whole."""
    import os

    import torch

    lines: list[str] = []
    if any(r["kind"] == "trunk" and not r["present"] for r in rows):
        home = ("the folder above is $TORCH_HOME/hub/checkpoints" if os.environ.get("TORCH_HOME")
                else "TORCH_HOME is not set")
        lines += _paragraph("Missing trunks are downloaded on first use where there is internet (e.g. "
                            "`percepmetric distance a.png b.png -m lpips`). Offline, copy them into")
        lines.append(f"{INDENT * 2}{torch.hub.get_dir()}/checkpoints/")
        lines += _paragraph(f"from a machine that has them, or point TORCH_HOME at a folder holding "
                            f"hub/checkpoints/<file> ({home}).", INDENT)
    if any(r["kind"] == "calibration" and not r["present"] for r in rows):
        lines += _paragraph("Missing calibration files ship with the lpips package: pip install lpips==0.1.4, or "
                            "set PERCEPMETRIC_LPIPS_WEIGHTS to a folder holding v0.1/<net>.pth.")
    if any(r["kind"] == "alpha_beta" and not r["present"] for r in rows):
        lines += _paragraph("DISTS's alpha/beta ship with the dists-pytorch package (MIT): pip install "
                            "dists-pytorch==0.1, or set PERCEPMETRIC_DISTS_WEIGHTS to the path of its weights.pt.")
    if any(r["kind"].startswith("network:") and not r["present"] for r in rows):
        lines += _paragraph("ST-LPIPS's networks ship with the stlpips-pytorch package (BSD-2, 64 MB, optional): "
                            "pip install stlpips-pytorch==0.0.2 (from a clone: pip install -e '.[stlpips]'), or set "
                            "PERCEPMETRIC_STLPIPS_WEIGHTS to a folder holding <net>_shift_tolerant.pth.")
    return lines


def table_lines(rows: list[dict]) -> list[str]:
    """The files of :func:`weights_table` grouped by folder, under a title line: each folder whole
    on a line of its own (a user copies it; folders come in the order of their first file), then
    one indented line per file: net, kind, present or MISSING, file name. Lines fit
    :data:`LINE_WIDTH` unless a folder's name alone is longer."""
    from pathlib import Path

    folders: dict[str, list[dict]] = {}
    for r in rows:
        folders.setdefault(str(Path(r["path"]).parent), []).append(r)
    kind_width = max(len(r["kind"]) for r in rows)
    missing = " (how to get the MISSING ones: below)" if not all(r["present"] for r in rows) else ""
    lines = [f"Weight files, under the folder holding them{missing}:"]
    for folder, found in folders.items():
        lines.append(f"{folder}/")
        for r in found:
            state = "present" if r["present"] else "MISSING"
            lines.append(f"{INDENT}{r['net']:<8} {r['kind']:<{kind_width}}  {state:<8} {Path(r['path']).name}")
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
    click.echo("\n".join(table_lines(rows)))
    advice = missing_weights_advice(rows)
    if advice:
        click.echo("")
        click.echo("\n".join(advice))


COMMANDS: list = [weights_command]
