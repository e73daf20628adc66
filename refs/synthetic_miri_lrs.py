"""References of the MIRI low-resolution spectrometer (LRS), in the form of the real CRDS files.

The geometry is real: the LRS ``specwcs`` (../shared/data/real-refs/miri, 0005 for the fixed
slit in FULL frame, 0006 for SLITLESSPRISM) and the in-flight imager distortion (flt9) that LRS
uses too. The commissioning specwcs predates the slit's corner keywords that jwst 3.0 reads for
the fixed slit's S_REGION (V2VERT1..4, V3VERT1..4): the copy written here adds them, the slit's
4.7" x 0.51" corners taken through the distortion. The extract1d reference is the real JSON 0005.

The calibration references are synthetic, of real form and scale (FITS tables as CRDS delivers
them: a primary header and named table extensions, DATAMODL naming the stdatamodels class):

- ``photom`` (MirLrsPhotomModel): one row per subarray (FULL, SLITLESSPRISM), PHOTMJSR at 7.5 um
  and a 500-element relative response of which NELEM are used, from 4.5 to 12 um (where the
  prism is calibrated: pixels beyond get none) in decreasing order as the real files hold it.
  The conversion is physical: a point source of F_nu gives
  ``F_nu * A_tel * throughput(lambda) * |d nu / d row| / (h nu) / gain`` DN/s per detector row
  (the row's dispersion from the specwcs), so PHOTMJSR * RELRESPONSE is the surface brightness
  (MJy/sr over one pixel's solid angle) per DN/s;
- ``pathloss`` (MirLrsPathlossModel): per wavelength, the correction for the light of a Gaussian
  PSF (the diffraction FWHM 1.03 lambda/D) that the 0.51"-wide slit stops (1 / the fraction that
  passes; jwst multiplies LRS data by it), on a grid of source positions
  (41 along the slit by 11 across it, pixels from the slit centre; CRPIX/CRVAL/CDELT in the table
  header), falling off near the slit's ends;
- ``apcorr`` (MirLrsApcorrModel): per subarray, 1 / (the fraction of the same PSF inside a box of
  SIZE pixels across the dispersion), for sizes 1..20 pixels and wavelengths 4-14.5 um.

The simulator (refs/sim/miri_lrs.py) renders its scene with the same PSF, throughput, slit
transmission and dispersion, so calibrating with these files recovers the truth spectrum.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from .synthetic import AUTHOR, PEDIGREE, USEAFTER

FIXEDSLIT, SLITLESS = "MIR_LRS-FIXEDSLIT", "MIR_LRS-SLITLESS"
SUBARRAY = {FIXEDSLIT: "FULL", SLITLESS: "SLITLESSPRISM"}
SPECWCS_FILES = {FIXEDSLIT: "jwst_miri_specwcs_0005.fits", SLITLESS: "jwst_miri_specwcs_0006.fits"}
DISTORTION_FILE = "jwst_miri_imager_distortion_flt9.asdf"
EXTRACT1D_FILE = "jwst_miri_extract1d_0005.json"

PIXEL_SCALE = 0.11  # arcsec per pixel (MIRI imager)
SLIT_LENGTH_PX, SLIT_WIDTH_PX = 4.7 / PIXEL_SCALE, 0.51 / PIXEL_SCALE
TELESCOPE_AREA = 25.4  # m^2, JWST's collecting area
GAIN = 4.0  # e/DN, the nominal MIRI gain assumed by the conversion
PIXAR_SR = 2.84403609523084e-13  # sr, a MIRI imager pixel (0.11" square)
PIXAR_A2 = 0.0121
RESPONSE_RANGE = (4.5, 12.0)  # um, where the photom response is defined
NELEM_PHOTOM = 420
JITTER_FWHM = 0.007  # arcsec


def real_refs_dir() -> Path:
    """../shared/data/real-refs/miri beside the repository (or $WEBBFLOW_SHARED_DATA/real-refs/miri)."""
    base = os.environ.get("WEBBFLOW_SHARED_DATA")
    root = Path(base) if base else Path(__file__).resolve().parents[2] / "shared" / "data"
    d = root / "real-refs" / "miri"
    missing = [n for n in (*SPECWCS_FILES.values(), DISTORTION_FILE, EXTRACT1D_FILE) if not (d / n).exists()]
    if missing:
        raise ParameterError(f"MIRI LRS needs the real LRS references in {d} (missing {', '.join(missing)}); "
                             "set WEBBFLOW_SHARED_DATA to the shared data folder")
    return d


# ---------------------------------------------------------------------------
# the optics every reference and the simulator share


def fwhm_px(wavelength_um) -> np.ndarray:
    """The PSF's FWHM in pixels: 1.03 lambda / D and the pointing jitter, in quadrature."""
    lam = np.asarray(wavelength_um, float)
    diffraction = 1.03 * lam * 1e-6 / 6.5 * 206264.806
    return np.hypot(diffraction, JITTER_FWHM) / PIXEL_SCALE


