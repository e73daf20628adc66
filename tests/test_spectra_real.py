"""Parity on real JWST spectra against jwst 3.0, with the real 2019 CRDS rules:

- the MIRI LRS slitless TSO cube (10 integrations) as the calints member of a tso3 association:
  crfints, x1dints and whtlt.ecsv against jwst's calwebb_tso3;
- extract_1d on each of the two NIRSpec MSA PRISM slits, and combine_1d of the two x1d files;
- extract_1d's aperture correction on one slit taken as a point source, with a small NIRSpec MOS
  apcorr reference written by the test in the real file's form, and on the MIRI LRS cube with a
  MIRI LRS one (override_apcorr on both sides);
- ``webbflow run extract_1d SLIT`` names its product as ``strun extract_1d SLIT`` does.

extract_1d runs with override_extract1d, override_apcorr and override_psf N/A and
apply_apcorr=false on both sides.  The 2019 rules select reference files that the rules-only
cache does not hold: jwst's tso3 prefetches a readnoise file it never reads (a stand-in of that
name is written into a private cache), and white_light's wavelengthrange is N/A for MIRI.
"""

from __future__ import annotations

import json
import shutil
from contextlib import chdir
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import CRDS_RULES, REAL
from parity import compare_arrays, compare_dq, jwst_offline, quiet_jwst

from webbflow import models
from webbflow.tasks import load_all

load_all()
pytestmark = [pytest.mark.parity, pytest.mark.real]

CONTEXT = "jwst_0541.pmap"
CUBE = REAL / "miri_lrs_slitless_tso_crfints.fits"
SLITS = sorted((REAL / "nirspec_msa_prism_slits").glob("*.fits"))
NA = {"override_extract1d": "N/A", "override_apcorr": "N/A", "override_psf": "N/A", "apply_apcorr": False}
EXPOSURE = "jw00623026001_03106_00005_mirimage"
PRODUCT = "jw00623-o001_t001_miri_p750l-slitlessprism"
# keywords that name the run rather than the data: when, which software, which file
RUN_KEYWORDS = {"DATE", "FILENAME", "CAL_VER", "CAL_VCS", "CAL_SW", "CRDS_VER", "CRDS_CTX", ""}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The real 2019 rules, plus the one reference file jwst's tso3 prefetch insists on opening."""
    dst = tmp_path_factory.mktemp("crds-0541-spectra")
    shutil.copytree(CRDS_RULES, dst, dirs_exist_ok=True)
    (dst / "references" / "jwst" / "miri").mkdir(parents=True, exist_ok=True)
    rn = models.ReadnoiseModel((416, 72))
    rn.data[:] = 6.0  # never read: Tso3Pipeline lists readnoise among its reference types
    rn.meta.instrument.name = "MIRI"
    rn.meta.instrument.detector = "MIRIMAGE"
    rn.save(dst / "references" / "jwst" / "miri" / "jwst_miri_readnoise_0070.fits")
    return dst


def _tso_member(folder: Path) -> Path:
    """The real cube, its INT_TIMES table (3 rows) carried on at the same cadence to all 10 integrations."""
    path = folder / f"{EXPOSURE}_calints.fits"
    with fits.open(CUBE) as hdul:
        it = hdul["INT_TIMES"].data
        n = hdul["SCI"].data.shape[0]
        step = it["int_mid_MJD_UTC"][1] - it["int_mid_MJD_UTC"][0]
        cols = []
        for c in hdul["INT_TIMES"].columns:
            v = np.asarray(it[c.name])
            if c.name == "integration_number":
                full = np.arange(1, n + 1, dtype=v.dtype)
            elif "MJD" in c.name:
                full = v[0] + step * np.arange(n)
            else:
                full = np.zeros(n, dtype=v.dtype)
            cols.append(fits.Column(name=c.name, format=c.format, array=full))
        new = fits.BinTableHDU.from_columns(cols, header=hdul["INT_TIMES"].header, name="INT_TIMES")
        hdul["INT_TIMES"] = new
        hdul.writeto(path)
    return path


def _asn(folder: Path, member: Path) -> Path:
    asn = {"asn_type": "tso3", "asn_rule": "candidate_Asn_Lv3SpecTSO", "asn_id": "o001", "asn_pool": "jw00623_pool",
           "program": "00623", "target": "1",
           "products": [{"name": PRODUCT, "members": [{"expname": member.name, "exptype": "science"}]}]}
    path = folder / "jw00623-o001_tso3_00001_asn.json"
    path.write_text(json.dumps(asn))
    return path


