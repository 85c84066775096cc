"""The ``percepmetric`` command: thin click wrappers around the library.

Parse -> call the library -> format. :func:`main` is the one place that turns a
:class:`PercepmetricError` (or a usage error) into one line on stderr and exit code 2.
Command groups of later parts (bench, train, deepsim) live next to their code and are
attached here, each imported when it is first used: the plain install (no extras) runs
``distance``, ``score``, ``metrics`` and ``weights`` (percepmetric/extras.py).
"""

from __future__ import annotations

import importlib
import json
import math
import signal
import sys
import threading
from pathlib import Path

import click
import torch

from .cli_options import (
    Unavailable,
    build_available_metrics,
    build_metrics,
    device_option,
    max_pixels_option,
    metric_option_flags,
    no_progress_option,
)
from .devices import resolve_device
from .errors import InputError, PercepmetricError
from .extras import MissingExtraError, missing_extra, require
from .registry import distance_label, metric_label


def _missing_extra_command(name: str, error: MissingExtraError) -> click.Command:
    """A stand-in for command ``name`` whose module needs an extra that is not installed: listed
    in ``--help`` with the ``pip install`` line, and any call (``--help`` too) is that one line."""

    def refuse(args) -> None:
        raise error

    return click.Command(name, callback=refuse, add_help_option=False, short_help=f"[{error}]",
                         params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
                         context_settings={"ignore_unknown_options": True, "allow_extra_args": True})


class _LazyCommands(dict):
    """The command table of :data:`cli`: a command of a later part (bench, train, deepsim, ...)
    is imported when it is first looked up, so that ``distance``, ``score``, ``metrics`` and
    ``weights`` never import the harness (whose modules need the ``bench`` extra). Each part
    keeps its commands next to its code and lists them in ``COMMANDS``."""

    def __missing__(self, name: str) -> click.Command:
        module_name = _COMMAND_MODULES.get(name)
        if module_name is None:
            raise KeyError(name)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            error = missing_extra(exc, f"`percepmetric {name}`", extra="bench")
            if error is None:
                raise
            return _missing_extra_command(name, error)
        for command in module.COMMANDS:
            if command.name is not None:
                self.setdefault(command.name, command)
        return self[name]


class _Cli(click.Group):
    """The ``percepmetric`` group, its later parts' commands imported on first use (:class:`_LazyCommands`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _LazyCommands(self.commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        try:
            return self.commands[cmd_name]
        except KeyError:
            return None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(_COMMAND_MODULES))


#: Command name -> the module whose ``COMMANDS`` list holds it.
_COMMAND_MODULES = {
    "weights": "percepmetric.weights_command",
    "matrix": "percepmetric.matrix_command",
    "fid": "percepmetric.fid_command",
    "bench": "percepmetric.bench.commands",
    "make-fixture": "percepmetric.bench.commands",
    "download-bapps": "percepmetric.bench.commands",
    "download-mos": "percepmetric.data.download_mos",
    "train": "percepmetric.train.commands",
    "deepsim": "percepmetric.deepsim.commands",
}


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="percepmetric")
def cli() -> None:
    """Perceptual image distances, and how well they agree with people."""


def _load_pair_compatible(paths: list[str], device: torch.device | None = None,
                          max_pixels: int | None = None) -> list[torch.Tensor]:
    from .io import load_image

    images = [load_image(p, max_pixels=max_pixels) for p in paths]
    first = images[0]
    for path, img in zip(paths[1:], images[1:]):
        if img.shape[-2:] != first.shape[-2:]:
            raise InputError(
                f"{path}: size {img.shape[-1]}x{img.shape[-2]} differs from {paths[0]} "
                f"({first.shape[-1]}x{first.shape[-2]})"
            )
    # A grey image compared with a colour one: repeat grey to three channels.
    if any(img.shape[1] == 3 for img in images):
        images = [img.expand(-1, 3, -1, -1) if img.shape[1] == 1 else img for img in images]
    return [img.to(device) for img in images] if device is not None else images


def _fmt(value: float, unit: str = "") -> str:
    return f"{value:.6g}" + (f" {unit}" if unit else "")


def _json_number(value: float) -> float | None:
    """JSON has no infinity: an infinite value (PSNR of identical images) is written as null."""
    return value if math.isfinite(value) else None


def _dump_json(document: dict) -> str:
    # allow_nan=False: a non-finite number that slipped through fails here, not in a reader's parser.
    return json.dumps(document, indent=2, allow_nan=False)


def _values_or_reason(metric, pairs) -> tuple[list[torch.Tensor] | None, str | None]:
    """The metric's values on each ``(x, y)`` pair of images read from files (in [0, 1]), or why
    it cannot run on these images.

    The images are handed over in the metric's declared input range (``data_range=255``: 0..255),
    as every door that reads files does (:func:`percepmetric.io.to_value_range`). A metric that
    cannot take the images (too small for its window, grey images for FSIMc) raises InputError;
    its reason goes in the table in place of numbers, so the metrics that can run still report theirs.
    """
    from .io import to_value_range

    try:
        return [metric(to_value_range(x, metric.value_range), to_value_range(y, metric.value_range))
                for x, y in pairs], None
    except InputError as exc:
        reason = str(exc)
        prefix = f"{metric.name}: "
        return None, reason[len(prefix):] if reason.startswith(prefix) else reason


def _unavailable_rows(unavailable, fields: dict) -> list[dict]:
    """Table rows (``fields`` all None) for chosen metrics that could not be built here."""
    return [{**dict.fromkeys(fields), "metric": u.label, "applicable": False, "reason": u.reason}
            for u in unavailable]


def _short_reason(row: dict, unavailable) -> str:
    """The reason a table shows for a metric that did not run: a missing weight file's (or
    extra's) long message is said in full on stderr after the table (:func:`_explain_unavailable`)."""
    for u in unavailable:
        if u.label == row["metric"]:
            if "pip install 'percepmetric[" in u.reason:
                return "it needs an extra the plain install leaves out (see below)"
            return "its weights could not be loaded here (see below)"
    return row["reason"]