def sigma_px(wavelength_um) -> np.ndarray:
    return fwhm_px(wavelength_um) / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def throughput(wavelength_um) -> np.ndarray:
    """LRS system efficiency (electrons per photon at the telescope): the prism band, peaking near 7.5 um."""
    lam = np.asarray(wavelength_um, float)
    rise = 1.0 / (1.0 + np.exp(-(lam - 4.9) / 0.35))
    fall = 1.0 / (1.0 + np.exp((lam - 13.2) / 0.6))
    return 0.32 * rise * fall * np.exp(-0.5 * ((lam - 7.5) / 5.0) ** 2)


def box_fraction(half_width, sigma) -> np.ndarray:
    """Fraction of a Gaussian of ``sigma`` within +-``half_width`` of its centre."""
    from scipy.special import erf

    return erf(np.asarray(half_width, float) / (np.sqrt(2.0) * np.asarray(sigma, float)))


def slit_transmission(wavelength_um, along_px=0.0, across_px=0.0) -> np.ndarray:
    """Fraction of a point source's light that passes the slit, the source ``along``/``across`` pixels off its centre."""
    s = sigma_px(wavelength_um)
    half_w, half_l = SLIT_WIDTH_PX / 2.0, SLIT_LENGTH_PX / 2.0
    from scipy.special import erf

    def frac(half, off):
        return 0.5 * (erf((half - off) / (np.sqrt(2.0) * s)) + erf((half + off) / (np.sqrt(2.0) * s)))

    return frac(half_w, np.asarray(across_px, float)) * frac(half_l, np.asarray(along_px, float))


class Wavetable:
    """The specwcs WAVETABLE: the trace (x offset) and row of each wavelength, relative to the reference point."""

    def __init__(self, path: Path):
        from astropy.io import fits

        with fits.open(path) as h:
            t = h["WAVETABLE"].data
            self.header = h[0].header.copy()
            lam, xc, yc = (np.asarray(t[c], float) for c in ("WAVELENGTH", "X_CENTER", "Y_CENTER"))
        order = np.argsort(yc)
        self.y, self.x, self.wavelength = yc[order], xc[order], lam[order]

    def at_rows(self, dy):
        """(wavelength, trace x offset, |d lambda / d row|) at row offsets ``dy`` from the reference row (NaN outside)."""
        dy = np.asarray(dy, float)
        inside = (dy >= self.y[0]) & (dy <= self.y[-1])
        lam = np.where(inside, np.interp(dy, self.y, self.wavelength), np.nan)
        x = np.where(inside, np.interp(dy, self.y, self.x), np.nan)
        slope = np.abs(np.gradient(self.wavelength, self.y))
        dl = np.where(inside, np.interp(dy, self.y, slope), np.nan)
        return lam, x, dl

    def dispersion(self, wavelength_um):
        """|d lambda / d row| (um per pixel) at the given wavelengths."""
        slope = np.abs(np.gradient(self.wavelength, self.y))
        o = np.argsort(self.wavelength)
        return np.interp(wavelength_um, self.wavelength[o], slope[o])