def _both_tso3(tmp_path_factory, cache, member, label):
    """calwebb_tso3 once by jwst and once by webbflow, each in its own folder."""
    from jwst.pipeline import Tso3Pipeline

    from webbflow.flows.calwebb_tso3 import run_tso3

    theirs = tmp_path_factory.mktemp(f"{label}-jwst")
    ours = tmp_path_factory.mktemp(f"{label}-webbflow")
    asn_j = _asn(theirs, member(theirs))
    asn_o = _asn(ours, member(ours))
    with jwst_offline(cache, CONTEXT):
        with quiet_jwst(), chdir(theirs):
            Tso3Pipeline.call(str(asn_j), output_dir=str(theirs), steps={
                "extract_1d": NA, "tso_photometry": {"override_gain": "N/A"},
                "white_light": {"override_wavelengthrange": "N/A"}})
        written = run_tso3(asn_o, output_dir=ours, steps={"extract_1d": NA})
    return theirs, ours, written


@pytest.fixture(scope="module")
def tso3_runs(tmp_path_factory, cache):
    """Both pipelines on the real cube with INT_TIMES rows for all 10 integrations."""
    return _both_tso3(tmp_path_factory, cache, _tso_member, "tso3")


def _tso_member_as_given(folder: Path) -> Path:
    path = folder / f"{EXPOSURE}_calints.fits"
    shutil.copyfile(CUBE, path)
    return path


def test_tso3_on_the_cube_as_given_matches_jwst(tmp_path_factory, cache):
    """The file as it is: INT_TIMES has 3 rows for 10 integrations, so neither side gives the spectra
    times, and the white-light curve is empty; the product's INT_TIMES is padded to 10 rows alike."""
    theirs, ours, _ = _both_tso3(tmp_path_factory, cache, _tso_member_as_given, "tso3-as-given")
    name = f"{PRODUCT}_x1dints.fits"
    a, b = models.open(ours / name), models.open(theirs / name)
    _tables_agree(a.spec[0].spec_table, b.spec[0].spec_table, "x1dints")
    assert np.all(np.isnan(a.spec[0].spec_table["MJD-AVG"]))
    with fits.open(ours / name) as ho, fits.open(theirs / name) as ht:
        assert len(ho["INT_TIMES"].data) == len(ht["INT_TIMES"].data) == 10
        _tables_agree(ho["INT_TIMES"].data, ht["INT_TIMES"].data, "INT_TIMES")
    whtlt = f"{PRODUCT}_whtlt.ecsv"
    assert (ours / whtlt).read_text() == (theirs / whtlt).read_text()


def _headers_agree(ours: fits.Header, theirs: fits.Header, ignore=RUN_KEYWORDS):
    only_ours = {k for k in ours if k not in theirs} - ignore
    only_theirs = {k for k in theirs if k not in ours} - ignore
    differ = {k: (ours[k], theirs[k]) for k in ours if k in theirs and k not in ignore and ours[k] != theirs[k]}
    assert not only_theirs, f"keywords jwst writes and we do not: {sorted(only_theirs)}"
    assert not differ, f"keywords that differ: {differ}"
    return only_ours


def _tables_agree(ours, theirs, name):
    assert ours.dtype.names == theirs.dtype.names, name
    for col in theirs.dtype.names:
        a, b = np.asarray(ours[col]), np.asarray(theirs[col])
        assert a.dtype.newbyteorder("=") == b.dtype.newbyteorder("="), f"{name} {col}: {a.dtype} != {b.dtype}"
        if col == "DQ":
            ag = compare_dq(f"{name} {col}", a, b)
            assert ag.fraction == 1.0, str(ag)
        else:
            ag = compare_arrays(f"{name} {col}", a, b, rtol=1e-4)
            assert ag.fraction >= 0.999, str(ag)


def test_tso3_products_are_named_as_jwst_names_them(tso3_runs):
    theirs, ours, written = tso3_runs
    names = {p.name for p in theirs.iterdir() if p.suffix in (".fits", ".ecsv")} - {f"{EXPOSURE}_calints.fits"}
    assert names == {f"{EXPOSURE}_o001_crfints.fits", f"{PRODUCT}_x1dints.fits", f"{PRODUCT}_whtlt.ecsv"}
    assert {Path(p).name for p in written} == names


