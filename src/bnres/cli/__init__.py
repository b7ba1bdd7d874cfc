"""The Lightning CLI (`bnres fit`)."""

from bnres.cli.main import main

__all__ = ["main"]
