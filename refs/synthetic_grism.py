"""Synthetic references of the slitless grism modes, in the form of the real CRDS files.

- ``wavelengthrange`` (WavelengthrangeModel, ASDF): rows ``[order, filter, lmin, lmax]`` (microns;
  ``[order, pupil, filter, lmin, lmax]`` for the grism time series)
  for every filter of the mode and orders 1 and 2 (NIRISS also 0, -1, 3), the available
  ``order`` list, ``extract_orders`` (per filter, the orders extract_2d extracts by default) and
  ``waverange_selector`` (the filters), as the NIRCam and NIRISS WFSS/TSGRISM files hold them.
  Order 1's range is the filter's half-power band; for NIRCam order m's is order 1's divided by m
  by default (the wavelengths whose order-m trace the real specwcs puts on order 1's), or, with
  ``orders_share_band=True``, the band itself: the light the filter passes, dispersed m times as
  far, as the real WFSS photom (0064) tabulates its order-2 rows.  For NIRISS every order has the band.

- ``bkg`` (WfssBkgModel, FITS): the dispersed zodiacal sky of a filter + grism over the full
  detector, in DN/s: rising along the dispersion across the filter's band, with a gentle
  cross-dispersion gradient and a few flagged pixels.

The NIRCam dispersion itself is the real specwcs (../shared/data/real-refs/nircam), not a
synthetic one.
"""

from __future__ import annotations

from ..errors import UnsupportedModeError
from .synthetic import AUTHOR, PEDIGREE, USEAFTER

# order-1 wavelength ranges (um) by filter: the filters' half-power bands
NIRCAM_LW_BANDS = {
    "F250M": (2.412, 2.595), "F277W": (2.416, 3.127), "F300M": (2.831, 3.157), "F322W2": (2.432, 4.013),
    "F335M": (3.177, 3.537), "F356W": (3.140, 3.980), "F360M": (3.426, 3.814), "F410M": (3.866, 4.302),
    "F430M": (4.167, 4.398), "F444W": (3.880, 4.986), "F460M": (4.515, 4.747), "F480M": (4.662, 4.973),
}
NIRISS_WFSS_BANDS = {
    "F090W": (0.796, 1.005), "F115W": (1.013, 1.283), "F140M": (1.331, 1.480), "F150W": (1.330, 1.671),
    "F158M": (1.488, 1.674), "F200W": (1.751, 2.226),
}


def wavelengthrange(instrument: str, exp_type: str, orders_share_band: bool = False):
    """The mode's wavelengthrange reference (a webbflow WavelengthrangeModel); see the module for the ranges."""
    from ..models import WavelengthrangeModel

    instrument, exp_type = instrument.upper(), exp_type.upper()
    if instrument == "NIRCAM" and exp_type in ("NRC_WFSS", "NRC_TSGRISM"):
        bands, orders = NIRCAM_LW_BANDS, [1, 2]
        extract = [[f, [1] if exp_type == "NRC_TSGRISM" else [1, 2]] for f in bands]
    elif instrument == "NIRISS" and exp_type == "NIS_WFSS":
        bands, orders = NIRISS_WFSS_BANDS, [-1, 0, 1, 2, 3]
        extract = [[f, [1]] for f in bands]
    else:
        raise UnsupportedModeError(f"no synthetic wavelengthrange for {instrument} {exp_type}")
    rows = []
    for f, (lo, hi) in bands.items():
        for o in orders:
            k = abs(o) if (o and instrument == "NIRCAM" and not orders_share_band) else 1
            lims = [round(lo / k, 4), round(hi / k, 4)]
            # time series rows name the pupil too: [order, pupil, filter, lmin, lmax]
            rows.append([o, "GRISMR", f, *lims] if exp_type == "NRC_TSGRISM" else [o, f, *lims])
    m = WavelengthrangeModel()
    m.set_tree(wavelengthrange=rows, order=orders, extract_orders=extract, waverange_selector=list(bands))
    meta = m.meta
    meta.reftype = "WAVELENGTHRANGE"
    meta.useafter, meta.pedigree, meta.author = USEAFTER, PEDIGREE, AUTHOR
    meta.telescope, meta.origin = "JWST", "webbflow"
    meta.description = f"Synthetic {instrument} {exp_type} wavelength ranges per order and filter"
    meta.instrument.name = instrument
    meta.exposure.type = exp_type
    meta.exposure.p_exptype = f"{exp_type}|"
    meta.wavelength_units = "micron"
    return m


