"""A small NIRCam WFSS observation calibrated to cal files by jwst's own Stage 2 steps (test helper).

``jwst_wfss_cals(folder, cache)`` writes into ``folder`` two dispersed exposures (NRC_WFSS, GRISMR,
F444W, NRCALONG FULL) of the same two sources, the second exposure dithered by a few pixels, each
taken through jwst 3.0's assign_wcs, extract_2d, srctype and photom (the real NIRCam specwcs and WFSS
photom, synthetic distortion, filteroffset, wavelengthrange and area), and saved as
``<exposure>_cal.fits`` MultiSlitModels: one cutout per source and order.  It also writes the
spec3 association of the two cal files, as jwst's WFSS level-3 rule names it.  Background
subtraction and flat fielding are left out: spec3 does not look at them, and full-frame steps cost
CI time.

Its pieces serve bench/wfss_spec3.py too: ``scene_rates`` and ``scene_refs`` (the rates and the
references), ``jwst_cal`` and ``webbflow_cal`` (one exposure through either side's Stage 2 steps),
``write_spec3_asn``.  The builders of the rates, references and catalogue are test_grism's.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

ASN = "jw01234-o001_20260101t000000_spec3_00001_asn.json"
PRODUCT = "jw01234-o001_t001_nircam_f444w-grismr"
# (x, y, bbox half size, AB mag, extended) in the direct image: a point source and a compact galaxy
SOURCES = [(1000.3, 1020.7, 6, 21.0, False), (420.0, 300.5, 9, 22.5, True)]
NA_WCS = ("regions", "camera", "chromcorr", "collimator", "disperser", "fore", "fpa", "msa", "ote",
          "ifupost", "ifufore", "ifuslicer")


def many_sources(n: int) -> list[tuple]:
    """``n`` catalogue sources on a grid of the left half of the detector (traces run to the right)."""
    cols = max(1, int(np.ceil(n / 150)))
    out = []
    for k in range(n):
        col, row = divmod(k, 150)
        x = 80.0 + 900.0 * col / cols + 3.3 * (row % 7)
        y = 40.0 + 13.0 * row
        out.append((x, y, 4, 22.0, bool(k % 3 == 0)))
    return out


def _exposure(number: int, dither: tuple[float, float], sources=SOURCES):
    from test_grism import _rate

    m = _rate(pupil="GRISMR", seed=number)
    rng = np.random.default_rng(100 + number)
    m.data = (m.data - 0.3 + rng.normal(0, 0.01, m.data.shape)).astype(np.float32)
    dx, dy = dither
    for k, (x0, y0, *_) in enumerate(sources):
        amp = (40.0, 15.0)[k] if k < 2 else 10.0
        # each source's order-1 trace, a few rows high, starting right of its direct-image position
        x, y = int(x0 + dx), int(y0 + dy)
        ramp = np.linspace(1.0, 0.6, 1000, dtype=np.float32)
        m.data[y - 2: y + 3, x: x + 1000] += amp * ramp
    m.meta.target.source_type = None
    o = m.meta.observation
    o.program_number, o.observation_number, o.visit_number = "01234", "001", "001"
    o.visit_group, o.sequence_id, o.activity_id, o.exposure_number = "01", "1", "01", f"{number:05d}"
    o.visit_id = "01234001001"
    ex = m.meta.exposure
    ex.exposure_time = ex.effective_exposure_time = 300.0 + 20.0 * number
    ex.integration_time = 300.0 + 20.0 * number
    ex.duration = 320.0
    w = m.meta.wcsinfo
    # the dither: the pointing moves by (dx, dy) pixels in the detector frame
    scale = w.cdelt1
    w.crval1 = w.ra_ref = w.ra_ref - dx * scale / np.cos(np.radians(w.dec_ref))
    w.crval2 = w.dec_ref = w.dec_ref - dy * scale
    w.s_region = _footprint(w)
    m.meta.target.ra, m.meta.target.dec = 53.16, -27.78
    m.meta.program.pi_name = "TEST"
    return m


def _footprint(w) -> str:
    """The S_REGION polygon of the full frame from the FITS WCS keywords, as the level-1 header has it."""
    from astropy.wcs import WCS

    fw = WCS(naxis=2)
    fw.wcs.crpix = [w.crpix1, w.crpix2]
    fw.wcs.crval = [w.crval1, w.crval2]
    fw.wcs.cdelt = [w.cdelt1, w.cdelt2]
    fw.wcs.pc = [[w.pc1_1, w.pc1_2], [w.pc2_1, w.pc2_2]]
    fw.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    corners = fw.all_pix2world([[1, 1], [2048, 1], [2048, 2048], [1, 2048]], 1)
    return "POLYGON ICRS " + " ".join(f"{a:.9f} {d:.9f}" for a, d in corners)


CATALOG = "jw01234-o001_t001_nircam_clear-f444w_cat.ecsv"
EXPOSURES = ((1, (0.0, 0.0)), (2, (4.0, 3.0)))  # (exposure number, dither in pixels)


def exposure_root(number: int) -> str:
    return f"jw01234001001_01101_{number:05d}_nrcalong"


def scene_refs(first, refs_dir: Path) -> dict:
    """The references of the scene's Stage 2 steps (saved in ``refs_dir``; the real NIRCam specwcs
    and WFSS photom, synthetic distortion, filteroffset, wavelengthrange and area): ``{reftype: path}``."""
    from test_grism import REAL_NIRCAM, _wcs_refs

    from webbflow.refs import synthetic as syn
    from webbflow.refs import synthetic_grism as sg
    from webbflow.refs.synthetic import ExposureConfig

    refs_dir.mkdir(parents=True, exist_ok=True)
    refs = _wcs_refs(first, refs_dir, "GRISMR")
    refs["wavelengthrange"] = Path(sg.wavelengthrange("NIRCAM", "NRC_WFSS").save(refs_dir / "ref_wavelengthrange.asdf"))
    cfg = ExposureConfig(instrument="NIRCAM", detector="NRCALONG", exp_type="NRC_IMAGE", subarray="FULL",
                         xstart=1, ystart=1, xsize=2048, ysize=2048, filter="F444W", pupil="CLEAR")
    refs["area"] = Path(syn.reference_set(cfg, reftypes=["area"])["area"].save(refs_dir / "ref_area.fits"))
    refs["photom"] = REAL_NIRCAM / "jwst_nircam_photom_0064.fits"
    return refs


def saved_refs(refs_dir: Path) -> dict:
    """The references ``scene_refs`` saved in ``refs_dir`` (``{reftype: path}``), without making them again."""
    from test_grism import REAL_NIRCAM, SPECWCS

    return {"distortion": refs_dir / "ref_distortion.asdf", "filteroffset": refs_dir / "ref_filteroffset.asdf",
            "specwcs": SPECWCS["GRISMR"], "wavelengthrange": refs_dir / "ref_wavelengthrange.asdf",
            "area": refs_dir / "ref_area.fits", "photom": REAL_NIRCAM / "jwst_nircam_photom_0064.fits"}


def scene_rates(refs_dir: Path, sources=SOURCES):
    """The scene's two dispersed rates, saved in ``refs_dir``: ``[(number, path)]``, and the first
    exposure's model (the references are made from it)."""
    rates, first = [], None
    for number, dither in EXPOSURES:
        m = _exposure(number, dither, sources)
        first = first or m
        m.meta.filename = f"{exposure_root(number)}_rate.fits"
        rates.append((number, Path(m.save(refs_dir / m.meta.filename))))
    return rates, first


