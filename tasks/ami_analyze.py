"""ami_analyze: fringe fitting of NIRISS AMI exposures (jwst's AmiAnalyzeStep, the LG algorithm).

For each integration of a ``_calints`` (or the one image of a ``_cal``): the image is cropped
square around its peak (after dropping the first four rows, as jwst does), outliers against the
median image are flagged, bad pixels are repaired in the Fourier plane (``run_bpfix``), the
centroid is measured from the Fourier phase slope, and the 44-term fringe model of the mask
(:mod:`._ami_lg`), polychromatic over the filter's throughput and distorted by ``affine2d``, is
fitted by linear least squares with the DO_NOT_USE and JUMP_DET pixels left out (``usebp``).

Three products, as jwst writes them: the sigma-clipped mean observables (``_ami-oi``), the
observables of every integration (``_amimulti-oi``), both OIFITS 2 (OI_ARRAY, OI_TARGET, OI_T3,
OI_VIS, OI_VIS2, OI_WAVELENGTH and OI_Q4 tables), and the centred data, model and residual images
with the 44 coefficients (``_amilg``).
"""

from __future__ import annotations

import logging
import re

import numpy as np
from pydantic import Field

from . import _ami_lg as lg
from ._ami_bpfix import fix_bad_pixels
from .base import StepParams, report_qa, step

log = logging.getLogger("webbflow.steps.ami_analyze")

# the affine distortion measured in commissioning (jwst 3.0's default)
COMMISSIONING = dict(mx=9.92820e-01, my=9.98540e-01, sx=6.18605e-03, sy=-7.27008e-03, xo=0.0, yo=0.0)
DO_NOT_USE, JUMP_DET = 1, 4
SUFFIXES = ("ami-oi", "amimulti-oi", "amilg")


class AmiAnalyzeParams(StepParams):
    oversample: int = Field(3, ge=1)  # oversampling factor of the model (odd)
    rotation: float = 0.0  # initial guess of the pupil rotation (deg)
    psf_offset: str = "0.0 0.0"  # PSF offset used to build the model in the rotation search (x y, pixels)
    rotation_search: str = "-3 3 1"  # rotation search: start, stop, step (deg)
    bandpass: str | None = None  # ASDF file with a 'bandpass' array of (weight, wavelength_m) rows, replacing the filter's
    usebp: bool = True  # leave pixels flagged DO_NOT_USE (and JUMP_DET) out of the fringe fit
    firstfew: int | None = None  # analyse only the first few integrations
    chooseholes: str | None = None  # fit only these holes, e.g. B4,B5,B6,C2
    affine2d: str | None = "commissioning"  # ASDF file with mx,my,sx,sy,xo,yo,rotradccw, or 'commissioning'; None searches the rotation
    run_bpfix: bool = True  # repair bad pixels in the Fourier plane before fitting


# -- the filter's bandpass ------------------------------------------------------------------


def bandpass_from_throughput(table, nlambda=19, trim=0.01):
    """``(weight, wavelength_m)`` rows: a flat-spectrum source's count rate through the filter in
    ``nlambda`` equal bins over the band (where throughput exceeds ``trim``), normalised to 1."""
    import astropy.units as u
    import synphot

    wl = np.asarray(table["wavelength"])
    tr = np.asarray(table["throughput"])
    band = synphot.SpectralElement(synphot.models.Empirical1D, points=wl, lookup_table=tr, keep_neg=False)
    wset = band.waveset
    w_f, t_f = wset, band(wset)
    good = np.where(np.asarray(t_f) > trim)[0]
    w_f = w_f[good[0]:good[-1]]
    edges = np.linspace(w_f.min(), w_f.max(), nlambda + 1)
    mids = (edges[:-1] + edges[1:]) / 2
    step_w = edges[1] - edges[0]
    flat = synphot.SourceSpectrum(synphot.models.ConstFlux1D, amplitude=1)
    rates = []
    for w in mids:
        box = synphot.SpectralElement(synphot.models.Box1D, amplitude=1, x_0=w, width=step_w) * band
        binset = np.linspace(w - step_w, w + step_w, 30)
        binset = binset[binset >= 0]
        rates.append(synphot.Observation(flat, box, binset=binset).effstim("count", area=1 * u.m * u.m))
    rates = u.Quantity(rates)
    rates /= rates.sum()
    return np.array((rates.to_value(), mids.to_value(u.m))).T


