"""pixel_replace: estimate the flux of bad pixels in 2-D spectra before extraction (jwst's PixelReplaceStep).

Off by default (``skip=True``), as in jwst.  The ``mingrad`` algorithm (jwst's
default) works on each 2-D spectrum: a slit, each slit of a MultiSlitModel,
an image or IFU image, or each integration of a cube.

For every non-finite pixel that is at least two pixels inside the array,
the absolute differences between its two horizontal and its two vertical
neighbours are compared; the direction with the smaller one (horizontal on
a tie; a direction with a NaN neighbour is not used) gives the estimate:
the mean of the two neighbours for SCI and ERR, the square of the mean of
their square roots for the variances.  Replaced pixels get DQ
FLUX_ESTIMATED and lose DO_NOT_USE unless they are NON_SCIENCE.  A pixel
with no usable direction stays as it is.

``fit_profile`` works on each cross-dispersion profile (a column when the
dispersion runs along x) that has DO_NOT_USE pixels, within the rows and
columns that hold any usable pixel: the profiles of up to
``n_adjacent_cols`` usable neighbours on each side, with their bad pixels
masked, are each normalised to their peak (not when no pixel reaches S/N
5), their median is the template, and the template is scaled to the
profile's good pixels (a Nelder-Mead least-squares fit, as in jwst).  Bad,
science pixels get the scaled template and FLUX_ESTIMATED (DO_NOT_USE
toggled off); ERR and the variances get the scaled median of the
neighbours' normalised errors.  IFU images (slice by slice in jwst) are not
supported with it here.

jwst's ``trace_model`` algorithm (which needs adaptive_trace_model) is not
implemented here: asking for it is a parameter error.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from ..errors import ParameterError, UnsupportedModeError, a_an
from ..models import dqflags
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.pixel_replace")

_CORRECTED = ("data", "err", "var_poisson", "var_rnoise", "var_flat")


class PixelReplaceParams(StepParams):
    skip: bool = True  # jwst runs this step only when asked
    algorithm: Literal["fit_profile", "mingrad", "trace_model"] = "mingrad"  # replacement algorithm
    n_adjacent_cols: int = 3  # adjacent columns for fit_profile's profile (not implemented here)
    output_use_model: bool = True  # use the input file names in the output models

    def model_post_init(self, _ctx) -> None:
        if self.algorithm == "trace_model":
            raise ParameterError(
                f"step pixel_replace: algorithm {self.algorithm!r} is not implemented here; use 'mingrad' or 'fit_profile'"
            )


def mingrad(planes: dict[str, np.ndarray | None], dq: np.ndarray) -> int:
    """Replace the non-finite pixels of one 2-D spectrum in place; returns how many were replaced.

    ``planes`` maps ``data`` (required), ``err`` and the variances to 2-D arrays (or None).
    """
    data = planes["data"]
    ny, nx = data.shape
    inner = np.zeros(data.shape, dtype=bool)
    inner[2 : ny - 1, 2 : nx - 1] = True  # jwst's margin: two pixels at the start, one at the end
    y, x = np.nonzero(~np.isfinite(data) & inner)
    if y.size == 0:
        return 0
    grad = np.stack([np.abs(data[y, x - 1] - data[y, x + 1]), np.abs(data[y - 1, x] - data[y + 1, x])])
    grad = np.where(np.isnan(grad), np.inf, grad)
    usable = np.isfinite(grad).any(axis=0)
    vertical = np.argmin(grad, axis=0).astype(bool)
    y, x, vertical = y[usable], x[usable], vertical[usable]
    # neighbour pairs along the chosen direction
    ya, xa = np.where(vertical, y - 1, y), np.where(vertical, x, x - 1)
    yb, xb = np.where(vertical, y + 1, y), np.where(vertical, x, x + 1)
    estimates = {}
    for name, arr in planes.items():
        if arr is None:
            continue
        if name.startswith("var"):
            estimates[name] = ((np.sqrt(arr[ya, xa]) + np.sqrt(arr[yb, xb])) / 2.0) ** 2
        else:
            estimates[name] = (arr[ya, xa] + arr[yb, xb]) / 2.0
    for name, values in estimates.items():
        planes[name][y, x] = values
    flags = dq[y, x]
    clear = ((flags & dqflags.DO_NOT_USE) != 0) & ((flags & dqflags.NON_SCIENCE) == 0)
    dq[y[clear], x[clear]] -= np.uint32(dqflags.DO_NOT_USE)
    dq[y, x] |= np.uint32(dqflags.FLUX_ESTIMATED)
    return int(y.size)


def _profile_mse(scale, template, profile):
    """Mean squared difference between a profile and a scaled template (NaN template points ignored)."""
    return np.nansum((profile - template * scale) ** 2) / (len(template) - np.count_nonzero(np.isnan(profile)))


def fit_profile(planes: dict[str, np.ndarray | None], dq: np.ndarray, dispaxis: int, n_adjacent: int = 3) -> int:
    """Replace DO_NOT_USE pixels of one 2-D spectrum from its neighbouring profiles, in place; returns how many."""
    import warnings

    from scipy.optimize import minimize

    dnu, nonsci, estimated = np.uint32(dqflags.DO_NOT_USE), np.uint32(dqflags.NON_SCIENCE), np.uint32(dqflags.FLUX_ESTIMATED)
    # work with profiles as columns: transpose (views) when the dispersion runs along y
    view = (lambda a: a.T) if dispaxis == 2 else (lambda a: a)
    data, err, dqv = view(planes["data"]), view(planes["err"]), view(dq)
    variances = {n: view(planes[n]) for n in ("var_poisson", "var_rnoise", "var_flat") if planes.get(n) is not None}
    dq_in = dqv.copy()
    rows, cols = np.nonzero((dq_in & dnu) == 0)
    if rows.size == 0:
        log.warning("No usable pixels: no pixel replaced")
        return 0
    r0, r1 = int(rows.min()), int(rows.max()) + 1
    valid, to_fix = set(), []
    for c in range(int(cols.min()), int(cols.max()) + 1):
        column = dq_in[r0:r1, c]
        ns = (column & nonsci) != 0
        n_bad = int(np.count_nonzero(((column & dnu) != 0) & ~ns))
        if n_bad + int(np.count_nonzero(ns)) == column.size:
            continue  # nothing usable in this profile
        valid.add(c)
        if n_bad:
            to_fix.append(c)
    before = int(np.count_nonzero(dq_in & estimated))
    for c in to_fix:
        neighbours = sorted(valid.intersection(range(c - n_adjacent, c + n_adjacent + 1)) - {c})
        if not neighbours:
            continue
        masked = (dq_in[:, neighbours] & dnu) != 0
        prof = data[:, neighbours].astype(data.dtype, copy=True)
        prof_err = err[:, neighbours].astype(err.dtype, copy=True)
        prof[masked] = np.nan
        prof_err[masked] = np.nan
        prof = prof[r0:r1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            snr = np.abs(prof / prof_err[r0:r1])
            peak = np.nanmax(np.abs(prof), axis=0, keepdims=True)
            if np.nanmax(snr) < 5:
                peak[:] = 1.0  # do not normalise to noise
            template = np.nanmedian(prof / peak, axis=1)
            err_templates = {}
            for name, arr in (("err", err), *variances.items()):
                e = arr[:, neighbours] if name == "err" else np.sqrt(arr[:, neighbours])  # fancy indexing: copies
                e[masked] = np.nan
                err_templates[name] = np.nanmedian(e[r0:r1] / peak, axis=1)
        current = np.where((dq_in[:, c] & dnu) != 0, np.nan, data[:, c])[r0:r1]
        good = np.nonzero(~np.isnan(current))[0]
        if good.size == 0:
            continue
        g_template, g_current = template[good], current[good]
        g_norm = g_current / np.max(g_current)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fit = (np.nanmedian(peak) != 1.0) & (np.nanmax(np.abs(g_template)) < 1e20) & (np.nanmax(np.abs(g_norm)) < 1e20)
            if fit:
                norm_scale = minimize(_profile_mse, x0=np.abs(np.nanmax(g_norm)), args=(np.abs(g_template), np.abs(g_norm)),
                                      method="Nelder-Mead").x
                scale = np.max(g_current)
            else:
                norm_scale, scale = 1.0, 1.0
        flags = dq_in[r0:r1, c]
        replace = ((flags & dnu) ^ (flags & nonsci)) == 1  # DO_NOT_USE and not NON_SCIENCE
        new = np.where(replace, template * norm_scale * scale, current)
        data[r0:r1, c] = new
        dqv[r0:r1, c] = np.where(replace & ~np.isnan(new), flags ^ dnu ^ estimated, flags)
        err[r0:r1, c] = np.where(replace, err_templates["err"] * norm_scale * scale, err[r0:r1, c])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for name, arr in variances.items():
                arr[r0:r1, c] = np.where(replace, (err_templates[name] * norm_scale * scale) ** 2, arr[r0:r1, c])
    return max(0, int(np.count_nonzero(dqv & estimated)) - before)


def _replace_in(model, params: PixelReplaceParams | None = None, dispaxis: int | None = None) -> int:
    """The chosen algorithm on each 2-D plane of one model (slit, image, IFU image, cube or 3-D slit).

    ``dispaxis``: the dispersion direction when the model has none of its own (a slit of a MultiSlitModel).
    """
    params = params or PixelReplaceParams(skip=False)
    if params.algorithm == "fit_profile":
        dispaxis = model.meta.wcsinfo.dispersion_direction or dispaxis
        if dispaxis not in (1, 2):
            raise UnsupportedModeError(
                f"pixel_replace: {model.meta.filename or type(model).__name__} has no dispersion direction (DISPAXIS) for fit_profile"
            )

        def algorithm(planes, dq):
            return fit_profile(planes, dq, dispaxis, params.n_adjacent_cols)
    else:
        algorithm = mingrad
    present = {n: (getattr(model, n) if model.has(n) else None) for n in _CORRECTED}
    if present["data"] is None:
        raise UnsupportedModeError(f"pixel_replace: {model.meta.filename or type(model).__name__} has no SCI array")
    dq = model.dq  # made (zeros) when absent
    if present["err"] is None:
        present["err"] = model.err
    if model.data.ndim == 2:
        return algorithm(present, dq)
    total = 0
    for i in range(model.data.shape[0]):
        planes = {n: (a[i] if a is not None else None) for n, a in present.items()}  # views: updated in place
        total += algorithm(planes, dq[i])
    return total


@step("pixel_replace", "PixelReplaceStep", params=PixelReplaceParams, suffix="pixel_replace", input_class="DataModel")
def pixel_replace(model, refs, params: PixelReplaceParams):
    """Estimate bad pixels of 2-D spectra from their neighbours (minimum-gradient interpolation)."""
    from ..models import CubeModel, IFUImageModel, ImageModel, MultiSlitModel, SlitModel

    if isinstance(model, IFUImageModel) and params.algorithm == "fit_profile":
        raise UnsupportedModeError("pixel_replace: fit_profile on IFU images (slice by slice) is not implemented here; use mingrad")
    if isinstance(model, MultiSlitModel):
        for i, slit in enumerate(model.slits):
            n = _replace_in(slit, params, model.meta.wcsinfo.dispersion_direction)
            log.info("Slit %d (%s): %d pixels replaced", i, slit.name, n)
        return model
    if not isinstance(model, (SlitModel, ImageModel, IFUImageModel, CubeModel)):
        raise UnsupportedModeError(f"pixel_replace has no algorithm for {a_an(type(model).__name__)}")
    n = _replace_in(model, params)
    log.info("%s: %d pixels replaced", model.meta.filename or type(model).__name__, n)
    return model
