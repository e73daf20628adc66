"""The NIRSpec IFU side of cube_build: bands (grating/filter), cubepar rows, and every usable detector
pixel mapped to the sky with its wavelength extent and footprint corners, as jwst 3.0 maps them.

jwst maps each of the 30 slices in turn (its slice's WCS over the slice's bounding box: the pixel
centres, the wavelengths half a pixel either side along the dispersion, and the four corners: the
pixel's slicer position half a row up and down, widened by half a slice across), filling detector-sized
arrays, and reads the mapped pixels back in detector order (user complaint #8338: 36 s of a 45 s cube
in that loop).  Here the coordinate-based WCS assign_wcs writes (coordinates -> detector -> slicer
through the slice map, then one chain from the slicer to the sky) is evaluated once on every pixel of
the slice map: the selector sends each pixel through its own slice's transform, which is what jwst's
per-slice evaluation gives it too (a slice's bounding box only holds pixels of its own slice or of a
neighbour, each evaluated with its own slice's transform), so the numbers are the same, in the same
detector order, with no per-slice loop.  A pixel lying in several slices' boxes takes the last slice's
number, as jwst's later slice overwrites the earlier (only the field-of-view DQ flagging reads it).
A slice-keyed WCS (assign_wcs's ``nrs_ifu_slice_wcs``) is mapped slice by slice, as jwst does.
For the point cloud (msm, emsm) only the centres are mapped, and jwst keeps every pixel with a
wavelength (no corner has to be finite).
"""

from __future__ import annotations

import warnings

import numpy as np

from .geometry import ChannelPixels, CubeBuildError

NSLICES = 30
# jwst's grating/filter pairs, in its order (cube bands come in this order)
VALID_GWA = ["g140m", "g140h", "g140m", "g140h", "g235m", "g235h", "g395m", "g395h", "prism", "prism", "g140m",
             "g140h", "g235m", "g235h", "g395m", "g395h"]
VALID_FWA = ["f070lp", "f070lp", "f100lp", "f100lp", "f170lp", "f170lp", "f290lp", "f290lp", "clear", "opaque",
             "opaque", "opaque", "opaque", "opaque", "opaque", "opaque"]
GRATING_SUFFIXES = ("g140m", "g235m", "g395m", "g140h", "g235h", "g395h", "prism")


def exposure_bands(model) -> list[tuple[str, str]]:
    """The (grating, filter) of a NIRSpec IFU exposure, lower case."""
    inst = model.meta.instrument
    return [(str(inst.grating or "").lower(), str(inst.filter or "").lower())]


def _user(value) -> list[str]:
    if value is None or str(value).strip().lower() == "all":
        return []
    return [v.strip().strip("[]'\"").lower() for v in str(value).split(",") if v.strip()]


def band_coverage(exposures, grating: str, filt: str) -> tuple[list[str], list[str], dict]:
    """The gratings and filters the cubes cover (jwst's order), the user's choice applied, and the
    indices of each pair's exposures in input order."""
    filemap: dict[tuple[str, str], list] = {}
    for i, m in enumerate(exposures):
        for key in exposure_bands(m):
            filemap.setdefault(key, []).append(i)
    want_g, want_f = _user(grating), _user(filt)
    if want_f and not want_g:
        raise CubeBuildError("Filter specified, but Grating was not")
    if want_g and not want_f:
        raise CubeBuildError("Grating specified, but Filter was not")
    all_g, all_f = [], []
    for g, f in zip(VALID_GWA, VALID_FWA):
        if filemap.get((g, f)) and (not want_g or (g in want_g and f in want_f)):
            all_g.append(g)
            all_f.append(f)
    if not all_g:
        raise CubeBuildError("the cube does not cover any gratings: change the grating or filter parameter")
    return all_g, all_f, filemap


def cubes_to_make(all_g: list[str], all_f: list[str], output_type: str) -> list[tuple[list[str], list[str]]]:
    """One cube per grating and filter (band), per grating (grating), or one of all (multi)."""
    if output_type == "multi":
        return [(list(all_g), list(all_f))]
    if output_type == "band":
        return [([g], [f]) for g, f in zip(all_g, all_f)]
    if output_type == "grating":
        out = []
        for g in dict.fromkeys(all_g):
            idx = [i for i, x in enumerate(all_g) if x == g]
            out.append(([g] * len(idx), [all_f[i] for i in idx]))
        return out
    raise CubeBuildError(f"output_type {output_type!r} is for MIRI; NIRSpec cubes are band, grating or multi")


