"""Box extraction, all integrations at once.

jwst extracts a cube one integration at a time in a Python loop; here the aperture weights are
the same for every integration, so the sums run over the cube in a few array operations (the
integrations are stacked along the first axis).  Arithmetic is float64, as jwst's.
"""

from __future__ import annotations

import numpy as np


def _cross(dispaxis: int) -> str:
    # einsum subscripts summing a (nints, ny, nx) stack weighted by a (ny, nx) image across the dispersion
    return "nyx,yx->nx" if dispaxis == 1 else "nyx,yx->ny"


CHUNK_BYTES = 1 << 19  # float32 bytes of the integrations summed at once (without a background)


def box_extract(data, var_rnoise, var_poisson, var_flat, profile, dispaxis, bkg=None):
    """Weighted sums across the dispersion, for a (nints, ny, nx) stack.

    Without a background, a long stack is summed a few integrations at a time (each chunk's
    float32 data at most ``CHUNK_BYTES``): each integration's sums are its own, so the answers are
    those of the whole stack at once, without its stack-sized temporaries.
    """
    n = np.shape(data)[0]
    per = max(1, int(np.prod(np.shape(data)[1:])) * 4)
    step = max(1, CHUNK_BYTES // per)
    if bkg is not None or n <= step:
        return _box_extract(data, var_rnoise, var_poisson, var_flat, profile, dispaxis, bkg)

    def part(v, a, b):
        return v if v is None or v.shape[0] != n else v[a:b]

    pieces = [_box_extract(data[a:a + step], part(var_rnoise, a, a + step), part(var_poisson, a, a + step),
                           part(var_flat, a, a + step), profile, dispaxis)
              for a in range(0, n, step)]
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def _box_extract(data, var_rnoise, var_poisson, var_flat, profile, dispaxis, bkg=None):
    """:func:`box_extract` on the whole stack at once.

    Returns a dict of (nints, nwave) float64 arrays: ``flux`` (sum of data times weight, NaN
    where no pixel contributed), the three variances (sums of variance times weight squared,
    NaN products counted as zero), ``npixels`` (sum of the weights of finite pixels) and
    ``background`` (the fitted background summed over the aperture; zero without background).
    Pixels whose data are not finite take no part.  The weight image is shared by all
    integrations, so each sum is one ``einsum`` over the stack, with no stack-sized float64
    temporary.
    """
    data = np.asarray(data)
    sub = _cross(dispaxis)
    finite = np.isfinite(data)
    inside = profile > 0
    usable = finite & inside[None]
    img = np.where(usable, data, np.float32(0))
    if bkg is not None:
        img = img - np.where(usable, bkg["model"], 0.0)
    flux = np.einsum(sub, img, profile)
    del img
    npix = np.einsum(sub, usable.astype(np.float32), profile)
    w2 = profile * profile
    out = {"npixels": npix}
    for name, var in (("var_rnoise", var_rnoise), ("var_poisson", var_poisson), ("var_flat", var_flat)):
        if var is None or var.shape[-2:] != data.shape[-2:]:
            out[name] = np.zeros_like(flux)
            continue
        v = np.where(usable & ~np.isnan(var), var, np.float32(0))
        out[name] = np.einsum(sub, v, w2)
    if bkg is not None:
        b = np.einsum(sub, np.where(usable, bkg["model"], 0.0), profile)
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
