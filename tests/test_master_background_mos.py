"""master_background_mos computed from background slitlets, against jwst 3.0's MasterBackgroundMosStep.

The scene is tests/nirspec_msa_scene.py's NRS2 PRISM/CLEAR MSA exposure (the trimmed SMACS 0723
configuration: four slitlets).  jwst's assign_wcs, extract_2d and srctype make the step's input; two of
the four slitlets are then made background slitlets (jwst's rule: the source name holds BKG; EXTENDED,
as srctype makes an empty shutter's), and every slitlet's data becomes a uniform sky of 10 MJy/sr as
the detector records it (webbflow's extended-source calibration inverted, which the step's own
comparison with jwst checks) with 1 % noise.  jwst's step and webbflow's run on that same file with the
same references: the real optical chain, webbflow's synthetic NIRSpec MSA flats (f, s, d), barshadow,
MOS pathloss, photom and area (refs/synthetic_nirspec_flat.py, refs/synthetic_nirspec_spec2.py), and
extract1d/apcorr N/A (extract_1d's defaults).

Compared: the background-subtracted slitlets (SCI within rtol 1e-4 for >= 99.9 % of the pixels, ERR
and variances unchanged, DQ identical), the master spectrum (masterbg1d), the 2-D backgrounds
(masterbg2d) and the background slitlets' spectra (bkgx1d), and S_MSBSUB.  What a user checks: the sky
is gone from every slitlet (median residual under 1 % of the sky, scatter the noise's).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import SHARED_DATA
from webbflow import models
from webbflow.tasks import load_all
from webbflow.tasks.base import run_step

import nirspec_msa_scene as scene

load_all()

pytestmark = [pytest.mark.real, pytest.mark.parity]

BACKGROUND_SLITS = (0, 2)  # slitlets renamed as background ones
RTOL, MIN_FRACTION = 1e-4, 0.999
SKY = 10.0  # MJy/sr, the same at every wavelength


def _substep_refs(folder: Path) -> dict[str, dict[str, str]]:
    """The sub-steps' references, as each step's overrides (the same for jwst and webbflow)."""
    from webbflow.refs import synthetic_nirspec_flat as sf
    from webbflow.refs import synthetic_nirspec_spec2 as s2

    real_photom = SHARED_DATA / "real-refs" / "nirspec" / "jwst_nirspec_photom_0014.fits"
    return {
        "flat_field": {
            "override_fflat": str(sf.write_fflat_msa(folder / "webbflow_nirspec_fflat_msa.fits")),
            "override_sflat": str(sf.write_sflat(folder / "webbflow_nirspec_sflat_msa.fits", "NRS_MSASPEC", "NRS2")),
            "override_dflat": str(sf.write_dflat(folder / "webbflow_nirspec_dflat_nrs2.fits", "NRS2"))},
        "pathloss": {"override_pathloss": str(s2.write_pathloss(folder / "webbflow_nirspec_pathloss_mos.fits", "MOS"))},
        "barshadow": {"override_barshadow": str(sf.write_barshadow(folder / "webbflow_nirspec_barshadow.fits"))},
        "photom": {"override_photom": str(s2.write_mos_photom(folder / "webbflow_nirspec_photom_mos.fits", real_photom)),
                   "override_area": str(s2.write_mos_area(folder / "webbflow_nirspec_area_mos.fits"))},
        "extract_1d": {"override_extract1d": "N/A", "override_apcorr": "N/A"},
    }


def _sky_as_observed(model, path: Path, subs: dict) -> None:
    """Replace each slitlet's data by a uniform sky of SKY MJy/sr as the detector records it (the
    calibration as an extended source inverted: flats, bar shadows, path loss, photom), with 1 % noise;
    NaN where the chain gives no value.  A self-consistent sky, which a master background must remove."""
    from webbflow.tasks.base import STEPS
    from webbflow.tasks.master_background_mos import _calibrate_as_extended

    sky = models.open(path)
    for slit in sky.slits:
        slit.data[...] = SKY
    sky = _calibrate_as_extended(sky, STEPS["master_background_mos"].make_params({"steps": subs}), inverse=True)
    rng = np.random.default_rng(5)
    for slit, observed in zip(model.slits, sky.slits):
        slit.data = (observed.data * (1.0 + 0.01 * rng.standard_normal(observed.data.shape))).astype(np.float32)


@pytest.fixture(scope="module")
def mbkg(tmp_path_factory, real_rules_cache):
    from jwst.assign_wcs import AssignWcsStep
    from jwst.extract_2d import Extract2dStep
    from jwst.master_background import MasterBackgroundMosStep
    from jwst.srctype import SourceTypeStep
    from parity import jwst_offline, quiet_jwst

    tmp = tmp_path_factory.mktemp("nrs-mbkg")
    refs = scene.references(tmp)
    subs = _substep_refs(tmp)
    rate = scene.msa_rate(tmp)
    jdir, odir = tmp / "jwst", tmp / "webbflow"
    jdir.mkdir()
    odir.mkdir()
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = AssignWcsStep.call(str(rate), **scene.wcs_overrides(refs))
        m = SourceTypeStep.call(Extract2dStep.call(m))
        for k in BACKGROUND_SLITS:  # an empty shutter's slitlet: no source, so extended by srctype's rule
            m.slits[k].source_name = f"2736_BKG{m.slits[k].name}"
            m.slits[k].source_type = "EXTENDED"
        _sky_as_observed(m, Path(m.save(str(tmp / "sky_srctype.fits"))), subs)
        inp = Path(m.save(str(tmp / f"{scene.ROOT}_srctype.fits")))
        theirs = MasterBackgroundMosStep.call(str(inp), steps=subs, save_background=True, output_dir=str(jdir))
        theirs.save(str(jdir / f"{scene.ROOT}_master_background_mos.fits"))
        res = run_step("master_background_mos", models.open(inp),
                       {"steps": subs, "save_background": True, "output_dir": str(odir)})
    res.model.save(odir / f"{scene.ROOT}_master_background_mos.fits")
    return SimpleNamespace(input=inp, jdir=jdir, odir=odir, ours=res, theirs=theirs)


def _agree(name, ours, theirs, rtol=RTOL, atol=0.0):
    from parity import compare_arrays

    ag = compare_arrays(name, np.asarray(ours, float), np.asarray(theirs, float), rtol=rtol, atol=atol)
    assert ag.fraction >= MIN_FRACTION, str(ag)
    return ag


def test_slitlets_after_subtraction_match_jwst(mbkg):
    ours, theirs = mbkg.ours.model, mbkg.theirs
    assert mbkg.ours.status == "COMPLETE"
    assert ours.meta.cal_step.master_background == theirs.meta.cal_step.master_background == "COMPLETE"
    before = models.open(mbkg.input)
    assert [s.name for s in ours.slits] == [s.name for s in theirs.slits]
    for so, sj, sb in zip(ours.slits, theirs.slits, before.slits):
        _agree(f"slit {so.name} data", so.data, sj.data, atol=1e-6)
        assert np.array_equal(so.dq, sj.dq), f"slit {so.name} dq"
        for name in ("err", "var_poisson", "var_rnoise"):
            assert np.array_equal(getattr(so, name), getattr(sb, name), equal_nan=True), (so.name, name)
        # the sky is gone: what is left is the 1 % noise around zero
        good = np.isfinite(so.data) & np.isfinite(sb.data) & ((so.dq & 1) == 0)
        assert good.sum() > 1000
        level = np.median(sb.data[good])
        assert level > 0
        assert abs(np.median(so.data[good])) < 0.01 * level, so.name
        assert np.std(so.data[good]) < 0.05 * level, so.name


def test_background_products_match_jwst(mbkg):
    """masterbg1d (the master spectrum), masterbg2d (each slitlet's background in DN/s) and bkgx1d (the
    background slitlets' spectra), named as jwst names them."""
    names = sorted(p.name for p in mbkg.jdir.glob("*_masterbg*.fits")) + sorted(
        p.name for p in mbkg.jdir.glob("*_bkgx1d.fits"))
    assert {n.rsplit("_", 1)[1] for n in names} == {"masterbg1d.fits", "masterbg2d.fits", "bkgx1d.fits"}
    for n in names:
        assert (mbkg.odir / n).exists(), n
    one = next(n for n in names if n.endswith("masterbg1d.fits"))
    to, tj = (models.open(d / one).spec[0].spec_table for d in (mbkg.odir, mbkg.jdir))
    assert len(to) == len(tj) > 50
    for col in ("WAVELENGTH", "FLUX", "SURF_BRIGHT", "N_INPUT"):
        _agree(f"masterbg1d {col}", to[col], tj[col])
    x1d = next(n for n in names if n.endswith("bkgx1d.fits"))
    so, sj = (models.open(d / x1d).spec for d in (mbkg.odir, mbkg.jdir))
    assert len(so) == len(sj) == len(BACKGROUND_SLITS)
    for a, b in zip(so, sj):
        for col in ("WAVELENGTH", "SURF_BRIGHT", "FLUX"):
            _agree(f"bkgx1d {col}", a.spec_table[col], b.spec_table[col])
    two = next(n for n in names if n.endswith("masterbg2d.fits"))
    bo, bj = (models.open(d / two) for d in (mbkg.odir, mbkg.jdir))
    for a, b in zip(bo.slits, bj.slits):
        _agree(f"masterbg2d {a.name}", a.data, b.data, atol=1e-6)
        assert np.array_equal(a.dq, b.dq)


def test_sub_step_settings_come_from_the_spec2_flow():
    """The MSA branch hands its flat_field/pathloss/barshadow/photom settings down to the step (jwst's
    set_pars_from_parent): skip and overrides inherited, source_type and inverse not; the step's own
    ``steps`` settings win; an unknown sub-step is a one-line error."""
    from webbflow.errors import ParameterError
    from webbflow.flows._spec2_nirspec import _inherit_mbkg_substeps
    from webbflow.tasks.base import STEPS

    params = {n: STEPS[n].make_params(v) for n, v in {
        "flat_field": {"override_fflat": "/refs/my_fflat.fits"},
        "pathloss": {"skip": True, "source_type": "POINT"},
        "barshadow": {"inverse": True},
        "photom": {},
        "master_background_mos": {"steps": {"photom": {"override_photom": "/refs/mine.fits"}}}}.items()}
    _inherit_mbkg_substeps(params)
    subs = params["master_background_mos"].steps
    assert subs["flat_field"]["override_fflat"] == "/refs/my_fflat.fits"
    assert subs["pathloss"]["skip"] is True and "source_type" not in subs["pathloss"]
    assert "inverse" not in subs["barshadow"]
    assert subs["photom"]["override_photom"] == "/refs/mine.fits"
    with pytest.raises(ParameterError, match="no sub-step 'resample'"):
        run_step("master_background_mos", models.MultiSlitModel(), {"steps": {"resample": {}}})
