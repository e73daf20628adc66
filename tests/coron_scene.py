"""A small coronagraphic observation built in memory, for coron3's tests: one science exposure of
a star behind the mask with a companion, two PSF-reference exposures of a star without one, all
calibrated cubes of integrations (calints) with an imaging WCS, plus a psfmask reference and the
level-3 association (science and psf members), as jwst's coron3 takes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIZE = 64
NINTS = 3
PRODUCT = "jw01075-a3001_t001_nircam_f335m-maska335r-sub320a335r"
ASN_ID = "a3001"
# the companion: pixel position (x, y, 0-based) in the science exposure and its count rate (MJy/sr peak)
COMPANION = (44.0, 21.0, 6.0)
STAR = (31.6, 32.3)
RA0, DEC0 = 80.4875, -69.4983


def _wcs(crpix):
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models as am
    from gwcs import coordinate_frames as cf
    from gwcs import wcs as gw

    tr = ((am.Shift(-crpix[0]) & am.Shift(-crpix[1])) | (am.Scale(1.75e-5) & am.Scale(1.75e-5))
          | am.Pix2Sky_TAN() | am.RotateNative2Celestial(RA0, DEC0, 180.0))
    det = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(name="world", reference_frame=coord.ICRS(), unit=(u.deg, u.deg))
    w = gw.WCS([(det, tr), (sky, None)])
    w.bounding_box = ((-0.5, SIZE - 0.5), (-0.5, SIZE - 0.5))
    return w


def _psf(xx, yy, x0, y0, amp):
    r2 = (xx - x0) ** 2 + (yy - y0) ** 2
    core = amp * np.exp(-r2 / (2 * 1.6**2))
    halo = 0.02 * amp / (1 + r2 / 9.0) ** 1.5
    return core + halo


def _mask(xx, yy):
    """The coronagraph's transmission: 0 at the centre of the round mask, rising to 1 outside it."""
    r2 = (xx - 32.0) ** 2 + (yy - 32.0) ** 2
    return 1 - np.exp(-r2 / (2 * 4.0**2))


def _cube(path: Path, rng, star_xy, amp, companion, exposure: int, psf: bool):
    from webbflow import models

    yy, xx = np.mgrid[:SIZE, :SIZE].astype(float)
    trans = _mask(xx, yy)
    data = np.empty((NINTS, SIZE, SIZE), np.float32)
    for k in range(NINTS):
        img = _psf(xx, yy, star_xy[0] + 0.01 * k, star_xy[1] - 0.01 * k, amp) * trans + 0.5
        if companion is not None:
            img += companion[2] * np.exp(-((xx - companion[0]) ** 2 + (yy - companion[1]) ** 2) / (2 * 1.4**2))
        data[k] = img + rng.normal(0, 0.05, img.shape)
    dq = np.zeros(data.shape, np.uint32)
    dq[:, 0, :] = dq[:, :, 0] = 1  # a border of DO_NOT_USE, NaN as in a calints
    data[dq > 0] = np.nan
    data[1, 40, 12] += 80.0  # a cosmic ray in the second integration
    var = np.full(data.shape, 0.05**2, np.float32)
    cube = models.CubeModel(data=data, err=np.sqrt(var * 2), dq=dq, var_poisson=var, var_rnoise=var,
                            var_flat=np.zeros_like(var))
    m = cube.meta
    m.filename = path.name
    m.date = "2024-05-01T12:00:00.000"
    m.exposure.type, m.exposure.nints, m.exposure.ngroups = "NRC_CORON", NINTS, 3
    m.exposure.readpatt, m.exposure.integration_time, m.exposure.exposure_time = "MEDIUM8", 42.9, 85.9
    m.exposure.start_time, m.exposure.mid_time, m.exposure.end_time = 60000.1 + exposure, 60000.1005 + exposure, 60000.101 + exposure
    m.exposure.psf_reference = psf
    m.instrument.name, m.instrument.detector, m.instrument.channel, m.instrument.module = "NIRCAM", "NRCALONG", "LONG", "A"
    m.instrument.filter, m.instrument.pupil, m.instrument.coronagraph = "F335M", "MASKRND", "MASKA335R"
    m.subarray.name, m.subarray.xstart, m.subarray.ystart, m.subarray.xsize, m.subarray.ysize = "SUB320A335R", 1, 1, SIZE, SIZE
    m.observation.date, m.observation.time = "2023-01-01", "00:00:00"
    m.observation.program_number, m.observation.observation_number, m.observation.visit_number = "01075", "001", "001"
    m.observation.visit_group, m.observation.sequence_id, m.observation.activity_id = "03", "1", "05"
    m.observation.exposure_number = f"{exposure:05d}"
    m.target.catalog_name = "HD 0000"
    m.bunit_data = m.bunit_err = "MJy/sr"
    m.photometry.pixelarea_steradians, m.photometry.pixelarea_arcsecsq = 9.6e-14, 0.00408
    m.wcsinfo.s_region = _s_region()
    w = m.wcsinfo
    w.ra_ref, w.dec_ref, w.roll_ref, w.v2_ref, w.v3_ref = RA0, DEC0, 0.0, -120.8, -406.8
    w.v3yangle, w.vparity, w.siaf_xref_sci, w.siaf_yref_sci = -0.5, -1, 32.5, 32.5
    m.wcs = _wcs((31.5, 31.5))
    cube.save(path)
    return path