def _explain_unavailable(unavailable) -> None:
    for u in unavailable:
        click.echo(f"percepmetric: {u.label}: {u.reason}", err=True)


def _require_one_result(rows: list[dict], unavailable) -> None:
    """Exit 2 (one line) when no chosen metric could run; otherwise the others' reasons are shown."""
    if not any(r["applicable"] for r in rows):
        reasons = "; ".join(f"{r['metric']}: {r['reason']}" for r in rows)
        where = "" if unavailable else " on these images"
        raise InputError(f"no chosen metric can run{where} ({reasons})")


def _check_map_target(path: str) -> Path:
    """The ``--map`` file, checked before any work: a .png whose folder can be written."""
    from .io import prepare_output_file

    return prepare_output_file(path, (".png",), option="--map")


def _metrics_with_maps() -> list[str]:
    from .registry import list_metrics, metric_class

    return [name for name in list_metrics() if hasattr(metric_class(name), "distance_map")]


def _map_metric(built: list):
    """The one chosen metric whose per-pixel distance map ``--map`` draws."""
    lacking = [m for m in built if not hasattr(m, "distance_map")]
    if lacking:
        raise InputError(f"--map: {metric_label(lacking[0])} has no per-pixel distance map "
                         f"(metrics with one: {', '.join(_metrics_with_maps())}); use -m lpips")
    if len(built) != 1:
        raise InputError("--map draws the map of one metric; choose it with a single -m")
    return built[0]


# ---------------------------------------------------------------- commands

@cli.command("metrics")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def metrics_command(as_json: bool) -> None:
    """List the registered metrics, their direction and input range."""
    from .registry import describe_metric, list_metrics

    rows = [describe_metric(name) for name in list_metrics()]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=repr))
        return
    import textwrap

    # A metric's summary, then its direction, whether x is the reference, its input range, what
    # it does with colour and its smallest size (default options), each wrapped under 100 columns.
    width = max(len(r["name"]) for r in rows)
    indent = " " * (width + 2)
    for r in rows:
        direction = "lower is better" if r["lower_is_better"] else "higher is better"
        click.echo(textwrap.fill(r["summary"], width=99, initial_indent=f"{r['name']:<{width}}  ",
                                 subsequent_indent=indent))
        order = "symmetric" if r["symmetric"] else "x is the reference"
        size = f"; at least {r['min_size']}x{r['min_size']}" if r["min_size"] > 1 else ""
        click.echo(textwrap.fill(f"{direction}, {order}; input {r['input_range']}; {r['accepts']}{size}", width=99,
                                 initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False))


