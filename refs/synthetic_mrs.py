"""Synthetic MIRI MRS references, in the form of the real CRDS files.

The MRS geometry itself is real (../shared/data/real-refs/miri: the per-band distortion and
specwcs models, the wavelength ranges, and one real slice map for 34LONG).  What has no real file
here is made in the same form:

- ``regions`` (RegionsModel, ASDF): the slice map as jwst 3.0 reads it, a stack of 9
  detector-sized int planes (throughput levels 10 % ... 90 %), each pixel labelled with its slice
  (100 * channel + slice) or 0.  :func:`regions_from_distortion` traces each slice through the
  real distortion: a pixel belongs to slice s when the slice's alpha model puts it within the
  channel's along-slice half-width (narrower for higher throughput planes) and the wavelength model
  within the band's range.  :func:`regions_from_plane` stacks a real 2-D map (the old layout).
- ``mrsxartcorr`` (MirMrsXArtCorrModel, FITS): the straylight cross-artifact's per-row Lorentzian
  and Gaussian-pair parameters, one CHnX table per channel+band, 1024 rows.
- ``fringe`` (FringeModel, FITS): a fringe flat, sinusoidal in wavelength along the dispersion.
- ``fringefreq`` (FringeFreqModel, FITS): residual_fringe's settings, one row per slice of the four
  channels in each of RFC_FREQ_SHORT/MEDIUM/LONG, every column a 2-vector (the primary fringe, near
  2.9 cm-1, then the dichroic one, 0.4 cm-1, which channels 1 and 2 leave at 0), and MAX_AMP, the
  largest residual fringe amplitude by wavelength.
- ``photom`` for the MRS (MirMrsPhotomModel, FITS): the per-pixel DN/s -> MJy/sr conversion,
  with PIXSIZ (each pixel's solid angle) and NaN between the slices.
"""

from __future__ import annotations

import numpy as np

from .synthetic import AUTHOR, PEDIGREE, USEAFTER

DETECTOR_SHAPE = (1024, 1032)
# along-slice (alpha) half-width of the slice footprint per channel, arcsec, at the lowest
# throughput plane (the real 34LONG map reaches about +-3.5" in channel 3 and +-4.4" in channel 4)
ALPHA_HALF_WIDTH = {"1": 2.0, "2": 2.6, "3": 3.5, "4": 4.4}
NPLANES = 9
BANDS = {"SHORT": "a", "MEDIUM": "b", "LONG": "c"}
DETECTOR_CHANNELS = {"MIRIFUSHORT": "12", "MIRIFULONG": "34"}


def _meta(m, reftype: str, detector: str, band: str, channel: str, description: str):
    meta = m.meta
    meta.reftype = reftype.upper()
    meta.useafter, meta.pedigree, meta.author = USEAFTER, PEDIGREE, AUTHOR
    meta.description = description
    meta.instrument.name = "MIRI"
    meta.instrument.detector = detector
    meta.instrument.band = band
    meta.instrument.channel = channel
    meta.exposure.type = "MIR_MRS"
    return m


