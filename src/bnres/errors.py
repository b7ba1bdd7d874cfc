"""The errors a user can fix: each is one line naming the key, the bad value and what is valid.

Raised before any work starts; the entry points print them as ``error: <message>`` and exit 2.
Kept in a module of its own so the modules that raise them (config checks, data, folders) do not
import each other.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad configuration value; the message is one line naming the value and the valid choices."""


class FolderConflict(ConfigError):
    """A run folder already holds another run (another config), or is in use by a running job."""


def one_line(err: BaseException) -> str:
    """The first line of an error's message (its type name when it has none)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
