"""``python -m percepmetric``: the same as the ``percepmetric`` command."""

from .cli import main

main()
