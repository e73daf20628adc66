"""NIRSpec spectroscopic flats (fflat, sflat, dflat) and the MSA bar shadow, in the real CRDS files' form.

Written as stdatamodels writes them (DATAMODL naming the class, reference keywords in the primary
header, no ASDF extension), smooth and of realistic scale: values near 1 with wavelength-dependent
variations of a few per cent.

- ``fflat`` for fixed slits and BOTS (NirspecFlatModel): the FAST_VARIATION table alone, one row
  per fixed slit (``slit_name``, ``nelem``, ``wavelength``/``data``/``error`` arrays).  For
  PRISM/CLEAR fixed slits the real (dummy) ``jwst_nirspec_fflat_0017.fits`` has that form.
- ``fflat`` for the MSA (NirspecQuadFlatModel): per quadrant (EXTVER 1..4) SCI, ERR and DQ of
  (planes, 171, 365) shutters, the WAVELENGTH of each plane and a FAST_VARIATION row.
- ``sflat``: SCI, DQ, ERR of 2048 x 2048 (fixed slits, BOTS) or of (planes, 2048, 2048) (MSA),
  WAVELENGTH, FAST_VARIATION (a row per fixed slit, or one row ``ANY``) and DQ_DEF.
- ``dflat``: SCI of (planes, 2048, 2048), DQ and ERR of 2048 x 2048, WAVELENGTH, one FAST_VARIATION
  row and DQ_DEF.  The pixel response varies by ~1 % from pixel to pixel and by a few per cent
  over the detector and with wavelength.  A few pixels are flagged (DO_NOT_USE + NO_FLAT_FIELD) or NaN.
- ``barshadow`` (BarshadowModel): DATA1X1/VAR1X1 (one open shutter) and DATA1X3/VAR1X3 (the middle
  of three), 1001 rows for -1..1 shutter pitches along the slit (CRVAL2/CDELT2) by 101 wavelength
  columns (CRVAL1/CDELT1, micron): the bars' shadows at +-0.5 pitch, wider at longer wavelengths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..models import dqflags
from .synthetic import AUTHOR, PEDIGREE, USEAFTER

FIXED_SLITS = ("S200A1", "S200A2", "S400A1", "S1600A1", "S200B1")
RANGES = {"PRISM": (0.6, 5.3), "G140M": (0.97, 1.89), "G235M": (1.66, 3.17), "G395M": (2.87, 5.27),
          "G140H": (0.97, 1.89), "G235H": (1.66, 3.17), "G395H": (2.87, 5.27)}
NELEM = 2000  # fast-variation samples used (of the table's array length)
TABLE_LEN = 2500
MSA_SHAPE = (171, 365)  # shutter rows, columns per quadrant
REAL_FS_FFLAT = "jwst_nirspec_fflat_0017.fits"


def _primary(reftype, datamodel, exp_type, description, grating="PRISM", filt="CLEAR", detector=None,
             p_exp_type=None):
    from astropy.io import fits

    h = fits.Header()
    h["DATAMODL"] = (datamodel, "Type of data model")
    h["TELESCOP"] = ("JWST", "Telescope used to acquire the data")
    h["INSTRUME"] = ("NIRSPEC", "Instrument used to acquire the data")
    if detector:
        h["DETECTOR"] = (detector, "Name of detector used to acquire the data")
    h["FILTER"] = (filt, "Name of the filter element used")
    h["GRATING"] = (grating, "Name of the grating element used")
    h["EXP_TYPE"] = (exp_type, "Type of data in the exposure")
    if p_exp_type:
        h["P_EXP_TY"] = p_exp_type
    h["SUBARRAY"] = ("GENERIC", "Subarray used")
    h["SUBSTRT1"], h["SUBSIZE1"], h["SUBSTRT2"], h["SUBSIZE2"] = 1, 2048, 1, 2048
    h["FASTAXIS"], h["SLOWAXIS"] = (1, 2) if detector != "NRS2" else (-1, -2)
    h["REFTYPE"] = (reftype.upper(), "Reference file type")
    h["DESCRIP"] = description
    h["AUTHOR"] = (AUTHOR, "Author of the reference file")
    h["PEDIGREE"] = (PEDIGREE, "The pedigree of the reference file")
    h["USEAFTER"] = (USEAFTER, "Use after date of the reference file")
    return h


def _write(path, hdus) -> Path:
    from astropy.io import fits

    from ..models.atomic import atomic_open

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        fits.HDUList(hdus).writeto(f)
    return path


def fast_variation_rows(names, grating, seed_phase=0.0, amplitude=0.03):
    """FAST_VARIATION rows: per name, NELEM wavelengths over the grating's range (padded with NaN to
    TABLE_LEN), a flat of 1 +- ``amplitude`` in a few wavelength ripples and a 0.5 % error."""
    lo, hi = RANGES[grating]
    wl = np.linspace(lo - 0.02, hi + 0.02, NELEM)
    rows = []
    for i, name in enumerate(names):
        phase = seed_phase + 0.7 * i
        val = 1.0 + amplitude * np.sin(2 * np.pi * (wl - lo) / (0.45 * (hi - lo)) + phase) \
            + 0.5 * amplitude * np.cos(2 * np.pi * (wl - lo) / (0.13 * (hi - lo)) + 2 * phase)
        pad = np.full(TABLE_LEN, np.nan, np.float32)
        w, v, e = pad.copy(), pad.copy(), pad.copy()
        w[:NELEM], v[:NELEM], e[:NELEM] = wl, val, 0.005 * val
        rows.append((name, NELEM, w, v, e))
    return rows


def _fast_variation_hdu(rows):
    from astropy.io import fits

    n = TABLE_LEN
    cols = [
        fits.Column("slit_name", "15A", array=np.array([r[0] for r in rows])),
        fits.Column("nelem", "1J", array=np.array([r[1] for r in rows], np.int32)),
        fits.Column("wavelength", f"{n}E", unit="micrometer", array=np.array([r[2] for r in rows])),
        fits.Column("data", f"{n}E", array=np.array([r[3] for r in rows])),
        fits.Column("error", f"{n}E", array=np.array([r[4] for r in rows])),
    ]
    return fits.BinTableHDU.from_columns(cols, name="FAST_VARIATION")


def _wavelength_hdu(plane_wl, extver=None):
    from astropy.io import fits

    hdu = fits.BinTableHDU.from_columns(
        [fits.Column("wavelength", "E", unit="micrometer", array=np.asarray(plane_wl, np.float32))], name="WAVELENGTH")
    if extver is not None:
        hdu.header["EXTVER"] = extver
    return hdu


def _dq_def_hdu():
    from astropy.io import fits

    flags = ("DO_NOT_USE", "NO_FLAT_FIELD", "UNRELIABLE_FLAT")
    rec = np.array([(i, dqflags.PIXEL[f], f, f.replace("_", " ").lower()) for i, f in
                    enumerate(flags)], dtype=[("BIT", "<i4"), ("VALUE", "<u4"), ("NAME", "S40"), ("DESCRIPTION", "S80")])
    for i, f in enumerate(flags):
        rec["BIT"][i] = int(np.log2(dqflags.PIXEL[f]))
    return fits.BinTableHDU(rec, name="DQ_DEF")


def _plane_wavelengths(grating, n):
    lo, hi = RANGES[grating]
    return np.linspace(lo, hi, n)


def _detector_pattern(rng, nplanes, plane_wl, amplitude):
    """(nplanes, 2048, 2048) float32: large-scale slopes/ripples changing with wavelength times a
    fixed ~1 % pixel-to-pixel response."""
    y = np.linspace(-1, 1, 2048, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, 2048, dtype=np.float32)[None, :]
    pixels = 1.0 + 0.01 * rng.standard_normal((2048, 2048), dtype=np.float32)
    out = np.empty((nplanes, 2048, 2048), np.float32)
    for k, lam in enumerate(plane_wl):
        s = float(lam) / 5.0
        out[k] = (1.0 + amplitude * (s * x + 0.5 * np.sin(3.0 * y + s) * np.cos(2.0 * x - s))) * pixels
    return out


def _flag_some(rng, dq, data, n=40):
    """A few unusable pixels: DO_NOT_USE + NO_FLAT_FIELD in DQ, and a few NaN in the image."""
    iy = rng.integers(0, 2048, n)
    ix = rng.integers(0, 2048, n)
    dq[iy[: n // 2], ix[: n // 2]] = dqflags.DO_NOT_USE | dqflags.NO_FLAT_FIELD
    data[..., iy[n // 2:], ix[n // 2:]] = np.nan


def write_dflat(path, detector="NRS1", grating="PRISM", nplanes=3, seed=1) -> Path:
    """The detector flat of ``detector`` (see the module)."""
    from astropy.io import fits

    rng = np.random.default_rng(seed + (detector == "NRS2"))
    plane_wl = _plane_wavelengths("PRISM", nplanes)  # the detector's response is the same for every grating
    sci = _detector_pattern(rng, nplanes, plane_wl, 0.03)
    dq = np.zeros((2048, 2048), np.uint32)
    _flag_some(rng, dq, sci)
    err = np.full((2048, 2048), 0.004, np.float32)
    h = _primary("dflat", "NirspecFlatModel", "NRS_FIXEDSLIT|NRS_BRIGHTOBJ|NRS_MSASPEC|NRS_IFU|",
                 f"webbflow synthetic NIRSpec {detector} detector flat", grating="ANY", filt="ANY", detector=detector,
                 p_exp_type="NRS_FIXEDSLIT|NRS_BRIGHTOBJ|NRS_MSASPEC|NRS_IFU|")
    h["EXP_TYPE"] = "ANY"
    hdus = [fits.PrimaryHDU(header=h), fits.ImageHDU(sci, name="SCI"), fits.ImageHDU(dq, name="DQ"),
            fits.ImageHDU(err, name="ERR"), _wavelength_hdu(plane_wl),
            _fast_variation_hdu(fast_variation_rows(["ANY"], "PRISM", 0.3, 0.01)), _dq_def_hdu()]
    return _write(path, hdus)


def write_sflat(path, exp_type="NRS_FIXEDSLIT", detector="NRS1", grating="PRISM", filt="CLEAR", nplanes=2,
                seed=2) -> Path:
    """The spectrograph flat for ``exp_type`` (fixed slits and BOTS: 2-D, a row per slit; MSA: 3-D)."""
    from astropy.io import fits

    rng = np.random.default_rng(seed + (detector == "NRS2"))
    msa = exp_type == "NRS_MSASPEC"
    plane_wl = _plane_wavelengths(grating, nplanes if msa else 1)
    sci = _detector_pattern(rng, len(plane_wl), plane_wl, 0.02) ** 0.5  # smoother: half the pixel variance
    sci = sci.astype(np.float32)
    if not msa:
        sci = sci[0]
    dq = np.zeros((2048, 2048) if not msa else sci.shape, np.uint32)
    _flag_some(rng, dq if dq.ndim == 2 else dq[0], sci, 20)
    err = np.full(sci.shape, 0.003, np.float32)
    names = FIXED_SLITS if not msa else ("ANY",)
    h = _primary("sflat", "NirspecFlatModel", exp_type, f"webbflow synthetic NIRSpec {exp_type} spectrograph flat",
                 grating=grating, filt=filt, detector=detector)
    hdus = [fits.PrimaryHDU(header=h), fits.ImageHDU(sci, name="SCI"), fits.ImageHDU(dq, name="DQ"),
            fits.ImageHDU(err, name="ERR"), _wavelength_hdu(plane_wl),
            _fast_variation_hdu(fast_variation_rows(names, grating, 1.1, 0.02)), _dq_def_hdu()]
    return _write(path, hdus)


def write_fflat_fs(path, exp_type="NRS_BRIGHTOBJ", grating="PRISM", filt="CLEAR") -> Path:
    """A fixed-slit / BOTS fore-optics flat: the FAST_VARIATION table, a row per fixed slit."""
    from astropy.io import fits

    h = _primary("fflat", "NirspecFlatModel", exp_type, f"webbflow synthetic NIRSpec {exp_type} fore-optics flat",
                 grating="N/A", filt=filt)
    return _write(path, [fits.PrimaryHDU(header=h), _fast_variation_hdu(fast_variation_rows(FIXED_SLITS, grating, 2.3))])


def write_fflat_msa(path, grating="PRISM", filt="CLEAR", nplanes=4, seed=3) -> Path:
    """The MSA fore-optics flat: per quadrant a per-shutter throughput spectrum and a table row."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    plane_wl = _plane_wavelengths(grating, nplanes)
    h = _primary("fflat", "NirspecQuadFlatModel", "NRS_MSASPEC", "webbflow synthetic NIRSpec MSA fore-optics flat",
                 grating="N/A", filt=filt)
    hdus = [fits.PrimaryHDU(header=h)]
    ny, nx = MSA_SHAPE
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float32)
    for q in range(1, 5):
        shutters = (1.0 + 0.01 * rng.standard_normal(MSA_SHAPE)).astype(np.float32)
        sci = np.empty((nplanes, ny, nx), np.float32)
        for k, lam in enumerate(plane_wl):
            sci[k] = (1.0 + 0.04 * np.sin(xx / 60.0 + q + lam) * np.cos(yy / 45.0 - lam / 3.0)) * shutters
        err = (0.006 * sci).astype(np.float32)
        dq = np.zeros(sci.shape, np.uint32)
        for name, arr in (("SCI", sci), ("ERR", err), ("DQ", dq)):
            hdu = fits.ImageHDU(arr, name=name)
            hdu.header["EXTVER"] = q
            hdus.append(hdu)
        hdus.append(_wavelength_hdu(plane_wl, q))
        fv = _fast_variation_hdu(fast_variation_rows(["ANY"], grating, 0.5 * q, 0.025))
        fv.header["EXTVER"] = q
        hdus.append(fv)
    hdus.append(_dq_def_hdu())
    return _write(path, hdus)


