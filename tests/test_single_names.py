"""``webbflow run STEP X`` names its products as ``strun STEP X`` does, for every declared step.

jwst's own naming (the step's ``make_output_path``, as strun calls it when it saves a
step's result) is the oracle: for each step that takes one exposure, on the input names a
user feeds a step run alone (pipeline products, a previous strun step's product), with and
without ``--suffix`` and ``--output_file``.  A step with several outputs (ramp_fit's rate
and rateints) numbers them as strun does.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import pytest

from webbflow.flows.single import strun_output_path
from webbflow.tasks import load_all
from webbflow.tasks.base import STEPS

load_all()
pytestmark = pytest.mark.parity

ROOT = "jw01345062001_03101_00001_nrs1"
INPUTS = [f"{ROOT}_{s}.fits" for s in ("uncal", "ramp", "rate", "rateints", "cal", "calints", "s2d", "x1d", "crf",
                                        "dark_current", "jump", "dqinitstep", "jumpstep", "cal_x1d")]
INPUTS += [f"{ROOT}_phot.138.1345_933.fits", "jw00623-o001_t001_miri_p750l-slitlessprism_x1dints.fits"]
# tso_photometry alone returns a table that strun does not save (its catalogue is written only
# with save_catalog, as <root>_phot.ecsv): there is no product name to match
SINGLE = sorted(n for n, s in STEPS.items() if s.input_class != "ModelLibrary" and n != "tso_photometry")


def _jwst_step(jwst_class: str):
    from stpipe.entry_points import get_steps

    for info in get_steps():
        if info.class_name.rsplit(".", 1)[-1] == jwst_class:
            module, name = info.class_name.rsplit(".", 1)
            return getattr(importlib.import_module(module), name)
    raise LookupError(jwst_class)


def _strun_step(step_cls, out_dir, **pars):
    """jwst's step built as strun builds it (named after its class), ready to name its products."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = step_cls(**pars)
    if s.suffix is None:
        s.suffix = s.default_suffix()
    s.output_dir = str(out_dir)
    return s


def test_single_step_steps_are_jwst_steps():
    assert "extract_1d" in SINGLE and "ramp_fit" in SINGLE and "jump" in SINGLE
    for name in SINGLE:
        assert _jwst_step(STEPS[name].jwst_class).class_alias == name


@pytest.mark.parametrize("name", SINGLE)
def test_product_names_as_strun(name, tmp_path):
    spec = STEPS[name]
    cls = _jwst_step(spec.jwst_class)
    idxs = [0, 1] if name == "ramp_fit" else [None]
    for given in ({}, {"suffix": "mine"}, {"output_file": "picked.fits"}, {"output_file": "picked_cal.fits"}):
        p = spec.make_params(given)
        jwst_step = _strun_step(cls, tmp_path, **given)
        for inp in INPUTS:
            jwst_step._input_filename = inp
            for idx in idxs:
                ours = strun_output_path(spec, p, inp, tmp_path, idx=idx)
                assert ours == Path(jwst_step.make_output_path(idx=idx)), (name, given, inp)


def test_extract_1d_alone_is_not_named_x1d(tmp_path):
    spec = STEPS["extract_1d"]
    path = strun_output_path(spec, spec.make_params({}), f"{ROOT}_cal.fits", tmp_path)
    assert path == tmp_path / f"{ROOT}_extract1dstep.fits"
    rate, rateints = (strun_output_path(STEPS["ramp_fit"], STEPS["ramp_fit"].make_params({}), f"{ROOT}_jump.fits",
                                        tmp_path, idx=i) for i in (0, 1))
    assert (rate.name, rateints.name) == (f"{ROOT}_0_rampfitstep.fits", f"{ROOT}_1_rampfitstep.fits")


def test_a_step_that_reads_no_reference_records_no_crds_context(tmp_path, real_rules_cache):
    """strun records the CRDS context and version only on the product of a step that asked CRDS for
    references; firstframe (run, not skipped) reads none, so neither jwst's nor webbflow's product carries CRDS_CTX."""
    import numpy as np
    from astropy.io import fits

    from webbflow import models
    from webbflow.flows.single import run_single_step

    m = models.RampModel(data=np.ones((1, 5, 8, 8), np.float32))
    m.groupdq = np.zeros((1, 5, 8, 8), np.uint8)
    m.pixeldq = np.zeros((8, 8), np.uint32)
    meta = m.meta
    meta.telescope, meta.instrument.name, meta.instrument.detector = "JWST", "MIRI", "MIRIMAGE"
    meta.exposure.type, meta.exposure.ngroups, meta.exposure.nints = "MIR_IMAGE", 5, 1
    meta.observation.date, meta.observation.time = "2024-01-01", "00:00:00"
    src = Path(m.save(tmp_path / f"{ROOT.replace('nrs1', 'mirimage')}_ramp.fits"))
    ours = tmp_path / "ours"
    ours.mkdir()
    [written] = run_single_step("firstframe", src, output_dir=ours, params={"skip": False})
    from jwst.firstframe import FirstFrameStep
    from parity import jwst_offline, quiet_jwst

    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        FirstFrameStep.call(str(src), output_dir=str(tmp_path), save_results=True, skip=False)
    theirs = tmp_path / Path(written).name
    with fits.open(written) as a, fits.open(theirs) as b:
        assert "CRDS_CTX" not in b[0].header and "CRDS_VER" not in b[0].header
        assert "CRDS_CTX" not in a[0].header and "CRDS_VER" not in a[0].header
        assert a[0].header["CAL_VER"] and b[0].header["CAL_VER"]
        assert a[0].header["S_FRSTFR"] == b[0].header["S_FRSTFR"] == "COMPLETE"
