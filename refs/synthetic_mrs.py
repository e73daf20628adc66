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
    meta = m.meta
    meta.reftype = "MRSXARTCORR"
    meta.useafter, meta.pedigree, meta.author = USEAFTER, PEDIGREE, AUTHOR
    meta.description = "MIRI MRS cross-artifact correction parameters (synthetic)"
    meta.instrument.name = "MIRI"
    meta.exposure.type = "MIR_MRS"
    return m


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