def shadow_profiles(grating="PRISM"):
    """(1x1, 1x3) shadow arrays (1001 rows for y = -1..1 pitches, 101 wavelength columns) and the
    wavelength axis (crval1, cdelt1).  A bar's shadow is a dip of 35-45 % at +-0.5 pitch whose
    width grows with wavelength; beyond a closed neighbour's bar (1x1 only) the light falls off."""
    lo, hi = RANGES[grating]
    cdelt1 = (hi - lo) / 100.0
    lam = lo + cdelt1 * np.arange(101)
    y = np.linspace(-1.0, 1.0, 1001)[:, None]
    width = 0.035 + 0.012 * lam[None, :]
    depth = 0.35 + 0.02 * lam[None, :]

    def bar(at):
        return 1.0 - depth * np.exp(-0.5 * ((y - at) / width) ** 2)

    three = bar(-0.5) * bar(0.5)
    edge = 0.5 + 1.5 * width
    closed = np.where(np.abs(y) > edge, np.exp(-((np.abs(y) - edge) / (2 * width)) ** 2), 1.0)
    one = np.clip(three * closed, 0.05, None)
    return one.astype(np.float32), three.astype(np.float32), lo, cdelt1


def write_barshadow(path, grating="PRISM", filt="CLEAR") -> Path:
    from astropy.io import fits

    one, three, crval1, cdelt1 = shadow_profiles(grating)
    h = _primary("barshadow", "BarshadowModel", "NRS_MSASPEC", "webbflow synthetic NIRSpec MSA bar shadow",
                 grating=grating, filt=filt)
    del h["FILTER"], h["SUBARRAY"], h["SUBSTRT1"], h["SUBSIZE1"], h["SUBSTRT2"], h["SUBSIZE2"]
    del h["FASTAXIS"], h["SLOWAXIS"]
    hdus = [fits.PrimaryHDU(header=h)]
    for name, arr in (("DATA1X1", one), ("VAR1X1", (0.01 * one) ** 2), ("DATA1X3", three), ("VAR1X3", (0.01 * three) ** 2)):
        hdu = fits.ImageHDU(arr.astype(np.float32), name=name)
        hdr = hdu.header
        hdr["CRPIX1"], hdr["CRVAL1"], hdr["CDELT1"] = 1.0, crval1, cdelt1
        hdr["CRPIX2"], hdr["CRVAL2"], hdr["CDELT2"] = 1.0, -1.0, 0.002
        hdr["CTYPE1"], hdr["CTYPE2"] = "WAVELENGTH", "Y"
        hdr["CUNIT1"] = "um"
        hdus.append(hdu)
    return _write(path, hdus)
