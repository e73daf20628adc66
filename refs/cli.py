"""``webbflow refs ...`` and ``webbflow simulate`` commands."""

from __future__ import annotations


def add_commands(sub) -> None:
    """Attach the reference-data commands to the top-level parser."""
    return None