def centre_and_width(bandpass):
    """The weighted centre wavelength and the fractional equivalent width of a bandpass."""
    from scipy.integrate import simpson

    wt, wl = bandpass[:, 0], bandpass[:, 1]
    cw = (wl * wt).sum() / wt.sum()
    return cw, simpson(wt, x=wl) / wt.max() / cw


# -- parameters given as strings -------------------------------------------------------------


def _floats(text, n, name):
    try:
        vals = [float(a) for a in str(text).split()]
    except ValueError:
        vals = []
    if len(vals) != n:
        raise ValueError(f"parameter {name} needs {n} numbers separated by spaces (got {text!r})")
    return vals


def _holes(text):
    if not text or str(text).lower() == "none":
        return None
    names = re.findall(r"[A-Za-z]\d", str(text))
    bad = [h for h in names if h.upper() not in lg.HOLE_NAMES]
    if bad or not names:
        raise ValueError(f"chooseholes: unknown hole(s) {bad or text!r}; holes are {', '.join(lg.HOLE_NAMES)}")
    return names


def _read_asdf(path, keys, what):
    import asdf

    from ..errors import InputFileError

    try:
        with asdf.open(path, lazy_load=False) as af:
            return {k: np.array(af[k]) for k in keys}
    except FileNotFoundError:
        raise InputFileError(path, f"{what} file not found") from None
    except KeyError as exc:
        raise InputFileError(path, f"{what} file has no {exc} entry") from None
    except Exception as exc:  # noqa: BLE001 - an unreadable file is the user's
        raise InputFileError(path, f"{what} file cannot be read ({exc})") from None


def resolve_affine(params, data, nrm, bandpass, pixel_rad):
    """The pupil distortion to fit with: commissioning's, a user's file, or a rotation search."""
    a = params.affine2d
    if a is not None and str(a).lower() != "none":
        if a == "commissioning":
            return lg.Affine2d(**COMMISSIONING, name="commissioning")
        v = _read_asdf(a, ("mx", "my", "sx", "sy", "xo", "yo", "rotradccw"), "affine2d")
        rot = v.pop("rotradccw")
        rot = None if rot.shape == () and rot.dtype == object else float(rot)
        return lg.Affine2d(**{k: float(x) for k, x in v.items()}, rotradccw=rot)
    return search_rotation(data, nrm, params, bandpass, pixel_rad)


def search_rotation(data, nrm, params, bandpass, pixel_rad):
    """The pupil rotation whose model image best cross-correlates with the median image."""
    start, stop, stp = _floats(params.rotation_search, 3, "rotation_search")
    psf_offset = _floats(params.psf_offset, 2, "psf_offset")
    rots = np.append(np.arange(start, stop, stp), stop)
    med = np.median(data, axis=0)
    for y, x in zip(*np.where(np.isnan(med))):
        fill = np.nanmedian(med[y - 1:y + 2, x - 1:x + 2])
        med[y, x] = 0 if np.isnan(fill) else fill
    ctrs = lg.hole_centres(nrm)
    peaks = []
    for r in rots:
        if abs(r / 15.0 - int(r / 15.0)) < 0.5e-12:  # the hexagon formula is singular there
            r = r + 1e-12
        aff = lg.Affine2d(rotradccw=np.pi * r / 180.0)
        img = lg.psf_image(ctrs, bandpass, params.oversample, pixel_rad, med.shape[-1], nrm.flat_to_flat, psf_offset, aff)
        peaks.append(lg.cross_correlation_peak(med, img))
    p = np.polyfit(np.array(rots), np.array(peaks), 2)
    best = -p[1] / (2.0 * p[0])
    log.info("Found rotation: %.4f deg", best)
    return lg.Affine2d(rotradccw=np.pi * best / 180.0, name=f"{best:.4f}")


