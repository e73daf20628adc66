"""pathloss for NIRSpec fixed slits and MSA slitlets (jwst 3.0's PathLossStep on NRS_FIXEDSLIT and
NRS_MSASPEC; NRS_BRIGHTOBJ is not corrected by jwst's spec2).

The NIRSpec pathloss reference (PathlossModel) lists apertures: each fixed slit by name, and for
the MSA ``MOS1x1`` (one shutter) and ``MOS1x3`` (three).  Each has the point-source throughput on a
grid of (wavelength, y, x) in the slit, the slit centre at (0, 0) and its edges at +-0.5 (the grid
given by CRPIX/CRVAL/CDELT 1..3, wavelengths in metres), and the uniform-source throughput against
wavelength.

For each slit, as jwst does:

1. the source position (SRCXPOS, SRCYPOS); the aperture: the fixed slit's, or for the MSA
   MOS1x1 when the shutters either side of the source's (``x`` in SHUTSTA) are closed, else
   MOS1x3, the y position moved by one shutter towards the open side when only one side is open;
2. the point-source vector at that position (bilinear in the grid; a source outside it leaves
   the slit uncorrected) and the uniform vector (for a two-shutter slitlet, the mean of the two
   apertures' uniform vectors);
3. both interpolated linearly at each pixel's wavelength (NaN outside the table): PATHLOSS_PS and
   PATHLOSS_UN.  A POINT fixed slit uses its zero-point-corrected wavelengths for PS and the
   uncorrected ones (the WCS without wavecorr_frame) for UN;
4. data and ERR divided by the one for the slit's type (PS for POINT, else UN), variances by its
   square (multiplied with ``inverse``); PTHLOSS = POINT or UNIFORM.

The step is COMPLETE when any slit was corrected.
"""

from __future__ import annotations

import logging

import numpy as np

from ..models.nirspec_spec2_refs import pathloss_apertures
from .flat_field import match_nans_and_flags

log = logging.getLogger("webbflow.steps.pathloss")

MODES = ("NRS_FIXEDSLIT", "NRS_MSASPEC")


def applies(model) -> bool:
    from ..models import MultiSlitModel

    return isinstance(model, MultiSlitModel) and (model.meta.exposure.type or "").upper() in MODES


def below_closed(state: str) -> bool:
    i = state.find("x")
    return i == 0 or state[i - 1] == "0"


def above_closed(state: str) -> bool:
    i = state.find("x")
    return i == len(state) - 1 or state[i + 1] == "0"


def aperture_for(apertures, exp_type, match):
    if exp_type == "NRS_MSASPEC":
        size = 1 if (below_closed(match) and above_closed(match)) else 3
        return next((a for a in apertures if a.shutters == size), None)
    return next((a for a in apertures if a.name == match), None)


def _axis(w, i, n):
    out = np.zeros(n, dtype=np.float32)
    for k in range(n):
        out[k] = w[f"crval{i}"] + (float(k + 1) - w[f"crpix{i}"]) * w[f"cdelt{i}"]
    return out


def point_vector(ap, xc, yc):
    """(wavelengths in metres, the throughput at (xc, yc), inside the grid?)."""
    data, w = ap.pointsource_data, ap.pointsource_wcs
    nwave, nrows, ncols = data.shape
    wave = _axis(w, 3, nwave)
    col = w["crpix1"] + (xc - w["crval1"]) / w["cdelt1"] - 1
    row = w["crpix2"] + (yc - w["crval2"]) / w["cdelt2"] - 1
    if col < 0 or col >= ncols - 1 or row < 0 or row >= nrows - 1:
        return wave, np.zeros(nwave, dtype=np.float32), False
    j, i = int(col), int(row)
    fx, fy = col - j, row - i
    vec = ((1 - fx) * (1 - fy) * data[:, i, j] + (1 - fx) * fy * data[:, i + 1, j]
           + fx * (1 - fy) * data[:, i, j + 1] + fx * fy * data[:, i + 1, j + 1])
    return wave, vec, True


def uniform_vector(ap):
    return _axis(ap.uniform_wcs, 1, len(ap.uniform_data)), ap.uniform_data


def two_shutter_uniform(apertures):
    """The mean of the MOS1x1 and MOS1x3 uniform vectors, or (None, None) when the reference does not allow it."""
    byname = {a.name.upper(): a for a in apertures}
    if len(apertures) != 2 or set(byname) != {"MOS1X1", "MOS1X3"}:
        log.warning("Expected the apertures MOS1x1 and MOS1x3 in the pathloss reference")
        return None, None
    a1, a3 = byname["MOS1X1"], byname["MOS1X3"]
    if len(a1.uniform_data) != len(a3.uniform_data) or a1.uniform_data.ndim != 1:
        return None, None
    if any(a1.uniform_wcs[k] != a3.uniform_wcs[k] for k in ("crval1", "crpix1", "cdelt1")):
        return None, None
    n = len(a1.uniform_data)
    wave = np.zeros(n)
    for k in range(n):
        wave[k] = a1.uniform_wcs["crval1"] + (float(k + 1) - a1.uniform_wcs["crpix1"]) * a1.uniform_wcs["cdelt1"]
    return wave, 0.5 * (a1.uniform_data + a3.uniform_data)


