"""Fail CI when pytest skipped a test for any but the known reasons.

The known skips: tests that need a CUDA GPU (CI has none), and tests that need SqueezeNet 1.1's
pretrained file (CI's weights hold AlexNet and VGG16 only). Any other skip hides a test CI can
run: a pretrained file CI should have, reference data gone missing, a test extra not installed.

Usage: ``python .ci/check_skips.py REPORT.json``, REPORT being the file tests/conftest.py writes at
the end of a pytest session where ``PERCEPMETRIC_SKIP_REPORT`` names it (.ci/run sets it).
Prints one line; exits 0 when every skip is known, 1 when one is not, 2 when the report is
missing or unreadable (pytest did not run, or ran without the project's conftest.py).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

#: How tests/helpers.py starts the reason of a skip for an absent pretrained file (MISSING_WEIGHTS),
#: followed by the file's name.
MISSING_WEIGHTS = "missing pretrained weights"

#: The known skips: (what, pattern of the reason).
KNOWN = (
    ("CUDA-only", re.compile(r"\bCUDA\b")),
    ("SqueezeNet weights", re.compile(re.escape(MISSING_WEIGHTS) + r" squeezenet1_1-[0-9a-f]+\.pth\b")),
)


def known_kind(reason: str) -> str | None:
    """The kind of known skip ``reason`` is, or None. A missing weight file is known only when
    it is SqueezeNet's, whatever else its message says."""
    if reason.startswith(MISSING_WEIGHTS):
        what, pattern = KNOWN[1]
        return what if pattern.match(reason) else None
    for what, pattern in KNOWN:
        if pattern.search(reason):
            return what
    return None


def unknown_skips(skipped: list[dict[str, str]]) -> list[dict[str, str]]:
    return [entry for entry in skipped if known_kind(entry["reason"]) is None]


def verdict(report: dict, path: object = "the report") -> tuple[int, str]:
    """(exit code, the one line to print) for a report ``{"skipped": [{"test", "reason"}, ...]}``
    read from ``path``."""
    skipped = report["skipped"]
    unknown = unknown_skips(skipped)
    allowed = ", ".join(what for what, _ in KNOWN)
    if not unknown:
        return 0, f"check_skips: OK, {len(skipped)} skipped, all known ({allowed})"
    first = unknown[0]
    reason = " ".join(first["reason"].split())
    if len(reason) > 160:
        reason = reason[:157] + "..."
    more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
    return 1, (f"check_skips: FAIL, {len(unknown)} of {len(skipped)} skipped tests are not known skips ({allowed}): "
               f"{first['test']} ({reason}){more}; every skip and its reason: {path}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python .ci/check_skips.py REPORT.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        report = json.loads(path.read_text())
        report["skipped"]  # noqa: B018 - the key must be there
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"check_skips: FAIL, no skip report at {path} ({type(exc).__name__}: {exc}); "
              "did pytest run with PERCEPMETRIC_SKIP_REPORT set?")
        return 2
    code, line = verdict(report, path)
    print(line)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
