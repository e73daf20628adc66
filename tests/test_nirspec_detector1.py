"""NIRSpec detectors in detector1: IRS2 readouts through dq_init, saturation, ipc, superbias and refpix.

One simulated NRS1 full frame read with NRSIRS2RAPID (3 groups, 3200-row frames)
and its synthetic references (refs/synthetic_nirspec.py) per session; jwst
3.0's own functions run on the same arrays with the same references (saved
to FITS and opened with stdatamodels, which also checks their form).
Tolerances as for imaging: float arrays within rtol 1e-4 for >= 99.9 % of
pixels, DQ identical.  The measured agreement is printed (-s).
"""

from __future__ import annotations

import numpy as np
import pytest
from parity import compare_arrays, quiet_jwst

from webbflow import models
from webbflow.models import dqflags
from webbflow.refs.sim.nirspec_detector import simulate_nirspec_ramp
from webbflow.refs.synthetic_nirspec import irs2_rows, nirspec_detector_references
from webbflow.tasks import load_all
from webbflow.tasks._convert import as_ramp
from webbflow.tasks.base import run_step

load_all()

NGROUPS = 3
READPATT = "NRSIRS2RAPID"


@pytest.fixture(scope="session")
def irs2_case(tmp_path_factory):
    """The simulated uncal, our references, the references as files, and the IPC kernel used."""
    tmp = tmp_path_factory.mktemp("nirspec_irs2")
    refs = nirspec_detector_references("NRS1", READPATT, NGROUPS, 14.58889, seed=0)
    uncal, truth = simulate_nirspec_ramp("NRS1", READPATT, NGROUPS, 1, refs, seed=1)
    paths = {}
    for rt, m in refs.items():
        paths[rt] = tmp / f"nrs1_{rt}.fits"
        m.save(paths[rt])
    ipc = models.IPCModel(data=np.array([[-0.0003, -0.0055, -0.0003], [-0.0055, 1.0232, -0.0055],
                                         [-0.0003, -0.0055, -0.0003]], dtype=np.float32))
    ipc.meta.reftype, ipc.meta.instrument.name, ipc.meta.instrument.detector = "IPC", "NIRSPEC", "NRS1"
    paths["ipc"] = tmp / "nrs1_ipc.fits"
    ipc.save(paths["ipc"])
    refs["ipc"] = ipc
    uncal_path = tmp / uncal.meta.filename
    uncal.save(uncal_path)
    return {"uncal": uncal_path, "refs": refs, "paths": paths, "truth": truth}


@pytest.fixture(scope="session")
def chain(irs2_case):
    """dq_init -> saturation -> ipc -> superbias -> refpix, ours and jwst's, keeping each step's output."""
    from jwst.dq_init import dq_initialization
    from jwst.ipc import ipc_corr
    from jwst.refpix import irs2_subtract_reference as jirs2
    from jwst.saturation import saturation as jsat
    from jwst.superbias import bias_sub
    from stdatamodels.jwst import datamodels as dm

    refs, paths = irs2_case["refs"], irs2_case["paths"]
    ours = as_ramp(models.open(irs2_case["uncal"]))
    out = {"ours": {}, "jwst": {}}
    for name, rts in (("dq_init", ("mask",)), ("saturation", ("saturation", "superbias")), ("ipc", ("ipc",)),
                      ("superbias", ("superbias",)), ("refpix", ("refpix",))):
        res = run_step(name, ours, {}, references={rt: refs[rt] for rt in rts})
        assert res.status == "COMPLETE", name
        ours = res.model
        out["ours"][name] = (ours.data.copy(), ours.groupdq.copy(), ours.pixeldq.copy())

    with quiet_jwst():
        jm = dm.RampModel(str(irs2_case["uncal"]))
        jm = dq_initialization.do_dqinit(jm, dm.MaskModel(str(paths["mask"])))
        out["jwst"]["dq_init"] = (jm.data.copy(), jm.groupdq.copy(), jm.pixeldq.copy())
        jm = jsat.irs2_flag_saturation(jm, dm.SaturationModel(str(paths["saturation"])), 1, True,
                                       bias_model=dm.SuperBiasModel(str(paths["superbias"])))
        out["jwst"]["saturation"] = (jm.data.copy(), jm.groupdq.copy(), jm.pixeldq.copy())
        jm = ipc_corr.do_correction(jm, dm.IPCModel(str(paths["ipc"])))
        out["jwst"]["ipc"] = (jm.data.copy(), jm.groupdq.copy(), jm.pixeldq.copy())
        jm = bias_sub.do_correction(jm, dm.SuperBiasModel(str(paths["superbias"])))
        out["jwst"]["superbias"] = (jm.data.copy(), jm.groupdq.copy(), jm.pixeldq.copy())
        jirs2.flag_bad_refpix(jm, n_sigma=3.0, flag_only=True)
        jirs2.flag_bad_refpix(jm, replace_only=True)
        jm = jirs2.correct_model(jm, dm.IRS2Model(str(paths["refpix"])))
        out["jwst"]["refpix"] = (jm.data.copy(), jm.groupdq.copy(), jm.pixeldq.copy())
    return out


