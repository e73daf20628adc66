"""NIRSpec detectors in detector1: IRS2 readouts from ``webbflow simulate --instrument nirspec`` to rate files.

One simulated NRS1 full frame read with NRSIRS2RAPID (3 groups, 3200-row frames), with
its synthetic references and CRDS cache, per session:

- dq_init, saturation, ipc and superbias, ours against jwst 3.0's own functions on the
  same arrays with the same reference files (opened with stdatamodels);
- the whole of calwebb_detector1, jwst run as strun runs it (from the simulation's
  folder, CRDS_PATH the simulation), against webbflow's detector1: rate and rateints
  compared whole (names, HDUs, keywords, arrays), which covers jwst's IRS2 refpix,
  linearity, dark, jump and ramp fitting on NIRSpec.

Tolerances as for imaging: float arrays within rtol 1e-4 for >= 99.9 % of pixels, DQ
identical.  The measured agreement is printed (-s).  NRS2 and NRSIRS2 (5 frames per
group), and NRSRAPID, were checked the same way outside CI (see the branch's report).
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from parity import compare_arrays, jwst_offline, quiet_jwst

from webbflow import models
from webbflow.models import dqflags
from webbflow.refs.synthetic_nirspec import irs2_rows
from webbflow.tasks import load_all
from webbflow.tasks._convert import as_ramp
from webbflow.tasks.base import run_step

load_all()

NGROUPS = 3
READPATT = "NRSIRS2RAPID"


@pytest.fixture(scope="session")
def irs2_case(tmp_path_factory):
    """``webbflow simulate --instrument nirspec`` once: the uncal, its CRDS cache, the references by type."""
    from webbflow.refs.simulator import simulate

    out = tmp_path_factory.mktemp("nirspec_irs2")
    # no --exp-type: the detector-level exposure (refs/sim/nirspec_detector.py; NRS_FIXEDSLIT is the spectrograph's)
    sim = simulate(out, instrument="nirspec", detector="NRS1", readpatt=READPATT, ngroups=NGROUPS, seed=1)
    paths = {p.name.split("_")[2]: p for p in (out / "references" / "jwst" / "nirspec").glob("jwst_nirspec_*.fits")}
    refs = {rt: models.open(p) for rt, p in paths.items()}
    # NIRSpec has no IPC reference in CRDS (jwst skips the step); one here exercises the IRS2 path of ipc
    ipc = models.IPCModel(data=np.array([[-0.0003, -0.0055, -0.0003], [-0.0055, 1.0232, -0.0055],
                                         [-0.0003, -0.0055, -0.0003]], dtype=np.float32))
    ipc.meta.reftype, ipc.meta.instrument.name, ipc.meta.instrument.detector = "IPC", "NIRSPEC", "NRS1"
    paths["ipc"] = out / "nrs1_ipc.fits"
    ipc.save(paths["ipc"])
    refs["ipc"] = ipc
    truth = json.loads(sim.catalog.read_text())
    return {"sim": sim, "uncal": sim.uncal[0], "refs": refs, "paths": paths, "truth": truth}


@pytest.fixture(scope="session")
def chain(irs2_case):
    """dq_init -> saturation -> ipc -> superbias, ours and jwst's functions, each step's output kept; then our refpix.

    (jwst's IRS2 refpix is compared through the whole detector1 products below, which run it anyway.)
    """
    from jwst.dq_init import dq_initialization
    from jwst.ipc import ipc_corr
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
    return out


@pytest.fixture(scope="session")
def detector1_products(irs2_case):
    """jwst's calwebb_detector1 run as strun runs it (from the folder, CRDS_PATH the simulation), and webbflow's."""
    from jwst.stpipe import Step

    from webbflow.flows.calwebb_detector1 import detector1

    sim = irs2_case["sim"]
    jw, wf = sim.output_dir / "jwst", sim.output_dir / "webbflow"
    jw.mkdir(exist_ok=True)
    wf.mkdir(exist_ok=True)
    with jwst_offline(sim.crds_path), quiet_jwst(), contextlib.chdir(sim.output_dir):
        Step.from_cmdline(["calwebb_detector1", sim.uncal[0].name, "--output_dir", "jwst"])
    with jwst_offline(sim.crds_path):
        detector1.fn(str(sim.uncal[0]), output_dir=str(wf))
    return wf, jw


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
    bright = irs2_case["truth"]["stripes"][1]["row"]  # a stripe that does not saturate
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
@pytest.mark.parametrize("step", ["dq_init", "saturation", "ipc", "superbias"])
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


@pytest.mark.parity
def test_irs2_detector1_products_whole(detector1_products):
    """rate and rateints compared whole with jwst's: names, HDUs, keywords, arrays (rtol 1e-4, 99.9 %), DQ."""
    from astropy.io import fits
    from test_products_whole import compare_products

    wf, jw = detector1_products
    names = {p.name for p in jw.iterdir() if p.name.endswith(("_rate.fits", "_rateints.fits"))}
    assert len(names) == 2, names
    problems = compare_products(wf, jw, names, suffixes=("_rate.fits", "_rateints.fits"))
    assert not problems, "\n".join(problems)
    for n in sorted(names):
        with fits.open(wf / n) as a, fits.open(jw / n) as b:
            assert a["SCI"].data.shape == (2048, 2048) or a["SCI"].data.shape == (1, 2048, 2048)
            ag = compare_arrays(n, a["SCI"].data, b["SCI"].data, rtol=1e-4)
            assert ag.fraction >= 0.999
            assert np.array_equal(a["DQ"].data, b["DQ"].data)
            assert a[0].header["R_REFPIX"].endswith("jwst_nirspec_refpix_0001.fits")


@pytest.mark.parametrize("n,r", [(16, 4), (8, 2), (12, 4)])
def test_irs2_layout_masks_match_jwst(n, r):
    """The normal/reference pixel layout along the readout, as jwst's two helpers give it."""
    from jwst.ipc import x_irs2
    from jwst.refpix.irs2_subtract_reference import make_irs2_mask

    from webbflow.tasks._irs2 import normal_mask
    from webbflow.tasks._irs2_refpix import refpix_normal_mask

    assert np.array_equal(refpix_normal_mask(3200, n, r), make_irs2_mask(3200, 2048, n, r))
    nx = 512 + 512 // n * r + 4 * (512 + 512 // n * r)
    assert np.array_equal(normal_mask(nx, n, r), x_irs2.make_mask(np.zeros((4, nx)), n=n, r=r))
    if (n, r) == (16, 4):
        assert normal_mask().sum() == 2048 and not normal_mask()[:640].any()


def test_half_spectrum_coefficients_give_the_real_part():
    """irfft(h * rfft(x)) equals Re(ifft(c * fft(x))) for real x: the identity refpix's speed-up rests on."""
    from webbflow.tasks._irs2_refpix import hermitian_half

    rng = np.random.default_rng(5)
    for size in (712, 713):
        x = rng.normal(size=(3, size))
        c = rng.normal(size=size) + 1j * rng.normal(size=size)
        full = np.fft.ifft(c * np.fft.fft(x, axis=1), axis=1).real
        half = np.fft.irfft(hermitian_half(c).astype(np.complex128) * np.fft.rfft(x, axis=1), n=size, axis=1)
        assert np.allclose(full, half, rtol=1e-5, atol=1e-5)


@pytest.mark.real
def test_references_have_the_form_of_real_nirspec_ones(irs2_case, shared_data):
    """Our superbias and dark open as the real NRS1 ones do, with the same image extensions, dtypes and axes."""
    from astropy.io import fits
    from stdatamodels.jwst import datamodels as dm

    real = shared_data / "real-refs" / "nirspec"
    for rt, cls in (("superbias", "SuperBiasModel"), ("dark", "DarkModel")):
        ours = irs2_case["paths"][rt]
        # (the 2017 dark has no DATAMODL keyword: stdatamodels opens it as a plain cube unless told)
        real_file = real / f"jwst_nirspec_{rt}_00{'75' if rt == 'superbias' else '46'}.fits"
        with dm.open(str(ours)) as a, getattr(dm, cls)(str(real_file)) as b:
            assert type(a).__name__ == cls
            assert a.data.ndim == b.data.ndim and a.data.dtype == b.data.dtype
            assert a.meta.instrument.name == b.meta.instrument.name == "NIRSPEC"
            assert a.meta.exposure.readpatt and b.meta.exposure.readpatt
        with fits.open(ours) as fa, fits.open(real_file) as fb:
            images = {h.name for h in fb if h.is_image and h.name in ("SCI", "ERR", "DQ")}
            assert images <= {h.name for h in fa}
            assert fa[0].header["REFTYPE"] == fb[0].header["REFTYPE"]
