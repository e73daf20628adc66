"""NIRISS SOSS extraction (extract_1d), as jwst 3.0 does it: box sums, after ATOCA by default.

jwst's default for SOSS is ATOCA decontamination (``soss_atoca=true``, :mod:`._atoca`): the other
orders' modelled traces are subtracted from each order's box before the sums below.  With ATOCA
off and ``soss_bad_pix="masking"`` jwst models nothing: it sums each order's box aperture, column
by column.  The steps:

1. **Traces, from the ``pastasoss`` reference.**  For each order the reference trace (x, y at the
   commanded pupil wheel position PWCPOS_CMD) is rotated about the order's pivot by the
   exposure's PWCPOS minus PWCPOS_CMD, put back on the original columns (linear interpolation,
   extrapolated), and given wavelengths by the order's 2-D polynomial in the min-max scaled column
   and pupil-wheel offset.  x and y are then carried to the reference's wavelength grid
   (``wavemap_wlmin .. wavemap_wlmax``, linear inside, straight-line extrapolation outside), and
   cubic splines of that grid give the trace row and wavelength on every column up to the order's
   ``cutoff``.  SUBSTRIP96 traces sit 10 rows lower.
2. **Box weights.**  A box of ``soss_width`` rows centred on the trace row: whole pixels inside
   have weight 1, the two edge pixels their covered fraction.  On SUBSTRIP96 only orders 1 and 2
   are extracted, and order 2 takes every pixel (weight 1), as jwst does.
3. **Bad pixels.**  Pixels flagged DO_NOT_USE in every integration are masked; NaNs of one
   integration are filled from the median of the other integrations and a running median over 9
   integrations; pixels bad in all integrations and reference pixels get an infinite error and
   are masked, and so are pixels whose error is not positive.  With ``soss_bad_pix="model"`` (which
   runs ATOCA's models whatever ``soss_atoca`` says, as jwst does) the masked pixels an order's
   trace model covers take the model's value instead (:func:`model_bad_pixels`).
4. **Background** (``subtract_background=true``; jwst's default, None, leaves it): in each
   integration, the pixels brighter than the percentile that leaves out 40 rows per order
   (:func:`trace_mask`) and the masked pixels are set aside, and each column's mean of the rest,
   sigma-clipped at 3 sigma, is subtracted from the column (:func:`column_background`), before
   ATOCA and the box sums; it is the BACKGROUND column.  ATOCA's typical integration gets its own.
5. **Sums** per column: FLUX = sum(w * data), FLUX_ERROR = sqrt(sum(w * err**2)), NPIXELS =
   sum(w), over the unmasked pixels (NaN where no weight remains); BACKGROUND is 0 unless
   subtracted.  Every integration is summed in one array operation.

The product is a TSOMultiSpecModel with one spectrum per order (SPORDER), in DN/s, each row an
integration; the other columns are zero, as in jwst's.  ATOCA's side products, as jwst names
them: ``soss_modelname`` gives ``<output_dir>/<its root>_SossExtractModel.fits`` (each order's
trace model and box weights per integration) and ``..._AtocaSpectra.fits`` (a MultiSpecModel of
each integration's ATOCA spectra); ``soss_wave_grid_out`` the SossWaveGridModel file of the
grid, which ``soss_wave_grid_in`` reads back; ``soss_estimate`` reads a SpecModel.  photom then calibrates it (spec2 runs
photom after extract_1d for SOSS).  The trace wavemaps (not needed for a box) are not computed.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from ...errors import ReferenceFileError, UnsupportedModeError
from ...models import dqflags

log = logging.getLogger("webbflow.steps.extract_1d")

SUBSTRIP256_LIKE = ("SUBSTRIP256", "SUB17STRIPE_SOSS", "SUB60STRIPE_SOSS", "SUB204STRIPE_SOSS")
REFERENCE_PIXEL = 2**31
NINTERP = 9  # integrations in the running median that fills one integration's bad pixels


# ---------------------------------------------------------------------------
# the pastasoss reference: traces and wavelengths


def _tree(ref) -> dict:
    tree = getattr(ref, "_asdf_extra", None)
    if tree is None and isinstance(ref, dict):
        tree = ref
    if not tree or "traces" not in tree or "wavecal_models" not in tree:
        name = getattr(getattr(ref, "meta", None), "filename", None) or "<in memory>"
        raise ReferenceFileError("pastasoss", name, "has no traces/wavecal_models (not a PASTASOSS reference)")
    return tree


META_KEYS = ("pwcpos_cmd", "pwcpos_bounds", "wavemap_wlmin", "wavemap_wlmax", "wavemap_nwl", "order2_separation_cutoff")


def _meta(ref, tree) -> dict:
    """The reference's ``meta`` entries the traces need (from a tree, or a model's metadata)."""
    m = tree.get("meta")
    if isinstance(m, dict):
        return m
    meta = getattr(ref, "meta", None)
    return {k: getattr(meta, k, None) for k in META_KEYS}


def _order_index(tree, order: int) -> int:
    for i, t in enumerate(tree["traces"]):
        if int(t["spectral_order"]) == order:
            return i
    raise ReferenceFileError("pastasoss", "<pastasoss>", f"has no trace for order {order}")


def reference_orders(ref) -> list[int]:
    return [int(t["spectral_order"]) for t in _tree(ref)["traces"]]


def poly2d(coefficients, xs, ys):
    """The reference's 2-D polynomial: coefficients ordered C00, C10, C01, C20, C11, C02, C30, ..."""
    c = np.asarray(coefficients, dtype=np.float64)
    degree = int(np.sqrt(2 * len(c))) - 1
    out = np.zeros(np.broadcast(xs, ys).shape)
    k = 0
    for total in range(degree + 1):
        for j in range(total + 1):
            out = out + c[k] * xs ** (total - j) * ys**j
            k += 1
    return out


