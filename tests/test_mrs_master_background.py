"""spec3's master_background on MIRI MRS exposures, against jwst 3.0's MasterBackgroundStep.

The science is one MIRIFULONG cal of tests/mrs_cube_scene.py (jwst's assign_wcs with the real MRS
references); the background members are two MRS x1d spectra as jwst's extract_1d writes them
(stdatamodels, test-only), of a sky that rises with wavelength, their BACKGROUND columns holding the
sky (jwst takes an MRS background spectrum's BACKGROUND column as the sky, whatever BKGDTARG says) and
their SURF_BRIGHT something else.  jwst's step runs on a spec3 association of the three; webbflow's
step runs on the same members, and its spec3 IFU path too (outlier_detection, cube_build and extract_1d
skipped) for the products save_background writes.

Compared: the background-subtracted exposure (SCI within rtol 1e-4 for >= 99.9 % of the pixels, DQ,
ERR unchanged), the master spectrum (masterbg1d) and the 2-D background (masterbg2d), by jwst's names.
What a user checks: the sky is gone where the scene has no source.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from webbflow import models
from webbflow.tasks import load_all
from webbflow.tasks.base import run_step

load_all()

pytestmark = [pytest.mark.real, pytest.mark.parity]

ASN_ID = "c1001"


def _sky(lam):
    return 20.0 + 3.0 * (lam - 15.0)  # MJy/sr


def _background_x1d(path: Path, lam, scale: float, exposure_time: float) -> Path:
    from stdatamodels.jwst import datamodels as dm

    m = dm.MRSMultiSpecModel()
    m.meta.instrument.name, m.meta.instrument.detector = "MIRI", "MIRIFULONG"
    m.meta.instrument.channel, m.meta.instrument.band = "34", "LONG"
    m.meta.exposure.type = "MIR_MRS"
    m.meta.exposure.exposure_time = exposure_time
    m.meta.observation.bkgdtarg = True
    m.meta.observation.date, m.meta.observation.time = "2022-08-20", "10:00:00.000"
    m.meta.telescope = "JWST"
    tab = np.zeros(lam.size, dtype=dm.MRSSpecModel().get_dtype("spec_table"))
    tab["WAVELENGTH"] = lam
    tab["BACKGROUND"] = scale * _sky(lam)
    tab["SURF_BRIGHT"] = 5.0 * _sky(lam)  # not the sky: jwst replaces it by BACKGROUND for MRS
    tab["FLUX"] = 1.0
    tab["NPIXELS"] = 10
    spec = dm.MRSSpecModel(spec_table=tab)
    spec.source_type, spec.name = "EXTENDED", "MIR_MRS"
    m.spec.append(spec)
    m.meta.filename = path.name
    m.save(path)
    return path


@pytest.fixture(scope="module")
def mbg(tmp_path_factory, real_rules_cache):
    from jwst.master_background import MasterBackgroundStep
    from parity import jwst_offline, quiet_jwst

    import mrs_cube_scene as scene

    from webbflow.flows._spec3_ifu import spec3_ifu

    tmp = tmp_path_factory.mktemp("mrs-mbg")
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst():
        cal = scene.make_cal_files(tmp, ndither=1)[0]
    sci = models.open(cal)
    sci.data = (sci.data + _sky_at(sci)).astype(np.float32)  # the scene on the sky
    sci.save(cal)
    lam = np.linspace(15.2, 28.0, 600)
    bkgs = [_background_x1d(tmp / f"jw01523004001_0210{k}_00001_mirifulong_x1d.fits", lam, s, t)
            for k, s, t in ((1, 0.98, 300.0), (2, 1.02, 300.0))]
    asn = {"asn_type": "spec3", "asn_rule": "Asn_Lv3MIRMRS", "asn_id": ASN_ID, "asn_pool": "jw01523_pool.csv",
           "products": [{"name": scene.PRODUCT, "members": [{"expname": cal.name, "exptype": "science"}] + [
               {"expname": b.name, "exptype": "background"} for b in bkgs]}]}
    asn_path = tmp / f"jw01523-{ASN_ID}_spec3_00001_asn.json"
    asn_path.write_text(json.dumps(asn))
    jdir, odir = tmp / "jwst", tmp / "webbflow"
    jdir.mkdir()
    with jwst_offline(real_rules_cache, "jwst_0541.pmap"), quiet_jwst(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = MasterBackgroundStep.call(str(asn_path), save_background=True, output_dir=str(jdir))
        theirs = result[0] if hasattr(result, "__getitem__") and not hasattr(result, "data") else result
        theirs = theirs.copy()
        spec3_ifu([str(cal)], product_name=scene.PRODUCT, asn_id=ASN_ID, asn_pool="jw01523_pool.csv",
                  asn_table_name=asn_path.name, output_dir=str(odir), backgrounds=[str(b) for b in bkgs],
                  steps={"master_background": {"save_background": True}, "outlier_detection": {"skip": True},
                         "cube_build": {"skip": True}, "extract_1d": {"skip": True}})
    res = run_step("master_background", [models.open(cal)] + [models.open(b) for b in bkgs], {})
    ours = next(m for m in res.model if isinstance(m, models.IFUImageModel))
    return SimpleNamespace(cal=cal, lam=lam, jdir=jdir, odir=odir, theirs=theirs, ours=ours, status=res.status)


def _sky_at(model):
    y, x = np.indices(model.data.shape, dtype=float)
    lam = np.asarray(model.meta.wcs(x, y)[2], dtype=float)
    return np.where(np.isfinite(lam), _sky(np.nan_to_num(lam, nan=15.0)), 0.0)


def test_exposure_after_master_background_matches_jwst(mbg):
    from parity import compare_arrays

    theirs = mbg.theirs
    mine = sorted(mbg.odir.glob("*_masterbg2d.fits"))
    assert [p.name for p in mine] == [p.name for p in sorted(mbg.jdir.glob("*_masterbg2d.fits"))]
    assert len(mine) == 1
    ours_2d = models.open(mine[0])
    jwst_2d = models.open(sorted(mbg.jdir.glob("*_masterbg2d.fits"))[0])
    ag = compare_arrays("masterbg2d", np.asarray(ours_2d.data, float), np.asarray(jwst_2d.data, float), rtol=1e-4)
    assert ag.fraction >= 0.999, str(ag)
    before = models.open(mbg.cal)
    ours = mbg.ours
    assert mbg.status == "COMPLETE" and ours.meta.cal_step.master_background == "COMPLETE"
    ag = compare_arrays("sci", np.asarray(ours.data, float), np.asarray(theirs.data, float), rtol=1e-4, atol=1e-5)
    assert ag.fraction >= 0.999, str(ag)
    assert np.array_equal(ours.dq, theirs.dq) and np.array_equal(ours.err, theirs.err, equal_nan=True)
    # the spec3 flow's 2-D background is what the step subtracted
    assert np.allclose(before.data - ours_2d.data, ours.data, equal_nan=True)
    assert theirs.meta.cal_step.master_background == "COMPLETE"
    # what a user checks: on pixels with a wavelength and no source, the sky is gone
    sky = _sky_at(before)
    covered = sky > 0
    assert covered.sum() > 10000
    resid = ours.data[covered] - (before.data[covered] - sky[covered])
    assert np.nanmedian(np.abs(resid)) < 0.01 * np.nanmedian(sky[covered])


def test_master_spectrum_matches_jwst(mbg):
    """The combined master background: the BACKGROUND columns, exposure-time weighted, as SURF_BRIGHT."""
    ours = sorted(p.name for p in mbg.odir.glob("*_masterbg1d.fits"))
    theirs = sorted(p.name for p in mbg.jdir.glob("*_masterbg1d.fits"))
    assert ours == theirs and len(ours) == 1
    to = models.open(mbg.odir / ours[0]).spec[0].spec_table
    tj = models.open(mbg.jdir / theirs[0]).spec[0].spec_table
    assert len(to) == len(tj) == mbg.lam.size
    for col in ("WAVELENGTH", "SURF_BRIGHT", "FLUX"):
        assert np.allclose(to[col], tj[col], rtol=1e-6, equal_nan=True), col
    assert np.allclose(to["SURF_BRIGHT"], _sky(mbg.lam), rtol=1e-5)