@cli.command("distance")
@click.argument("image_a", type=click.Path())
@click.argument("image_b", type=click.Path())
@metric_option_flags
@device_option
@click.option("--map", "map_path", default=None, metavar="FILE.png",
              help="Also save a figure of where the images differ: the per-pixel distance map of "
                   "the one chosen metric that has one (lpips, the default with --map).")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON instead of a table (an infinite value, PSNR of identical images, is null).")
@click.option("--out", "out", default=None, metavar="FILE.csv|FILE.json",
              help="Folders: write the table of pairs there (CSV, or JSON by extension) and the per-metric "
                   "summary beside it (FILE.summary.csv); a rerun after an interruption resumes.")
@click.option("--match", type=click.Choice(["path", "stem"]), default=None,
              help="Folders: pair files by relative path (default) or by path without extension "
                   "(0001.png with 0001.jpg).")
@click.option("--allow-missing", is_flag=True, help="Folders: skip files present on one side only (listed).")
@click.option("--size-mismatch", type=click.Choice(["resize", "crop"]), default=None,
              help="Folders: compare pairs of different sizes: resize B to A's size (bicubic, antialiased) "
                   "or crop the centre of both to the common size. Default: refuse them.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Folders: pairs per batch (default 16; fewer for large images).")
@no_progress_option
@max_pixels_option
def distance_command(image_a, image_b, metrics, net, variant, weights, extra, device, map_path, as_json,
                     out, match, allow_missing, size_mismatch, batch_size, no_progress, max_pixels) -> None:
    """Compare two images, or two folders image by image, with each metric.

    Two images: each row is the metric's own value (PSNR in dB, SSIM, ...). A metric that
    cannot run on these images (e.g. SSIM's window on an 8x8 image) is marked n/a with the
    reason; exit code 0 when at least one metric ran, 2 when none could.

    Two folders: pairs matched by relative path, recursively; one row per pair (a, b, one
    column per metric), then per metric the mean and its 95% bootstrap interval. See
    docs/folders.md.
    """
    if Path(image_a).is_dir() or Path(image_b).is_dir():
        require("pandas", "`percepmetric distance` of two folders")
        _distance_folders(image_a, image_b, build_available_metrics(metrics, net, variant, weights, extra),
                          device=device, map_path=map_path, as_json=as_json, out=out, match=match or "path",
                          allow_missing=allow_missing, size_mismatch=size_mismatch,
                          batch_size=batch_size or 16, progress=not no_progress, max_pixels=max_pixels)
        return
    folder_only = {"--out": out, "--match": match, "--allow-missing": allow_missing or None,
                   "--size-mismatch": size_mismatch, "--batch-size": batch_size}
    given = [flag for flag, value in folder_only.items() if value is not None]
    if given:
        raise InputError(f"{given[0]} applies to two folders; {image_a} and {image_b} are files")
    torch_device = resolve_device(device)
    if map_path is not None:
        require("matplotlib", "--map")
        map_target = _check_map_target(map_path)
        metrics = metrics or ("lpips",)
    if map_path is not None:  # the map needs its metric: absent weights are an error
        built = build_metrics(metrics, net, variant, weights, extra)
        unavailable: list[Unavailable] = []
    else:
        built, unavailable = build_available_metrics(metrics, net, variant, weights, extra)
    map_metric = _map_metric(built) if map_path is not None else None
    x, y = _load_pair_compatible([image_a, image_b], torch_device, max_pixels)
    rows = []
    for m in built:
        values, reason = _values_or_reason(m.to(torch_device), [(x, y)])
        row = {"metric": metric_label(m), "spec": m.spec, "applicable": reason is None, "reason": reason,
               "value": None, "unit": m.unit, "lower_is_better": m.lower_is_better,
               "distance": None, "distance_label": distance_label(m)}
        if values is not None:
            value = values[0].item()
            row.update(value=value, distance=m.to_distance(values[0]).item())
        rows.append(row)
    rows += _unavailable_rows(unavailable, rows[0] if rows else {})
    _require_one_result(rows, unavailable)
    if map_metric is not None:
        _save_distance_map(map_target, map_metric, x, y, rows[0]["value"], (image_a, image_b))
    identical = bool(torch.equal(x, y))
    if as_json:
        for row in rows:
            row["value"] = None if row["value"] is None else _json_number(row["value"])
        document = {"a": image_a, "b": image_b, "identical": identical, "results": rows}
        if map_path is not None:
            document["map"] = str(map_target)
        click.echo(_dump_json(document))
        return
    width = max(len(r["metric"]) for r in rows)
    for r in rows:
        if not r["applicable"]:
            shown = f"n/a: {_short_reason(r, unavailable)}"
        else:
            shown = _fmt(r["value"], r["unit"]) + (" (identical images)" if math.isinf(r["value"]) else "")
        click.echo(f"{r['metric']:<{width}}  {shown}")
    _explain_unavailable(unavailable)
    if map_path is not None:
        click.echo(f"map: {map_target}")