def cube_suffix(gratings: list[str], filters: list[str]) -> str:
    """``_prism-clear``, ``_g140m-f070lp-g140m-f100lp``."""
    return ("_" + "-".join(f"{g}-{f}" for g, f in zip(gratings, filters))).lower()


def strip_grating(base: str) -> str:
    """The product name without a grating suffix (jwst adds grating and filter itself)."""
    tail = base[base.rfind("_") + 1:]
    return base[:base.rfind("_")] if tail in GRATING_SUFFIXES else base


def multi_table_name(gratings: list[str], weighting: str) -> str:
    """The cubepar's multi-band wavelength table of these gratings (the last one's resolution, as jwst)."""
    kind = None
    for g in gratings:
        kind = "PRISM" if g == "prism" else ("MED" if g.endswith("m") else "HIGH")
    return f"MULTICHAN_{kind}_" + {"drizzle": "DRIZZLE", "msm": "MSM", "emsm": "EMSM"}[weighting]


# ---------------------------------------------------------------------------------------------
# detector pixels to the sky


def _slice_boxes(wcs):
    """Each slice's pixel ranges (x0, x1, y0, y1), inclusive, as jwst's grid over its bounding box."""
    from gwcs.wcstools import grid_from_bounding_box

    from ..assign_wcs.nirspec_ifu import wcs_of_slice

    boxes, widths = [], {}
    frame0 = wcs.available_frames[0]
    for n in range(NSLICES):
        sw = wcs_of_slice(wcs, n)
        bb = sw.bounding_box
        if n in (0, 2):  # jwst's slice width: slices 1 and 3 at the middle of their boxes
            mx, my = np.mean(bb[0]), np.mean(bb[1])
            widths[n] = sw.get_transform(frame0, "slicer")(mx, my)[0]
        x, y = grid_from_bounding_box(bb)
        boxes.append((int(x.min()), int(x.max()), int(y.min()), int(y.max()), sw))
    return boxes, abs(widths[0] - widths[2])


def _world_wavelength(slicer2world, across, along, lam, probe: int = 2000):
    """The world wavelength of slicer positions: the chain from the slicer carries the wavelength
    through unchanged but for metres to microns, so ``lam * 1e6`` gives its numbers without the rest
    of the chain, checked on a sample (equal bit for bit, NaN at the same places); when the sample
    disagrees the whole chain is evaluated."""
    k = slice(0, min(probe, lam.size))
    full = slicer2world(across[k], along[k], lam[k])[2]
    fast = lam * 1e6
    if np.array_equal(np.asarray(full), fast[k], equal_nan=True):
        return fast
    return slicer2world(across, along, lam)[2]


