"""Background under the aperture, fitted across the dispersion in the background regions.

For each dispersion element (column of the image oriented with the dispersion along axis 1),
the background pixels are fitted by a polynomial in the normalised cross-dispersion coordinate
(-1..1) of order ``bkg_order`` (least squares, pixels weighted 1 where data and variance are
finite), or replaced by their median (``bkg_fit='median'``).  Before fitting, the image may be
smoothed along the dispersion by a boxcar of ``smoothing_length`` pixels.  The variance that the
fit adds to the aperture sum propagates each pixel's variance through the fit's linear weights
(for the median, 1.2² times that of the mean).
"""

from __future__ import annotations

import warnings

import numpy as np


def fit_background(image, var_rnoise, var_poisson, var_flat, profile, bg_profile, fit: str, order: int, smooth: int):
    """Background model and its variances for one image (ny, nx), dispersion along axis 1.

    Returns ``{"model": (ny, nx) or (1, nx), "var_rnoise"/"var_poisson"/"var_flat": (nx,)}``,
    the variances being those of the background summed over the aperture ``profile``.
    """
    img = np.array(image, dtype=np.float64)
    if smooth > 1:
        from astropy.convolution import convolve

        img = convolve(img, np.ones((1, smooth)) / smooth, boundary="extend")
    variance = var_rnoise + var_poisson + var_flat
    usable = np.isfinite(variance) & np.isfinite(image)
    variances = (var_rnoise, var_poisson, var_flat)
    if fit == "median":
        img[bg_profile == 0] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            level = np.nanmedian(img, axis=0)
            n_ap = profile.sum(axis=0)
            w = usable & (bg_profile != 0)
            pw = w / w.sum(axis=0)[None, :]
        out = {"model": level[None, :]}
        for name, v in zip(("var_rnoise", "var_poisson", "var_flat"), variances):
            out[name] = 1.2**2 * n_ap**2 * np.nansum(v * pw**2, axis=0)
        return out
    if fit != "poly" or order < 0:
        raise ValueError("bkg_fit must be 'median' or 'poly' with bkg_order >= 0")
    ny, nx = img.shape
    y = np.linspace(-1, 1, ny)
    basis = np.vander(y, order + 1, increasing=True)  # (ny, k)
    used = (bg_profile != 0) & np.isfinite(img)
    weight = usable.astype(np.float64)
    # per column: design (ny, k) masked and weighted; normal equations (nx, k, k)
    a = basis[None, :, :] * (used * weight).T[:, :, None]  # (nx, ny, k)
    target = np.where(used, img, 0.0).T * weight.T  # (nx, ny)
    normal = np.einsum("cyi,cyk->cik", a, a)
    rhs = np.einsum("cyi,cy->ci", a, target)
    cov = np.zeros_like(normal)
    ok = np.linalg.cond(normal) < 1e10
    cov[ok] = np.linalg.inv(normal[ok])
    coefs = np.einsum("cik,ck->ci", cov, rhs)
    model = (basis @ coefs.T)  # (ny, nx)
    # each pixel's weight in the background summed over the aperture
    lin = weight.T[:, :, None] * np.einsum("cik,cyk->cyi", cov, a)  # (nx, ny, k)
    ap_basis = (basis[:, None, :] * profile[:, :, None]).sum(axis=0)  # (nx, k)
    pix = np.einsum("ck,cyk->cy", ap_basis, lin)  # (nx, ny)
    out = {"model": model}
    for name, v in zip(("var_rnoise", "var_poisson", "var_flat"), variances):
        out[name] = np.nansum(v.T * pix**2, axis=1)
    return out