def wfss_background(instrument: str, exp_type: str, detector: str, filt: str, pupil: str, level: float = 0.8,
                    seed: int = 0):
    """The WFSS ``bkg`` reference of one detector, filter and grism (a webbflow WfssBkgModel)."""
    import numpy as np

    from ..models import WfssBkgModel, dqflags

    instrument, exp_type = instrument.upper(), exp_type.upper()
    grism = filt if instrument == "NIRISS" else pupil
    # NIRCam GRISMR and NIRISS GR150C disperse along rows, GRISMC and GR150R along columns
    along_rows = (grism or "").upper() in ("GRISMR", "GR150C")
    n = 2048
    t = np.linspace(0.0, 1.0, n, dtype=np.float64)
    rng = np.random.default_rng(seed)
    profile = 0.75 + 0.5 * t - 0.2 * t * t  # brighter towards the red end of the band
    cross = 1.0 + 0.04 * (t - 0.5)
    img = level * (profile[None, :] * cross[:, None] if along_rows else profile[:, None] * cross[None, :])
    img *= 1.0 + rng.normal(0.0, 0.002, img.shape)
    m = WfssBkgModel(data=img.astype(np.float32))
    m.err = (0.01 * img).astype(np.float32)
    dq = np.zeros(img.shape, np.uint32)
    bad = rng.integers(4, n - 4, size=(40, 2))
    dq[bad[:, 0], bad[:, 1]] = dqflags.DO_NOT_USE
    m.data[dq > 0] = 0.0
    m.dq = dq
    meta = m.meta
    meta.reftype = "BKG"
    meta.useafter, meta.pedigree, meta.author = USEAFTER, PEDIGREE, AUTHOR
    meta.telescope, meta.origin = "JWST", "webbflow"
    meta.description = f"Synthetic {instrument} {exp_type} background {filt} {pupil}"[:68]
    meta.instrument.name, meta.instrument.detector = instrument, detector
    meta.instrument.filter, meta.instrument.pupil = filt, pupil
    meta.exposure.type = exp_type
    meta.subarray.name, meta.subarray.xstart, meta.subarray.ystart = "FULL", 1, 1
    meta.subarray.xsize = meta.subarray.ysize = n
    meta.bunit_data = "DN/s"
    return m


NIRISS_DISPERSION = 0.00478  # um per pixel in order 1 (GR150R/C, about 47.8 A/px)


def niriss_specwcs(grism: str, pupil: str, fwcpos_ref: float = 0.0):
    """A NIRISS WFSS ``specwcs`` (NIRISSGrismModel) for one grism (GR150R/GR150C) and blocking filter.

    Orders 1 and 2: ``displ`` t -> wavelength over the filter's band (in both orders),
    ``invdispl`` its inverse, ``dispx``/``dispy`` the trace offsets from the direct-image position as
    C0(x0, y0) + C1(x0, y0) t, about 72 px long in order 1 for F150W (47.8 A/px) and twice that in
    order 2, along the columns for GR150R and the rows for GR150C, with a slight tilt and a trace
    start that drifts across the field.
    """
    from astropy.modeling.models import Polynomial1D, Polynomial2D

    from ..models import NIRISSGrismModel

    grism, pupil = grism.upper(), pupil.upper()
    if grism not in ("GR150R", "GR150C") or pupil not in NIRISS_WFSS_BANDS:
        raise UnsupportedModeError(f"no synthetic NIRISS specwcs for {grism} {pupil}")
    lo, hi = NIRISS_WFSS_BANDS[pupil]
    orders, displ, invdispl, dispx, dispy = [1, 2], [], [], [], []
    start = {1: 20.0, 2: 20.0 + (hi - lo) / NIRISS_DISPERSION + 60.0}
    for o in orders:
        l0, l1 = lo, hi - lo  # every order shows the filter's band
        displ.append(Polynomial1D(1, c0=l0, c1=l1))
        invdispl.append(Polynomial1D(1, c0=-l0 / l1, c1=1.0 / l1))
        length = (hi - lo) * o / NIRISS_DISPERSION  # pixels: order o disperses o times as much
        along = [Polynomial2D(1, c0_0=start[o], c1_0=2e-3, c0_1=-1e-3), Polynomial2D(1, c0_0=length, c1_0=1e-3)]
        across = [Polynomial2D(1, c0_0=0.5, c1_0=1e-4, c0_1=2e-4), Polynomial2D(1, c0_0=1.5)]
        if grism == "GR150R":  # along the columns
            dispx.append(across)
            dispy.append(along)
        else:
            dispx.append(along)
            dispy.append(across)
    m = NIRISSGrismModel()
    m.set_tree(displ=displ, invdispl=invdispl, dispx=dispx, dispy=dispy, orders=orders, fwcpos_ref=float(fwcpos_ref))
    meta = m.meta
    meta.reftype = "SPECWCS"
    meta.useafter, meta.pedigree, meta.author = USEAFTER, PEDIGREE, AUTHOR
    meta.telescope, meta.origin = "JWST", "webbflow"
    meta.description = f"Synthetic NIRISS {grism} {pupil} dispersion"
    meta.instrument.name, meta.instrument.detector = "NIRISS", "NIS"
    meta.instrument.filter, meta.instrument.pupil = grism, pupil
    meta.exposure.type = "NIS_WFSS"
    meta.input_units = "micron"
    meta.output_units = "micron"
    return m