def _map(det2slicer, slicer2world, x, y, across_width, drizzle: bool = True):
    """Centres of the pixels (x, y) through one transform pair and, for the drizzle, their wavelength
    extents and corners; the pixels kept (a wavelength, and for the drizzle four finite corners) and
    their arrays (ra, dec, lam, then dwave and the eight corner coordinates for the drizzle)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "invalid value", RuntimeWarning)
        ra, dec, lam = slicer2world(*det2slicer(x, y))
        keep = ~np.isnan(lam)
        x, y, ra, dec, lam = x[keep], y[keep], ra[keep], dec[keep], lam[keep]
        if not drizzle:  # the point cloud: the centres of every pixel with a wavelength (jwst's choice)
            return x.astype(np.intp), y.astype(np.intp), [np.asarray(a) for a in (ra, dec, lam)]
        wave1 = _world_wavelength(slicer2world, *det2slicer(x - 0.4999, y))
        wave2 = _world_wavelength(slicer2world, *det2slicer(x + 0.4999, y))
        dwave = np.abs(wave1 - wave2)
        del wave1, wave2
        across1, along1, lam1 = det2slicer(x, y - 0.49)
        across2, along2, lam2 = det2slicer(x, y + 0.49)
        half = across_width / 2
        ra1, dec1, _ = slicer2world(across1 - half, along1, lam1)
        ra2, dec2, _ = slicer2world(across1 + half, along1, lam1)
        ra3, dec3, _ = slicer2world(across2 + half, along2, lam2)
        ra4, dec4, _ = slicer2world(across2 - half, along2, lam2)
    final = ~np.isnan(ra1) & ~np.isnan(ra2) & ~np.isnan(ra3) & ~np.isnan(ra4)
    arrays = (ra, dec, lam, dwave, ra1, dec1, ra2, dec2, ra3, dec3, ra4, dec4)
    return x[final].astype(np.intp), y[final].astype(np.intp), [np.asarray(a)[final] for a in arrays]


def map_exposure(model, drizzle: bool = True):
    """Every pixel of the exposure's slices mapped to the sky, in detector order:
    ``(y, x, slice_no, ra, dec, wave, dwave, corners)`` (corners: ra1, dec1, ..., ra4, dec4).  For the
    point cloud (``drizzle`` false) ``dwave`` and ``corners`` are None, and every pixel with a
    wavelength is kept, its corners not asked for, as jwst maps them for msm and emsm."""
    wcs = model.meta.wcs
    if wcs is None:
        raise CubeBuildError("has no WCS (assign_wcs must have run)")
    frames = wcs.available_frames
    if "slicer" not in frames:
        raise CubeBuildError(f"the WCS has no slicer frame ({', '.join(frames)}): not a NIRSpec IFU WCS")
    shape = model.data.shape
    boxes, across_width = _slice_boxes(wcs)
    slice_det = np.zeros(shape, np.int16)
    for n, (x0, x1, y0, y1, _) in enumerate(boxes):
        slice_det[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = n + 1
    frame0 = frames[0]
    step1 = wcs.pipeline[1].transform
    if "gwa" not in frames and hasattr(step1, "label_mapper"):
        # the coordinate-based WCS: every pixel of the slice map at once, each through its own slice
        regions = np.asarray(step1.label_mapper.mapper)
        inbox = slice_det > 0
        yy, xx = np.nonzero((regions > 0) & inbox)
        det2slicer = wcs.get_transform(frame0, "slicer")
        slicer2world = wcs.get_transform("slicer", wcs.output_frame.name)
        x, y, arrays = _map(det2slicer, slicer2world, xx.astype(np.float64), yy.astype(np.float64), across_width,
                              drizzle)
    else:
        # a slice-keyed WCS: slice by slice over its box (later slices overwrite earlier ones)
        found = np.zeros(shape, bool)
        nvals = 12 if drizzle else 3
        store = np.zeros((nvals,) + shape)
        for x0, x1, y0, y1, sw in boxes:
            yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
            xs, ys, arr = _map(sw.get_transform(frame0, "slicer"), sw.get_transform("slicer", sw.output_frame.name),
                               xx.ravel().astype(np.float64), yy.ravel().astype(np.float64), across_width, drizzle)
            found[ys, xs] = True
            for k, a in enumerate(arr):
                store[k][ys, xs] = a
        y, x = np.nonzero(found)
        arrays = [store[k][y, x] for k in range(nvals)]
        del store
    ra, dec, lam = arrays[:3]
    dwave, corners = (arrays[3], tuple(arrays[4:])) if drizzle else (None, None)
    return y, x, slice_det[y, x].astype(np.float64), ra, dec, lam, dwave, corners


def exposure_pixels(model, drizzle: bool) -> tuple[ChannelPixels | None, np.ndarray]:
    """The usable pixels (not DO_NOT_USE or NON_SCIENCE, finite flux) of a NIRSpec IFU exposure, with
    their centres, slice numbers and (drizzle) wavelength extents and corners; and the centres' RA,
    Dec and wavelengths of every mapped pixel (the footprint)."""
    from ...models.dqflags import PIXEL as DQ

    y, x, slice_no, ra, dec, lam, dwave, corners = map_exposure(model, drizzle)
    dmax = float(np.nanmax(dwave)) if drizzle and dwave.size else float("nan")
    flux_all = model.data[y, x]
    dq_all = model.dq[y, x]
    bad = (dq_all & (DQ["DO_NOT_USE"] | DQ["NON_SCIENCE"])) != 0
    use = np.flatnonzero(~bad & np.isfinite(flux_all))
    sky = (ra, dec, lam)
    if use.size == 0:
        return None, sky
    pix = ChannelPixels(wave=np.asarray(lam[use], np.float64), flux=np.asarray(flux_all[use], np.float64),
                        err=np.asarray(model.err[y[use], x[use]], np.float64), ra=ra[use], dec=dec[use],
                        dwave=np.asarray(dwave[use], np.float64) if drizzle else None,
                        corners=tuple(c[use] for c in corners) if drizzle else None, dmax=dmax,
                        slice_no=slice_no[use])
    return pix, sky