def test_tso3_crfints_matches_jwst(tso3_runs):
    theirs, ours, _ = tso3_runs
    name = f"{EXPOSURE}_o001_crfints.fits"
    a, b = models.open(ours / name), models.open(theirs / name)
    for arr in ("data", "err", "var_poisson", "var_rnoise", "var_flat", "wavelength"):
        ag = compare_arrays(arr, getattr(a, arr), getattr(b, arr))
        assert ag.fraction >= 0.999, str(ag)
    assert compare_dq("dq", a.dq, b.dq).fraction == 1.0
    with fits.open(ours / name) as ho, fits.open(theirs / name) as ht:
        assert [h.name for h in ho] == [h.name for h in ht]
        # FILETYPE, which the input carries and stdatamodels drops, is kept (webbflow keeps unmodelled keywords)
        assert _headers_agree(ho[0].header, ht[0].header) <= {"FILETYPE"}


def test_tso3_x1dints_matches_jwst(tso3_runs):
    theirs, ours, _ = tso3_runs
    name = f"{PRODUCT}_x1dints.fits"
    a, b = models.open(ours / name), models.open(theirs / name)
    assert type(a).__name__ == type(b).__name__ == "TSOMultiSpecModel"
    assert len(a.spec) == len(b.spec) == 1
    _tables_agree(a.spec[0].spec_table, b.spec[0].spec_table, "x1dints")
    assert np.all(np.isfinite(a.spec[0].spec_table["MJD-AVG"]))  # the times came from INT_TIMES
    assert a.spec[0].units == b.spec[0].units
    ma = {k: v for k, v in a.spec[0].meta.items() if k != "meta"}
    mb = {k: v for k, v in b.spec[0].meta.items() if k != "meta"}
    assert ma == mb
    with fits.open(ours / name) as ho, fits.open(theirs / name) as ht:
        assert [h.name for h in ho] == [h.name for h in ht]
        _headers_agree(ho[0].header, ht[0].header)
        # the exposures' metadata, blended into HDRTAB (one row per exposure) value for value
        from test_products_whole import compare_data, compare_headers

        problems: list[str] = []
        compare_headers(f"{name}[HDRTAB]", ho["HDRTAB"].header, ht["HDRTAB"].header, problems, hdu="HDRTAB")
        compare_data(f"{name}[HDRTAB]", ho["HDRTAB"].data, ht["HDRTAB"].data, problems)
        assert not problems, "\n".join(problems)
        _headers_agree(ho["EXTRACT1D"].header, ht["EXTRACT1D"].header, ignore=set())
        _tables_agree(ho["INT_TIMES"].data, ht["INT_TIMES"].data, "INT_TIMES")
    # the spectra's WCS: pixel index to wavelength, as jwst evaluates it
    pix = np.arange(len(a.spec[0].spec_table["WAVELENGTH"][0]), dtype=float)
    np.testing.assert_allclose(a.spec[0].meta["meta"]["wcs"](pix)[2], b.spec[0].meta["meta"]["wcs"](pix)[2], rtol=1e-12)


def test_tso3_white_light_matches_jwst(tso3_runs):
    from astropy.table import Table

    theirs, ours, _ = tso3_runs
    name = f"{PRODUCT}_whtlt.ecsv"
    a, b = Table.read(ours / name), Table.read(theirs / name)
    assert a.colnames == b.colnames == ["MJD_UTC", "BJD_TDB", "whitelight_flux"]
    assert len(a) == len(b) == 10
    assert dict(a.meta) == dict(b.meta)
    assert str(a["whitelight_flux"].unit) == str(b["whitelight_flux"].unit) == "Jy"
    for c in a.colnames:
        ag = compare_arrays(c, np.asarray(a[c]), np.asarray(b[c]), rtol=1e-4)
        assert ag.fraction == 1.0, str(ag)
    # the file itself, byte for byte: same columns, units, metadata and number formatting
    assert (ours / name).read_text() == (theirs / name).read_text()


@pytest.fixture(scope="module")
def nirspec_runs(tmp_path_factory, cache):
    """extract_1d on each real NIRSpec slit and combine_1d of the two x1d, by jwst and by webbflow."""
    from jwst.combine_1d import Combine1dStep
    from jwst.datamodels import ModelContainer
    from jwst.extract_1d import Extract1dStep

    from webbflow.tasks.base import run_step

    folder = tmp_path_factory.mktemp("nirspec-x1d")
    out = {"ours": [], "theirs": []}
    with jwst_offline(cache, CONTEXT), quiet_jwst():
        for slit in SLITS:
            j = Extract1dStep.call(str(slit), **NA)
            pj = folder / f"jwst_{slit.stem}_x1d.fits"
            j.save(pj)
            out["theirs"].append(pj)
            o = run_step("extract_1d", models.open(slit), NA).model
            out["ours"].append(Path(o.save(folder / f"ours_{slit.stem}_x1d.fits")))
        cj = Combine1dStep.call(ModelContainer([str(p) for p in out["theirs"]]))
        cj.save(folder / "jwst_c1d.fits")
        co = run_step("combine_1d", [models.open(p) for p in out["ours"]], {}).model
        co.save(folder / "ours_c1d.fits")
    return folder, out