# the fraction of the filter band's light each calibrated order carries (orders 0 and -1 are not calibrated)
NIRISS_GRISM_EFFICIENCY = {1: 0.80, 2: 0.12}
PHOTOM_NELEM_MAX = 3000  # array length of the wavelength/relresponse columns (as the NIRCam WFSS photom 0064)


def niriss_wfss_photom(path, pixar_sr: float, pixar_a2: float):
    """Write a NIRISS WFSS ``photom`` reference (NisWfssPhotomModel form) to ``path``; returns the path.

    One PHOTOM row per grism (GR150R, GR150C), blocking filter (the pupil wheel's F090W ... F200W)
    and order (1, 2): PHOTMJSR (MJy/sr per DN/s per micron of dispersion) is the synthetic imaging
    calibration of the same blocking filter (refs.synthetic.photmjsr: CLEAR + filter) times the
    band width over the order's efficiency, so that a source's direct-image and dispersed counts
    describe the same F_nu; the relative response is a gentle arch over the filter's half-power band
    (0.8 at its edges, 1 at its centre), tabulated on 201 wavelengths (microns), zero-padded.
    The real NIRISS WFSS photom at hand (GROUND 2015) is in an older form (PHOTFLAM, no ORDER or
    PHOTMJSR) that jwst 3.0 cannot read, so its numbers are not used.
    """
    from pathlib import Path

    import numpy as np
    from astropy.io import fits

    from .synthetic import band_of, detector_spec, photmjsr

    spec = detector_spec("NIRISS", "NIS")
    n = 201
    rows = []
    for grism in ("GR150R", "GR150C"):
        for pupil, (lo, hi) in NIRISS_WFSS_BANDS.items():
            _pivot, width = band_of(spec, "CLEAR", pupil)
            imaging = photmjsr(spec, "CLEAR", pupil, pixar_sr)
            wl = np.linspace(lo, hi, n)
            arch = 1.0 - 0.2 * ((wl - 0.5 * (lo + hi)) / (0.5 * (hi - lo))) ** 2
            for order, eff in NIRISS_GRISM_EFFICIENCY.items():
                pad = lambda a: np.concatenate([a, np.zeros(PHOTOM_NELEM_MAX - n)]).astype(np.float32)  # noqa: E731
                value = imaging * width / eff
                rows.append((grism, pupil, order, value, 0.02 * value, n, pad(wl), pad(arch), pad(0.01 * arch)))
    cols = [
        fits.Column("filter", "12A", array=[r[0] for r in rows]),
        fits.Column("pupil", "15A", array=[r[1] for r in rows]),
        fits.Column("order", "I", array=[r[2] for r in rows]),
        fits.Column("photmjsr", "E", array=[r[3] for r in rows], unit="MJy/sr/(DN/s)"),
        fits.Column("uncertainty", "E", array=[r[4] for r in rows], unit="MJy/sr/(DN/s)"),
        fits.Column("nelem", "I", array=[r[5] for r in rows]),
        fits.Column("wavelength", f"{PHOTOM_NELEM_MAX}E", array=np.array([r[6] for r in rows]), unit="micron"),
        fits.Column("relresponse", f"{PHOTOM_NELEM_MAX}E", array=np.array([r[7] for r in rows])),
        fits.Column("reluncertainty", f"{PHOTOM_NELEM_MAX}E", array=np.array([r[8] for r in rows])),
    ]
    table = fits.BinTableHDU.from_columns(cols, name="PHOTOM")
    h = fits.Header()
    path = Path(path)
    for k, v in (("DATE", "2024-01-01T00:00:00.000"), ("FILENAME", path.name), ("FILETYPE", "PHOTOM"),
                 ("DATAMODL", "NisWfssPhotomModel"), ("TELESCOP", "JWST"), ("REFTYPE", "PHOTOM"),
                 ("PEDIGREE", PEDIGREE), ("DESCRIP", "Synthetic NIRISS WFSS flux calibration per grism, filter, order"),
                 ("AUTHOR", AUTHOR), ("USEAFTER", USEAFTER), ("INSTRUME", "NIRISS"), ("DETECTOR", "NIS"),
                 ("EXP_TYPE", "NIS_WFSS"), ("P_EXP_TY", "NIS_WFSS|"), ("PIXAR_SR", float(pixar_sr)),
                 ("PIXAR_A2", float(pixar_a2))):
        h[k] = v
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    fits.HDUList([fits.PrimaryHDU(header=h), table]).writeto(tmp, overwrite=True)
    tmp.replace(path)
    return path
