"""Datamodels: real files open, round-trip losslessly and interoperate with stdatamodels."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from webbflow import models
from webbflow.errors import InputFileError, ModelValidationError

from conftest import REAL

REAL_FILES = sorted(REAL.rglob("*.fits"))


def _ids(p: Path) -> str:
    return str(p.relative_to(REAL))


def test_real_files_present():
    # the shared data set has 22 FITS files; all must be exercised below
    assert len(REAL_FILES) >= 20


@pytest.mark.real
@pytest.mark.parametrize("path", REAL_FILES, ids=_ids)
def test_real_file_round_trip(path, tmp_path):
    m = models.open(path)
    out = m.save(tmp_path / path.name)
    with fits.open(path) as a, fits.open(out) as b:
        names_a = [h.name for h in a]
        names_b = [h.name for h in b]
        assert names_a == names_b, "every extension is written, in the original order"
        for ha in a:
            if ha.name == "ASDF":
                continue
            hb = b[ha.name]
            if ha.data is None:
                assert hb.data is None
                continue
            if ha.data.dtype.names is None:
                assert ha.data.dtype == hb.data.dtype, ha.name
                assert ha.data.shape == hb.data.shape, ha.name
            assert ha.data.tobytes() == hb.data.tobytes(), f"{ha.name} is not bit-identical"
        for key in a[0].header:
            assert key in b[0].header, f"primary keyword {key} lost"
            if key not in ("FILENAME", "CHECKSUM", "DATASUM", "COMMENT", "HISTORY", ""):
                assert a[0].header[key] == b[0].header[key], key
        # keywords of the other extensions survive too
        for ha in a[1:]:
            if ha.name == "ASDF":
                continue
            for key in ha.header:
                if key in ("CHECKSUM", "DATASUM", "COMMENT", "HISTORY", ""):
                    continue
                assert key in b[ha.name].header, f"{ha.name} keyword {key} lost"


@pytest.mark.real
@pytest.mark.parametrize("path", REAL_FILES, ids=_ids)
def test_real_file_opens_in_stdatamodels_as_same_class(path, tmp_path):
    from stdatamodels.jwst import datamodels as dm

    ours = models.open(path)
    out = ours.save(tmp_path / path.name)
    with dm.open(path) as orig, dm.open(out) as written:
        assert type(written).__name__ == type(orig).__name__ == type(ours).__name__
        assert written.meta.instrument.name == orig.meta.instrument.name
        assert written.meta.exposure.type == orig.meta.exposure.type
        for name in ("data", "dq", "err"):
            if orig.hasattr(name) if hasattr(orig, "hasattr") else False:
                np.testing.assert_array_equal(getattr(written, name), getattr(orig, name))


def test_open_picks_class_from_datamodl_and_shapes(tmp_path):
    # DATAMODL decides
    m = models.CubeModel(np.zeros((2, 5, 6), np.float32))
    p = m.save(tmp_path / "a_rateints.fits")
    assert type(models.open(p)) is models.CubeModel
    # no DATAMODL: array shapes decide
    with fits.open(p) as h:
        del h[0].header["DATAMODL"]
        h.writeto(tmp_path / "b.fits")
    assert type(models.open(tmp_path / "b.fits")) is models.CubeModel
    img = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4, 4), np.float32), name="SCI")])
    img.writeto(tmp_path / "c.fits")
    assert type(models.open(tmp_path / "c.fits")) is models.ImageModel
    raw = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((1, 2, 4, 4), np.uint16), name="SCI")])
    raw.writeto(tmp_path / "d_uncal.fits")
    assert type(models.open(tmp_path / "d_uncal.fits")) is models.Level1bModel
    # a model passes through
    assert models.open(m) is m


def test_real_mask_reference_dq_and_table():
    m = models.open(REAL / "jwst_nircam_mask_ref.fits")
    assert isinstance(m, models.MaskModel)
    assert m.dq.shape == (2048, 2048) and m.dq.dtype == np.uint32
    assert m.meta.reftype == "MASK"
    names = [n.strip() if isinstance(n, str) else n.decode().strip() for n in m.dq_def["NAME"]]
    assert "DO_NOT_USE" in names


def test_uncal_is_read_as_stored_without_extra_copies():
    m = models.open(REAL / "fgs_acq1_guider2_uncal.fits")
    assert m.data.dtype == np.uint16
    assert m.data.flags.owndata or m.data.base is not None and m.data.base.flags.owndata
    assert m.data.dtype.isnative
    # values match astropy's own scaled read
    with fits.open(REAL / "fgs_acq1_guider2_uncal.fits") as h:
        np.testing.assert_array_equal(m.data, h["SCI"].data)


def _wcs_image():
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models as am
    from gwcs import coordinate_frames as cf
    from gwcs import wcs

    m = models.ImageModel(np.arange(50 * 60, dtype=np.float32).reshape(50, 60))
    m.meta.telescope = "JWST"
    m.meta.instrument.name = "NIRCAM"
    m.meta.instrument.detector = "NRCA1"
    m.meta.exposure.type = "NRC_IMAGE"
    m.meta.bunit_data = "MJy/sr"
    det = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world")
    tr = (
        (am.Shift(-25) & am.Shift(-30))
        | (am.Scale(1.7e-5) & am.Scale(1.7e-5))
        | am.Pix2Sky_TAN()
        | am.RotateNative2Celestial(10.0, 20.0, 180.0)
    )
    m.meta.wcs = wcs.WCS([(det, tr), (sky, None)])
    return m


def test_product_with_gwcs_opens_in_stdatamodels_with_working_wcs(tmp_path):
    from stdatamodels.jwst import datamodels as dm

    m = _wcs_image()
    p = m.save(tmp_path / "x_cal.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no schema validation warnings either
        s = dm.open(p)
    assert type(s).__name__ == "ImageModel"
    for x, y in [(0, 0), (25, 30), (59, 49)]:
        ra1, dec1 = m.meta.wcs(x, y)
        ra2, dec2 = s.meta.wcs(x, y)
        assert abs(ra1 - ra2) < 1e-12 and abs(dec1 - dec2) < 1e-12
    np.testing.assert_array_equal(s.data, m.data)
    assert s.meta.bunit_data == "MJy/sr"
    # and back: what stdatamodels writes opens in ours, WCS included
    s.save(tmp_path / "y_cal.fits")
    back = models.open(tmp_path / "y_cal.fits")
    assert isinstance(back, models.ImageModel)
    assert np.allclose(back.meta.wcs(25, 30), m.meta.wcs(25, 30))


def test_meta_is_typed_and_keywords_map(tmp_path):
    m = models.RampModel(np.zeros((1, 3, 4, 5), np.float32))
    m.meta.exposure.ngroups = "3"  # coerced on assignment
    assert m.meta.exposure.ngroups == 3
    with pytest.raises(Exception):
        m.meta.exposure.ngroups = "three"
    m.meta.wcsinfo.v2_ref = 120.5
    assert m.groupdq.shape == (1, 3, 4, 5) and m.pixeldq.shape == (4, 5)  # made on first use
    p = m.save(tmp_path / "r_ramp.fits")
    with fits.open(p) as h:
        assert h[0].header["NGROUPS"] == 3
        assert h["SCI"].header["V2_REF"] == 120.5
        assert h[0].header["DATAMODL"] == "RampModel"
        assert h["GROUPDQ"].data.dtype == np.uint8 and h["PIXELDQ"].data.shape == (4, 5)


def test_conversion_between_models_keeps_metadata():
    r = models.RampModel(np.zeros((2, 3, 4, 5), np.float32))
    r.meta.instrument.name = "NIRISS"
    img = models.ImageModel(r)  # 4-D data does not fit an image: only meta carries over
    assert img.meta.instrument.name == "NIRISS"
    assert img.meta.model_type == "ImageModel"
    assert not img.has("data")


# -- validation and bad input ------------------------------------------------


def test_wrong_dimensions_refused(tmp_path):
    h = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((3, 4, 4), np.float32), name="SCI")])
    h[0].header["DATAMODL"] = "ImageModel"
    h.writeto(tmp_path / "bad_cal.fits")
    with pytest.raises(ModelValidationError) as e:
        models.open(tmp_path / "bad_cal.fits")
    assert "bad_cal.fits" in str(e.value) and "SCI" in str(e.value) and "dimensions" in str(e.value)


def test_wrong_dtype_refused(tmp_path):
    h = fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(np.zeros((4, 4), np.float32), name="SCI"),
            fits.ImageHDU(np.zeros((4, 4), np.float32), name="DQ"),
        ]
    )
    h[0].header["DATAMODL"] = "ImageModel"
    h.writeto(tmp_path / "baddq.fits")
    with pytest.raises(ModelValidationError, match=r"baddq.fits.*DQ.*dtype float32"):
        models.open(tmp_path / "baddq.fits")


def test_missing_required_extension_refused(tmp_path):
    h = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4, 4), np.uint32), name="DQ")])
    h[0].header["DATAMODL"] = "ImageModel"
    h.writeto(tmp_path / "nosci.fits")
    with pytest.raises(ModelValidationError, match=r"nosci.fits.*requires a SCI extension"):
        models.open(tmp_path / "nosci.fits")


def test_mismatched_secondary_shape_refused(tmp_path):
    h = fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(np.zeros((4, 4), np.float32), name="SCI"),
            fits.ImageHDU(np.zeros((5, 4), np.float32), name="ERR"),
        ]
    )
    h[0].header["DATAMODL"] = "ImageModel"
    h.writeto(tmp_path / "shape.fits")
    with pytest.raises(ModelValidationError, match=r"ERR has shape"):
        models.open(tmp_path / "shape.fits")


def test_keyword_of_wrong_type_refused(tmp_path):
    h = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4, 4), np.float32), name="SCI")])
    h[0].header["DATAMODL"] = "ImageModel"
    h[0].header["NGROUPS"] = "many"
    h.writeto(tmp_path / "kw.fits")
    with pytest.raises(ModelValidationError, match=r"kw.fits.*NGROUPS"):
        models.open(tmp_path / "kw.fits")


@pytest.mark.parametrize(
    "content,problem",
    [(b"", "empty"), (b"\x00\x17garbage" * 500, "not a readable FITS")],
)
def test_unreadable_files(tmp_path, content, problem):
    p = tmp_path / "x_uncal.fits"
    p.write_bytes(content)
    with pytest.raises(InputFileError, match=problem):
        models.open(p)


def test_truncated_file(tmp_path):
    src = REAL / "fgs_acq1_guider2_uncal.fits"
    data = src.read_bytes()
    p = tmp_path / "trunc_uncal.fits"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError) as e:
        models.open(p)
    assert "trunc_uncal.fits" in str(e.value)


def test_rows_read_alone_are_the_whole_files_rows(tmp_path):
    """``models.open(rows=(y0, y1))`` reads those rows of every plane of every image (3-D SCI, 2-D DQ
    under it, scaled unsigned DQ included) and says so in ``_rows``; rows outside an image, or an
    image of one axis, read the file whole (``_rows`` None)."""
    rng = np.random.default_rng(3)
    sci = rng.normal(1.0, 0.1, (3, 40, 24)).astype(np.float32)
    dq = rng.integers(0, 2**31, (40, 24)).astype(np.uint32) | np.uint32(2**31)  # stored with BZERO
    p = tmp_path / "flat.fits"
    models.NirspecFlatModel(data=sci, dq=dq, err=sci * 0.01).save(p)
    whole = models.open(p)
    assert whole._rows is None
    part = models.open(p, rows=(5, 17))
    assert type(part) is type(whole) and part._rows == (5, 17)
    assert part.data.shape == (3, 12, 24) and part.dq.shape == (12, 24) and part.dq.dtype == np.uint32
    for name in ("data", "dq", "err"):
        assert np.array_equal(getattr(part, name), getattr(whole, name)[..., 5:17, :]), name
    assert part.meta.model_dump() == whole.meta.model_dump()
    assert part.copy()._rows == (5, 17)
    for rows in ((30, 41), (-1, 4), (7, 7)):
        m = models.open(p, rows=rows)
        assert m._rows is None and np.array_equal(m.data, whole.data)
    cut = tmp_path / "cut.fits"
    cut.write_bytes(p.read_bytes()[: -2 * 2880])  # the last image (ERR, 4 blocks) ends half-way
    with pytest.raises(InputFileError, match="truncated") as e:
        models.open(cut, rows=(30, 40))
    m = re.search(r"expected (\d+) values of .* file holds (\d+)$", str(e.value))
    assert m and (m.group(1), m.group(2)) == ("2880", "1440"), str(e.value)  # says how much is there


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        models.open(tmp_path / "nope.fits")


# -- saving is atomic ----------------------------------------------------------


def test_failed_save_leaves_existing_product_intact(tmp_path, monkeypatch):
    m = models.ImageModel(np.ones((4, 4), np.float32))
    p = tmp_path / "a_cal.fits"
    m.save(p)
    before = p.read_bytes()

    from webbflow.models import io as mio

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mio, "_write_image_data", boom)
    m.data[:] = 7
    with pytest.raises(RuntimeError):
        m.save(p)
    assert p.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["a_cal.fits"], "no temporary file left behind"


def test_asdf_reference_file_round_trip(tmp_path):
    from astropy.modeling import models as am
    from astropy.modeling.models import Polynomial2D

    d = models.DistortionModel()
    d.meta.reftype = "DISTORTION"
    d.meta.instrument.name = "NIRCAM"
    d.meta.instrument.detector = "NRCA1"
    tr = (am.Shift(-1023.5) & am.Shift(-1023.5)) | am.Mapping((0, 1, 0, 1)) | (Polynomial2D(1, c1_0=0.031) & Polynomial2D(1, c0_1=0.031))
    d.set_tree(model=tr)
    p = d.save(tmp_path / "dist.asdf")
    back = models.open(p)
    assert isinstance(back, models.DistortionModel)
    assert back.meta.instrument.detector == "NRCA1"
    assert np.allclose(back.model(1030.0, 1000.0), tr(1030.0, 1000.0))