def jwst_cal(rate: Path, refs: dict, folder: Path, catalog_sources=None) -> Path:
    """One rate through jwst 3.0's assign_wcs, extract_2d, srctype and photom, saved as its cal file in
    ``folder`` (run inside ``jwst_offline``); with ``catalog_sources``, the catalogue is made first
    from this exposure's WCS (the direct image's frame)."""
    from test_grism import _catalog

    from jwst.assign_wcs import AssignWcsStep
    from jwst.extract_2d import Extract2dStep
    from jwst.photom import PhotomStep
    from jwst.srctype import SourceTypeStep

    j = AssignWcsStep.call(str(rate), override_distortion=str(refs["distortion"]),
                           override_filteroffset=str(refs["filteroffset"]), override_specwcs=str(refs["specwcs"]),
                           override_wavelengthrange=str(refs["wavelengthrange"]), sip_approx=False,
                           **{f"override_{r}": "N/A" for r in NA_WCS})
    if catalog_sources is not None:
        _catalog(j, folder / CATALOG, catalog_sources)
    j.meta.source_catalog = str(folder / CATALOG)
    j = Extract2dStep.call(j, override_wavelengthrange=str(refs["wavelengthrange"]))
    j.meta.source_catalog = CATALOG
    j = SourceTypeStep.call(j)
    j = PhotomStep.call(j, override_photom=str(refs["photom"]), override_area=str(refs["area"]))
    root = Path(rate).name[: -len("_rate.fits")]
    j.meta.filename = f"{root}_cal.fits"
    path = folder / j.meta.filename
    j.save(str(path))
    return path


