"""Calibration steps: one module per correction, each a science function plus a Prefect task."""

from __future__ import annotations

import importlib
import pkgutil


def load_all() -> None:
    """Import every step module so that each registers its declaration."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")