def _astropy_poly2d(coefficients):
    """The reference's polynomial as an astropy Polynomial2D (evaluated in astropy's order of operations)."""
    from astropy.modeling.polynomial import Polynomial2D

    c = np.asarray(coefficients, dtype=np.float64)
    degree = int(np.sqrt(2 * len(c))) - 1
    poly = Polynomial2D(degree=degree)
    for name in poly.param_names:
        i, j = (int(n) for n in name.strip("c").split("_"))
        setattr(poly, name, c[(i + j) * (i + j + 1) // 2 + j])
    return poly


def _to_wavegrid(grid, wavelength, quantity):
    """``quantity`` (known at ``wavelength``) on ``grid``: linear inside, the end slopes outside."""
    i = np.argsort(wavelength)
    w, q = wavelength[i], quantity[i]
    right = grid > w[-1]
    left = grid < w[0]
    slope_right = (q[-1] - q[-2]) / (w[-1] - w[-2])  # the slopes first: jwst's rounding
    slope_left = (q[1] - q[0]) / (w[1] - w[0])
    q_right = q[-1] + (grid[right] - w[-1]) * slope_right
    q_left = q[0] + (grid[left] - w[0]) * slope_left
    return np.interp(grid, np.concatenate((grid[left], w, grid[right])), np.concatenate((q_left, q, q_right)))


def spectrace(ref, pwcpos: float, order: int, subarray: str) -> np.ndarray:
    """(3, nwl): the order's trace x, y and the wavelength grid, at pupil wheel position ``pwcpos``."""
    from scipy.interpolate import interp1d

    tree = _tree(ref)
    meta = _meta(ref, tree)
    bounds = meta.get("pwcpos_bounds")
    if bounds is None or len(bounds) != 2 or not (bounds[0] <= pwcpos <= bounds[1]):
        raise UnsupportedModeError(f"extract_1d: PWC position {pwcpos} is outside the pastasoss bounds ({bounds})")
    i = _order_index(tree, order)
    tr = tree["traces"][i]
    x, y = np.array(tr["trace"], dtype=np.float64).T.copy()
    if subarray == "SUBSTRIP96":
        y -= 10
    angle = np.radians(pwcpos - float(meta["pwcpos_cmd"]))
    c, s = np.cos(angle), np.sin(angle)
    # the rotation as one matrix product about the pivot, so that the traces (and ATOCA's wavelength
    # grids built on them) round exactly as jwst's do
    pivot = np.atleast_2d((float(tr["pivot_x"]), float(tr["pivot_y"]))).T
    xr, yr = np.array([[c, -s], [s, c]]) @ (np.vstack([x, y]) - pivot) + pivot
    yr = interp1d(xr, yr, fill_value="extrapolate")(x)
    keep = yr <= 255.0
    x, yr = x[keep], yr[keep]
    wc = tree["wavecal_models"][i]
    ext = np.asarray(wc["scale_extents"], dtype=np.float64)
    xs = (x - ext[0][0]) / (ext[1][0] - ext[0][0])
    off = np.ones_like(x) * (pwcpos - float(meta["pwcpos_cmd"]))
    os_ = (off - ext[0][1]) / (ext[1][1] - ext[0][1])
    wl = _astropy_poly2d(wc["coefficients"])(xs, os_)
    grid = np.linspace(meta["wavemap_wlmin"], meta["wavemap_wlmax"], int(meta["wavemap_nwl"]))
    return np.array([_to_wavegrid(grid, wl, x), _to_wavegrid(grid, wl, yr), grid])


def order_trace(trace: np.ndarray, cutoff: int):
    """(columns 0..cutoff-1, trace row, wavelength) on each column, from cubic splines of ``trace``."""
    from scipy.interpolate import CubicSpline

    if trace[0][0] - trace[0][1] > 0:
        trace = np.flip(trace, axis=1)
    cols = np.arange(cutoff)
    return cols, CubicSpline(trace[0], trace[1])(cols), CubicSpline(trace[0], trace[2])(cols)


def box_weights(centre, width: float, shape, cols) -> np.ndarray:
    """Weights of a ``width``-row box centred on ``centre`` (one row per column in ``cols``)."""
    nrows = shape[0]
    rows = np.indices((nrows, len(cols)))[0]
    top, bottom = centre + width / 2, centre - width / 2
    w = ((rows <= top - 0.5) & (bottom + 0.5 <= rows)).astype(float)
    upper = (top - 0.5 < rows) & (rows < top + 0.5)
    w[upper] = (top - (rows - 0.5))[upper]
    lower = (rows < bottom + 0.5) & (bottom - 0.5 < rows)
    w[lower] = (rows + 0.5 - bottom)[lower]
    out = np.zeros(shape, dtype=float)
    out[:, cols] = w
    return out


# ---------------------------------------------------------------------------
# bad pixels


def fill_bad(data, err, refmask):
    """(data with each integration's NaNs filled, median error per pixel), as jwst fills them."""
    from scipy import ndimage

    allbad = np.sum(np.isfinite(err) & np.isfinite(data), axis=0) == 0
    filled = data.copy()
    tmp = data.copy()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        mederr = np.nanmedian(err, axis=0)
        meddata = np.nanmedian(filled, axis=0)
    mederr[allbad] = np.inf
    mederr[refmask] = np.inf
    meddata[allbad] = 0
    bad = ~np.isfinite(filled)
    if bad.any():
        for i in range(filled.shape[0]):
            tmp[i][bad[i]] = meddata[bad[i]]
        med = ndimage.median_filter(tmp, min(filled.shape[0], NINTERP), axes=(0,))
        filled[bad] = med[bad]
    return filled, mederr


# ---------------------------------------------------------------------------
# the background (subtract_background=true)

BACKGROUND_TRACE_WIDTH = 40  # rows per order kept out of the background, whatever soss_width is


def trace_mask(image, width: int = BACKGROUND_TRACE_WIDTH):
    """The pixels holding the traces' light: brighter than the image's percentile that leaves out
    ``width`` rows per order (two orders on SUBSTRIP256, one on SUBSTRIP96), or not finite."""
    nrows = image.shape[0]
    if nrows == 96:
        norders = 1
    elif nrows in (256, 2048):
        norders = 2
    else:
        raise UnsupportedModeError(f"extract_1d: the SOSS background needs 96, 256 or 2048 rows, not {nrows}")
    cut = np.nanpercentile(image, 100 * (1 - norders * width / nrows))
    with np.errstate(invalid="ignore"):
        return (image > cut) | ~np.isfinite(image)


def column_background(image, mask):
    """(image minus its background, the background): per column the mean of the pixels off the traces
    and not in ``mask``, sigma-clipped at 3 sigma about the mean until nothing changes; 0 in a column
    with no such pixel."""
    from astropy.stats import SigmaClip

    masked = np.ma.array(image, mask=mask | trace_mask(image))
    clipped = SigmaClip(sigma=3, maxiters=None, cenfunc="mean")(masked, axis=0)
    col = np.where(np.all(clipped.mask, axis=0), 0.0, clipped.mean(axis=0))
    return image - col, col


# ---------------------------------------------------------------------------
# the extraction


def _given(value) -> bool:
    return value not in (None, "", "None")


def models_wanted(params) -> bool:
    """Whether ATOCA's trace models are made: for the decontamination, or for soss_bad_pix="model"."""
    return bool(params.soss_atoca) or params.soss_bad_pix == "model"


def check_params(params) -> None:
    atoca = models_wanted(params)
    if _given(params.soss_wave_grid_out) and not atoca and not _given(params.soss_wave_grid_in):
        raise UnsupportedModeError("extract_1d: NIRISS SOSS soss_wave_grid_out needs the ATOCA wavelength grid "
                                   "(soss_atoca=true, or a soss_wave_grid_in)")
    if (atoca or _given(params.soss_wave_grid_out)) and _given(params.soss_wave_grid_in):
        read_wave_grid(params.soss_wave_grid_in)  # bad input files: refused before anything runs
    if atoca and _given(params.soss_estimate):
        read_estimate(params.soss_estimate)


def soss_subarray(model) -> str | None:
    name = (model.meta.subarray.name or "").upper()
    if name == "SUBSTRIP96":
        return "SUBSTRIP96"
    if name in SUBSTRIP256_LIKE:
        return "SUBSTRIP256"
    return None


def extract_soss(model, pastasoss, params, specprofile=None, speckernel=None):
    """The box-extracted spectra of a SOSS exposure: (TSOMultiSpecModel, status)."""
    from ...models.spectra import Spectrum, TSOMultiSpecModel, new_tso_spec_table
    from . import _is_tso, output_model, populate_times

    check_params(params)
    if (model.meta.instrument.filter or "").upper() != "CLEAR":
        log.error("The SOSS extraction is implemented for the CLEAR filter only (filter %s); extract_1d skipped",
                  model.meta.instrument.filter)
        return model, "SKIPPED"
    subarray = soss_subarray(model)
    if subarray is None:
        log.error("The SOSS extraction is implemented for SUBSTRIP256 and SUBSTRIP96 only (subarray %s); "
                  "extract_1d skipped", model.meta.subarray.name)
        return model, "SKIPPED"
    if pastasoss is None:
        raise UnsupportedModeError("extract_1d: NIRISS SOSS needs a pastasoss reference")
    tree = _tree(pastasoss)
    orders = [1, 2, 3] if (params.soss_order_3 and subarray != "SUBSTRIP96") else [1, 2]
    available = reference_orders(pastasoss)
    orders = [o for o in orders if o in available]
    if not orders:
        raise ReferenceFileError("pastasoss", pastasoss.meta.filename or "<pastasoss>", "has none of orders 1-3")
    pwcpos = model.meta.instrument.pupil_position
    if pwcpos is None:
        raise UnsupportedModeError(f"{model.meta.filename or 'the input'}: no PWCPOS (pupil wheel position)")

    cube = model.data.ndim == 3
    data = model.data if cube else model.data[None]
    err = model.err if cube else model.err[None]
    dq = model.dq if cube else model.dq[None]
    scimask = dead = np.all((dq & dqflags.DO_NOT_USE) != 0, axis=0)
    refmask = (dq[0] & REFERENCE_PIXEL) != 0
    filled, mederr = fill_bad(data, err, refmask)
    # jwst first runs a "typical" (mean) integration with the median error, whose infinite errors
    # (reference pixels, pixels bad in every integration) stay masked for all integrations
    scimask = scimask | ~np.isfinite(mederr)
    shape = data.shape[-2:]

    weights, waves, traces = {}, {}, {}
    for order in orders:
        i = _order_index(tree, order)
        trace = spectrace(pastasoss, float(pwcpos), order, subarray)
        cols, ytrace, wave = order_trace(trace, int(tree["traces"][i]["cutoff"]))
        weights[order] = box_weights(ytrace, params.soss_width, shape, cols)
        waves[order] = wave
        traces[order] = (trace, cols, wave)
    if subarray == "SUBSTRIP96" and 2 in weights:
        weights[2] = np.ones(shape)

    nints = data.shape[0]
    errs = err.astype(np.float64)
    bad = ~np.isfinite(data) | ~np.isfinite(errs)
    if bad.any():
        errs = errs.copy()
        errs[bad] = (np.broadcast_to(mederr, errs.shape) * 10)[bad]
    # per integration: the shared mask, which (as in jwst) keeps every pixel found not finite in this
    # or an earlier integration, and the pixels whose error is not positive
    seen = np.logical_or.accumulate(~np.isfinite(filled) | ~np.isfinite(errs), axis=0)
    masked = scimask[None] | seen | ~(errs > 0)
    background = np.zeros((nints, shape[1]))
    data_bkg = filled
    if params.subtract_background:  # each integration's column background, off its traces and masked pixels
        subtracted = [column_background(filled[i], masked[i]) for i in range(nints)]
        data_bkg = np.array([d for d, _ in subtracted])  # in the background's precision, as jwst's
        background = np.array([b for _, b in subtracted])
        log.info("SOSS background subtracted per column (median %.4g DN/s)", float(np.median(background)))
    tikfac, trace_models, grid, atoca = None, None, None, None
    wave_grid = read_wave_grid(params.soss_wave_grid_in) if _given(params.soss_wave_grid_in) else None
    # ATOCA: each order's box holds the data minus the other orders' models (jwst models the orders,
    # and so decontaminates them, whenever it needs the models, also for soss_bad_pix="model")
    if models_wanted(params):  # (ATOCA gets the pixels dead in every integration only: as in jwst, the
        # typical integration's infinite errors then move the reference pixels from its trace masks to its fit masks)
        estimate = read_estimate(params.soss_estimate) if _given(params.soss_estimate) else None
        trace_models, tikfac, grid, atoca = _atoca_models(
            filled, errs, mederr, dead, refmask, traces, weights, tree, pastasoss, specprofile, speckernel,
            params, subarray, wave_grid, estimate, _given(params.soss_modelname), data_bkg)
    elif wave_grid is not None:
        grid = wave_grid
    out = _primary_only(output_model(model, TSOMultiSpecModel))
    for order in orders:
        w = weights[order]
        region = w > 0
        source, order_errs, order_mask = data_bkg, errs, masked
        if trace_models is not None:
            source = data_bkg.astype(np.float64)
            for other, mdl in trace_models.items():
                if other != order:
                    source = source - np.where(np.isfinite(mdl), mdl, 0.0)
            if params.soss_bad_pix == "model" and order in trace_models:
                source, order_errs, order_mask = model_bad_pixels(source, errs, masked, trace_models[order], region)
        wm = np.where(order_mask, 0.0, w[None])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            d = np.where(region[None], source, np.nan)
            e2 = np.where(region[None], order_errs, np.nan) ** 2
            flux = np.nansum(wm * d, axis=1)
            npix = np.nansum(wm, axis=1)
            ferr = np.sqrt(np.nansum(wm * e2, axis=1))
        flux = np.where(npix > 0, flux, np.nan)
        ferr = np.where(npix > 0, ferr, np.nan)
        n = len(waves[order])
        table = new_tso_spec_table(nints, n)
        for c in table.dtype.names:  # jwst's SOSS spectra start from zeros, not the schema's fill values
            table[c] = 0
        table["WAVELENGTH"] = waves[order][None]
        table["FLUX"] = flux[:, :n]
        table["FLUX_ERROR"] = ferr[:, :n]
        table["NPIXELS"] = npix[:, :n]
        table["BACKGROUND"] = background[:, :n]
        table["N_ALONGDISP"] = n
        table["SEGMENT"] = model.meta.exposure.segment_number or 1
        table["INT_NUM"] = np.arange(1, nints + 1)
        for k in ("MJD-BEG", "MJD-AVG", "MJD-END", "TDB-BEG", "TDB-MID", "TDB-END"):
            table[k] = np.nan
        units = {"WAVELENGTH": "um", "FLUX": "DN/s", "FLUX_ERROR": "DN/s", "BACKGROUND": "DN/s"}
        for k in ("MJD-BEG", "MJD-AVG", "MJD-END", "TDB-BEG", "TDB-MID", "TDB-END"):
            units[k] = "d"
        out.spec.append(Spectrum(table, {"spectral_order": order}, units))
        log.info("SOSS order %d: box of %.1f rows over %d columns", order, params.soss_width, n)
    if _is_tso(model):  # each integration's times, and the INT_TIMES table, as for other time series
        populate_times(model, out)
        if model.has("int_times"):
            out.int_times = model.int_times.copy()
    from astropy.io import fits

    hdr = out._headers.setdefault("PRIMARY", fits.Header())
    hdr["SOSSWDTH"] = float(params.soss_width)
    if tikfac is not None:
        hdr["TIKFACTR"] = float(tikfac)
    hdr["OVERSAMP"] = int(params.soss_n_os)
    hdr["THRESHLD"] = float(params.soss_threshold)
    out.meta.target.source_type = None
    if _given(params.soss_modelname):
        write_model_products(model, params, weights, trace_models, atoca, nints)
    if _given(params.soss_wave_grid_out):
        from ...models import SossWaveGridModel

        from astropy.time import Time

        g = SossWaveGridModel(wavegrid=np.asarray(grid, dtype=np.float64))
        g.meta.date = Time.now().isot  # the file's creation time, as stdatamodels stamps a new model
        path = g.save(params.soss_wave_grid_out)
        log.info("Saved the ATOCA wavelength grid (%d points) to %s", len(grid), path)
    return out, "COMPLETE"


def model_bad_pixels(data, errs, masked, model, region):
    """``soss_bad_pix="model"``: the order's masked pixels that its trace model covers take the
    model's value, and the error of the nearest value among the box's valid pixels (the nearer of
    the two valid values around it, sorted by value), per integration, and are no longer masked."""
    modeled = np.isfinite(model)
    replace = masked & modeled
    data = np.where(replace, model, data)
    errs = errs.copy()
    for i in range(data.shape[0]):
        todo = region & replace[i]
        valid = region & ~masked[i]
        if not todo.any() or not valid.any():
            continue
        order = np.argsort(data[i][valid])
        vals, verr = data[i][valid][order], errs[i][valid][order]
        want = data[i][todo]
        hi = np.clip(np.searchsorted(vals, want), 0, vals.size - 1)
        lo = np.clip(hi - 1, 0, vals.size - 1)
        around = np.vstack([lo, hi])
        best = np.argmin(np.abs(vals[around] - want[None]), axis=0)
        errs[i][todo] = verr[around[best, np.arange(best.size)]]
    return data, errs, masked & ~modeled


def _primary_only(out):
    """``out`` without the exposure's non-primary keywords: jwst copies the primary-header metadata
    only (not the SCI keywords: MJD-BEG, XPOSURE...) into the SOSS products."""
    for path, _key, hdu, _ann in type(out).keyword_fields():
        if hdu != "PRIMARY":
            obj = out.meta
            for p in path[:-1]:
                obj = getattr(obj, p, None)
                if obj is None:
                    break
            if obj is not None and getattr(obj, path[-1], None) is not None:
                setattr(obj, path[-1], None)
    return out


# ---------------------------------------------------------------------------
# ATOCA's optional inputs and side products


def read_wave_grid(path) -> np.ndarray:
    """The wavelength grid of a ``soss_wave_grid_in`` file (a SossWaveGridModel)."""
    from ...errors import InputFileError
    from ...models import SossWaveGridModel
    from ...models import open as open_model

    m = open_model(str(path))
    if not isinstance(m, SossWaveGridModel):
        raise InputFileError(path, f"soss_wave_grid_in is a {type(m).__name__}, not a SossWaveGridModel")
    g = np.asarray(m.wavegrid, dtype=np.float64)
    if g.ndim != 1 or g.size < 2 or not np.all(np.isfinite(g)):
        raise InputFileError(path, "soss_wave_grid_in's WAVEGRID is not a finite 1-D grid of 2 or more wavelengths")
    return g


def read_estimate(path):
    """The flux estimate of a ``soss_estimate`` file (a SpecModel: its EXTRACT1D WAVELENGTH and FLUX),
    as the cubic interpolating spline jwst makes of it."""
    from astropy.io import fits

    from ...errors import InputFileError
    from ...models.io import check_readable
    from ._atoca import spline_estimate

    check_readable(Path(path))
    try:
        with fits.open(path) as h:
            kind = h[0].header.get("DATAMODL")
            tables = [x for x in h if x.name == "EXTRACT1D"]
            if kind != "SpecModel" or len(tables) != 1:
                raise InputFileError(path, f"soss_estimate is {kind or 'not a datamodel'} with {len(tables)} "
                                           f"EXTRACT1D tables, not a SpecModel")
            names = tables[0].columns.names
            if "WAVELENGTH" not in names or "FLUX" not in names:
                raise InputFileError(path, "soss_estimate's EXTRACT1D table has no WAVELENGTH or FLUX column")
            w = np.asarray(tables[0].data["WAVELENGTH"], dtype=np.float64)
            f = np.asarray(tables[0].data["FLUX"], dtype=np.float64)
    except OSError as exc:
        raise InputFileError(path, f"soss_estimate is not a readable FITS file ({exc})") from None
    ok = np.isfinite(f)
    if w.ndim != 1 or ok.sum() < 4 or not np.all(np.diff(w[ok]) > 0):
        raise InputFileError(path, "soss_estimate needs 4 or more finite fluxes at increasing wavelengths")
    return spline_estimate(w, f)


def model_product_path(model, params, suffix: str) -> str:
    """``<output_dir>/<soss_modelname's root>_<suffix>.fits``, as jwst names the soss_modelname products."""
    import os

    from ...models.naming import root_of

    folder = Path(params.output_dir or os.getcwd())
    return str(folder / f"{root_of(Path(str(params.soss_modelname)).name)}_{suffix}.fits")


def write_model_products(model, params, weights, trace_models, atoca, nints) -> None:
    """``soss_modelname``'s two products: the SossExtractModel (each order's trace model, NaN
    set to 0, and box weights, per integration) and the AtocaSpectra (a MultiSpecModel with each
    integration's ATOCA spectra on the orders' pixel grids: orders 1 and 2 of the joint fit, then
    order 2's blue end and order 3 fitted alone)."""
    from ...models import SossExtractModel
    from ...models.spectra import SPEC_COLUMNS, MultiSpecModel, Spectrum
    from . import output_model

    ref = _primary_only(output_model(model, SossExtractModel))
    for order, mdl in (trace_models or {}).items():
        setattr(ref, f"order{order}", np.where(np.isfinite(mdl), mdl, 0.0).astype(np.float32))
    for order, w in weights.items():
        setattr(ref, f"aperture{order}", np.repeat(np.asarray(w, dtype=np.float32)[None], nints, axis=0))
    spectra = _primary_only(output_model(model, MultiSpecModel))
    units = {"WAVELENGTH": "um", "FLUX": "DN/s", "FLUX_ERROR": "DN/s", "BACKGROUND": "DN/s"}
    for i, listed in enumerate(atoca or []):
        for order, wave, flux in listed:
            t = np.zeros(len(wave), dtype=[(c, d) for c, d in SPEC_COLUMNS])
            t["WAVELENGTH"], t["FLUX"] = wave, flux
            spectra.spec.append(Spectrum(t, {"spectral_order": order, "int_num": i + 1}, dict(units)))
    for product, suffix in ((ref, "SossExtractModel"), (spectra, "AtocaSpectra")):
        path = product.save(model_product_path(model, params, suffix))
        log.info("Saved %s", path)


# ---------------------------------------------------------------------------
# ATOCA (soss_atoca=true): the references' detector model of each order, then :mod:`._atoca`


def _profiles(specprofile, n_orders):
    """The ORDER images of the ``specprofile`` reference, in extension order."""
    hdus = [h for h in getattr(specprofile, "_extra_hdus", []) if h.name == "ORDER"]
    if len(hdus) < n_orders:
        name = getattr(getattr(specprofile, "meta", None), "filename", None) or "<specprofile>"
        raise ReferenceFileError("specprofile", name, f"has {len(hdus)} ORDER extensions, {n_orders} needed")
    return [np.asarray(h.data) for h in hdus]


def _crop_like(profile, shape):
    """The reference profile without its padding (centred crop), as jwst matches it to the wavemap."""
    p = profile
    d0, d1 = (p.shape[0] - shape[0]) // 2, (p.shape[1] - shape[1]) // 2
    if d0 > 0:
        p = p[d0:-d0, :]
    if d1 > 0:
        p = p[:, d1:-d1]
    return p


def _atoca_models(filled, errs, mederr, scimask, refmask, traces, weights, tree, pastasoss, specprofile,
                  speckernel, params, subarray, wave_grid=None, estimate=None, spectra=False, data_bkg=None):
    from . import _atoca as A
    from ._atoca_utils import SpectralKernel, Throughput

    if specprofile is None or speckernel is None:
        raise UnsupportedModeError("extract_1d: NIRISS SOSS ATOCA needs the specprofile and speckernel references")
    shape = filled.shape[-2:]
    profiles = _profiles(specprofile, len(tree["traces"]))
    kw = np.asarray(speckernel.wavelengths)
    kk = np.asarray(speckernel.kernels)
    hw = None
    for h in getattr(speckernel, "_headers", {}).values():
        if "HALFWIDT" in h:
            hw = int(h["HALFWIDT"])
    if hw is None:
        raise ReferenceFileError("speckernel", getattr(speckernel.meta, "filename", None) or "<speckernel>",
                                 "has no HALFWIDT")
    nrows = shape[0]
    oms = {}
    for order, (trace, cols, wave) in traces.items():
        i = _order_index(tree, order)
        wavemap = A.wavemap_2d(trace, nrows, shape[1])
        prof = np.array(_crop_like(profiles[i], shape))
        thr = tree["throughputs"][i]
        centre = np.zeros(shape[1])
        centre[cols] = wave
        centre[~np.isfinite(centre)] = 0.0
        kernel = SpectralKernel(kw, kk, centre, 2 * hw + 1)
        oms[order] = A.OrderModel(order, wavemap, prof, Throughput(np.asarray(thr["wavelength"]),
                                                                   np.asarray(thr["throughput"])),
                                  kernel, np.asarray(cols), np.asarray(wave))
    cut = _meta(pastasoss, tree).get("order2_separation_cutoff") or A.ORDER2_CUTOFF
    box = {o: weights[o] for o in traces}
    models, tikfac, _masks, grid, atoca = A.atoca_models(filled, errs, mederr, scimask, refmask, oms, box, params,
                                                         subarray, tuple(cut), wave_grid=wave_grid,
                                                         estimate=estimate, spectra=spectra, data=data_bkg,
                                                         background=column_background if params.subtract_background
                                                         else None)
    return models, tikfac, grid, atoca
