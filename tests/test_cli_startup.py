"""The command line starts without importing what the command does not use.

``webbflow --help``, ``webbflow run --help`` and ``webbflow simulate --help`` import
no models, Prefect or numba; ``webbflow run STEP --help`` imports that step's module
and what it needs, not every step and pipeline (nor Prefect).  What each prints is
checked too, so that a command parsed lazily still says what it should.
"""

from __future__ import annotations

import json
import subprocess
import sys

# runs the command line in a fresh interpreter and reports what it printed and imported
_PROBE = r"""
import contextlib, io, json, sys
from webbflow.flows.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
heavy = ("webbflow.models", "prefect", "numba", "astropy", "webbflow.refs.build", "webbflow.flows.stage")
print(json.dumps({"code": code, "out": out.getvalue(), "loaded": [m for m in heavy if m in sys.modules],
                  "tasks": sorted(m for m in sys.modules if m.startswith("webbflow.tasks."))}))
"""


def probe(*args):
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_help_commands_import_nothing_heavy():
    for args, words in ((["--help"], ["run", "simulate", "refs", "info", "demo"]),
                        (["run", "--help"], ["PIPELINE", "--output-dir", "--config"]),
                        (["simulate", "--help"], ["--instrument", "--exp-type", "--ngroups"])):
        r = probe(*args)
        assert r["code"] in (0, None), r
        assert r["loaded"] == [], (args, r["loaded"])
        for w in words:
            assert w in r["out"], (args, w)


def test_refs_subcommands_are_there_when_refs_is_the_command():
    r = probe("refs", "--help")
    assert "bestrefs" in r["out"] and "build" in r["out"]
    r = probe("refs", "build", "--help")
    assert r["code"] in (0, None) and "--for" in r["out"] and "--output-dir" in r["out"]
    r = probe("refs", "nonsense")
    assert r["code"] == 2 and "'build'" in r["out"]


def test_run_step_help_imports_only_that_step():
    r = probe("run", "dq_init", "--help")
    assert r["code"] == 0
    assert "usage: webbflow run dq_init" in r["out"] and "DQInitStep" in r["out"] and "override_mask" in r["out"]
    assert "prefect" not in r["loaded"] and "webbflow.flows.stage" not in r["loaded"]
    assert "webbflow.tasks.dq_init" in r["tasks"] and "webbflow.tasks.resample" not in r["tasks"]


def test_steps_resolve_as_before_and_no_pipeline_has_a_step_modules_name():
    import pkgutil

    from webbflow import tasks
    from webbflow.flows import registry
    from webbflow.flows.cli import PIPELINE_ALIASES, resolve_target
    from webbflow.tasks.base import STEPS

    tasks.load_all()
    modules = {m.name for m in pkgutil.iter_modules(tasks.__path__) if not m.name.startswith("_")}
    assert not modules & set(registry.PIPELINES), "a pipeline named as a step module would be taken for the step"
    for name in STEPS:
        expected = ("pipeline", PIPELINE_ALIASES[name]) if name in PIPELINE_ALIASES else ("step", name)
        assert resolve_target(name) == expected
    for name in registry.PIPELINES:
        assert resolve_target(name) == ("pipeline", name)
    assert resolve_target("JumpStep") == ("step", "jump")


def test_single_step_suffixes_listed_are_every_steps_class():
    """``webbflow run STEP FILE`` names its product from every step's class name (strun's suffixes)
    without importing every step module: the list it keeps is the declarations' list."""
    from webbflow import tasks
    from webbflow.flows.single import STEP_CLASS_SUFFIXES, strun_root
    from webbflow.tasks.base import STEPS

    tasks.load_all()
    assert STEP_CLASS_SUFFIXES == {s.jwst_class.lower() for s in STEPS.values()}
    assert strun_root("jw01_nrca1_jumpstep.fits") == "jw01_nrca1"


def test_run_one_step_on_a_file_imports_that_step_only(tmp_path):
    """``webbflow run STEP FILE`` imports that step's module (and what it uses), not every step's."""
    import numpy as np

    from webbflow import models

    m = models.ImageModel(data=np.ones((8, 8), np.float32))
    m.dq = np.zeros((8, 8), np.uint32)
    m.err = np.zeros((8, 8), np.float32)
    m.meta.instrument.name, m.meta.exposure.type = "NIRCAM", "NRC_IMAGE"
    m.save(tmp_path / "x_rate.fits")
    # skipped: no references to look up, the product still written as strun writes it
    r = probe("run", "gain_scale", str(tmp_path / "x_rate.fits"), "--output-dir", str(tmp_path), "--skip=true")
    assert r["code"] in (0, None), r["out"]
    assert (tmp_path / "x_gainscalestep.fits").exists(), r["out"]
    assert "webbflow.tasks.gain_scale" in r["tasks"] and "webbflow.tasks.jump" not in r["tasks"], r["tasks"]