def _distance_folders(dir_a: str, dir_b: str, chosen: tuple[list, list], *, device: str, map_path: str | None,
                      as_json: bool, out: str | None, **job) -> None:
    """``distance DIR_A DIR_B``: :func:`percepmetric.compare.compare_folders`, printed.

    ``chosen``: the metrics built and those that could not be (absent weights), as
    :func:`~percepmetric.cli_options.build_available_metrics` gives them. Without ``--out`` the
    table of pairs is printed, then the summary; with it, the summary and where both files
    went. Notes (skipped files, metrics that could not run) go to stderr.
    """
    from .compare import compare_folders, summary_path, unmatched_note
    from .distributed import current_group

    for path in (dir_a, dir_b):
        if not Path(path).is_dir():
            raise InputError(f"{path}: not a folder; distance compares two images or two folders")
    if map_path is not None:
        raise InputError("--map draws one pair: use it with two images, not two folders")
    built, unavailable = chosen
    if not built:
        reasons = "; ".join(f"{u.label}: {u.reason}" for u in unavailable)
        raise InputError(f"no chosen metric can run ({reasons})")
    try:
        table = compare_folders(dir_a, dir_b, built, out=out, device=device, **job)
    except KeyboardInterrupt:
        _say_interrupted(out)
        sys.exit(130)
    if not current_group().is_main:
        return  # under torchrun rank 0 reports for every rank
    _explain_unavailable(unavailable)
    summary = table.attrs["summary"]
    if not any(row["n"] or row["infinite"] for row in summary):
        reasons = "; ".join(f"{row['metric']}: {row['reason']}" for row in summary)
        raise InputError(f"no chosen metric can run on these images ({reasons})")
    if table.attrs["only_a"] or table.attrs["only_b"]:
        note = unmatched_note(table.attrs["only_a"], table.attrs["only_b"], Path(dir_a), Path(dir_b))
        click.echo(f"percepmetric: skipped {note}", err=True)
    for row in summary:
        if row["not_applicable"]:
            click.echo(f"percepmetric: {row['metric']}: n/a for {row['not_applicable']} pair(s): {row['reason']}",
                       err=True)
    if as_json:
        from .compare import json_records

        document = {"a": dir_a, "b": dir_b, "pairs": json_records(table), "summary": json_records(summary),
                    "only_a": table.attrs["only_a"], "only_b": table.attrs["only_b"],
                    "not_computed": [{"metric": u.label, "reason": u.reason} for u in unavailable]}
        if out is not None:
            document.update(out=out, summary_out=str(summary_path(out)))
        click.echo(_dump_json(document))
        return
    if out is None:
        click.echo(table.to_string(index=False))
        click.echo("")
    width = max(len(row["metric"]) for row in summary)
    click.echo(f"{'metric':<{width}}  {'mean':>12}  95% interval (bootstrap)       pairs")
    for row in summary:
        interval = f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
        extra = f" (+{row['infinite']} infinite)" if row["infinite"] else ""
        click.echo(f"{row['metric']:<{width}}  {_fmt(row['mean'], row['unit']):>12}  {interval:<28}  {row['n']}{extra}")
    if out is not None:
        click.echo(f"table: {out}\nsummary: {summary_path(out)}")


