"""Stage pipelines as Prefect flows, the association fan-out, and the command line.

``from webbflow.flows import detector1`` gives the flow; call it on a path or
a model.  Imports are lazy so that ``webbflow --help`` stays fast.
"""

from __future__ import annotations

import importlib

_FLOWS = {
    "detector1": "calwebb_detector1", "guider": "calwebb_guider", "dark": "calwebb_dark",
    "image2": "calwebb_image2", "image3": "calwebb_image3",
}


def __getattr__(name):
    if name in _FLOWS:
        mod = importlib.import_module(f"{__name__}.{_FLOWS[name]}")
        return getattr(mod, name)
    raise AttributeError(name)
