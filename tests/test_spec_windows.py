"""Spec drizzles and blots over the pixels they use (tasks/resample.py ``windowed_drizzles``,
tasks/outlier_detection.py ``_blots_in_window``) must give stcal's whole-exposure answers bit for bit,
on a real NIRSpec slit whose gWCS maps pixels outside its bounding box to finite coordinates."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REAL

from webbflow import models

SLIT = REAL / "nirspec_msa_prism_slits" / "jw01345062001_03101_00001_nrs2_phot.138.1345_933.fits"


@pytest.fixture(scope="module")
def slit():
    if not SLIT.exists():
        pytest.skip("the real NIRSpec slit is not in ../shared/data")
    return models.open(SLIT)


@pytest.fixture
def any_window(monkeypatch):
    from webbflow.tasks import resample

    monkeypatch.setattr(resample, "_WINDOW_WORTH", 1.01)  # a window however large (the slit is a cutout)


def _same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def test_blots_in_window_are_stcals(slit, any_window):
    from stcal.outlier_detection.utils import gwcs_blot

    from webbflow.tasks.outlier_detection import _blots_in_window
    from webbflow.tasks.resample_spec import spectral_output_grid

    grid = spectral_output_grid([slit])
    rng = np.random.default_rng(3)
    med = rng.normal(10.0, 2.0, grid["array_shape"] if "array_shape" in grid else grid["wcs"].array_shape).astype(np.float32)
    err = np.abs(rng.normal(1.0, 0.1, med.shape)).astype(np.float32)
    found = _blots_in_window(med, err, grid["wcs"], slit)
    assert found is not None
    cut, blot, blot_err = found
    for got, data in ((blot, med), (blot_err, err)):
        whole = gwcs_blot(median_data=data, median_wcs=grid["wcs"], blot_shape=slit.data.shape, blot_wcs=slit.meta.wcs,
                          fillval=np.nan, pixmap_stepsize=1, pixmap_order=1)
        assert _same(whole[cut], got)
        outside = whole.copy()
        outside[cut] = np.nan
        assert np.isnan(outside).all()


@pytest.mark.parametrize("box", [None, ((100.5, 250.5), (3.5, 20.5)), ((-0.5, 80.5), (-0.5, 12.5))])
def test_windowed_drizzle_is_the_whole_drizzle(slit, any_window, box):
    """The slit whole, and with a bounding box inside it (a window cut from the middle, and one
    against two of its edges)."""
    import copy

    from webbflow.tasks import resample
    from webbflow.tasks.resample import ResampleParams, _drizzle, windowed_drizzles
    from webbflow.tasks.resample_spec import spectral_output_grid

    grid = spectral_output_grid([slit])
    if box is not None:
        slit = copy.copy(slit)
        slit.meta = slit.meta.model_copy()
        slit.meta.wcs = copy.deepcopy(slit.meta.wcs)
        slit.meta.wcs.bounding_box = box
        m = resample._window_map(slit.meta.wcs, grid["wcs"], slit.data.shape)
        assert m.shape[:2] != slit.data.shape
    rparams = ResampleParams(pixfrac=1.0, kernel="square", fillval="NAN", weight_type="ivm", enable_ctx=True,
                             pixmap_stepsize=1.0, pixmap_order=1)
    for kw in (dict(enable_var=False, report_var=False, compute_err="driz_err"),
               dict(enable_var=True, report_var=True, compute_err="from_var")):
        whole = _drizzle([slit], dict(grid), rparams, bare=True, **kw)
        with windowed_drizzles():
            cut = _drizzle([slit], dict(grid), rparams, bare=True, **kw)
        for k, v in whole.items():
            if isinstance(v, np.ndarray):
                assert _same(v, cut[k]), k