# -- the exposure -------------------------------------------------------------------------


def pixel_scale_deg(model):
    w = model.meta.wcsinfo
    if all(getattr(w, k, None) is not None for k in ("cd1_1", "cd1_2", "cd2_1", "cd2_2")):
        dx = np.hypot(w.cd1_1, w.cd2_1)
        dy = np.hypot(w.cd1_2, w.cd2_2)
        return dx, dy
    if w.cdelt1 is not None and w.cdelt2 is not None:
        return w.cdelt1, w.cdelt2
    log.warning("NIRISS pixel scales not in header; using 65.6 mas per pixel")
    return 65.6 / 3.6e6, 65.6 / 3.6e6


def prepare(data, dq, filt, pxsc_mas, pupil, run_bpfix, usebp):
    """The square crops around the peak (rows 0-3 dropped), bad pixels repaired, and the mask of
    pixels to leave out of the fit."""
    data = data[:, 4:, :]
    dq = dq[:, 4:, :].copy()
    med = np.median(data, axis=0)
    std = np.std(data, axis=0)
    out = (data - med) > 10 * std
    newly = out & ((dq & DO_NOT_USE) == 0)
    dq[newly] += 1
    report_qa(**{"outliers flagged": int(newly.sum())})
    peak = np.nanmax(np.ma.masked_invalid(med))
    py, px = (int(a[0]) for a in np.where(med == peak))
    r = min(med.shape[0] - py - 1, med.shape[1] - px - 1, py, px)
    crop = data[:, py - r:py + r + 1, px - r:px + r + 1]
    cdq = dq[:, py - r:py + r + 1, px - r:px + r + 1]
    if run_bpfix:
        crop, cdq = fix_bad_pixels(crop, cdq, filt, pxsc_mas, pupil)
    if usebp:
        mask = ((cdq & DO_NOT_USE) == DO_NOT_USE) | ((cdq & JUMP_DET) == JUMP_DET)
    else:
        mask = np.zeros(crop.shape, bool)
    return crop, mask


def hole_centres_on_sky(ctrs, roll_ref, v3yangle, vparity):
    """The holes' centres rotated to the sky (OIFITS' CTRS_EQT and the baselines' U, V)."""
    sky = lg.rotate_ccw(ctrs, np.pi / 2.0)
    if roll_ref != 0.0:
        ang = roll_ref + v3yangle
        sky = lg.rotate_ccw(sky, np.deg2rad(-ang if vparity == -1 else ang))
    eqt = np.zeros(ctrs.shape)
    eqt[:, 0] = sky[:, 1].copy() * -1
    eqt[:, 1] = sky[:, 0].copy() * -1
    return eqt


class Fit:
    """One integration's fit: coefficients, observables and the images."""

    def __init__(self, image, mask, ctrs, bandpass, over, pixel_rad, d, affine):
        self.image = image
        c = lg.centroid(image)
        offset = (c[1], c[0])
        self.model = lg.fringe_model(ctrs, bandpass, over, pixel_rad, image.shape[0], d, offset, affine)
        soln, self.residual = lg.solve(image, self.model, mask)
        self.flux = soln[0]
        self.soln = soln / soln[0]
        n = len(ctrs)
        self.amp, self.phase = lg.amplitudes_phases(self.soln)
        self.pistons = lg.pistons(self.phase, n)
        self.cps = lg.closure_phases(self.phase, n)
        self.t3amp = lg.triple_amplitudes(self.amp, n)
        self.cas = lg.closure_amplitudes(self.amp, n)
        self.q4 = lg.quad_phases(self.phase, n)
        self.fit_image = np.zeros(image.shape)
        for k, coeff in enumerate(self.soln):
            self.fit_image += self.flux * coeff * self.model[:, :, k]