def conversion(wavelength_um, dispersion_um_per_px) -> np.ndarray:
    """MJy/sr (over one pixel) per DN/s of a point source's spectrum, summed across the dispersion."""
    h, c = 6.62607015e-34, 2.99792458e8
    lam = np.asarray(wavelength_um, float) * 1e-6
    dnu = c * np.asarray(dispersion_um_per_px, float) * 1e-6 / lam**2  # Hz per row
    photons_per_mjy = 1e-29 * TELESCOPE_AREA * dnu / (h * c / lam)  # photons/s per row for 1 mJy
    dn_per_mjy = photons_per_mjy * throughput(wavelength_um) / GAIN
    return 1e-9 / PIXAR_SR / dn_per_mjy  # (1 mJy = 1e-9 MJy spread over one pixel) / (DN/s)


# ---------------------------------------------------------------------------
# writing references as CRDS delivers them


def _primary(reftype: str, datamodel: str, exp_type: str, description: str, subarray: str | None = None):
    from astropy.io import fits

    h = fits.Header()
    h["DATAMODL"] = (datamodel, "Type of data model")
    h["TELESCOP"] = ("JWST", "Telescope used to acquire the data")
    h["INSTRUME"] = ("MIRI", "Instrument used to acquire the data")
    h["DETECTOR"] = ("MIRIMAGE", "Name of detector used to acquire the data")
    h["FILTER"] = ("P750L", "Name of the filter element used")
    h["EXP_TYPE"] = (exp_type, "Type of data in the exposure")
    h["P_EXP_TY"] = "MIR_LRS-FIXEDSLIT|MIR_LRS-SLITLESS|"
    if subarray:
        h["SUBARRAY"] = (subarray, "Subarray used")
    h["REFTYPE"] = (reftype, "Reference file type")
    h["DESCRIP"] = description
    h["AUTHOR"] = (AUTHOR, "Author of the reference file")
    h["PEDIGREE"] = (PEDIGREE, "The pedigree of the reference file")
    h["USEAFTER"] = (USEAFTER, "Use after date of the reference file")
    return h


def _write(path: Path, hdus) -> Path:
    from astropy.io import fits

    from ..models.atomic import atomic_open

    path.parent.mkdir(parents=True, exist_ok=True)
    hdul = fits.HDUList(hdus)
    with atomic_open(path, "wb") as f:
        hdul.writeto(f)
    return path


def write_photom(path: Path, wavetables: dict) -> Path:
    """The LRS photom reference (see the module), rows for FULL and SLITLESSPRISM."""
    from astropy.io import fits

    n = 500
    lam = np.linspace(RESPONSE_RANGE[1], RESPONSE_RANGE[0], NELEM_PHOTOM)  # decreasing, as delivered
    rows = []
    for exp_type, sub in SUBARRAY.items():
        conv = conversion(lam, wavetables[exp_type].dispersion(lam))
        phot = float(conversion(7.5, wavetables[exp_type].dispersion(7.5)))
        wave, resp, unc = np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
        wave[:NELEM_PHOTOM], resp[:NELEM_PHOTOM] = lam, conv / phot
        unc[:NELEM_PHOTOM] = 0.02 * resp[:NELEM_PHOTOM]
        rows.append(("P750L", sub, phot, 0.02 * phot, NELEM_PHOTOM, wave, resp, unc))
    dtype = [("filter", "S12"), ("subarray", "S17"), ("photmjsr", ">f4"), ("uncertainty", ">f4"), ("nelem", ">i2"),
             ("wavelength", ">f4", (n,)), ("relresponse", ">f4", (n,)), ("reluncertainty", ">f4", (n,))]
    h = _primary("PHOTOM", "MirLrsPhotomModel", FIXEDSLIT, "MIRI LRS photometric calibration (webbflow synthetic)")
    h["PIXAR_SR"] = (PIXAR_SR, "Nominal pixel area in steradians")
    h["PIXAR_A2"] = (PIXAR_A2, "Nominal pixel area in arcsec^2")
    table = fits.BinTableHDU(np.array(rows, dtype=dtype), name="PHOTOM")
    return _write(path, [fits.PrimaryHDU(header=h), table])


PATHLOSS_GRID = (41, 11)  # positions along the slit (1 px apart) x across it (0.5 px apart)


