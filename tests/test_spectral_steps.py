"""Slit Stage 3 steps against jwst 3.0 on the two real NIRSpec MSA PRISM slits (one slit, two nods).

Both sides run as ``strun STEP asn.json`` would, from the association's folder:
- outlier_detection (spec mode): one product per slit, DQ identical, arrays within rtol 1e-4
  for >= 99.9 % of the pixels, every header keyword as jwst writes it;
- resample_spec: one s2d, same shape, WCS and arrays (rtol 1e-4, >= 99.9 %), same keywords.
The s2d of an association's slits carries jwst's HDRTAB table (every input's keywords).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import CRDS_RULES, REAL
from parity import compare_arrays, compare_dq, jwst_offline

from webbflow.flows.single import run_single_step
from webbflow.tasks import load_all

load_all()

pytestmark = pytest.mark.real

SLITS = sorted((REAL / "nirspec_msa_prism_slits").glob("*.fits"))
ASN = "jw01345-o062_20230101t000000_spec3_00001_asn.json"
ASN_ID = "o062"
# cards that legitimately differ: when the file was written and by which software
VOLATILE = {"DATE", "CAL_VER", "CHECKSUM", "DATASUM"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The association and both sides' products: ``{"ours": {step: [paths]}, "jwst": {...}}``."""
    import os

    root = tmp_path_factory.mktemp("slits")
    for p in SLITS:
        shutil.copy(p, root / p.name)
        (root / p.name).chmod(0o644)
    (root / ASN).write_text(json.dumps({
        "asn_id": ASN_ID, "asn_pool": "jw01345_20230101t000000_pool.csv", "asn_type": "spec3", "asn_rule": "test",
        "program": "01345", "target": "1",
        "products": [{"name": "jw01345-o062_s00933_nirspec_clear-prism",
                      "members": [{"expname": p.name, "exptype": "science"} for p in SLITS]}],
    }))
    out = {"ours": {}, "jwst": {}}
    for step in ("resample_spec", "outlier_detection"):
        d = root / f"ours_{step}"
        d.mkdir()
        out["ours"][step] = sorted(run_single_step(step, root / ASN, output_dir=d, params={}))

    warnings.simplefilter("ignore")
    from jwst.outlier_detection import OutlierDetectionStep
    from jwst.resample import ResampleSpecStep

    cwd = os.getcwd()
    os.chdir(root)
    try:
        with jwst_offline(CRDS_RULES, "jwst_0541.pmap"):
            for step, cls in (("resample_spec", ResampleSpecStep), ("outlier_detection", OutlierDetectionStep)):
                d = root / f"jwst_{step}"
                d.mkdir()
                cls.call(ASN, save_results=True, output_dir=str(d))
                out["jwst"][step] = sorted(str(p) for p in d.glob("*.fits"))
    finally:
        os.chdir(cwd)
    return out


def _compare_headers(ours: Path, theirs: Path, skip_ext=()):
    with fits.open(ours) as a, fits.open(theirs) as b:
        names_a = [(h.name, h.ver) for h in a]
        names_b = [(h.name, h.ver) for h in b if h.name not in skip_ext]
        assert names_a == names_b
        for ha in a:
            if ha.name == "ASDF":
                continue
            hb = b[ha.name, ha.ver]
            ka = {k for k in ha.header if k and k not in VOLATILE}
            kb = {k for k in hb.header if k and k not in VOLATILE}
            assert ka == kb, (ha.name, sorted(ka ^ kb))
            for k in ka:
                va, vb = ha.header[k], hb.header[k]
                assert type(va) is type(vb), (ha.name, k, va, vb)
                if isinstance(va, float):
                    # PIXAR_A2 of the s2d: jwst starts from the ASDF tree's PIXAR_SR (one more digit than the card)
                    assert va == pytest.approx(vb, rel=1e-12, abs=0.0), (ha.name, k)
                else:
                    assert va == vb, (ha.name, k)