def _s_region():
    w = _wcs((31.5, 31.5))
    corners = [(-0.5, -0.5), (SIZE - 0.5, -0.5), (SIZE - 0.5, SIZE - 0.5), (-0.5, SIZE - 0.5)]
    pts = " ".join(f"{a:.9f} {b:.9f}" for a, b in (w(x, y) for x, y in corners))
    return f"POLYGON ICRS  {pts}"


def psfmask(path: Path) -> Path:
    """The psfmask reference of the subarray, written as stdatamodels writes a PsfMaskModel."""
    from stdatamodels.jwst.datamodels import PsfMaskModel

    yy, xx = np.mgrid[:SIZE, :SIZE].astype(float)
    data = (np.hypot(xx - 32.0, yy - 32.0) > 6).astype(np.float32)
    data[:2], data[-2:], data[:, :2], data[:, -2:] = 0, 0, 0, 0
    m = PsfMaskModel(data=data)
    m.meta.instrument.name, m.meta.instrument.detector = "NIRCAM", "NRCALONG"
    m.meta.instrument.filter, m.meta.instrument.coronagraph = "F335M", "MASKA335R"
    m.meta.exposure.type = "NRC_CORON"
    m.meta.subarray.name, m.meta.subarray.xstart, m.meta.subarray.ystart = "SUB320A335R", 1, 1
    m.meta.subarray.xsize, m.meta.subarray.ysize = SIZE, SIZE
    m.meta.reftype, m.meta.useafter, m.meta.pedigree = "PSFMASK", "2014-01-01T00:00:00", "DUMMY"
    m.meta.description, m.meta.author = "coron3 test psfmask", "webbflow tests"
    m.save(path)
    return path


PSFMASK_PARKEYS = ("META.EXPOSURE.TYPE", "META.INSTRUMENT.FILTER", "META.INSTRUMENT.CORONAGRAPH", "META.SUBARRAY.NAME")


def crds_cache(root: Path) -> Path:
    """A local CRDS cache whose context selects the psfmask, by the real rmap's parkeys, for
    webbflow and for jwst alike (every other reftype N/A)."""
    from webbflow.refs.context import Rmap, reference_path, write_context

    name = "jwst_nircam_psfmask_0001.fits"
    target = reference_path(root, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    psfmask(target)
    rm = Rmap("NIRCAM", "psfmask", PSFMASK_PARKEYS, {("NRC_CORON", "F335M", "MASKA335R", "SUB320A335R"): name})
    write_context(root, {"NIRCAM": {"psfmask": rm}}, "coron3 test context")
    return root


def make_observation(folder: Path) -> dict:
    """Write the calints, the psfmask and the coron3 association into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(21)
    sci = _cube(folder / "jw01075001001_03105_00001_nrcalong_calints.fits", rng, STAR, 400.0, COMPANION, 1, False)
    psfs = [_cube(folder / f"jw01075002001_03105_0000{i}_nrcalong_calints.fits", rng,
                  (STAR[0] + dx, STAR[1] + dy), 380.0 + 10 * i, None, i, True)
            for i, (dx, dy) in ((1, (0.3, -0.2)), (2, (-0.25, 0.35)))]
    asn = {"asn_type": "coron3", "asn_rule": "candidate_Asn_Lv3Coron", "asn_id": ASN_ID, "asn_pool": "jw01075_pool.csv",
           "version_id": None, "code_version": "3.0.0", "degraded_status": "No known degraded exposures in association.",
           "program": "01075", "constraints": "", "target": "t001",
           "products": [{"name": PRODUCT, "members": [{"expname": sci.name, "exptype": "science"}]
                         + [{"expname": p.name, "exptype": "psf"} for p in psfs]}]}
    path = folder / f"jw01075-{ASN_ID}_coron3_00001_asn.json"
    path.write_text(json.dumps(asn, indent=1))
    return {"asn": path, "science": [sci], "psf": psfs}
