"""Box extraction, all integrations at once.

jwst extracts a cube one integration at a time in a Python loop; here the aperture weights are
the same for every integration, so the sums run over the cube in a few array operations (the
integrations are stacked along the first axis).  Arithmetic is float64, as jwst's.
"""

from __future__ import annotations

import warnings

import numpy as np


def _cross_sum(a, dispaxis):
    # data (..., ny, nx): sum across the dispersion
    return a.sum(axis=-2) if dispaxis == 1 else a.sum(axis=-1)


def box_extract(data, var_rnoise, var_poisson, var_flat, profile, dispaxis, bkg=None):
    """Weighted sums across the dispersion, for a (nints, ny, nx) stack.

    Returns a dict of (nints, nwave) float64 arrays: ``flux`` (sum of data times weight, NaN
    where no pixel contributed), the three variances (sums of variance times weight squared),
    ``npixels`` (sum of the weights of finite pixels) and ``background`` (the fitted background
    summed over the aperture; zero without background).
    """
    data = np.asarray(data)
    finite = np.isfinite(data)
    w = np.where(finite, profile[None], 0.0)  # weights of usable pixels, per integration
    img = np.where(w != 0, data, 0.0)
    if bkg is not None:
        img = img - np.where(w != 0, bkg["model"], 0.0)
    flux = _cross_sum(img * w, dispaxis)
    npix = _cross_sum(w, dispaxis)
    w2 = w * w
    out = {"npixels": npix}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for name, var in (("var_rnoise", var_rnoise), ("var_poisson", var_poisson), ("var_flat", var_flat)):
            if var is None or var.shape[-2:] != data.shape[-2:]:
                out[name] = np.zeros_like(flux)
            else:
                out[name] = _cross_sum(_nanprod(var, w2), dispaxis)
    if bkg is not None:
        b = _cross_sum(np.where(w != 0, bkg["model"], 0.0) * w, dispaxis)
        b[~np.isfinite(b)] = 0.0
        out["background"] = b
        for name in ("var_rnoise", "var_poisson", "var_flat"):
            out[name] = out[name] + bkg[name]
        out.update({f"bkg_{n}": bkg[n] for n in ("var_rnoise", "var_poisson", "var_flat")})
    else:
        out["background"] = np.zeros_like(flux)
        for n in ("var_rnoise", "var_poisson", "var_flat"):
            out[f"bkg_{n}"] = np.zeros_like(flux)
    flux[np.isclose(npix, 0)] = np.nan
    out["flux"] = flux
    return out


def _nanprod(var, w2):
    """``var * w2`` with NaN products counted as zero (jwst's nansum)."""
    p = var * w2
    p[np.isnan(p)] = 0.0
    return p