@pytest.mark.parity
def test_outlier_detection_spec_parity(runs):
    from stdatamodels.jwst import datamodels as dm

    ours, theirs = runs["ours"]["outlier_detection"], runs["jwst"]["outlier_detection"]
    assert [Path(p).name for p in ours] == [Path(p).name for p in theirs]
    assert Path(ours[0]).name == SLITS[0].stem + f"_{ASN_ID}_outlierdetectionstep.fits"
    print()
    for o, t in zip(ours, theirs):
        a, b = dm.open(o), dm.open(t)
        assert type(a).__name__ == "SlitModel"
        n_ours, n_jwst = int(np.count_nonzero(a.dq & 16)), int(np.count_nonzero(b.dq & 16))
        print(f"{Path(o).name}: outliers ours {n_ours}, jwst {n_jwst}")
        assert n_jwst > 50  # the real nods do disagree: the comparison is not vacuous
        assert compare_dq("DQ", a.dq, b.dq).fraction == 1.0
        for name in ("data", "err", "var_poisson", "var_rnoise", "var_flat", "wavelength"):
            assert compare_arrays(name, getattr(a, name), getattr(b, name), rtol=1e-4).fraction >= 0.999
        assert a.meta.cal_step.outlier_detection == "COMPLETE"
        _compare_headers(Path(o), Path(t))


@pytest.mark.parity
def test_resample_spec_parity(runs):
    from stdatamodels.jwst import datamodels as dm

    ours, theirs = runs["ours"]["resample_spec"], runs["jwst"]["resample_spec"]
    assert [Path(p).name for p in ours] == [Path(p).name for p in theirs] == [ASN.replace(".json", "_resamplespecstep.fits")]
    a, b = dm.open(ours[0]), dm.open(theirs[0])
    assert type(a).__name__ == type(b).__name__ == "SlitModel"
    assert a.data.shape == b.data.shape
    y, x = np.mgrid[: a.data.shape[0], : a.data.shape[1]]
    wa, wb = np.array(a.meta.wcs(x, y)), np.array(b.meta.wcs(x, y))
    np.testing.assert_allclose(wa, wb, rtol=1e-12, atol=0)
    print()
    for name in ("data", "err", "wht", "var_poisson", "var_rnoise", "var_flat", "wavelength", "con"):
        assert compare_arrays(name, getattr(a, name), getattr(b, name), rtol=1e-4).fraction >= 0.999
    assert np.isfinite(a.data).mean() > 0.8
    assert (a.name, a.source_id, a.shutter_state) == (b.name, b.source_id, b.shutter_state)
    assert a.meta.resample.pixfrac == b.meta.resample.pixfrac
    _compare_headers(Path(ours[0]), Path(theirs[0]))
    # the whole product, HDRTAB (each input's keywords, one row per slit) value for value
    from test_products_whole import compare_fits

    problems: list[str] = []
    compare_fits(Path(ours[0]).name, Path(ours[0]), Path(theirs[0]), problems)
    assert not problems, "\n".join(problems)
    with fits.open(ours[0]) as f:
        assert len(f["HDRTAB"].data) == 2 and len(f["HDRTAB"].columns) > 200


def test_resample_spec_on_multislit_exposures(runs, tmp_path):
    """MultiSlitModel inputs: slits grouped by name, one resampled slit each, equal to the slit-list result."""
    from stdatamodels.jwst import datamodels as dm

    from webbflow import models
    from webbflow.tasks.resample_spec import resample_slits

    exposures = [models.MultiSlitModel(models.open(p)) for p in SLITS]
    out = resample_slits(exposures)
    assert type(out) is models.MultiSlitModel and [s.name for s in out.slits] == ["138"]
    s2d = models.open(runs["ours"]["resample_spec"][0])
    np.testing.assert_array_equal(out.slits[0].data, s2d.data)
    np.testing.assert_array_equal(out.slits[0].wavelength, s2d.wavelength)
    back = dm.open(out.save(tmp_path / "multi_s2d.fits"))
    assert type(back).__name__ == "MultiSlitModel" and back.meta.cal_step.resample == "COMPLETE"
    assert back.slits[0].data.shape == s2d.data.shape


def test_slit_steps_refuse_what_they_cannot_do(tmp_path):
    from webbflow import models
    from webbflow.errors import InputFileError, UnsupportedModeError
    from webbflow.tasks.resample_spec import resample_slits

    with pytest.raises(UnsupportedModeError, match="CubeModel"):
        resample_slits([models.open(REAL / "miri_lrs_slitless_tso_crfints.fits")])
    slit = models.open(SLITS[0])
    slit.meta.wcs = None
    with pytest.raises(UnsupportedModeError, match="no WCS"):
        resample_slits([slit])
    asn = tmp_path / "one_asn.json"
    asn.write_text(json.dumps({"asn_id": "o001", "products": [{"name": "x", "members": [{"expname": "a.fits"}]}]}))
    with pytest.raises(InputFileError, match="takes one exposure"):
        run_single_step("jump", asn, output_dir=tmp_path, params={})


