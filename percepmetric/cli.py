"""The ``percepmetric`` command: thin click wrappers around the library.

Parse -> call the library -> format. :func:`main` is the one place that turns a
:class:`PercepmetricError` (or a usage error) into one line on stderr and exit code 2.
Command groups of later parts (bench, train, deepsim) live next to their code and are
attached here.
"""

from __future__ import annotations

import json
import sys

import click

from .cli_options import build_metrics, metric_option_flags
from .errors import InputError, PercepmetricError
from .registry import metric_label


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="percepmetric")
def cli() -> None:
    """Perceptual image distances, and how well they agree with people."""


def _load_pair_compatible(paths: list[str]):
    from .io import load_image

    images = [load_image(p) for p in paths]
    first = images[0]
    for path, img in zip(paths[1:], images[1:]):
        if img.shape[-2:] != first.shape[-2:]:
            raise InputError(
                f"{path}: size {img.shape[-1]}x{img.shape[-2]} differs from {paths[0]} ({first.shape[-1]}x{first.shape[-2]})"
            )
    # A grey image compared with a colour one: repeat grey to three channels.
    if any(img.shape[1] == 3 for img in images):
        images = [img.expand(-1, 3, -1, -1) if img.shape[1] == 1 else img for img in images]
    return images


def _fmt(value: float) -> str:
    return f"{value:.6g}"


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
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        direction = "lower is better " if r["lower_is_better"] else "higher is better"
        click.echo(f"{r['name']:<{width}}  {direction}  input {r['input_range']}  {r['summary']}")


@cli.command("distance")
@click.argument("image_a", type=click.Path())
@click.argument("image_b", type=click.Path())
@metric_option_flags
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def distance_command(image_a, image_b, metrics, net, variant, weights, extra, as_json) -> None:
    """Compare two images with each metric."""
    x, y = _load_pair_compatible([image_a, image_b])
    built = build_metrics(metrics, net, variant, weights, extra)
    rows = []
    for m in built:
        value = m(x, y)
        rows.append({"metric": metric_label(m), "spec": m.spec, "value": value.item(),
                     "distance": m.to_distance(value).item(), "lower_is_better": m.lower_is_better})
    if as_json:
        click.echo(json.dumps({"a": image_a, "b": image_b, "results": rows}, indent=2))
        return
    width = max(len(r["metric"]) for r in rows)
    for r in rows:
        click.echo(f"{r['metric']:<{width}}  {_fmt(r['value'])}")


@cli.command("score")
@click.argument("images", nargs=-1, type=click.Path())
@metric_option_flags
@click.option("--demo", is_flag=True, help="Use a built-in example triplet made from scikit-image's photos.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def score_command(images, metrics, net, variant, weights, extra, demo, as_json) -> None:
    """Which of A and B is closer to REF, by each metric: score REF A B."""
    if demo:
        if images:
            raise InputError("--demo takes no image paths")
        from .data.examples import example_triplet

        ref, a, b = example_triplet()
        names = ("<demo ref: astronaut>", "<demo A: JPEG quality 10>", "<demo B: Gaussian blur sigma 1.5>")
    else:
        if len(images) != 3:
            raise InputError(f"score takes exactly three images REF A B, got {len(images)}")
        ref, a, b = _load_pair_compatible(list(images))
        names = tuple(images)
    built = build_metrics(metrics, net, variant, weights, extra)
    rows = []
    for m in built:
        va, vb = m(ref, a).item(), m(ref, b).item()
        da, db = m.to_distance(m(ref, a)).item(), m.to_distance(m(ref, b)).item()
        closer = "tie" if da == db else ("A" if da < db else "B")
        rows.append({"metric": metric_label(m), "spec": m.spec, "ref_a": va, "ref_b": vb,
                     "distance_ref_a": da, "distance_ref_b": db,
                     "lower_is_better": m.lower_is_better, "closer": closer})
    if as_json:
        click.echo(json.dumps({"ref": names[0], "a": names[1], "b": names[2], "results": rows}, indent=2))
        return
    click.echo(f"REF = {names[0]}\nA   = {names[1]}\nB   = {names[2]}")
    width = max(len(r["metric"]) for r in rows)
    click.echo(f"{'metric':<{width}}  {'ref-A':>10}  {'ref-B':>10}  direction  closer")
    for r in rows:
        direction = "lower  " if r["lower_is_better"] else "higher "
        click.echo(f"{r['metric']:<{width}}  {_fmt(r['ref_a']):>10}  {_fmt(r['ref_b']):>10}  {direction}    {r['closer']}")


def _attach_commands() -> None:
    # Each part keeps its commands next to its code and lists them in COMMANDS.
    from .bench import commands as bench_commands
    from .deepsim import commands as deepsim_commands
    from .nets import commands as nets_commands
    from .train import commands as train_commands

    for module in (nets_commands, bench_commands, train_commands, deepsim_commands):
        for command in module.COMMANDS:
            cli.add_command(command)


_attach_commands()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; user errors become one line on stderr and exit code 2."""
    try:
        cli.main(args=argv, prog_name="percepmetric", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("percepmetric: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"percepmetric: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except PercepmetricError as exc:
        click.echo(f"percepmetric: error: {exc}", err=True)
        sys.exit(2)
    except (KeyboardInterrupt, BrokenPipeError):
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
