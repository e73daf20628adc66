"""Spectroscopic datamodels: the real NIRSpec MSA slits and the MIRI LRS cube open here, round-trip,
open in stdatamodels as the same class, and their WCS evaluates as in jwst."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from conftest import REAL

from webbflow import models
from webbflow.models import IFUCubeModel, IFUImageModel, MultiSlitModel, SlitModel

SLITS = sorted((REAL / "nirspec_msa_prism_slits").glob("*.fits"))
LRS = REAL / "miri_lrs_slitless_tso_crfints.fits"

pytestmark = pytest.mark.real


def _dm():
    warnings.simplefilter("ignore")
    from stdatamodels.jwst import datamodels

    return datamodels


def _headers_differ(a, b, ignore=("FILENAME", "CHECKSUM", "DATASUM")):
    """Cards that differ between two headers (keyword -> (a, b)), structure aside."""
    da = {k: v for k, v in a.items() if k and k not in ignore}
    db = {k: v for k, v in b.items() if k and k not in ignore}
    return {k: (da.get(k), db.get(k)) for k in set(da) | set(db) if da.get(k) != db.get(k)}


def _pixel_grid(shape):
    y, x = np.mgrid[: shape[0], : shape[1]]
    return x.astype(float), y.astype(float)


def _same_world(w1, w2, shape):
    x, y = _pixel_grid(shape)
    a = np.array(w1(x, y))
    b = np.array(w2(x, y))
    assert a.shape == b.shape
    assert np.isfinite(a).any()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_array_equal(a[np.isfinite(a)], b[np.isfinite(b)])


def test_real_slit_attributes_and_keywords(tmp_path):
    assert len(SLITS) == 2
    m = models.open(SLITS[0])
    assert type(m) is SlitModel
    assert m.data.shape == m.wavelength.shape == m.pathloss_point.shape == m.barshadow.shape == (25, 341)
    assert (m.name, m.xstart, m.xsize, m.ystart, m.ysize) == ("138", 1, 341, 659, 25)
    assert (m.slitlet_id, m.source_id, m.source_name, m.shutter_state) == (138, 933, "1345_933", "1x1")
    assert m.source_xpos == pytest.approx(-0.25)
    # an attribute change reaches the SCI header and the tree
    m.source_name = "renamed"
    m.xstart = 7
    out = models.open(m.save(tmp_path / "s.fits"))
    assert (out.source_name, out.xstart) == ("renamed", 7)
    h = fits.getheader(tmp_path / "s.fits", "SCI")
    assert (h["SRCNAME"], h["SLTSTRT1"]) == ("renamed", 7)


def test_real_slit_opens_in_stdatamodels_and_wcs_agrees(tmp_path):
    dm = _dm()
    for path in SLITS:
        ours = models.open(path)
        theirs = dm.open(path)
        assert type(theirs).__name__ == "SlitModel"
        _same_world(ours.meta.wcs, theirs.meta.wcs, ours.data.shape)
        saved = ours.save(tmp_path / path.name)
        back = dm.open(saved)
        assert type(back).__name__ == "SlitModel"
        for attr in ("name", "xstart", "ystart", "slitlet_id", "source_id", "source_name", "shutter_state", "source_ypos"):
            assert getattr(back, attr) == getattr(theirs, attr)
        for arr in ("data", "dq", "err", "wavelength", "pathloss_point", "pathloss_uniform", "barshadow", "var_rnoise"):
            np.testing.assert_array_equal(getattr(back, arr), getattr(theirs, arr))
        _same_world(back.meta.wcs, theirs.meta.wcs, ours.data.shape)


@pytest.fixture(scope="module")
def jwst_multislit(tmp_path_factory):
    """The two real slits as one MultiSlitModel, written by stdatamodels."""
    dm = _dm()
    inputs = [dm.SlitModel(p) for p in SLITS]  # kept open until saved: their WCS is read lazily
    ms = dm.MultiSlitModel()
    ms.update(inputs[0])
    for s in inputs:
        ms.slits.append(s)
    path = tmp_path_factory.mktemp("multislit") / "jw01345062001_03101_00001_nrs2_cal.fits"
    ms.save(path)
    for s in inputs:
        s.close()
    return path


def test_jwst_multislit_opens_and_round_trips(jwst_multislit, tmp_path):
    dm = _dm()
    ours = models.open(jwst_multislit)
    assert type(ours) is MultiSlitModel
    assert len(ours.slits) == 2
    assert all(type(s) is SlitModel for s in ours.slits)
    assert [s.shutter_state for s in ours.slits] == ["1x1", "x11"]
    assert ours.meta.instrument.name == "NIRSPEC" and ours.meta.exposure.type == "NRS_MSASPEC"
    theirs = dm.open(jwst_multislit)
    for s_ours, s_theirs in zip(ours.slits, theirs.slits):
        np.testing.assert_array_equal(s_ours.data, s_theirs.data)
        np.testing.assert_array_equal(s_ours.dq, s_theirs.dq)
        _same_world(s_ours.meta.wcs, s_theirs.meta.wcs, s_ours.data.shape)

    out = tmp_path / jwst_multislit.name
    ours.save(out)
    a, b = fits.open(jwst_multislit), fits.open(out)
    assert [(h.name, h.ver) for h in a] == [(h.name, h.ver) for h in b]
    for ha, hb in zip(a, b):
        if ha.name == "ASDF":
            continue
        assert not _headers_differ(ha.header, hb.header), (ha.name, ha.ver)
        if ha.data is not None:
            np.testing.assert_array_equal(ha.data, hb.data)
    back = dm.open(out)
    assert type(back).__name__ == "MultiSlitModel" and len(back.slits) == 2
    for s_back, s_theirs in zip(back.slits, theirs.slits):
        assert s_back.name == s_theirs.name and s_back.source_xpos == s_theirs.source_xpos
        np.testing.assert_array_equal(s_back.wavelength, s_theirs.wavelength)
        _same_world(s_back.meta.wcs, s_theirs.meta.wcs, s_back.data.shape)


def test_multislit_without_datamodl_is_recognised(jwst_multislit, tmp_path):
    with fits.open(jwst_multislit) as hdul:
        del hdul[0].header["DATAMODL"]
        hdul.writeto(tmp_path / "no_datamodl.fits")
    m = models.open(tmp_path / "no_datamodl.fits")
    assert type(m) is MultiSlitModel and len(m.slits) == 2


def test_multislit_built_here_opens_in_stdatamodels(tmp_path):
    dm = _dm()
    slits = [models.open(p) for p in SLITS]
    ms = MultiSlitModel(slits[0])
    ms.slits.append(slits[1])
    assert ms.meta.model_type == "MultiSlitModel" and len(ms.slits) == 2
    ms.slits[1].source_name = "second"
    path = ms.save(tmp_path / "ms_cal.fits")
    with fits.open(path) as hdul:
        assert hdul["SCI", 2].header["SRCNAME"] == "second"
        assert hdul["SCI", 1].header["SLTSTRT2"] == 659
    back = dm.open(path)
    assert type(back).__name__ == "MultiSlitModel"
    assert [s.source_name for s in back.slits] == ["1345_933", "second"]
    for s_back, s_ours in zip(back.slits, slits):
        np.testing.assert_array_equal(s_back.data, s_ours.data)
        np.testing.assert_array_equal(s_back.pathloss_uniform, s_ours.pathloss_uniform)
        _same_world(s_back.meta.wcs, s_ours.meta.wcs, s_ours.data.shape)


def test_miri_lrs_cube_wcs_agrees_with_jwst(tmp_path):
    dm = _dm()
    ours = models.open(LRS)
    theirs = dm.open(LRS)
    assert type(ours).__name__ == type(theirs).__name__ == "CubeModel"
    _same_world(ours.meta.wcs, theirs.meta.wcs, ours.data.shape[-2:])
    back = models.open(ours.save(tmp_path / LRS.name))
    np.testing.assert_array_equal(back.data, ours.data)
    np.testing.assert_array_equal(back.wavelength, ours.wavelength)
    _same_world(back.meta.wcs, theirs.meta.wcs, ours.data.shape[-2:])


@pytest.mark.parametrize("name", ["IFUImageModel", "IFUCubeModel"])
def test_ifu_models_interoperate(name, tmp_path):
    dm = _dm()
    rng = np.random.default_rng(1)
    shape = (6, 5, 4) if name == "IFUCubeModel" else (5, 4)
    j = getattr(dm, name)(shape)
    j.data = rng.random(shape, dtype=np.float32)
    j.dq = (rng.random(shape) > 0.7).astype(np.uint32)
    if name == "IFUCubeModel":
        j.weightmap = rng.random(shape, dtype=np.float32)
        j.meta.ifu.roi_spatial = 0.1
    else:
        j.wavelength = rng.random(shape, dtype=np.float32)
        j.regions = np.arange(20, dtype=np.int32).reshape(shape)
    j.meta.instrument.name = "MIRI"
    src = tmp_path / "theirs.fits"
    j.save(src)
    ours = models.open(src)
    assert type(ours) is {"IFUImageModel": IFUImageModel, "IFUCubeModel": IFUCubeModel}[name]
    np.testing.assert_array_equal(ours.data, j.data)
    out = ours.save(tmp_path / "ours.fits")
    back = dm.open(out)
    assert type(back).__name__ == name
    np.testing.assert_array_equal(back.dq, j.dq)
    if name == "IFUCubeModel":
        np.testing.assert_array_equal(back.weightmap, j.weightmap)
        assert back.meta.ifu.roi_spatial == pytest.approx(0.1)
    else:
        np.testing.assert_array_equal(back.regions, j.regions)
        np.testing.assert_array_equal(back.wavelength, j.wavelength)


def test_multislit_copy_shares_read_only_arrays_only_when_asked():
    """copy(share_arrays=True) reaches every slit: their arrays are read-only views of the
    original's; a plain copy owns writable arrays of its own."""
    slit = models.SlitModel(data=np.ones((3, 4), np.float32))
    slit.name = "S200A1"
    ms = models.MultiSlitModel()
    ms.slits.append(slit)
    shared = ms.copy(share_arrays=True)
    assert np.shares_memory(shared.slits[0].data, ms.slits[0].data)
    with pytest.raises(ValueError):
        shared.slits[0].data[0, 0] = 5.0
    own = ms.copy()
    own.slits[0].data[0, 0] = 5.0
    assert ms.slits[0].data[0, 0] == 1.0