def _say_interrupted(out: str | None) -> None:
    """What Ctrl-C (or SIGTERM) of a folder run kept, and how to go on, in one line on stderr."""
    from .compare import resume_folder

    if out is None:
        click.echo("percepmetric: interrupted; nothing was kept (with --out FILE finished pairs are kept "
                   "and a rerun resumes)", err=True)
        return
    kept = len(list(resume_folder(out).glob("chunk-*.npz"))) if resume_folder(out).is_dir() else 0
    click.echo(f"percepmetric: interrupted; {kept} finished chunk(s) kept in {resume_folder(out)}: "
               "run the same command again to resume", err=True)


def _save_distance_map(target: Path, metric, x: torch.Tensor, y: torch.Tensor, value: float,
                       names: tuple[str, str]) -> None:
    """A figure of A, B and the metric's per-pixel distance map (upsampled to the image size),
    with a colour bar, written atomically to ``target``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from .io import atomic_path, to_value_range

    dmap = metric.distance_map(to_value_range(x, metric.value_range),
                               to_value_range(y, metric.value_range))[0, 0].float().cpu().numpy()

    def picture(t: torch.Tensor):
        return t[0].expand(3, -1, -1).permute(1, 2, 0).float().clamp(0, 1).cpu().numpy()

    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), layout="constrained")
    for ax, image, name in zip(axes[:2], (x, y), names):
        ax.imshow(picture(image))
        ax.set_title(Path(name).name, fontsize=10)
    shown = axes[2].imshow(dmap, cmap="magma", vmin=0.0)
    axes[2].set_title("where they differ (brighter = more)", fontsize=10)
    fig.colorbar(shown, ax=axes[2], shrink=0.85, label="distance per pixel")
    fig.suptitle(f"{metric_label(metric)}: {value:.4g}", fontsize=11)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _save_demo_images(folder: Path, images: dict[str, torch.Tensor]) -> dict[str, str]:
    """Write each ``(1,3,H,W)`` image in [0, 1] as ``folder/NAME.png`` (8-bit, atomically)."""
    import numpy as np
    from PIL import Image

    from .io import atomic_path

    written = {}
    for name, image in images.items():
        codes = (image[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
        path = folder / f"{name}.png"
        with atomic_path(path, suffix=".png") as tmp:
            Image.fromarray(codes).save(tmp, format="PNG")
        written[name] = str(path)
    return written


@cli.command("score")
@click.argument("images", nargs=-1, type=click.Path())
@metric_option_flags
@device_option
@click.option("--demo", is_flag=True, help="Use a built-in example triplet made from scikit-image's photos.")
@click.option("--save", "save_dir", default=None, metavar="DIR",
              help="With --demo: also write its images to DIR as ref.png, a.png and b.png.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON instead of a table (an infinite value, PSNR of identical images, is null).")
@max_pixels_option
def score_command(images, metrics, net, variant, weights, extra, device, demo, save_dir, as_json,
                  max_pixels) -> None:
    """Which of A and B is closer to REF, by each metric: score REF A B.

    ref-A and ref-B are each metric's own values (PSNR in dB, SSIM, ...). A metric that cannot
    run on these images is marked n/a with the reason; exit code 0 when at least one metric
    ran, 2 when none could.
    """
    torch_device = resolve_device(device)
    saved = None
    if save_dir is not None:
        if not demo:
            raise InputError("--save writes the demo images: use it with --demo")
        from .io import prepare_output_dir

        save_folder = prepare_output_dir(save_dir, option="--save")
    if demo:
        if images:
            raise InputError("--demo takes no image paths")
        for module in ("skimage", "scipy"):
            require(module, "--demo", extra="bench")
        from .data.examples import example_triplet

        ref, a, b = example_triplet()
        names = ("<demo ref: astronaut>", "<demo A: JPEG quality 10>", "<demo B: Gaussian blur sigma 1.5>")
        if save_dir is not None:
            saved = _save_demo_images(save_folder, {"ref": ref, "a": a, "b": b})
        ref, a, b = (t.to(torch_device) for t in (ref, a, b))
    else:
        if len(images) != 3:
            raise InputError(f"score takes exactly three images REF A B, got {len(images)}")
        ref, a, b = _load_pair_compatible(list(images), torch_device, max_pixels)
        names = tuple(images)
    built, unavailable = build_available_metrics(metrics, net, variant, weights, extra)
    rows = []
    for m in built:
        values, reason = _values_or_reason(m.to(torch_device), [(ref, a), (ref, b)])
        row = {"metric": metric_label(m), "spec": m.spec, "applicable": reason is None, "reason": reason,
               "ref_a": None, "ref_b": None, "unit": m.unit, "lower_is_better": m.lower_is_better,
               "distance_ref_a": None, "distance_ref_b": None, "distance_label": distance_label(m),
               "closer": None}
        if values is not None:
            da, db = (m.to_distance(v).item() for v in values)
            row.update(ref_a=values[0].item(), ref_b=values[1].item(), distance_ref_a=da, distance_ref_b=db,
                       closer="tie" if da == db else ("A" if da < db else "B"))
        rows.append(row)
    rows += _unavailable_rows(unavailable, rows[0] if rows else {})
    _require_one_result(rows, unavailable)
    identical = {"ref_a": bool(torch.equal(ref, a)), "ref_b": bool(torch.equal(ref, b))}
    if as_json:
        for row in rows:
            for key in ("ref_a", "ref_b"):
                row[key] = None if row[key] is None else _json_number(row[key])
        document = {"ref": names[0], "a": names[1], "b": names[2], "identical": identical, "results": rows}
        if saved is not None:
            document["saved"] = saved
        click.echo(_dump_json(document))
        return
    labels = ("REF", "A  ", "B  ")
    for label, name, key in zip(labels, names, ("ref", "a", "b")):
        click.echo(f"{label} = {name}" + (f" (saved as {saved[key]})" if saved else ""))
    width = max(len(r["metric"]) for r in rows)
    click.echo(f"{'metric':<{width}}  {'ref-A':>13}  {'ref-B':>13}  direction  closer")
    for r in rows:
        if not r["applicable"]:
            click.echo(f"{r['metric']:<{width}}  n/a: {_short_reason(r, unavailable)}")
            continue
        direction = "lower  " if r["lower_is_better"] else "higher "
        ref_a, ref_b = _fmt(r["ref_a"], r["unit"]), _fmt(r["ref_b"], r["unit"])
        click.echo(f"{r['metric']:<{width}}  {ref_a:>13}  {ref_b:>13}  {direction}    {r['closer']}")
    _explain_unavailable(unavailable)


#: The commands of the plain install (no extras); their options that need one say so themselves.
_PLAIN_COMMANDS = ("distance", "score", "metrics", "weights", "matrix", "fid")


def _command_name(argv: list[str]) -> str:
    """The command ``argv`` runs (its first word that is not an option), for messages."""
    return next((arg for arg in argv if not arg.startswith("-")), "")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; user errors become one line on stderr and exit code 2.

    SIGTERM is treated as Ctrl-C: torchrun passes it on to every rank when it is stopped, and
    batch schedulers send it before a kill, so an interrupted job keeps what it computed
    (resume files, tables marked "not computed") instead of dying mid-step.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        cli.main(args=argv, prog_name="percepmetric", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        # `percepmetric` (or a command group) alone asks what there is: the help, not an error.
        click.echo(exc.ctx.get_help())
        sys.exit(0)
    except click.exceptions.Abort:
        click.echo("percepmetric: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"percepmetric: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except PercepmetricError as exc:
        click.echo(f"percepmetric: error: {exc}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        # A harness path that needs an extra (e.g. `deepsim demo`, scikit-image's photos) the plain
        # install leaves out: the one line with the `pip install`; any other missing module is a bug.
        command = _command_name(sys.argv[1:] if argv is None else argv)
        error = missing_extra(exc, f"`percepmetric {command}`",
                              extra=None if command in _PLAIN_COMMANDS else "bench")
        if error is None:
            raise
        click.echo(f"percepmetric: error: {error}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    main()