def analyze(model, nrm, throughput, params: AmiAnalyzeParams):
    """The three AMI products of an exposure (see the module's description)."""
    from ._ami_oifits import build_lgfit, build_oifits

    if params.oversample % 2 == 0:
        raise ValueError("Oversample value must be an odd integer.")
    data = np.array(model.data)
    dq = np.array(model.dq)  # (zeros when the exposure has no DQ array)
    if data.ndim == 2:
        data, dq = data[None], dq[None]
    if str(model.meta.subarray.name).upper() == "FULL":
        log.info("Extracting 80x80 subarray from full-frame data")
        data, dq = data[:, 0:80, 1044:1124], dq[:, 0:80, 1044:1124]
    sx, sy = pixel_scale_deg(model)
    pscale_deg = np.mean([sx, sy])
    pixel_rad = np.deg2rad(pscale_deg)
    if params.bandpass is not None:
        bandpass = np.array(_read_asdf(params.bandpass, ("bandpass",), "bandpass")["bandpass"], dtype=float)
        if bandpass.ndim != 2 or bandpass.shape[1] != 2:
            from ..errors import InputFileError

            raise InputFileError(params.bandpass, "bandpass must be an array of (weight, wavelength_m) rows")
    else:
        bandpass = bandpass_from_throughput(throughput.filter_table)
    affine = resolve_affine(params, data, nrm, bandpass, pixel_rad)
    ctrs = lg.hole_centres(nrm, _holes(params.chooseholes))
    nints_file = model.meta.exposure.nints
    itime = model.meta.exposure.effective_exposure_time
    if data.shape[0] == 1:
        itime = itime * nints_file
    elif params.firstfew is not None:
        if data.shape[0] > params.firstfew:
            data, dq = data[: params.firstfew], dq[: params.firstfew]
        else:
            log.warning("Input firstfew=%d is greater than the number of integrations", params.firstfew)
    pxsc_mas = pscale_deg * (60 * 60 * 1000)
    crops, masks = prepare(data, dq, model.meta.instrument.filter, pxsc_mas, np.asarray(nrm.nrm), params.run_bpfix, params.usebp)
    fits_ = [Fit(crops[i], masks[i], ctrs, bandpass, params.oversample, pixel_rad, nrm.flat_to_flat, affine)
             for i in range(crops.shape[0])]
    w = model.meta.wcsinfo
    eqt = hole_centres_on_sky(ctrs, w.roll_ref, w.v3yangle, w.vparity)
    cw, beta = centre_and_width(bandpass)
    ctx = dict(model=model, ctrs=ctrs, eqt=eqt, itime=itime, pxsc_mas=pxsc_mas, isz=crops.shape[1], lam=cw, beta=beta)
    oi = build_oifits(fits_, ctx, "mean")
    multi = build_oifits(fits_, ctx, "multi")
    lgfit = build_lgfit(fits_, model)
    report_qa(integrations=len(fits_), **{"median |closure phase| deg": float(np.median(np.abs(oi.t3["T3PHI"])))})
    return oi, multi, lgfit


@step("ami_analyze", "AmiAnalyzeStep", params=AmiAnalyzeParams, reftypes=("throughput", "nrm"),
      suffix="ami-oi", input_class="CubeModel")
def ami_analyze(model, refs, params: AmiAnalyzeParams):
    """Fit the NRM fringe model to each integration: OIFITS observables and the LG fit images."""
    return analyze(model, refs["nrm"], refs["throughput"], params)


def _register():
    from .base import STEPS

    # three products, in jwst's order of results
    STEPS["ami_analyze"].extra["suffixes"] = list(SUFFIXES)
    # run alone (strun ami_analyze X_calints.fits) its products are X_ami-oi, X_amimulti-oi, X_amilg
    STEPS["ami_analyze"].extra["strun_suffixes"] = list(SUFFIXES)


_register()
