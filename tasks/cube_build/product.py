"""The s3d product: sums turned into a cube, its DQ, its WCS and header keywords, as jwst writes them."""

from __future__ import annotations

import numpy as np

from ...models.dqflags import PIXEL as DQ
from .geometry import CubeGrid

OVERLAP_PARTIAL = 4  # intermediate flags of jwst's cube DQ
OVERLAP_FULL = 2
HOLE = DQ["DO_NOT_USE"]
NO_COVERAGE = DQ["NON_SCIENCE"]


def normalise(flux, weight, var, iflux) -> None:
    """Weighted means: flux / sum(w), var / sum(w)^2, where some pixel contributed (in place)."""
    good = iflux > 0
    flux[good] = flux[good] / weight[good]
    var[good] = var[good] / (weight[good] * weight[good])


def final_dq(spaxel_dq: np.ndarray, weight: np.ndarray, shape) -> np.ndarray:
    """jwst's final DQ: spaxels with data are good; spaxels without are NON_SCIENCE + DO_NOT_USE, or
    a hole (DO_NOT_USE) when inside the field of view, unless at the cube's edge or next to a
    spaxel with no coverage."""
    dq = spaxel_dq.ravel().astype(np.uint32)
    dq[weight > 0] = OVERLAP_PARTIAL
    dq[dq == 0] = NO_COVERAGE | DQ["DO_NOT_USE"]
    dq[(dq & (OVERLAP_FULL | OVERLAP_PARTIAL)) != 0] = 0
    dq[(dq == 0) & (weight == 0)] = HOLE
    nz, ny, nx = shape
    nxy = nx * ny
    # holes are checked one after the other against the (updated) plane, as jwst does
    for i in np.flatnonzero(dq == HOLE):
        iw, rem = divmod(int(i), nxy)
        yr, xr = divmod(rem, nx)
        if yr == 0 or yr == ny - 1 or xr == 0 or xr == nx - 1:
            dq[i] = NO_COVERAGE | DQ["DO_NOT_USE"]
            continue
        for xc, yc in ((xr - 1, yr), (xr + 1, yr), (xr, yr - 1), (xr, yr + 1)):
            if 0 < xc < nx and 0 < yc < ny and (dq[iw * nxy + yc * nx + xc] & NO_COVERAGE) == NO_COVERAGE:
                dq[i] = NO_COVERAGE | DQ["DO_NOT_USE"]
                break
    return dq


def spectral_tears(flux, wmap, var, dq) -> int:
    """MRS planes with far fewer good spaxels than the band's 3rd percentile (< 75 % of it) are
    emptied and flagged DO_NOT_USE + NON_SCIENCE (cubes, in place); returns how many."""
    ngood = (dq == 0).reshape(dq.shape[0], -1).sum(axis=1).astype(float)
    nonzero = ngood > 0
    if not nonzero.any():
        return 0
    pct = np.percentile(ngood[nonzero], 3)
    low = np.flatnonzero(nonzero & (ngood < 0.75 * pct))
    for z in low:
        flux[z] = 0
        wmap[z] = 0
        var[z] = 0
        dq[z] = DQ["DO_NOT_USE"] + DQ["NON_SCIENCE"]
    return int(low.size)