def webbflow_cal(rate: Path, refs: dict, folder: Path, catalog_sources=None) -> Path:
    """The same as :func:`jwst_cal` with webbflow's own steps (as plain calls)."""
    from test_grism import _catalog

    from webbflow import models
    from webbflow.tasks import load_all
    from webbflow.tasks.base import run_step

    load_all()
    wcs_refs = {k: refs[k] for k in ("distortion", "filteroffset", "specwcs")}
    w = run_step("assign_wcs", models.open(rate), {"sip_approx": False}, references=wcs_refs).model
    if catalog_sources is not None:
        _catalog(w, folder / CATALOG, catalog_sources)
    w.meta.source_catalog = str(folder / CATALOG)
    w = run_step("extract_2d", w, {}, references={"wavelengthrange": refs["wavelengthrange"]}).model
    w.meta.source_catalog = CATALOG
    w = run_step("srctype", w, {}).model
    w = run_step("photom", w, {}, references={"photom": refs["photom"], "area": refs["area"]}).model
    root = Path(rate).name[: -len("_rate.fits")]
    w.meta.filename = f"{root}_cal.fits"
    return Path(w.save(folder / w.meta.filename))


def write_spec3_asn(folder: Path, cals: list[Path]) -> Path:
    """The spec3 association of the cal files, as jwst's WFSS level-3 rule names it."""
    asn = {"asn_type": "spec3", "asn_rule": "candidate_Asn_Lv3WFSSNRC", "asn_id": "o001",
           "asn_pool": "jw01234_20260101t000000_pool.csv", "program": "01234", "target": "t001",
           "version_id": "20260101t000000", "code_version": "3.0.0",
           "degraded_status": "No known degraded exposures in association.", "constraints": "",
           "products": [{"name": PRODUCT, "members": [{"expname": Path(p).name, "exptype": "science", "exposerr": "null"}
                                                      for p in cals]}]}
    asn_path = folder / ASN
    asn_path.write_text(json.dumps(asn, indent=2))
    return asn_path


def jwst_wfss_cals(folder: Path, refs_dir: Path, cache: Path, context: str = "jwst_0541.pmap",
                   sources=SOURCES) -> dict:
    """Write two jwst-calibrated WFSS cal files of ``sources`` and their spec3 association into ``folder``.

    Returns ``{"asn": path, "cals": [paths], "refs": {reftype: path}}``.
    """
    from parity import jwst_offline, quiet_jwst

    folder.mkdir(parents=True, exist_ok=True)
    refs_dir.mkdir(parents=True, exist_ok=True)
    rates, first = scene_rates(refs_dir, sources)
    refs = scene_refs(first, refs_dir)
    cals = []
    for number, rate in rates:
        with jwst_offline(cache, context), quiet_jwst(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cals.append(jwst_cal(rate, refs, folder, sources if number == 1 else None))
    return {"asn": write_spec3_asn(folder, cals), "cals": cals, "refs": refs}
