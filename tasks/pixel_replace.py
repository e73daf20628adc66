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

jwst's ``fit_profile`` and ``trace_model`` algorithms are not implemented
here: asking for them is a parameter error.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from ..errors import ParameterError, UnsupportedModeError
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
        if self.algorithm != "mingrad":
            raise ParameterError(
                f"step pixel_replace: algorithm {self.algorithm!r} is not implemented here; use 'mingrad'"
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


def _replace_in(model) -> int:
    """mingrad on each 2-D plane of one model (slit, image, IFU image, cube or 3-D slit)."""
    present = {n: (getattr(model, n) if model.has(n) else None) for n in _CORRECTED}
    if present["data"] is None:
        raise UnsupportedModeError(f"pixel_replace: {model.meta.filename or type(model).__name__} has no SCI array")
    dq = model.dq  # made (zeros) when absent
    if model.data.ndim == 2:
        return mingrad(present, dq)
    total = 0
    for i in range(model.data.shape[0]):
        planes = {n: (a[i] if a is not None else None) for n, a in present.items()}  # views: updated in place
        total += mingrad(planes, dq[i])
    return total


@step("pixel_replace", "PixelReplaceStep", params=PixelReplaceParams, suffix="pixel_replace", input_class="DataModel")
def pixel_replace(model, refs, params: PixelReplaceParams):
    """Estimate bad pixels of 2-D spectra from their neighbours (minimum-gradient interpolation)."""
    from ..models import CubeModel, IFUImageModel, ImageModel, MultiSlitModel, SlitModel

    if isinstance(model, MultiSlitModel):
        for i, slit in enumerate(model.slits):
            n = _replace_in(slit)
            log.info("Slit %d (%s): %d pixels replaced", i, slit.name, n)
        return model
    if not isinstance(model, (SlitModel, ImageModel, IFUImageModel, CubeModel)):
        raise UnsupportedModeError(f"pixel_replace has no algorithm for a {type(model).__name__}")
    n = _replace_in(model)
    log.info("%s: %d pixels replaced", model.meta.filename or type(model).__name__, n)
    return model