def cube_wcs(grid: CubeGrid, reference_frame: str | None = "ICRS"):
    """The cube's gwcs: the FITS WCS of its keywords (TAN spatial, linear or tabular wavelength),
    built as jwst builds a WCS from a model's wcsinfo."""
    from astropy import coordinates as coords
    from astropy import units as u
    from astropy.modeling import models as am
    from gwcs import coordinate_frames as cf
    from gwcs import utils as gwutils
    from gwcs import wcs as gw

    info = wcs_keywords(grid)
    wcsinfo = {
        "WCSAXES": 3,
        "CRPIX": np.array([info["CRPIX1"], info["CRPIX2"], info["CRPIX3"]]),
        "CRVAL": np.array([info["CRVAL1"], info["CRVAL2"], info["CRVAL3"]]),
        "CDELT": np.array([info["CDELT1"], info["CDELT2"], info.get("CDELT3", 1.0)]),
        "CTYPE": np.array([info["CTYPE1"], info["CTYPE2"], info["CTYPE3"]]),
        "CUNIT": np.array([info["CUNIT1"], info["CUNIT2"], info["CUNIT3"]]),
        "PC": np.array([[info[f"PC{i}_{j}"] for j in (1, 2, 3)] for i in (1, 2, 3)], dtype=float),
        "RADESYS": reference_frame,
        "has_cd": False,
    }
    spatial, spectral, _ = gwutils.get_axes(wcsinfo)
    transform = gwutils.make_fitswcs_transform(wcsinfo)
    sp = spectral[0]
    if grid.linear:
        spec_t = (am.Shift(-(wcsinfo["CRPIX"][sp] - 1)) | am.Scale(wcsinfo["CDELT"][sp])
                  | am.Shift(wcsinfo["CRVAL"][sp]))
    else:
        spec_t = am.Tabular1D(lookup_table=np.asarray(grid.wavelength_table, dtype=np.float32).ravel())
    transform = transform & spec_t
    cunit = wcsinfo["CUNIT"]
    sky = cf.CelestialFrame(name="sky", axes_order=tuple(spatial), reference_frame=coords.ICRS(),
                            unit=cunit[spatial], axes_names=("RA", "DEC"))
    spec = cf.SpectralFrame(name="spectral", axes_order=tuple(spectral), unit=cunit[spectral],
                            axes_names=("wavelength",))
    world = cf.CompositeFrame([sky, spec], name="world")
    det = cf.CoordinateFrame(name="detector", naxes=3, axes_order=(0, 1, 2), unit=(u.pix, u.pix, u.pix),
                             axes_type=["SPATIAL", "SPATIAL", "SPECTRAL"], axes_names=("x", "y", "z"),
                             axis_physical_types=None)
    w = gw.WCS([(det, transform), (world, None)])
    nz, ny, nx = grid.shape
    w.bounding_box = ((0, nx - 1), (0, ny - 1), (0, nz - 1))
    return w


def wcs_keywords(grid: CubeGrid) -> dict:
    """The cube's WCS keywords (SCI header), with jwst's values and types."""
    rot = 0.0 if grid.rot_angle is None else grid.rot_angle
    kw = {
        "WCSAXES": 3,
        "CRPIX1": grid.crpix1, "CRPIX2": grid.crpix2, "CRPIX3": 1.0,
        "CRVAL1": grid.crval1, "CRVAL2": grid.crval2,
        "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN",
        "CUNIT1": "deg", "CUNIT2": "deg", "CUNIT3": "um",
        "CDELT1": grid.cdelt1 / 3600.0, "CDELT2": grid.cdelt2 / 3600.0,
        "PC1_1": -np.cos(rot * np.pi / 180.0), "PC1_2": np.sin(rot * np.pi / 180.0), "PC1_3": 0,
        "PC2_1": np.sin(rot * np.pi / 180.0), "PC2_2": np.cos(rot * np.pi / 180.0), "PC2_3": 0,
        "PC3_1": 0, "PC3_2": 0, "PC3_3": 1,
    }
    if grid.linear:
        kw.update(CRVAL3=grid.crval3, CDELT3=grid.cdelt3, CTYPE3="WAVE")
    else:
        kw.update(CRVAL3=1.0, CTYPE3="WAVE-TAB", PS3_0="WCS-TABLE", PS3_1="wavelength")
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in kw.items()}


def wavetable(grid: CubeGrid) -> np.ndarray:
    """The WCS-TABLE: one row holding the plane wavelengths (float32, shape (n, 1))."""
    if grid.linear:
        pixels = np.arange(grid.shape[0])
        wave = np.asarray(grid.crval3 + (pixels + 1 - grid.crpix3) * grid.cdelt3, dtype=np.float32)
    else:
        wave = np.asarray(grid.wavelength_table, dtype=np.float32)
    n = wave.size
    return np.array([(wave[None].T,)], dtype=[("wavelength", "<f4", (n, 1))])