def test_nirspec_slits_extract_1d_matches_jwst(nirspec_runs):
    folder, out = nirspec_runs
    for po, pt in zip(out["ours"], out["theirs"]):
        a, b = models.open(po), models.open(pt)
        assert type(a).__name__ == type(b).__name__ == "MultiSpecModel" and len(a.spec) == len(b.spec) == 1
        _tables_agree(a.spec[0].spec_table, b.spec[0].spec_table, po.name)
        assert a.spec[0].units == b.spec[0].units
        assert {k: v for k, v in a.spec[0].meta.items() if k != "meta"} == {k: v for k, v in b.spec[0].meta.items() if k != "meta"}
        with fits.open(po) as ho, fits.open(pt) as ht:
            assert [h.name for h in ho] == [h.name for h in ht]
            _headers_agree(ho["EXTRACT1D"].header, ht["EXTRACT1D"].header, ignore=set())
            _headers_agree(ho[0].header, ht[0].header)


def test_nirspec_combine_1d_matches_jwst(nirspec_runs):
    folder, _ = nirspec_runs
    a, b = models.open(folder / "ours_c1d.fits"), models.open(folder / "jwst_c1d.fits")
    assert type(a).__name__ == type(b).__name__ == "MultiCombinedSpecModel"
    assert len(a.spec) == len(b.spec) == 1
    _tables_agree(a.spec[0].spec_table, b.spec[0].spec_table, "c1d")
    assert a.spec[0].units == b.spec[0].units
    for k in ("source_id", "spectral_order", "dispersion_direction", "source_ra", "source_dec"):
        assert a.spec[0].meta.get(k) == b.spec[0].meta.get(k), k
    with fits.open(folder / "ours_c1d.fits") as ho, fits.open(folder / "jwst_c1d.fits") as ht:
        assert [h.name for h in ho] == [h.name for h in ht]
        _headers_agree(ho["COMBINE1D"].header, ht["COMBINE1D"].header, ignore=set())


def test_nirspec_multislit_extract_1d_matches_jwst(tmp_path, cache):
    """Both real slits in one MultiSlitModel: one EXTRACT1D table per slit, as jwst's."""
    from jwst.extract_1d import Extract1dStep

    from webbflow.tasks.base import run_step

    ms = models.MultiSlitModel()
    first = models.open(SLITS[0])
    ms.meta = first.meta.model_copy(deep=True)
    ms.meta.model_type = "MultiSlitModel"
    for s in SLITS:
        ms.slits.append(models.open(s))
    path = ms.save(tmp_path / "jw01345062001_03101_00001_nrs2_cal.fits")
    with jwst_offline(cache, CONTEXT), quiet_jwst():
        theirs = Extract1dStep.call(path, **NA)
        theirs.save(tmp_path / "jwst_x1d.fits")
    ours = run_step("extract_1d", models.open(path), NA).model
    ours.save(tmp_path / "ours_x1d.fits")
    a, b = models.open(tmp_path / "ours_x1d.fits"), models.open(tmp_path / "jwst_x1d.fits")
    assert len(a.spec) == len(b.spec) == 2
    for i in range(2):
        _tables_agree(a.spec[i].spec_table, b.spec[i].spec_table, f"slit {i}")
        assert {k: v for k, v in a.spec[i].meta.items() if k != "meta"} == {k: v for k, v in b.spec[i].meta.items() if k != "meta"}