def test_simulated_irs2_layout(irs2_case):
    """3200-row frames with NRS_NORM/NRS_REF; light only in normal rows; references in jwst's form."""
    from stdatamodels.jwst import datamodels as dm

    with dm.open(str(irs2_case["uncal"])) as m:
        assert type(m).__name__ == "Level1bModel"
        assert m.data.shape == (1, NGROUPS, 3200, 2048) and m.data.dtype == np.uint16
        assert (m.meta.exposure.nrs_normal, m.meta.exposure.nrs_reference) == (16, 4)
        assert m.meta.subarray.ysize == 2048 and m.meta.exposure.frame_time == pytest.approx(14.58889)
        data = m.data.astype(np.float64)
    rows = irs2_rows("NRS1")
    bright = irs2_case["truth"]["stripe_rows"][1]  # a stripe that does not saturate
    normal_idx = np.flatnonzero(rows)
    up = data[0, -1] - data[0, 0]
    # the stripe's rows (normal pixels) rise; the interleaved reference rows beside them do not
    assert np.median(up[normal_idx[bright], 100:-100]) > 100.0
    near_refs = [r for r in np.flatnonzero(~rows) if abs(r - normal_idx[bright]) < 12]
    assert near_refs and abs(np.median(up[near_refs][:, 100:-100])) < 10.0
    for rt, cls, shape in (("mask", "MaskModel", (3200, 2048)), ("superbias", "SuperBiasModel", (3200, 2048)),
                           ("saturation", "SaturationModel", (2048, 2048)), ("dark", "DarkModel", (NGROUPS, 2048, 2048)),
                           ("refpix", "IRS2Model", None)):
        with dm.open(str(irs2_case["paths"][rt])) as ref:
            assert type(ref).__name__ == cls, rt
            if shape:
                arr = ref.dq if rt == "mask" else ref.data
                assert arr.shape == shape, rt
            else:
                assert len(ref.irs2_table) == 2 * 712 * 2048 and len(ref.dq_table) > 0


@pytest.mark.parity
@pytest.mark.parametrize("step", ["dq_init", "saturation", "ipc", "superbias", "refpix"])
def test_irs2_steps_match_jwst(chain, step):
    ours, theirs = chain["ours"][step], chain["jwst"][step]
    for (name, a), b in zip((("data", ours[0]), ("groupdq", ours[1]), ("pixeldq", ours[2])), theirs):
        assert a.shape == b.shape, f"{step} {name}: {a.shape} vs {b.shape}"
        if name == "data":
            ag = compare_arrays(f"{step} {name}", a, b, rtol=1e-4)
            assert ag.fraction >= 0.999
        else:
            assert np.array_equal(a, b), f"{step} {name}: {np.count_nonzero(a != b)} pixels differ"


@pytest.mark.parity
def test_irs2_refpix_removes_correlated_noise(chain, irs2_case):
    """What a user checks: the output is 2048x2048 and the readout noise common to the outputs is gone."""
    before = chain["ours"]["superbias"][0]
    after = chain["ours"]["refpix"][0]
    assert after.shape == (1, NGROUPS, 2048, 2048)
    rows = irs2_rows("NRS1")
    # a dark, unilluminated band: group differences before/after, without the stripes
    band = slice(1100, 1300)
    diff_before = (before[0, 1] - before[0, 0])[rows][band, 8:-8]
    diff_after = (after[0, 1] - after[0, 0])[band, 8:-8]
    # the column-median (the 1/f pattern along the readout) shrinks
    assert np.std(np.median(diff_after, axis=0)) < 0.7 * np.std(np.median(diff_before, axis=0))
    sat = dqflags.SATURATED
    gdq = chain["ours"]["refpix"][1]
    assert np.any(gdq[0, -1] & sat), "the bright stripe saturates"
