"""Pipelines reachable from the command line: name -> runner.

A runner is ``fn(input_path, *, output_dir, steps, config, options) -> list of written paths``;
``options`` holds pipeline-level settings such as ``save_calibrated_ramp``.
Each stage module registers itself here when it is imported.
"""

from __future__ import annotations

import importlib

PIPELINES: dict = {}

# modules that define pipelines; imported lazily so that `webbflow --help` stays fast
_MODULES = ["calwebb_detector1", "calwebb_guider", "calwebb_dark", "calwebb_image2", "calwebb_image3", "calwebb_tso3",
            "observation", "calwebb_spec3", "calwebb_spec2"]
_MODULES.append("calwebb_coron3")
_MODULES.append("calwebb_wfs_image3")
_MODULES.append("calwebb_ami3")  # NIRISS AMI


def _load() -> None:
    for name in _MODULES:
        try:
            importlib.import_module(f"webbflow.flows.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"webbflow.flows.{name}":
                raise


def register(name: str):
    def deco(fn):
        PIPELINES[name] = fn
        return fn

    return deco


# the module registering each pipeline: looking one up imports that module only, not all twelve
_MODULE_OF = {name: "calwebb_" + name.replace("-", "_") for name in (
    "detector1", "guider", "dark", "image2", "image3", "tso3", "spec3", "spec2", "coron3", "wfs-image3", "ami3")}
_MODULE_OF["observation"] = "observation"


class _Lazy(dict):
    def _ensure(self):
        if not getattr(self, "_loaded", False):
            self._loaded = True
            _load()

    def _ensure_one(self, k):
        if not super().__contains__(k) and k in _MODULE_OF:
            importlib.import_module(f"webbflow.flows.{_MODULE_OF[k]}")
        if not super().__contains__(k):
            self._ensure()

    def __contains__(self, k):
        self._ensure_one(k)
        return super().__contains__(k)

    def __getitem__(self, k):
        self._ensure_one(k)
        return super().__getitem__(k)

    def __iter__(self):
        self._ensure()
        return super().__iter__()

    def keys(self):
        self._ensure()
        return super().keys()


PIPELINES = _Lazy()
