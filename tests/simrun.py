"""Running a simulated observation as users run it, for the parity tests of the simulated modes.

- :func:`simulate_into`: one simulation per test session, in its own temporary folder;
- :func:`inputs`: a folder as a user has it, with the exposures and the associations;
- :func:`strun`: jwst's pipelines or steps, run as ``strun`` runs them, from that folder;
- :func:`webbflow_runs`: ``webbflow run`` on the same folder and files;
- :func:`webbflow_run`: one ``webbflow run`` command line, which must succeed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace


def simulate_into(tmp_path_factory, name: str, kwargs: dict) -> SimpleNamespace:
    """``webbflow simulate`` into a new temporary folder ``<name>/sim``: the result, the folder,
    and the CRDS cache and context the simulation wrote."""
    from webbflow.refs.simulator import simulate

    root = tmp_path_factory.mktemp(name)
    sim = simulate(root / "sim", **kwargs)
    return SimpleNamespace(sim=sim, root=root, cache=sim.crds_path, context=sim.context)


def inputs(sim, folder: Path, pattern: str = "*_uncal.fits", src: Path | None = None, also: tuple = ()) -> Path:
    """``folder`` with the files matching ``pattern`` (from ``src``, or the simulation's folder), those
    of the simulation's folder matching the patterns ``also`` (``"*_msa.fits"``), and the
    simulation's level-2 and level-3 associations."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [*(src or sim.output_dir).glob(pattern), *(f for a in also for f in sim.output_dir.glob(a))]
    for f in files:
        shutil.copy2(f, folder / f.name)
    for a in [*sim.asn_level2, sim.asn_level3]:
        if a is not None:
            shutil.copy2(a, folder / Path(a).name)
    return folder


def strun(folder: Path, calls) -> None:
    """jwst's ``strun PIPELINE ARG [OPTION...]`` for each (pipeline, arg, *options) of ``calls``, from ``folder``."""
    from jwst.stpipe import Step

    cwd = os.getcwd()
    os.chdir(folder)  # as strun is run: from the associations' folder
    try:
        for pipeline, arg, *options in calls:
            Step.from_cmdline([pipeline, arg, *options])
    finally:
        os.chdir(cwd)


def webbflow_runs(folder: Path, calls) -> None:
    """``webbflow run PIPELINE folder/ARG --output-dir folder`` for each (pipeline, arg) of ``calls``."""
    for pipeline, arg in calls:
        webbflow_run(pipeline, folder / arg, "--output-dir", folder)


def webbflow_run(*argv) -> None:
    """``webbflow run ARGV...``, which must exit 0."""
    from webbflow.flows.cli import main

    rc = main(["run", *[str(a) for a in argv]])
    assert rc == 0, f"webbflow run {' '.join(map(str, argv))} exited {rc}"


def end_to_end(tmp_path_factory, name: str, sim_kwargs: dict, stage3: str):
    """A simulated observation run from its uncal files by both programs as users run them: jwst's
    calwebb_detector1 on each uncal, calwebb_image2 on each level-2 association and
    ``calwebb_<stage3>`` on the level-3 one (strun from the associations' folder), and
    ``webbflow run <stage3> ASN`` (the earlier stages made on the way).  Returns jwst's folder and ours."""
    from test_products_whole import _quiet

    run = simulate_into(tmp_path_factory, name, sim_kwargs)
    sim = run.sim
    theirs = inputs(sim, run.root / "jwst")
    calls = [("calwebb_detector1", u.name) for u in sim.uncal]
    calls += [("calwebb_image2", Path(a).name) for a in sim.asn_level2]
    calls += [(f"calwebb_{stage3}", Path(sim.asn_level3).name)]
    _quiet(lambda: strun(theirs, calls), run.cache, run.context)
    ours = inputs(sim, run.root / "webbflow")
    _quiet(lambda: webbflow_run(stage3, ours / Path(sim.asn_level3).name, "--output-dir", ours), run.cache,
           run.context)
    return theirs, ours