def test_combine_1d_on_an_association_from_the_command_line(nirspec_runs, tmp_path):
    """``webbflow run combine_1d ASN`` names its product as ``strun combine_1d ASN`` does."""
    from webbflow.flows.cli import main

    folder, out = nirspec_runs
    asn = {"asn_type": "spec3", "asn_rule": "candidate_Asn_Lv3MOS", "asn_id": "o062", "asn_pool": "jw01345_pool",
           "products": [{"name": "jw01345-o062_s00933_nirspec_clear-prism",
                         "members": [{"expname": p.name, "exptype": "science"} for p in out["ours"]]}]}
    path = folder / "c1d_asn.json"
    path.write_text(json.dumps(asn))
    assert main(["run", "combine_1d", str(path), "--output-dir", str(tmp_path)]) == 0
    made = models.open(tmp_path / "c1d_asn_combine1dstep.fits")
    assert made.meta.asn.pool_name == "jw01345_pool" and made.meta.asn.table_name == "c1d_asn.json"
    ref = models.open(folder / "jwst_c1d.fits")
    _tables_agree(made.spec[0].spec_table, ref.spec[0].spec_table, "c1d from the command line")


def test_extract_1d_alone_from_the_command_line_names_its_product_as_strun(cache, tmp_path):
    """``webbflow run extract_1d SLIT`` writes the file ``strun extract_1d SLIT`` writes, with the same spectrum."""
    from jwst.extract_1d import Extract1dStep

    from webbflow.flows.cli import main

    slit = SLITS[0]
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    theirs.mkdir()
    args = [f"--{k}={v}" for k, v in NA.items()]
    with jwst_offline(cache, CONTEXT), quiet_jwst():
        Extract1dStep.call(str(slit), save_results=True, output_dir=str(theirs), **NA)
        assert main(["run", "extract_1d", str(slit), "--output-dir", str(ours), *args]) == 0
    names = sorted(p.name for p in ours.iterdir())
    assert names == sorted(p.name for p in theirs.iterdir()) == [slit.stem + "_extract1dstep.fits"]
    a, b = models.open(ours / names[0]), models.open(theirs / names[0])
    _tables_agree(a.spec[0].spec_table, b.spec[0].spec_table, names[0])


def _nirspec_mos_apcorr(path):
    """A small NIRSpec MOS apcorr reference in the real file's form (written with stdatamodels).

    Two rows (CLEAR/PRISM and F290LP/G395M); each a grid over 8 wavelengths, 4 aperture sizes
    in arcseconds (growing with wavelength) and 3 pixel phases, with corrections that vary
    along every axis, so that picking the row, the size conversion and each interpolation show.
    """
    from astropy.table import Table
    from stdatamodels.jwst import datamodels as dm

    nw, ns = 8, 4
    wl = np.linspace(0.5, 5.6, nw)
    size = np.array([0.2, 0.5, 1.0, 2.0])[:, None] * (1 + 0.05 * wl)[None, :]
    phase = np.array([0.0, 0.25, 0.5])
    corr = 1.05 + 0.3 / (1 + size[:, :, None]) + 0.02 * wl[None, :, None] + 0.05 * phase[None, None, :]
    t = Table({"filter": ["CLEAR", "F290LP"], "grating": ["PRISM", "G395M"], "wavelength": [wl, wl],
               "nelem_wl": [nw, nw], "size": [size, size], "nelem_size": [ns, ns], "pixphase": [phase, phase],
               "apcorr": [corr, corr * 2], "apcorr_err": [corr * 0.01, corr * 0.01]})
    hdu = fits.table_to_hdu(t)
    hdu.header["EXTNAME"] = "APCORR"
    hdu.header["SIZEUNIT"] = "arcsec"
    m = dm.NrsMosApcorrModel(fits.HDUList([fits.PrimaryHDU(), hdu]))
    m.meta.instrument.name, m.meta.exposure.type, m.meta.reftype = "NIRSPEC", "NRS_MSASPEC", "apcorr"
    m.meta.author, m.meta.pedigree, m.meta.description = "webbflow tests", "DUMMY", "test apcorr"
    m.meta.useafter = "2000-01-01T00:00:00"
    m.save(path)
    return path