def onto_grid(wl, wave, vec):
    """Linear interpolation of ``vec`` at each wavelength of ``wl``; NaN outside ``wave``."""
    vv = np.zeros(len(vec) + 2)
    vv[1:-1] = vec
    vv[0] = vv[-1] = np.nan
    ww = np.zeros(len(wave) + 2)
    ww[1:-1] = wave
    ww[0], ww[-1] = wave[0] - 0.1, wave[-1] + 0.1
    lo = np.searchsorted(wave, wl)
    hi = lo + 1
    frac = (wl - ww[lo]) / (ww[hi] - ww[lo])
    return vv[lo] + frac * (vv[hi] - vv[lo])


def _is_point(t) -> bool:
    return t is not None and str(t).upper() == "POINT"


def slit_corrections(slit, apertures, exp_type, source_type=None):
    """(correction applied, PATHLOSS_PS, PATHLOSS_UN, type) for one slit, or None when there is none."""
    from ._photom_nirspec import _stored_wavelengths, uncorrected_wavelengths

    if slit.data.size <= 0:
        return None
    xc = slit.source_xpos if slit.source_xpos is not None else 0.0
    yc = slit.source_ypos if slit.source_ypos is not None else 0.0
    if exp_type == "NRS_MSASPEC":
        state = slit.shutter_state or ""
        ap = aperture_for(apertures, exp_type, state)
        if ap is None:
            log.warning("Cannot find matching pathloss model for slit with %d shutters", len(state))
            return None
        log.info("Shutter state = %s, using %s entry in ref file", state, ap.name)
        if below_closed(state) and not above_closed(state):
            yc = yc - 1.0
        if not below_closed(state) and above_closed(state):
            yc = yc + 1.0
        wps, vps, inside = point_vector(ap, xc, yc)
        wun, vun = two_shutter_uniform(apertures) if len(state) == 2 else (None, None)
        if wun is None or vun is None:
            wun, vun = uniform_vector(ap)
        if not inside:
            log.warning("Source is outside slit.")
            return None
        wps, wun = wps * 1.0e6, wun * 1.0e6
        wl = slit.wavelength
        ps, un = onto_grid(wl, wps, vps), onto_grid(wl, wun, vun)
    else:
        ap = aperture_for(apertures, exp_type, slit.name)
        if ap is None:
            log.warning("Cannot find matching pathloss model for %s; not corrected", slit.name)
            return None
        wps, vps, inside = point_vector(ap, xc, yc)
        wun, vun = uniform_vector(ap)
        if not inside:
            log.warning("Source is outside slit. Skipping pathloss correction for slit %s", slit.name)
            return None
        wps, wun = wps * 1.0e6, wun * 1.0e6
        if _is_point(source_type or slit.source_type):
            ps = onto_grid(_stored_wavelengths(slit), wps, vps)
            un = onto_grid(uncorrected_wavelengths(slit), wun, vun)
        else:
            wl = slit.wavelength
            ps, un = onto_grid(wl, wps, vps), onto_grid(wl, wun, vun)
    if _is_point(source_type or slit.source_type):
        return ps, ps, un, "POINT"
    return un, ps, un, "UNIFORM"


def correct(model, ref, params):
    """Correct every slit of a fixed-slit or MSA MultiSlitModel in place; returns (model, status)."""
    apertures = pathloss_apertures(ref)
    exp_type = (model.meta.exposure.type or "").upper()
    found = False
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, slit in enumerate(model.slits):
            log.info("Working on slit %s", slit.name)
            c = slit_corrections(slit, apertures, exp_type, params.source_type)
            if c is None:
                log.warning("No correction provided for slit %s. Skipping", k)
                continue
            found = True
            corr, ps, un, kind = c
            corr = np.asarray(corr, dtype=np.float32)  # jwst holds the correction as a float32 image
            sq = corr**2
            for name in ("data", "err"):
                arr = getattr(slit, name)
                if not params.inverse:
                    arr /= corr
                else:
                    arr *= corr
            for name in ("var_poisson", "var_rnoise", "var_flat"):
                if slit.has(name) and getattr(slit, name) is not None and getattr(slit, name).size > 0:
                    arr = getattr(slit, name)
                    if not params.inverse:
                        arr /= sq
                    else:
                        arr *= sq
            slit.pathloss_point = np.asarray(ps, dtype=np.float32)
            slit.pathloss_uniform = np.asarray(un, dtype=np.float32)
            slit.pathloss_correction_type = kind
            match_nans_and_flags(slit)
    return model, "COMPLETE" if found else "SKIPPED"
