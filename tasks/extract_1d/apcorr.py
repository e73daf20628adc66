"""Aperture corrections of point-source spectra (extract_1d's ``apply_apcorr``).

The spectroscopic apcorr references (NIRSpec MOS/FS/BOTS, MIRI LRS, NIRCam and NIRISS WFSS)
are one FITS table, APCORR, one row per optical configuration.  Each row holds a grid of
corrections over wavelength and aperture size (the SIZE column, in pixels or, with
``SIZEUNIT = arcsec``, in arcseconds across the dispersion); NIRSpec rows add a third axis,
the pixel phase of the source.

For a point source the correction, interpolated linearly at each spectral element's
wavelength and aperture size (its NPIXELS), multiplies FLUX, FLUX_ERROR, SURF_BRIGHT and
SB_ERROR, and its square the six flux and surface-brightness variances, as jwst 3.0 does:

- NIRSpec: the grid is first taken at pixel phase 0.5, the aperture sizes at the element's
  wavelength, then a bilinear surface over (wavelength, size); an element whose wavelength
  lies outside the grid keeps a correction of 1;
- MIRI LRS and WFSS: a bilinear surface over (size, wavelength) of the row's first
  ``nelem_size`` sizes and ``nelem_wl`` wavelengths.

Sizes in arcseconds become pixels through the cross-dispersion pixel scale of the slit's WCS
at the aperture centre (at the median wavelength for NIRSpec, the shortest otherwise).
"""

from __future__ import annotations

import numpy as np

from ...errors import UnsupportedModeError

# the reference table columns that select a row, by instrument and exposure type (substring)
_MATCH = {
    "MIRI": {"LRS": ("subarray",), "WFSS": ("subarray",)},
    "NIRSPEC": {"MSASPEC": ("filter", "grating"), "FIXEDSLIT": ("filter", "grating"),
                "BRIGHTOBJ": ("filter", "grating")},
    "NIRCAM": {"WFSS": ("filter", "pupil"), "NRC_GRISM": ("filter", "pupil")},
    "NIRISS": {"WFSS": ("filter", "pupil")},
}
FLUX_COLUMNS = ("FLUX", "FLUX_ERROR", "SURF_BRIGHT", "SB_ERROR")
VAR_COLUMNS = ("FLUX_VAR_POISSON", "FLUX_VAR_RNOISE", "FLUX_VAR_FLAT", "SB_VAR_POISSON", "SB_VAR_RNOISE",
               "SB_VAR_FLAT")
PIXEL_PHASE = 0.5


class ApcorrError(ValueError):
    """The apcorr reference has no single row for this exposure, or its sizes cannot be converted."""


def _row_values(top, slitname: str, keys) -> dict:
    inst = top.meta.instrument
    values = {}
    for key in keys:
        if key == "subarray":
            values[key] = top.meta.subarray.name
        else:
            values[key] = getattr(inst, key)
    exp_type = (top.meta.exposure.type or "").upper()
    if exp_type in ("NRS_FIXEDSLIT", "NRS_BRIGHTOBJ"):
        values["slit"] = slitname
    return values


def select_row(table, top, slitname: str):
    """The reference row of this exposure's configuration (one exactly, else :class:`ApcorrError`)."""
    inst = (top.meta.instrument.name or "").upper()
    exp_type = (top.meta.exposure.type or "").upper()
    keys = next((k for tag, k in _MATCH.get(inst, {}).items() if tag in exp_type), None)
    if keys is None:
        raise UnsupportedModeError(f"extract_1d: aperture corrections for {inst} {exp_type} are not implemented")
    rows = np.ones(len(table), bool)
    for key, value in _row_values(top, slitname, keys).items():
        col = np.asarray(table[key])
        if value is None:
            rows &= False
        elif col.dtype.kind in "SU":
            col = np.char.upper(np.char.strip(col.astype(str)))
            rows &= col == str(value).upper()
        else:
            rows &= col == value
    if rows.sum() != 1:
        raise ApcorrError(f"has {int(rows.sum())} rows for this exposure's configuration, not one")
    return table[int(np.nonzero(rows)[0][0])]


def _arcsec_per_pixel(m, location) -> float:
    from stcal.alignment.util import compute_scale

    if location[0] is None or location[1] is None:
        raise ApcorrError("sizes are in arcseconds and the aperture centre has no sky position")
    return compute_scale(m.meta.wcs, location, disp_axis=m.meta.wcsinfo.dispersion_direction) * 3600.0


def correction(ref, m, top, slitname: str, ra, dec, wavelength_1d, wave, npix) -> np.ndarray:
    """The correction factor of every spectral element (``wave``, ``npix`` of any matching shape)."""
    from scipy.interpolate import RectBivariateSpline, interp1d

    row = select_row(ref.apcorr_table, top, slitname)
    unit = str(ref._headers.get("APCORR", {}).get("SIZEUNIT", "") or "") if hasattr(ref, "_headers") else ""
    inst = (top.meta.instrument.name or "").upper()
    size = np.array(row["size"], dtype=float)
    if unit.startswith("arcsec"):
        wl = np.median(wavelength_1d) if inst == "NIRSPEC" else wavelength_1d.min()
        # converted in the table's own precision, as jwst converts the row in place
        size = (np.asarray(row["size"]) / _arcsec_per_pixel(m, (ra, dec, wl))).astype(np.asarray(row["size"]).dtype)
        size = size.astype(float)
    wave = np.asarray(wave, dtype=float)
    npix = np.asarray(npix, dtype=float)
    out = np.ones(np.broadcast(wave, npix).shape)
    wb, nb = np.broadcast_arrays(wave, npix)
    if inst == "NIRSPEC":
        # tabulated once, on the first integration, and used for every integration (as jwst does)
        first = np.ones(wb.shape[-1])
        w1, n1 = wb.reshape(-1, wb.shape[-1])[0], nb.reshape(-1, nb.shape[-1])[0]
        ref_wl = np.array(row["wavelength"], dtype=float)
        grid = interp1d(np.array(row["pixphase"], dtype=float), np.array(row["apcorr"], dtype=float))(PIXEL_PHASE)
        sizes_at = interp1d(ref_wl, size)
        order = np.argsort(ref_wl)
        for i, (w, n) in enumerate(zip(w1, n1)):
            try:
                s = sizes_at(w)
            except ValueError:  # a wavelength beyond the grid keeps a correction of 1
                continue
            c = RectBivariateSpline(ref_wl[order], s, grid[:, order].T, kx=1, ky=1)(w, n).item()
            if c:
                first[i] = c
        return np.broadcast_to(first, out.shape).copy()
    nw, ns = int(row["nelem_wl"]), int(row["nelem_size"])
    ref_wl = np.array(row["wavelength"], dtype=float)[:nw]
    grid = np.array(row["apcorr"], dtype=float)[:nw, :ns]
    order = np.argsort(ref_wl)
    surface = RectBivariateSpline(size[:ns], ref_wl[order], grid[order, :].T, kx=1, ky=1)
    for idx in np.ndindex(out.shape):
        out[idx] = surface(nb[idx], wb[idx]).item()
    return out


def apply(cols: dict, factor: np.ndarray) -> None:
    """Scale a spectrum's flux and surface-brightness columns (and their variances) in place."""
    for k in FLUX_COLUMNS:
        cols[k] = cols[k] * factor
    for k in VAR_COLUMNS:
        cols[k] = cols[k] * factor * factor
