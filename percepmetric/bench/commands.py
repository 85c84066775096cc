"""CLI commands of this part, attached to ``percepmetric`` by ``percepmetric.cli``."""

COMMANDS: list = []
