"""Helpers several test files share (imported as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``percepmetric ARGS`` in this process: (exit code, stdout, stderr)."""
    from percepmetric.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err