def test_extract_1d_aperture_correction_matches_jwst(cache, tmp_path):
    """A real NIRSpec PRISM slit, as a point source, extracted with an apcorr reference by both sides."""
    from jwst.extract_1d import Extract1dStep
    from stdatamodels.jwst import datamodels as dm

    from webbflow.tasks.base import run_step

    slit = tmp_path / SLITS[0].name
    with dm.open(SLITS[0]) as s:
        s.source_type = "POINT"
        s.meta.target.source_type = "POINT"
        s.save(slit)
    ref = str(_nirspec_mos_apcorr(tmp_path / "nirspec_mos_apcorr.fits"))
    pars = {"override_extract1d": "N/A", "override_psf": "N/A", "override_apcorr": ref}
    with jwst_offline(cache, CONTEXT), quiet_jwst():
        Extract1dStep.call(str(slit), **pars).save(tmp_path / "jwst_x1d.fits")
        Extract1dStep.call(str(slit), **NA).save(tmp_path / "jwst_plain_x1d.fits")
        run_step("extract_1d", models.open(slit), pars).model.save(tmp_path / "ours_x1d.fits")
    a, b = models.open(tmp_path / "ours_x1d.fits"), models.open(tmp_path / "jwst_x1d.fits")
    _tables_agree(a.spec[0].spec_table, b.spec[0].spec_table, "apcorr x1d")
    # the correction did act: jwst's corrected flux is 1.2-1.4 x its uncorrected one
    plain = models.open(tmp_path / "jwst_plain_x1d.fits").spec[0].spec_table
    ratio = np.asarray(b.spec[0].spec_table["FLUX"]) / np.asarray(plain["FLUX"])
    assert 1.15 < np.nanmin(ratio) and np.nanmax(ratio) < 1.45


def test_extract_1d_apcorr_without_a_matching_row_is_one_line(cache, tmp_path):
    from webbflow.errors import ReferenceFileError
    from webbflow.tasks.base import run_step

    ref = _nirspec_mos_apcorr(tmp_path / "nirspec_mos_apcorr.fits")
    with fits.open(ref, mode="update") as h:
        h["APCORR"].data["grating"] = ["G140M", "G395M"]
    m = models.open(SLITS[0])
    m.meta.target.source_type = "POINT"
    with pytest.raises(ReferenceFileError, match="0 rows for this exposure's configuration"):
        run_step("extract_1d", m, {"override_extract1d": "N/A", "override_psf": "N/A", "override_apcorr": str(ref)})


def test_extract_1d_aperture_correction_on_the_miri_lrs_cube_matches_jwst(cache, tmp_path):
    """The real MIRI LRS TSO cube as a point source, with a MIRI LRS apcorr reference (sizes in pixels)."""
    from astropy.table import Table
    from jwst.extract_1d import Extract1dStep
    from stdatamodels.jwst import datamodels as dm

    from webbflow.tasks.base import run_step

    nw, ns = 6, 5
    wl, size = np.linspace(4.0, 14.0, nw), np.linspace(2.0, 12.0, ns)
    corr = 1.0 + 0.4 / size[None, :] + 0.01 * wl[:, None]
    t = Table({"subarray": ["FULL", "SLITLESSPRISM"], "wavelength": [wl, wl], "nelem_wl": [nw, nw],
               "size": [size, size], "nelem_size": [ns, ns], "apcorr": [corr * 3, corr],
               "apcorr_err": [corr * 0.01, corr * 0.01]})
    hdu = fits.table_to_hdu(t)
    hdu.header["EXTNAME"], hdu.header["SIZEUNIT"] = "APCORR", "pixels"
    ref = dm.MirLrsApcorrModel(fits.HDUList([fits.PrimaryHDU(), hdu]))
    ref.meta.instrument.name, ref.meta.exposure.type, ref.meta.reftype = "MIRI", "MIR_LRS-SLITLESS", "apcorr"
    ref.meta.author, ref.meta.pedigree, ref.meta.description = "webbflow tests", "DUMMY", "test apcorr"
    ref.meta.useafter = "2000-01-01T00:00:00"
    ref.save(tmp_path / "miri_lrs_apcorr.fits")
    cube = tmp_path / CUBE.name
    with dm.open(CUBE) as c:
        c.meta.target.source_type = "POINT"
        c.save(cube)
    pars = {"override_extract1d": "N/A", "override_psf": "N/A", "override_apcorr": str(tmp_path / "miri_lrs_apcorr.fits")}
    with jwst_offline(cache, CONTEXT), quiet_jwst():
        Extract1dStep.call(str(cube), **pars).save(tmp_path / "jwst_x1dints.fits")
        run_step("extract_1d", models.open(cube), pars).model.save(tmp_path / "ours_x1dints.fits")
        plain = run_step("extract_1d", models.open(cube), NA).model.spec[0].spec_table
    a, b = models.open(tmp_path / "ours_x1dints.fits"), models.open(tmp_path / "jwst_x1dints.fits")
    _tables_agree(a.spec[0].spec_table, b.spec[0].spec_table, "apcorr x1dints")
    ratio = np.asarray(a.spec[0].spec_table["FLUX"]) / np.asarray(plain["FLUX"])
    assert np.nanmin(ratio) > 1.02  # the SLITLESSPRISM row, not FULL's (3x larger)
    assert np.nanmax(ratio) < 1.4