def write_pathloss(path: Path) -> Path:
    """The LRS pathloss reference (see the module)."""
    from astropy.io import fits

    waves = np.linspace(14.5, 4.0, 106)
    nx, ny = PATHLOSS_GRID
    along = (np.arange(nx) - (nx - 1) / 2) * 1.0
    across = (np.arange(ny) - (ny - 1) / 2) * 0.5
    rows = []
    for w in waves:
        # jwst multiplies LRS data by the table's value: it holds the correction, 1 / transmission
        grid = (1.0 / slit_transmission(w, along[None, :], across[:, None])).astype(np.float32)
        rows.append((w, grid, 0.01 * grid))
    dtype = [("wavelength", ">f4"), ("pathloss", ">f4", (ny, nx)), ("pathloss_err", ">f4", (ny, nx))]
    h = _primary("PATHLOSS", "MirLrsPathlossModel", FIXEDSLIT, "MIRI LRS slit throughput of a point source "
                 "(webbflow synthetic)", "FULL")
    table = fits.BinTableHDU(np.array(rows, dtype=dtype), name="PATHLOSS")
    t = table.header
    t["WCSAXES"] = 2
    t["CRPIX1"], t["CRVAL1"], t["CDELT1"] = (nx + 1) / 2.0, 0.0, 1.0
    t["CRPIX2"], t["CRVAL2"], t["CDELT2"] = (ny + 1) / 2.0, 0.0, 0.5
    t["CTYPE1"], t["CTYPE2"], t["CUNIT1"], t["CUNIT2"] = "pixel", "pixel", "pixel", "pixel"
    t["TUNIT1"], t["TUNIT2"], t["TUNIT3"] = "um", "", ""
    return _write(path, [fits.PrimaryHDU(header=h), table])


APCORR_SIZES = np.arange(1, 21)


def write_apcorr(path: Path) -> Path:
    """The LRS apcorr reference (see the module), one row per subarray."""
    from astropy.io import fits

    nw, ns = 53, len(APCORR_SIZES)
    waves = np.linspace(4.0, 14.5, nw)
    frac = box_fraction(APCORR_SIZES[None, :] / 2.0, sigma_px(waves)[:, None])
    corr = (1.0 / frac).astype(np.float32)
    rows = [(sub, waves.astype(np.float32), nw, APCORR_SIZES.astype(np.uint8), ns, corr, 0.01 * corr)
            for sub in SUBARRAY.values()]
    dtype = [("subarray", "S17"), ("wavelength", ">f4", (nw,)), ("nelem_wl", ">i2"), ("size", "u1", (ns,)),
             ("nelem_size", ">i2"), ("apcorr", ">f4", (nw, ns)), ("apcorr_err", ">f4", (nw, ns))]
    h = _primary("APCORR", "MirLrsApcorrModel", FIXEDSLIT, "MIRI LRS aperture corrections (webbflow synthetic)")
    table = fits.BinTableHDU(np.array(rows, dtype=dtype), name="APCORR")
    table.header["SIZEUNIT"] = ("pixels", "Units for the SIZE column")
    return _write(path, [fits.PrimaryHDU(header=h), table])


def write_specwcs(path: Path, exp_type: str) -> Path:
    """The real specwcs of the mode; the fixed slit's gains its corners in V2/V3 (V2VERTn, V3VERTn)."""
    from astropy.io import fits

    src = real_refs_dir() / SPECWCS_FILES[exp_type]
    with fits.open(src) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    if exp_type == FIXEDSLIT:
        hdr = hdul[0].header
        x0, y0 = hdr["IMX"] - 1, hdr["IMY"] - 1
        hl, hw = SLIT_LENGTH_PX / 2, SLIT_WIDTH_PX / 2
        dist = distortion_model()
        for i, (dx, dy) in enumerate(((-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)), start=1):
            v2, v3 = dist(x0 + dx, y0 + dy)
            hdr[f"V2VERT{i}"] = (round(float(v2), 6), f"Slit vertex {i} in V2 frame")
            hdr[f"V3VERT{i}"] = (round(float(v3), 6), f"Slit vertex {i} in V3 frame")
    return _write(path, list(hdul))


def copy_real(path: Path, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(real_refs_dir() / name, path)
    return path


def distortion_model():
    """The real flt9 imager distortion (pixels, 0-based full frame -> V2, V3 arcsec)."""
    import asdf

    with asdf.open(real_refs_dir() / DISTORTION_FILE) as af:
        return af.tree["model"]
