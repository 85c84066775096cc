"""What ``pip install percepmetric`` leaves out, and the one message that says how to add it.

The plain install is the metric library and the commands ``distance`` (two images), ``score``,
``metrics``, ``weights`` and ``matrix``. Everything else needs an extra (pyproject.toml,
``[project.optional-dependencies]``):

- ``folders``: pandas, for ``distance DIR_A DIR_B`` and :func:`percepmetric.compare_folders`
  (which returns a DataFrame);
- ``plot``: matplotlib, for ``distance --map`` and the harness's figures;
- ``images``: imagecodecs, for 16-bit colour PNG and TIFF files (and PNG decoding without the
  GIL in the harness);
- ``bench``: the harness (``bench``, ``train``, ``deepsim``, ``make-fixture``, ``download-bapps``,
  ``download-mos``, ``score --demo``): the three above plus SciPy (rank correlations, .mat
  files), scikit-image (the photos of the embedded default) and numba (compiled 8-bit kernels);
- ``stlpips``: the ST-LPIPS weight files; ``all``: every extra.

A command or option that cannot run without its extra raises :class:`MissingExtraError`, which
the CLI prints as one line (exit code 2) like every :class:`~percepmetric.errors.InputError`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import InputError

__all__ = ["EXTRA_OF_MODULE", "MissingExtraError", "missing_extra", "require"]

#: Top-level module -> (distribution to install, the extra that brings it). numba is absent: it
#: only speeds the 8-bit kernels up, whose torch fallback gives the same numbers
#: (percepmetric/metrics/kernels.py).
EXTRA_OF_MODULE: dict[str, tuple[str, str]] = {
    "pandas": ("pandas", "folders"),
    "matplotlib": ("matplotlib", "plot"),
    "scipy": ("scipy", "bench"),
    "skimage": ("scikit-image", "bench"),
    "imagecodecs": ("imagecodecs", "images"),
    "stlpips_pytorch": ("stlpips-pytorch", "stlpips"),
}


class MissingExtraError(InputError):
    """``what`` needs a module that only an extra of percepmetric installs."""

    def __init__(self, what: str, module: str, extra: str | None = None) -> None:
        distribution, default_extra = EXTRA_OF_MODULE.get(module, (module, "all"))
        self.what, self.module, self.extra = what, module, extra or default_extra
        super().__init__(f"{what} needs {distribution}, which the plain install leaves out: "
                         f"pip install 'percepmetric[{self.extra}]'")


def require(module: str, what: str, extra: str | None = None) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``what`` needs it and the
    ``pip install`` line (``extra`` defaults to the one :data:`EXTRA_OF_MODULE` gives)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != module.split(".")[0]:
            raise  # a module that ``module`` itself imports is missing: not ours to explain
        raise MissingExtraError(what, module.split(".")[0], extra) from exc


def missing_extra(exc: ModuleNotFoundError, what: str, extra: str | None = None) -> MissingExtraError | None:
    """The :class:`MissingExtraError` for ``exc`` when the missing module is one an extra brings
    (``what`` needs it), else None: the caller re-raises ``exc``, a broken install."""
    top = (exc.name or "").split(".")[0]
    if top not in EXTRA_OF_MODULE:
        return None
    return MissingExtraError(what, top, extra)
