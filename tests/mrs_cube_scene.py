"""MIRI MRS cal files for cube_build's tests, made with jwst itself (test-only).

A MIRIFULONG (channels 3 and 4, band LONG) rate image of a point source on extended emission is
given its WCS by jwst's AssignWcsStep with the real CDP references in ../shared/data/real-refs/miri
(distortion_0027, specwcs_0016, regions_0017, wavelengthrange_0003), then saved as ``_cal`` files:
one per dither position.  The MIRI cubepar reference is written here in the real file's form
(a MiriIFUCubeParsModel: CUBEPAR, CUBEPAR_MSM, MULTICHANNEL_MSM, CUBEPAR_EMSM, MULTICHANNEL_EMSM,
MULTICHANNEL_DRIZ tables), with the real file's band limits and sampling.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MIRI_REFS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-refs" / "miri"
RA0, DEC0 = 83.8221, -5.3911
# dither offsets (arcsec, in RA*cos(dec) and Dec): MRS 4-point pattern's size
DITHERS = [(0.0, 0.0), (1.02, -0.58), (-0.51, 1.21), (0.48, 0.63)]
PRODUCT = "jw01523-o003_t002_miri"

# (channel, band, spaxel size arcsec, spectral step um, wavemin, wavemax) as in CRDS' MRS cubepar
_BANDS = [
    ("1", "SHORT", 0.13, 0.0008, 4.90, 5.74), ("1", "MEDIUM", 0.13, 0.0008, 5.66, 6.63),
    ("1", "LONG", 0.13, 0.0008, 6.53, 7.65), ("2", "SHORT", 0.17, 0.0013, 7.51, 8.77),
    ("2", "MEDIUM", 0.17, 0.0013, 8.67, 10.13), ("2", "LONG", 0.17, 0.0013, 10.01, 11.70),
    ("3", "SHORT", 0.20, 0.0025, 11.55, 13.47), ("3", "MEDIUM", 0.20, 0.0025, 13.34, 15.57),
    ("3", "LONG", 0.20, 0.0025, 15.41, 17.98), ("4", "SHORT", 0.35, 0.006, 17.70, 20.95),
    ("4", "MEDIUM", 0.35, 0.006, 20.69, 24.48), ("4", "LONG", 0.35, 0.006, 24.19, 27.90),
]


def dither_offset(k: int) -> tuple[float, float]:
    """Position ``k`` (0-based) of the pattern: the 4-point pattern, repeated with a 0.11" shift per repeat."""
    dra, ddec = DITHERS[k % 4]
    return dra + 0.11 * (k // 4), ddec - 0.07 * (k // 4)


def write_cubepar(path: Path) -> Path:
    """A MIRI MRS cubepar reference of real form, with every table jwst 3.0 may read."""
    from astropy.io import fits

    ch = np.array([b[0] for b in _BANDS])
    band = np.array([b[1] for b in _BANDS])
    f32 = lambda i: np.array([b[i] for b in _BANDS], np.float32)  # noqa: E731
    roi_s = np.array([0.10, 0.10, 0.10, 0.15, 0.15, 0.15, 0.20, 0.20, 0.20, 0.40, 0.40, 0.40], np.float32)
    roi_w = f32(3) * 2
    n = len(_BANDS)
    h0 = fits.PrimaryHDU()
    for k, v in {"REFTYPE": "CUBEPAR", "INSTRUME": "MIRI", "MODELNAM": "FM", "DETECTOR": "N/A",
                 "EXP_TYPE": "MIR_MRS", "PEDIGREE": "INFLIGHT 2022-07-01 2022-07-30",
                 "USEAFTER": "2022-05-01T00:00:00", "AUTHOR": "webbflow tests",
                 "DESCRIP": "MRS cube parameters for tests", "TELESCOP": "JWST"}.items():
        h0.header[k] = v
    C = fits.Column
    cubepar = fits.BinTableHDU.from_columns([
        C("CHANNEL", "3A", array=ch), C("BAND", "12A", array=band), C("SPAXELSIZE", "E", array=f32(2)),
        C("SPECTRALSTEP", "E", array=f32(3)), C("WAVEMIN", "E", array=f32(4)), C("WAVEMAX", "E", array=f32(5))],
        name="CUBEPAR")
    msm = fits.BinTableHDU.from_columns([
        C("CHANNEL", "3A", array=ch), C("BAND", "12A", array=band), C("ROISPATIAL", "E", array=roi_s),
        C("ROISPECTRAL", "E", array=roi_w), C("POWER", "E", array=np.full(n, 2, np.float32)),
        C("SOFTRAD", "E", array=np.full(n, 0.01, np.float32))], name="CUBEPAR_MSM")
    emsm = fits.BinTableHDU.from_columns([
        C("CHANNEL", "3A", array=ch), C("BAND", "12A", array=band), C("ROISPATIAL", "E", array=roi_s),
        C("ROISPECTRAL", "E", array=roi_w), C("SCALERAD", "E", array=roi_s / 2)], name="CUBEPAR_EMSM")
    # the multi-band wavelength grid: constant resolving power ~3500 from 4.9 to 27.9 um
    wave = [4.90]
    while wave[-1] < 27.9:
        wave.append(wave[-1] * (1 + 1 / 3500.0))
    wave = np.array(wave, np.float32)
    m = wave.size
    sroi = np.interp(wave, [5, 28], [0.1, 0.4]).astype(np.float32)
    wroi = (wave / 3500.0 * 2).astype(np.float32)
    mmsm = fits.BinTableHDU.from_columns([
        C("WAVELENGTH", "E", array=wave), C("ROISPATIAL", "E", array=sroi), C("ROISPECTRAL", "E", array=wroi),
        C("POWER", "E", array=np.full(m, 2, np.float32)), C("SOFTRAD", "E", array=np.full(m, 0.01, np.float32))],
        name="MULTICHANNEL_MSM")
    memsm = fits.BinTableHDU.from_columns([
        C("WAVELENGTH", "E", array=wave), C("ROISPATIAL", "E", array=sroi), C("ROISPECTRAL", "E", array=wroi),
        C("SCALERAD", "E", array=sroi / 2)], name="MULTICHANNEL_EMSM")
    mdriz = fits.BinTableHDU.from_columns([C("WAVELENGTH", "E", array=wave)], name="MULTICHANNEL_DRIZ")
    fits.HDUList([h0, cubepar, msm, mmsm, emsm, memsm, mdriz]).writeto(path, overwrite=True)
    return path


def _regions_3d(path: Path) -> Path:
    """jwst 3.0 reads a stack of throughput levels; the CDP6 file has one plane: repeat it."""
    import asdf

    with asdf.open(MIRI_REFS / "jwst_miri_regions_0017.asdf", lazy_load=False, memmap=False) as af:
        tree = {k: v for k, v in af.tree.items() if k not in ("asdf_library", "history")}
        reg = np.asarray(af.tree["regions"])
    tree["regions"] = np.repeat(reg[None].astype(np.int16), 9, axis=0)
    asdf.AsdfFile(tree).write_to(path)
    return path


def _scene(ra, dec, lam, off):
    """MJy/sr: a point source (FWHM ~0.3 lam/10 um arcsec) on a smooth extended blob, both with spectra."""
    cosd = np.cos(np.deg2rad(DEC0))
    dx = (ra - RA0) * cosd * 3600.0
    dy = (dec - DEC0) * 3600.0
    sig = 0.3 * (lam / 10.0) / 2.355
    point = 400.0 * np.exp(-0.5 * ((dx - 0.2) ** 2 + (dy + 0.1) ** 2) / sig**2) * (1 + 0.3 * np.sin(lam * 3.0))
    ext = 30.0 * np.exp(-0.5 * ((dx + 0.8) ** 2 + (dy - 0.5) ** 2) / 2.0**2) * (lam / 20.0)
    line = 80.0 * np.exp(-0.5 * ((lam - 16.5) / 0.01) ** 2) * np.exp(-0.5 * (dx**2 + dy**2) / 1.5**2)
    return point + ext + line + 2.0


def make_cal_files(folder: Path, ndither: int = 2, seed: int = 7) -> list[Path]:
    """``ndither`` MIRIFULONG cal files in ``folder``, with their WCS from jwst's AssignWcsStep."""
    from jwst.assign_wcs import AssignWcsStep
    from stdatamodels.jwst import datamodels as dm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    regions = _regions_3d(folder / "regions_3d.asdf")
    rng = np.random.default_rng(seed)
    out = []
    cosd = np.cos(np.deg2rad(DEC0))
    for k in range(ndither):
        dra, ddec = dither_offset(k)
        m = dm.IFUImageModel((1024, 1032))
        meta = m.meta
        meta.filename = f"jw01523003001_03102_{k + 1:05d}_mirifulong_cal.fits"
        meta.telescope = "JWST"
        meta.instrument.name = "MIRI"
        meta.instrument.detector = "MIRIFULONG"
        meta.instrument.channel = "34"
        meta.instrument.band = "LONG"
        meta.exposure.type = "MIR_MRS"
        meta.exposure.start_time = 59800.0 + 0.01 * k
        meta.exposure.mid_time = 59800.001 + 0.01 * k
        meta.exposure.end_time = 59800.002 + 0.01 * k
        meta.exposure.exposure_time = 277.5
        meta.observation.date = "2022-08-20"
        meta.observation.time = "10:00:00.000"
        meta.observation.program_number = "01523"
        meta.observation.observation_number = "003"
        meta.observation.visit_number = "001"
        meta.observation.visit_group = "03"
        meta.observation.sequence_id = "1"
        meta.observation.activity_id = "02"
        meta.observation.exposure_number = f"{k + 1:05d}"
        meta.target.ra = RA0
        meta.target.dec = DEC0
        meta.target.type = "FIXED"
        meta.dither.primary_type = "4-POINT"
        meta.dither.position_number = k + 1
        meta.dither.total_points = ndither
        meta.wcsinfo.v2_ref = -503.65447
        meta.wcsinfo.v3_ref = -318.74246
        meta.wcsinfo.vparity = -1
        meta.wcsinfo.v3yangle = -4.83425
        meta.wcsinfo.ra_ref = RA0 + dra / 3600.0 / cosd
        meta.wcsinfo.dec_ref = DEC0 + ddec / 3600.0
        meta.wcsinfo.roll_ref = 251.47
        meta.wcsinfo.wcsaxes = 3
        meta.photometry.conversion_megajanskys = 1.0
        meta.bunit_data = "MJy/sr"
        meta.bunit_err = "MJy/sr"
        refs = {f"override_{rt}": "N/A" for rt in AssignWcsStep.reference_file_types}
        refs.update(override_distortion=str(MIRI_REFS / "jwst_miri_distortion_0027.asdf"),
                    override_specwcs=str(MIRI_REFS / "jwst_miri_specwcs_0016.asdf"),
                    override_regions=str(regions),
                    override_wavelengthrange=str(MIRI_REFS / "jwst_miri_wavelengthrange_0003.asdf"))
        m = AssignWcsStep.call(m, **refs)
        yy, xx = np.mgrid[:1024, :1032]
        ra, dec, lam = m.meta.wcs(xx, yy)
        onsky = np.isfinite(ra)
        flux = np.full(ra.shape, np.nan, np.float32)
        flux[onsky] = _scene(ra[onsky], dec[onsky], lam[onsky], k)
        noise = np.where(onsky, 0.02 * np.sqrt(np.abs(np.nan_to_num(flux))) + 0.05, np.nan).astype(np.float32)
        flux[onsky] += (rng.normal(size=onsky.sum()) * noise[onsky]).astype(np.float32)
        dq = np.where(onsky, 0, 513).astype(np.uint32)  # DO_NOT_USE | NON_SCIENCE off the slices
        # a few bad pixels and a cosmic-ray-like hit flagged DO_NOT_USE
        bad = rng.integers(0, 1024 * 1032, 300)
        dq.flat[bad] |= 1
        m.data = flux
        m.err = noise
        m.dq = dq
        m.var_poisson = (noise**2 * 0.7).astype(np.float32)
        m.var_rnoise = (noise**2 * 0.3).astype(np.float32)
        m.var_flat = np.zeros_like(noise)
        m.meta.cal_step.flat_field = "COMPLETE"
        m.meta.cal_step.photom = "COMPLETE"
        path = folder / m.meta.filename
        m.save(path)
        out.append(path)
    return out


def write_spec3_asn(folder: Path, cals: list[Path], product: str = PRODUCT) -> Path:
    """The level-3 association jwst's rules make for an MRS dither: science members, one product."""
    asn = {
        "asn_type": "spec3", "asn_rule": "Asn_Lv3SpectralTarget", "asn_id": "o003",
        "program": "01523", "target": "t002", "version_id": None, "code_version": "3.0.0",
        "asn_pool": "jw01523_pool.csv", "degraded_status": "No known degraded exposures in association.",
        "constraints": "", "products": [{"name": product, "members": [
            {"expname": Path(c).name, "exptype": "science"} for c in cals]}],
    }
    path = Path(folder) / f"{product.split('_t')[0]}_spec3_00001_asn.json"
    path.write_text(json.dumps(asn, indent=2))
    return path


EXPOSURE_ROOT = "jw01523003001_03102_00001_mirifulong"


def spec2_both(root: Path, steps_for, scene=None):
    """One exposure of this scene (or of ``scene``, a function like ``_scene``) through jwst's
    Spec2Pipeline and webbflow's spec2 with the same steps: ``steps_for(inp, refs)`` gives them,
    ``refs`` being the cubepar, extract1d and apcorr references written here.  jwst's assign_wcs
    gets N/A for the reference types the 2019 rules do not hold, and targ_centroid is skipped.
    Returns the folders (``inp``, ``jwst``, ``ours``), the rate file and the references."""
    import os
    import shutil
    import sys
    from types import SimpleNamespace

    import pytest
    from conftest import CRDS_RULES
    from jwst.assign_wcs import AssignWcsStep
    from jwst.pipeline import Spec2Pipeline
    from parity import jwst_offline, quiet_jwst

    from webbflow.flows.calwebb_spec2 import spec2
    from webbflow.refs import synthetic_mrs as syn

    context = "jwst_0541.pmap"
    inp = root / "in"
    with jwst_offline(CRDS_RULES, context), quiet_jwst(), pytest.MonkeyPatch.context() as mp:
        if scene is not None:
            mp.setattr(sys.modules[__name__], "_scene", scene)
        cal = make_cal_files(inp, ndither=1)[0]
    rate = inp / f"{EXPOSURE_ROOT}_rate.fits"
    shutil.copy(cal, rate)
    refs = SimpleNamespace(cubepar=write_cubepar(inp / "jwst_miri_cubepar_test.fits"),
                           extract1d=syn.save_inline(syn.extract1d_ifu(), inp / "jwst_miri_extract1d_test.asdf"),
                           apcorr=syn.save_inline(syn.mrs_apcorr(), inp / "jwst_miri_apcorr_test.asdf"))
    steps = steps_for(inp, refs)
    jw, ours = root / "jwst_spec2", root / "ours_spec2"
    jw_steps = {k: dict(v) for k, v in steps.items()}
    for rt in AssignWcsStep.reference_file_types:  # the 2019 rules hold no MRS files: the others are N/A
        jw_steps["assign_wcs"].setdefault(f"override_{rt}", "N/A")
    jw_steps["targ_centroid"] = {"skip": True}
    cwd = os.getcwd()
    os.chdir(inp)
    try:
        with jwst_offline(CRDS_RULES, context), quiet_jwst(), pytest.MonkeyPatch.context() as mp:
            # the 2019 rules know none of jwst 3.0's newer reference types: no prefetch of them all,
            # each step asks for its own (every one of them overridden)
            mp.setattr(Spec2Pipeline, "prefetch_references", False)
            Spec2Pipeline.call(rate.name, steps=jw_steps, save_results=True, output_dir=str(jw))
    finally:
        os.chdir(cwd)
    with jwst_offline(CRDS_RULES, context):
        spec2.fn(str(rate), steps=steps, output_dir=str(ours))
    return SimpleNamespace(inp=inp, rate=rate, refs=refs, jwst=jw, ours=ours)


def x1d_columns_agree(ours: Path, theirs: Path) -> dict:
    """Each EXTRACT1D column's fraction of rows within rtol 1e-4 (NaN where both are NaN); the
    tables' column names, units and lengths must be the same."""
    from astropy.io import fits

    with fits.open(ours) as a, fits.open(theirs) as b:
        ta, tb = a["EXTRACT1D"].data, b["EXTRACT1D"].data
        assert ta.columns.names == tb.columns.names
        assert [c.unit for c in ta.columns] == [c.unit for c in tb.columns]
        assert len(ta) == len(tb)
        out = {}
        for c in tb.columns.names:
            x, y = np.asarray(ta[c], float), np.asarray(tb[c], float)
            out[c] = float((np.isclose(x, y, rtol=1e-4, atol=0) | (np.isnan(x) & np.isnan(y))).mean())
    return out