def regions_from_distortion(distortion, specwcs, wavelengthrange, band: str) -> np.ndarray:
    """(9, 1024, 1032) int32 slice map traced through the per-slice alpha and wavelength models.

    Each slice is looked at only in the 100 columns around its centre (where its inverse model puts
    alpha = 0 at mid-band): slices are some 20 to 40 pixels wide."""
    ranges = dict(zip(wavelengthrange.waverange_selector, wavelengthrange.wavelengthrange))
    planes = np.zeros((NPLANES,) + DETECTOR_SHAPE, dtype=np.int32)
    rows = np.arange(DETECTOR_SHAPE[0], dtype=np.float64)
    for i, number in enumerate(distortion.slices):
        ch = str(number // 100)
        lo, hi = ranges[ch + band.upper()]
        xc = float(distortion.x_model[i](0.5 * (lo + hi), 0.0))
        c0 = max(4, int(xc) - 50)
        c1 = min(1028, int(xc) + 50)
        if c1 <= c0:
            continue
        yy, xx = np.meshgrid(rows, np.arange(c0, c1, dtype=np.float64), indexing="ij")
        alpha = np.abs(distortion.alpha_model[i](yy, xx))
        lam = specwcs.model[i](yy, xx)
        inside = (lam >= lo) & (lam <= hi)
        for k in range(NPLANES):
            half = ALPHA_HALF_WIDTH[ch] * (1.0 - 0.04 * k)
            view = planes[k][:, c0:c1]
            view[inside & (alpha <= half) & (view == 0)] = number
    return planes


def regions_from_plane(plane: np.ndarray) -> np.ndarray:
    """A real map in the old 2-D layout repeated into jwst 3.0's stack of throughput planes."""
    return np.repeat(np.asarray(plane, dtype=np.int32)[None], NPLANES, axis=0)


def regions(planes: np.ndarray, detector: str, band: str):
    from ..models import RegionsModel

    m = RegionsModel()
    m.regions = planes
    channel = DETECTOR_CHANNELS[detector.upper()]
    return _meta(m, "regions", detector, band.upper(), channel, "MIRI MRS slice map (synthetic, traced)")


def mrsxartcorr(seed: int = 1):
    """Cross-artifact parameters for every channel+band: per row a Lorentzian (FWHM ~ 10 px,
    scale ~ 1e-3) and two Gaussian pairs (FWHM ~ 20 px, offset ~ 30 px, scales ~ 1e-3 and 3e-4),
    smoothly varying with the row, as the real CH tables are."""
    from ..models import MirMrsXArtCorrModel

    rng = np.random.default_rng(seed)
    rows = np.arange(1024)
    t = rows / 1023.0
    m = MirMrsXArtCorrModel()
    dtype = [("YROW", ">i2"), ("LOR_FWHM", ">f4"), ("LOR_SCALE", ">f4"), ("GAU_FWHM", ">f4"),
             ("GAU_XOFF", ">f4"), ("GAU_SCALE1", ">f4"), ("GAU_SCALE2", ">f4")]
    for ci, c in enumerate("1234"):
        for bi, b in enumerate("abc"):
            tab = np.zeros(1024, dtype=dtype)
            tab["YROW"] = rows + 1
            grow = 1.0 + 0.3 * ci + 0.1 * bi
            tab["LOR_FWHM"] = (8.0 + 4.0 * t) * grow
            tab["LOR_SCALE"] = (1.0e-3 * (1.0 + 0.5 * t)) * (1 + 0.02 * rng.standard_normal())
            tab["GAU_FWHM"] = 18.0 * grow + 2.0 * t
            tab["GAU_XOFF"] = 28.0 * grow + 4.0 * t
            tab["GAU_SCALE1"] = 1.0e-3 * (1.2 - 0.4 * t)
            tab["GAU_SCALE2"] = 3.0e-4 * (1.0 + 0.2 * t)
            setattr(m, f"ch{c}{b}_table", tab)
    return _mrs_meta(m, "MRSXARTCORR", "MIRI MRS cross-artifact correction parameters (synthetic)")


def _mrs_meta(m, reftype: str, description: str):
    """The header of an MRS reference that applies to every detector and band."""
    meta = m.meta
    meta.reftype = reftype
    meta.useafter, meta.pedigree, meta.author = USEAFTER, PEDIGREE, AUTHOR
    meta.description = description
    meta.instrument.name = "MIRI"
    meta.exposure.type = "MIR_MRS"
    return m


# slices per channel, as in the MRS distortion references
SLICES_PER_CHANNEL = {1: 21, 2: 17, 3: 16, 4: 12}


def fringefreq(max_amplitude: float = 0.1):
    """residual_fringe's reference: per slice (101 ... 412) and band, the fringe components to fit
    (centre ``ffreq`` and half-width ``dffreq`` of the periodogram scan in cm-1, at most
    ``max_nfringes`` sines each, fitted when the column's S/N exceeds ``min_snr``, scanned in steps of
    ``pgram_res``) and MAX_AMP, ``max_amplitude`` rising slowly with wavelength."""
    from ..models import FringeFreqModel

    dtype = [("slice", ">f8"), ("ffreq", ">f8", (2,)), ("dffreq", ">f8", (2,)), ("min_nfringes", ">i8", (2,)),
             ("max_nfringes", ">i8", (2,)), ("min_snr", ">f8", (2,)), ("pgram_res", ">f8", (2,))]
    rows = [(ch, 100 * ch + s) for ch, n in SLICES_PER_CHANNEL.items() for s in range(1, n + 1)]
    m = FringeFreqModel()
    for bi, band in enumerate(("short", "medium", "long")):
        tab = np.zeros(len(rows), dtype=dtype)
        for i, (ch, number) in enumerate(rows):
            dichroic = ch >= 3
            tab[i] = (number, (2.9 - 0.02 * bi, 0.4 if dichroic else 0.0), (1.5, 0.15 if dichroic else 0.0),
                      (1, 1 if dichroic else 0), (10, 15 if dichroic else 0), (10.0, 50.0), (0.001, 0.001))
        setattr(m, f"rfc_freq_{band}_table", tab)
    amp = np.zeros(50, dtype=[("wavelength", ">f8"), ("amplitude", ">f8")])
    amp["wavelength"] = np.linspace(4.5, 29.0, amp.size)
    amp["amplitude"] = max_amplitude * (1.0 + 0.5 * (amp["wavelength"] - 4.5) / 24.5)
    m.max_amp_table = amp
    m.meta.instrument.detector = "N/A"
    return _mrs_meta(m, "FRINGEFREQ", "MIRI MRS residual fringe frequencies (synthetic)")


def _wavelength_map(wcs_model) -> np.ndarray:
    y, x = np.indices(DETECTOR_SHAPE, dtype=np.float64)
    return wcs_model.meta.wcs(x, y)[2]


def fringe(wave: np.ndarray, detector: str, band: str, amplitude: float = 0.08):
    """A fringe flat from a wavelength map (NaN between slices -> 1): 1 + a sin(2 pi 2 d / lambda),
    the etalon of a ~ 0.3 mm detector layer, with a few pixels at NaN as the real files have."""
    from ..models import FringeModel

    data = np.ones(DETECTOR_SHAPE, dtype=np.float32)
    ok = np.isfinite(wave)
    data[ok] = (1.0 + amplitude * np.sin(2 * np.pi * 2 * 300.0 * 3.4 / wave[ok])).astype(np.float32)
    data[5, 100:110] = np.nan
    m = FringeModel(data=data)
    m.err = np.full(DETECTOR_SHAPE, 0.01, dtype=np.float32)
    m.dq = np.zeros(DETECTOR_SHAPE, dtype=np.uint32)
    channel = DETECTOR_CHANNELS[detector.upper()]
    return _meta(m, "fringe", detector, band.upper(), channel, "MIRI MRS fringe flat (synthetic)")


def photom(wave: np.ndarray, detector: str, band: str, conversion: float = 1.0e-3):
    """Per-pixel DN/s -> MJy/sr, smooth in wavelength, NaN (DO_NOT_USE) between slices; PIXSIZ in
    sr, and PHOTMJSR the band's typical conversion, as the real MRS photom files hold them."""
    from ..models import MirMrsPhotomModel

    ok = np.isfinite(wave)
    data = np.full(DETECTOR_SHAPE, np.nan, dtype=np.float32)
    data[ok] = (conversion * (1.0 + 0.05 * (wave[ok] - np.nanmean(wave)))).astype(np.float32)
    dq = np.where(ok, 0, 1).astype(np.uint32)
    m = MirMrsPhotomModel(data=data)
    m.err = np.where(ok, 0.02 * np.nan_to_num(data), np.nan).astype(np.float32)
    m.dq = dq
    m.pixsiz = np.where(ok, 2.9e-13, np.nan).astype(np.float32)
    channel = DETECTOR_CHANNELS[detector.upper()]
    _meta(m, "photom", detector, band.upper(), channel, "MIRI MRS photom (synthetic)")
    m.meta.photometry.conversion_megajanskys = conversion
    return m


# ---------------------------------------------------------------------------
# spectral extraction: extract1d (IFU), apcorr (MRS) and mrsptcorr, in the real files' form

def mrs_fwhm(wave):
    """The MRS point-spread function's FWHM (arcsec) at ``wave`` microns (in-flight: 0.033 lambda + 0.106)."""
    return 0.033 * np.asarray(wave, dtype=np.float64) + 0.106


def _ref_meta(m, reftype: str, description: str, model_type: str):
    meta = m.meta
    meta.model_type = model_type
    meta.reftype = reftype.upper()
    meta.useafter, meta.pedigree, meta.author = USEAFTER, PEDIGREE, AUTHOR
    meta.description = description
    meta.telescope = "JWST"
    meta.instrument.name = "MIRI"
    meta.instrument.detector = "N/A"
    meta.exposure.type = "MIR_MRS"
    return m


def ifu_apertures(wave, fwhm, radius_fwhm: float, inner_fwhm: float, outer_fwhm: float):
    """An Extract1dIFUModel whose circular aperture and background annulus, per wavelength ``wave``
    (um), are ``radius_fwhm``, ``inner_fwhm`` and ``outer_fwhm`` times the PSF's ``fwhm`` (arcsec)."""
    from ..models import Extract1dIFUModel

    m = Extract1dIFUModel()
    m.set_tree(data={
        "wavelength": wave, "wavelength_units": "micron",
        "radius": (radius_fwhm * fwhm).astype(np.float32), "radius_units": "arcsec",
        "inner_bkg": (inner_fwhm * fwhm).astype(np.float32), "inner_bkg_units": "arcsec",
        "outer_bkg": (outer_fwhm * fwhm).astype(np.float32), "outer_bkg_units": "arcsec",
        "axis_ratio": np.ones(wave.size, np.float32), "axis_pa": np.zeros(wave.size, np.float32),
        "axis_pa_units": "degrees",
    })
    return m


def extract1d_ifu(radius_fwhm: float = 2.0, inner_fwhm: float = 2.5, outer_fwhm: float = 3.5,
                  subtract_background: bool = True):
    """The MRS extract1d reference (Extract1dIFUModel, ASDF): per wavelength from 4.8 to 28.5 um,
    an aperture of ``radius_fwhm`` PSF FWHMs and a background annulus from ``inner_fwhm`` to
    ``outer_fwhm`` FWHMs, in arcsec; exact overlap, background subtracted (point sources)."""
    wave = np.round(np.arange(4.8, 28.51, 0.5), 2).astype(np.float32)
    m = ifu_apertures(wave, mrs_fwhm(wave), radius_fwhm, inner_fwhm, outer_fwhm)
    _ref_meta(m, "extract1d", "MIRI MRS IFU extraction parameters (synthetic)", "Extract1dIFUModel")
    extra = m.meta.model_extra if m.meta.model_extra is not None else {}
    extra.update({"region_type": "target", "subtract_background": bool(subtract_background),
                  "method": "exact", "subpixels": 10})
    return m


def _encircled(r, fwhm):
    """The fraction of a point source's light inside radius ``r`` (arcsec): a Gaussian core (85 %)
    and extended exponential wings (15 %), the MRS PSF's rough shape."""
    sig = fwhm / 2.355
    return 1.0 - 0.85 * np.exp(-0.5 * (r / sig) ** 2) - 0.15 * np.exp(-r / (1.5 * fwhm))


def mrs_apcorr(factors=(1.0, 1.5, 2.0, 2.5, 3.0)):
    """The MRS apcorr reference (MirMrsApcorrModel, ASDF): at wavelengths 4.8 ... 28.5 um, for
    apertures of ``factors`` PSF FWHMs (radius in arcsec, (n_radius, n_wave)), the correction
    1 / encircled energy, and its error."""
    from ..models import MirMrsApcorrModel

    wave = np.round(np.arange(4.8, 28.51, 0.5), 2).astype(np.float32)
    fwhm = mrs_fwhm(wave)
    radius = np.array([f * fwhm for f in factors], dtype=np.float32)
    corr = (1.0 / _encircled(radius.astype(np.float64), fwhm[None, :])).astype(np.float32)
    m = MirMrsApcorrModel()
    m.set_tree(apcorr_table={
        "channel": "1 2 3 4", "band": "SHORT MEDIUM LONG", "wavelength": wave, "wavelength_units": "micron",
        "radius": radius, "radius_units": "arcsec", "apcorr": corr,
        "apcorr_err": (0.01 * corr).astype(np.float32)})
    _ref_meta(m, "apcorr", "MIRI MRS point-source aperture corrections (synthetic)", "MirMrsApcorrModel")
    m.meta.instrument.channel = "1234"
    return m


def mrsptcorr():
    """The MRS point-source corrections (MirMrsPtCorrModel, FITS): LEAKCOR, the fraction of
    channel 1B light (at half the wavelength) seen in channel 3A, peaking near 12.2 um at 0.8 %;
    the across-slice transmission and wavelength-offset tables in their real layout."""
    from ..models import MirMrsPtCorrModel

    m = MirMrsPtCorrModel()
    wave = np.round(np.arange(11.50, 13.51, 0.01), 2).astype(np.float32)
    leak = 0.008 * np.exp(-0.5 * ((wave - 12.2) / 0.25) ** 2)
    tab = np.zeros(wave.size, dtype=[("wavelength", ">f4"), ("frac_leak", ">f4"), ("err_leak", ">f4")])
    tab["wavelength"], tab["frac_leak"], tab["err_leak"] = wave, leak, 0.1 * leak
    m.leakcor_table = tab
    tr = np.zeros(4, dtype=[("channel", ">i4"), ("wave_min", ">f4"), ("wave_max", ">f4"), ("t_wmin_centre", ">f4"),
                            ("t_wmin_edge", ">f4"), ("t_wmax_centre", ">f4"), ("t_wmax_edge", ">f4")])
    tr["channel"] = [1, 2, 3, 4]
    tr["wave_min"], tr["wave_max"] = [4.9, 7.5, 11.55, 17.7], [7.65, 11.7, 17.98, 27.9]
    tr["t_wmin_centre"], tr["t_wmin_edge"] = [0.98, 0.98, 0.97, 0.96], [0.82, 0.84, 0.86, 0.88]
    tr["t_wmax_centre"], tr["t_wmax_edge"] = [0.99, 0.99, 0.98, 0.97], [0.88, 0.89, 0.90, 0.91]
    m.tracor_table = tr
    bands = [f"{c}{b}" for c in "1234" for b in "ABC"]
    op = np.zeros(len(bands), dtype=[("sub_band", "S16"), ("beta_slice", ">f4"), ("wave_min", ">f4"),
                                     ("wave_max", ">f4"), ("srp_min", ">f4"), ("srp_max", ">f4")])
    op["sub_band"] = bands
    op["beta_slice"] = np.repeat([0.177, 0.28, 0.39, 0.66], 3)
    op["wave_min"] = [4.9, 5.66, 6.53, 7.51, 8.67, 10.01, 11.55, 13.34, 15.41, 17.7, 20.69, 24.19]
    op["wave_max"] = [5.74, 6.63, 7.65, 8.77, 10.13, 11.7, 13.47, 15.57, 17.98, 20.95, 24.48, 27.9]
    op["srp_min"] = np.linspace(3300, 1600, 12)
    op["srp_max"] = np.linspace(3750, 1900, 12)
    m.wavcorr_optical_table = op
    xs = np.zeros(1, dtype=[("xslice_min", ">f4"), ("xslice_max", ">f4")])
    xs["xslice_min"], xs["xslice_max"] = -0.5, 0.5
    m.wavcorr_xslice_table = xs
    sh = np.zeros(3, dtype=[("beta_off", ">f4"), ("ds_min", ">f4"), ("ds_max", ">f4")])
    sh["beta_off"], sh["ds_min"], sh["ds_max"] = [-0.5, 0.0, 0.5], [-0.08, 0.0, 0.08], [-0.06, 0.0, 0.06]
    m.wavcorr_shift_table = sh
    _ref_meta(m, "mrsptcorr", "MIRI MRS point-source corrections: spectral leak (synthetic)", "MirMrsPtCorrModel")
    return m


def save_inline(model, path):
    """Write an ASDF reference with its arrays inline in the YAML tree (small tables), as the
    MRS extract1d and apcorr references are read: jwst keeps their arrays after the file closes."""
    import os

    import asdf

    from ..models.io import asdf_tree

    tmp = f"{path}.tmp{os.getpid()}"
    asdf.AsdfFile(asdf_tree(model, with_arrays=True)).write_to(tmp, all_array_storage="inline")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------
# the rest of a simulated MRS observation's set (refs/sim/mrs.py): the pixel flat and cubepar

def flat(wave: np.ndarray, detector: str, band: str, seed: int = 3):
    """An MRS pixel flat (FlatModel, full frame): 1 +- 2 % pixel to pixel on the slices, a slow
    gradient along them, 1 between slices, a few DO_NOT_USE pixels, as the real MRS flats hold."""
    from ..models import FlatModel

    rng = np.random.default_rng(seed + (0 if detector.upper() == "MIRIFUSHORT" else 7))
    ok = np.isfinite(wave)
    data = np.ones(DETECTOR_SHAPE, dtype=np.float32)
    rows = np.arange(DETECTOR_SHAPE[0], dtype=np.float32)[:, None] / DETECTOR_SHAPE[0]
    field = (1.0 + 0.03 * (rows - 0.5)) * (1.0 + 0.02 * rng.standard_normal(DETECTOR_SHAPE))
    data[ok] = field[ok].astype(np.float32)
    dq = np.zeros(DETECTOR_SHAPE, dtype=np.uint32)
    ys, xs = np.nonzero(ok)
    bad = rng.choice(ys.size, 40, replace=False)
    dq[ys[bad], xs[bad]] = 1  # DO_NOT_USE: jwst sets their flat to 1 and flags the science pixel
    m = FlatModel(data=data)
    m.err = np.full(DETECTOR_SHAPE, 0.005, dtype=np.float32)
    m.dq = dq
    s = m.meta.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = "FULL", 1, 1, DETECTOR_SHAPE[1], DETECTOR_SHAPE[0]
    channel = DETECTOR_CHANNELS[detector.upper()]
    return _meta(m, "flat", detector, band.upper(), channel, "MIRI MRS pixel flat (synthetic)")


# (channel, band, spaxel arcsec, spectral step um, wavemin, wavemax, ROI spatial arcsec): the real
# MRS cubepar's band sampling
CUBE_BANDS = [
    ("1", "SHORT", 0.13, 0.0008, 4.90, 5.74, 0.10), ("1", "MEDIUM", 0.13, 0.0008, 5.66, 6.63, 0.10),
    ("1", "LONG", 0.13, 0.0008, 6.53, 7.65, 0.10), ("2", "SHORT", 0.17, 0.0013, 7.51, 8.77, 0.15),
    ("2", "MEDIUM", 0.17, 0.0013, 8.67, 10.13, 0.15), ("2", "LONG", 0.17, 0.0013, 10.01, 11.70, 0.15),
    ("3", "SHORT", 0.20, 0.0025, 11.55, 13.47, 0.20), ("3", "MEDIUM", 0.20, 0.0025, 13.34, 15.57, 0.20),
    ("3", "LONG", 0.20, 0.0025, 15.41, 17.98, 0.20), ("4", "SHORT", 0.35, 0.006, 17.70, 20.95, 0.40),
    ("4", "MEDIUM", 0.35, 0.006, 20.69, 24.48, 0.40), ("4", "LONG", 0.35, 0.006, 24.19, 27.90, 0.40),
]


def write_cubepar(path) -> str:
    """The MRS cubepar reference (MiriIFUCubeParsModel, FITS): per channel+band the spaxel size,
    spectral step and range (CUBEPAR), the msm and emsm regions of interest (CUBEPAR_MSM,
    CUBEPAR_EMSM), and the multi-band tables on a constant resolving power grid (MULTICHANNEL_*)."""
    from astropy.io import fits

    def col(name, fmt, values):
        return fits.Column(name=name, format=fmt, array=np.asarray(values))

    ch = [b[0] for b in CUBE_BANDS]
    band = [b[1] for b in CUBE_BANDS]
    spax, step, lo, hi, roi = (np.array([b[i] for b in CUBE_BANDS], np.float32) for i in range(2, 7))
    n = len(CUBE_BANDS)
    primary = fits.PrimaryHDU()
    for k, v in {"TELESCOP": "JWST", "INSTRUME": "MIRI", "DETECTOR": "N/A", "EXP_TYPE": "MIR_MRS",
                 "REFTYPE": "CUBEPAR", "MODELNAM": "FM", "USEAFTER": USEAFTER, "PEDIGREE": PEDIGREE,
                 "AUTHOR": AUTHOR, "DESCRIP": "MIRI MRS cube building parameters (synthetic)",
                 "DATAMODL": "MiriIFUCubeParsModel"}.items():
        primary.header[k] = v
    hdus = [primary,
            fits.BinTableHDU.from_columns([col("CHANNEL", "3A", ch), col("BAND", "12A", band),
                                           col("SPAXELSIZE", "E", spax), col("SPECTRALSTEP", "E", step),
                                           col("WAVEMIN", "E", lo), col("WAVEMAX", "E", hi)], name="CUBEPAR"),
            fits.BinTableHDU.from_columns([col("CHANNEL", "3A", ch), col("BAND", "12A", band),
                                           col("ROISPATIAL", "E", roi), col("ROISPECTRAL", "E", 2 * step),
                                           col("POWER", "E", np.full(n, 2.0, np.float32)),
                                           col("SOFTRAD", "E", np.full(n, 0.01, np.float32))], name="CUBEPAR_MSM")]
    wave = 4.9 * (1 + 1 / 3500.0) ** np.arange(int(np.log(27.9 / 4.9) / np.log(1 + 1 / 3500.0)) + 2)
    wave = wave.astype(np.float32)
    m = wave.size
    sroi = np.interp(wave, [4.9, 27.9], [0.1, 0.4]).astype(np.float32)
    wroi = (2 * wave / 3500.0).astype(np.float32)
    hdus.append(fits.BinTableHDU.from_columns([col("WAVELENGTH", "E", wave), col("ROISPATIAL", "E", sroi),
                                               col("ROISPECTRAL", "E", wroi),
                                               col("POWER", "E", np.full(m, 2.0, np.float32)),
                                               col("SOFTRAD", "E", np.full(m, 0.01, np.float32))],
                                              name="MULTICHANNEL_MSM"))
    hdus.append(fits.BinTableHDU.from_columns([col("CHANNEL", "3A", ch), col("BAND", "12A", band),
                                               col("ROISPATIAL", "E", roi), col("ROISPECTRAL", "E", 2 * step),
                                               col("SCALERAD", "E", roi / 2)], name="CUBEPAR_EMSM"))
    hdus.append(fits.BinTableHDU.from_columns([col("WAVELENGTH", "E", wave), col("ROISPATIAL", "E", sroi),
                                               col("ROISPECTRAL", "E", wroi), col("SCALERAD", "E", sroi / 2)],
                                              name="MULTICHANNEL_EMSM"))
    hdus.append(fits.BinTableHDU.from_columns([col("WAVELENGTH", "E", wave)], name="MULTICHANNEL_DRIZ"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return str(path)