@pytest.mark.parity
@pytest.mark.parametrize("algorithm", ["mingrad", "fit_profile"])
def test_pixel_replace_parity(algorithm):
    """pixel_replace on a real slit: arrays and DQ identical to jwst's."""
    warnings.simplefilter("ignore")
    from jwst.pixel_replace import PixelReplaceStep

    from webbflow import models
    from webbflow.tasks.base import run_step

    for path in SLITS[:1]:  # the second slit takes the same code paths
        ours = models.open(path)
        before = int(np.count_nonzero(ours.dq & (1 << 28)))
        assert run_step("pixel_replace", ours, {"skip": False, "algorithm": algorithm}).status == "COMPLETE"
        assert int(np.count_nonzero(ours.dq & (1 << 28))) > before
        with jwst_offline(CRDS_RULES, "jwst_0541.pmap"):
            theirs = PixelReplaceStep.call(str(path), skip=False, algorithm=algorithm)
        assert compare_dq("DQ", ours.dq, theirs.dq).fraction == 1.0
        for name in ("data", "err", "var_poisson", "var_rnoise", "var_flat"):
            assert compare_arrays(name, getattr(ours, name), getattr(theirs, name), rtol=1e-6).fraction == 1.0


def test_pixel_replace_mingrad_picks_the_flatter_direction():
    from webbflow import models
    from webbflow.models import dqflags
    from webbflow.tasks.base import run_step

    y, x = np.mgrid[:7, :8]
    m = models.SlitModel(data=(10.0 * x + y).astype(np.float32))  # steep along x, gentle along y
    m.err = np.ones((7, 8), np.float32)
    m.var_rnoise = np.full((7, 8), 4.0, np.float32)
    m.data[3, 4] = np.nan
    m.data[1, 4] = np.nan  # too close to the edge: left alone
    m.dq[3, 4] = dqflags.DO_NOT_USE
    assert run_step("pixel_replace", m, {}).status == "SKIPPED"  # off by default, as in jwst
    assert np.isnan(m.data[3, 4])
    run_step("pixel_replace", m, {"skip": False})
    assert m.data[3, 4] == pytest.approx(43.0)  # mean of the vertical neighbours 42 and 44
    assert m.var_rnoise[3, 4] == pytest.approx(4.0)
    assert m.dq[3, 4] == dqflags.FLUX_ESTIMATED
    assert np.isnan(m.data[1, 4]) and m.dq[1, 4] == 0
    with pytest.raises(Exception, match="not implemented"):
        run_step("pixel_replace", m, {"skip": False, "algorithm": "trace_model"})


def test_pixel_replace_fit_profile_scales_the_neighbours_profile():
    """A Gaussian trace across the slit, one pixel lost at its peak: the neighbours' profile, scaled, restores it."""
    from webbflow import models
    from webbflow.models import dqflags
    from webbflow.tasks.base import run_step

    y = np.arange(11)[:, None]
    amplitude = np.linspace(50.0, 80.0, 30)[None, :]
    truth = (amplitude * np.exp(-0.5 * ((y - 5.0) / 1.5) ** 2) + 1.0).astype(np.float32)
    m = models.SlitModel(data=truth.copy())
    m.err = np.full(truth.shape, 0.5, np.float32)
    m.meta.wcsinfo.dispersion_direction = 1
    m.data[5, 12] = np.nan
    m.dq[5, 12] = dqflags.DO_NOT_USE
    run_step("pixel_replace", m, {"skip": False, "algorithm": "fit_profile"})
    assert m.data[5, 12] == pytest.approx(truth[5, 12], rel=0.02)
    assert m.dq[5, 12] == dqflags.FLUX_ESTIMATED
    np.testing.assert_array_equal(np.delete(m.data.ravel(), 5 * 30 + 12), np.delete(truth.ravel(), 5 * 30 + 12))
