"""calwebb_guider on the real flight FGS ACQ1 exposure, and calwebb_dark, as flows and
from the CLI, against jwst with the same references (built by webbflow)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from webbflow import models

from conftest import REAL
from parity import assert_parity, jwst_offline

FGS = REAL / "fgs_acq1_guider2_uncal.fits"


@pytest.fixture(scope="module")
def fgs_cache(tmp_path_factory):
    from webbflow.refs.build import build_references

    d = tmp_path_factory.mktemp("fgs")
    uncal = d / FGS.name
    shutil.copy(FGS, uncal)
    ctx = build_references([uncal], d / "crds")
    return uncal, d / "crds", ctx


def _cli(*args, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "webbflow.flows.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)


@pytest.mark.parity
@pytest.mark.real
def test_guider_flow_on_real_fgs_matches_jwst(fgs_cache, tmp_path):
    from stdatamodels.jwst import datamodels as dm

    uncal, crds, ctx = fgs_cache
    r = _cli("run", "calwebb_guider", uncal, "--output-dir", tmp_path / "ours", env={"CRDS_PATH": str(crds)})
    assert r.returncode == 0, r.stderr
    ours_path = tmp_path / "ours" / "fgs_acq1_guider2_cal.fits"
    ours = models.open(ours_path)
    assert type(ours).__name__ == "GuiderCalModel"
    assert ours.data.shape == (6, 128, 128)
    assert ours.meta.ref_file.crds.context_used == ctx
    assert ours.meta.cal_step.guider_cds == "COMPLETE" and ours.meta.cal_step.flat_field == "COMPLETE"
    from jwst.pipeline import GuiderPipeline

    with jwst_offline(crds):
        theirs = GuiderPipeline.call(str(uncal))
    assert_parity(ours, theirs, ["data", "err", "dq"], rtol=1e-4, min_fraction=0.999)
    with dm.open(ours_path) as s:
        assert type(s).__name__ == "GuiderCalModel"


def test_guider_refuses_non_guider_exposure(tmp_path):
    m = models.Level1bModel(np.zeros((1, 2, 8, 8), np.uint16))
    m.meta.instrument.name = "NIRCAM"
    m.meta.exposure.type = "NRC_IMAGE"
    p = m.save(tmp_path / "jw01234001001_01101_00001_nrca1_uncal.fits")
    r = _cli("run", "calwebb_guider", p, "--output-dir", tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "NRC_IMAGE" in lines[0] and "FGS_ACQ1" in lines[0], r.stderr


@pytest.mark.parity
def test_dark_flow_matches_jwst(tmp_path, crds_env):
    from jwst.pipeline import DarkPipeline

    from webbflow.flows import dark
    from webbflow.refs.simulator import simulate

    sim = simulate(tmp_path / "sim", instrument="nircam", size=64, ngroups=5, nints=1, seed=21)
    uncal = sim.uncal[0]
    crds_env(sim.crds_path)
    ours = dark(str(uncal), output_dir=str(tmp_path / "ours"))
    assert isinstance(ours, models.RampModel)
    root = uncal.name.replace("_uncal.fits", "")
    assert (tmp_path / "ours" / f"{root}_dark.fits").exists()
    assert ours.meta.cal_step.linearity == "COMPLETE"
    assert ours.meta.cal_step.dark_sub is None, "calwebb_dark does not subtract a dark"
    with jwst_offline(sim.crds_path):
        theirs = DarkPipeline.call(str(uncal))
    assert_parity(ours, theirs, ["data", "pixeldq", "groupdq"], rtol=1e-4, min_fraction=0.999)
