"""dark_current: subtract the dark reference from every group.

jwst's DarkCurrentStep (stcal's dark_sub), on our models:

- NIR darks are 3-D (frames, ny, nx) with a 2-D DQ; MIRI darks
  (``DarkMIRIModel``) are 4-D (nints, frames, ny, nx), one dark per
  integration, the last one used for later integrations.
- A dark taken with NFRAMES=1, GROUPGAP=0 is averaged to the science
  readout: group g is the mean of dark frames [g*(NFRAMES+GROUPGAP),
  g*(NFRAMES+GROUPGAP)+NFRAMES).  When the science ramp is longer than the
  dark, the dark is first extrapolated from the slope of its last two frames.
- A dark with more frames per group, or a larger gap, than the science data
  cannot be matched: the step is SKIPPED.
- NaN dark values count as 0; the dark DQ (ORed over integrations for MIRI)
  is ORed into PIXELDQ.
- ``average_dark_current`` (e-/s) for the ramp's Poisson noise comes from the
  parameter, else the reference's AVDRKCUR array (only if the ramp already
  has one of that shape, as in jwst 3.0), else its AVDRKCUR keyword.
- ``dark_output`` saves the dark as it was subtracted (averaged or not).

A dark that is larger than a subarray exposure is cut to it (jwst 3.0 would
stop with a shape error instead).
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
from pydantic import Field

from .. import models
from ._convert import as_ramp, integration_offset, integration_total
from ._subarray import ref_region
from .base import StepParams, step

log = logging.getLogger("webbflow.steps")


class DarkCurrentParams(StepParams):
    dark_output: str | None = Field(
        None, description="file in which to save the dark (frame-averaged to the science readout) that was subtracted"
    )
    average_dark_current: float | None = Field(
        None, description="average dark current for this detector in e-/s; overrides the reference's value"
    )


class _Dark:
    """The dark arrays being matched to the science readout."""

    def __init__(self, data, dq, nframes, ngroups, groupgap):
        self.data = data
        self.dq = dq
        self.nframes = nframes
        self.ngroups = ngroups
        self.groupgap = groupgap


def _extrapolate(dark: _Dark, ngroups: int) -> None:
    """Append ``ngroups`` frames continuing the slope of the last two (jwst's extrapolate_dark)."""

    def one(arr):
        rate = arr[-1] - arr[-2]
        steps = np.arange(1, ngroups + 1).reshape(-1, 1, 1)
        return np.concatenate((arr, steps * rate + arr[-1]))

    if dark.data.ndim == 4:
        dark.data = np.stack([one(dark.data[i]) for i in range(dark.data.shape[0])])
    else:
        dark.data = one(dark.data)
    dark.ngroups += ngroups


def _average_frames(frames: np.ndarray, ngroups: int, nframes: int, groupgap: int) -> np.ndarray:
    """Average dark frames (..., nframes_total, ny, nx) into science groups (..., ngroups, ny, nx)."""
    lead = frames.shape[:-3]
    out = np.zeros(lead + (ngroups,) + frames.shape[-2:], dtype=np.float32)
    start = 0
    for g in range(ngroups):
        end = start + nframes
        if nframes == 1:
            out[..., g, :, :] = frames[..., start, :, :]
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
                warnings.filterwarnings("ignore", "invalid value", RuntimeWarning)
                out[..., g, :, :] = frames[..., start:end, :, :].mean(axis=-3)
        start = end + groupgap
    return out


def set_average_dark_current(ramp, dark_ref, value: float | None) -> None:
    """Set the ramp's AVDRKCUR array (e-/s), used by ramp_fit for the dark current's Poisson noise.

    From, in order: the ``average_dark_current`` parameter; the reference's
    AVDRKCUR array, if it is not all zero; its AVDRKCUR keyword (0 if absent).
    As in jwst 3.0, the reference array is taken only when the ramp already
    holds an AVDRKCUR array of the same shape (a ramp without one keeps none,
    with a warning).
    """
    shape = ramp.data.shape[-2:]
    if value is not None:
        ramp.average_dark_current = np.zeros(shape, np.float32) + value
        log.info("Using Poisson noise from average dark current %s e-/sec", value)
        return
    ref_arr = dark_ref.average_dark_current if dark_ref.has("average_dark_current") else None
    if ref_arr is None or np.sum(ref_arr) == 0.0:
        scalar = dark_ref.meta.exposure.average_dark_current
        ramp.average_dark_current = np.zeros(shape, np.float32) + (0.0 if scalar is None else scalar)
        return
    current = ramp.average_dark_current if ramp.has("average_dark_current") else None
    if np.shape(current) != np.shape(ref_arr):
        log.warning("The dark reference's AVDRKCUR array does not match the data's; it is not applied")
        return
    ramp.average_dark_current = np.array(ref_arr)


def subtract_dark(ramp, dark_ref, keep_dark: bool = True):
    """Match the dark to the science readout and subtract it, in place.

    Returns ``(ramp, status, subtracted_dark)`` with status COMPLETE or
    SKIPPED; the reference model is not modified.  With ``keep_dark=False``
    and a dark already on the science readout, no NaN-free copy of the dark
    is made: it is subtracted group by group (same values), and the third
    item is None.
    """
    exp = ramp.meta.exposure
    sci_nints, sci_ngroups = ramp.data.shape[:2]
    sci_nframes = exp.nframes or 1
    sci_gap = exp.groupgap or 0
    data, dq = ref_region(ramp, dark_ref, "data", "dq")
    dexp = dark_ref.meta.exposure
    d_ngroups = data.shape[-3]
    dark = _Dark(data, dq, dexp.nframes or 1, dexp.ngroups if dexp.ngroups is not None else d_ngroups, dexp.groupgap or 0)
    log.info("Science data nints=%d, ngroups=%d, nframes=%d, groupgap=%d", sci_nints, sci_ngroups, sci_nframes, sci_gap)
    log.info("Dark data nints=%d, ngroups=%d, nframes=%d, groupgap=%d",
             data.shape[0] if data.ndim == 4 else 1, d_ngroups, dark.nframes, dark.groupgap)
    sci_total = sci_ngroups * sci_nframes + (sci_ngroups - 1) * sci_gap
    drk_total = d_ngroups * dark.nframes + (d_ngroups - 1) * dark.groupgap
    if sci_total > drk_total:
        log.warning("Not enough frames in the dark reference; extrapolating it to the science ramp length")
        extra = int(np.ceil((sci_total - drk_total + dark.groupgap) / (dark.nframes + dark.groupgap)))
        _extrapolate(dark, extra)
    if dark.nframes > sci_nframes or dark.groupgap > sci_gap:
        log.warning("The dark's NFRAMES or GROUPGAP exceeds the science data's; dark not subtracted")
        return ramp, "SKIPPED", None
    same_readout = sci_nframes == dark.nframes and sci_gap == dark.groupgap
    offset = integration_offset(ramp)
    if not keep_dark and same_readout:
        _or_dark_dq(ramp, dark.dq)
        _subtract_by_group(ramp, dark.data, sci_nints, sci_ngroups, exp.integration_start, offset)
        return ramp, "COMPLETE", None
    nans = np.isnan(dark.data)
    if nans.any():
        dark.data = np.where(nans, dark.data.dtype.type(0), dark.data)
    if not same_readout:
        dark.data = _average_frames(dark.data, sci_ngroups, sci_nframes, sci_gap)
        total = integration_total(ramp)
        if dark.data.ndim == 4 and dark.data.shape[0] > total:
            # jwst averages only the integrations the science data has; the rest stay zero
            dark.data[total:] = 0.0
        dark.nframes, dark.ngroups, dark.groupgap = sci_nframes, sci_ngroups, sci_gap
    _or_dark_dq(ramp, dark.dq)
    # subtraction
    if dark.data.ndim == 4:
        int_start = 1 if exp.integration_start is None else exp.integration_start
        nd = dark.data.shape[0]
        for i in range(sci_nints):
            k = offset + i  # the integration's index in the whole exposure
            d = dark.data[k] if (k < nd and int_start == 1) else dark.data[-1]
            ramp.data[i] -= d[:sci_ngroups]
    else:
        ramp.data -= dark.data[np.newaxis, :sci_ngroups]
    return ramp, "COMPLETE", dark


def _or_dark_dq(ramp, ddq) -> None:
    """OR the dark's DQ (combined over integrations for MIRI) into PIXELDQ."""
    if ddq is None:
        return
    ddq = np.asarray(ddq)
    if ddq.ndim == 4:
        ddq = np.bitwise_or.reduce(ddq[:, 0], axis=0)
    ramp.pixeldq = np.bitwise_or(ramp.pixeldq, ddq)


def _subtract_by_group(ramp, dark, sci_nints: int, sci_ngroups: int, integration_start, offset: int = 0) -> None:
    """ramp.data -= dark (NaN counting as 0), one group plane at a time; the dark is not copied.

    A MIRI dark (4-D) gives integration i its i-th integration, or its last
    one beyond its end or for a segment not starting at integration 1, as
    the whole-array subtraction does.
    """
    int_start = 1 if integration_start is None else integration_start
    zero = dark.dtype.type(0)
    for i in range(sci_nints):
        if dark.ndim == 4:
            k = offset + i  # the integration's index in the whole exposure
            d = dark[k] if (k < dark.shape[0] and int_start == 1) else dark[-1]
        else:
            d = dark
        for g in range(sci_ngroups):
            plane = d[g]
            nan = np.isnan(plane)
            if nan.any():
                plane = np.where(nan, zero, plane)
            ramp.data[i, g] -= plane


def _save_dark(dark: _Dark, dark_ref, path: str, ramp) -> None:
    cls = models.DarkMIRIModel if dark.data.ndim == 4 else models.DarkModel
    out = cls(data=np.asarray(dark.data, dtype=np.float32))
    if dark.dq is not None:
        out.dq = np.asarray(dark.dq, dtype=np.uint32)
    out.meta = dark_ref.meta.model_copy(deep=True)
    out.meta.model_type = cls.__name__
    out.meta.exposure.nframes = dark.nframes
    out.meta.exposure.ngroups = dark.ngroups
    out.meta.exposure.groupgap = dark.groupgap
    if tuple(dark.data.shape[-2:]) != tuple(dark_ref.data.shape[-2:]):  # cut to the science subarray
        for k in ("name", "xstart", "ystart", "xsize", "ysize"):
            setattr(out.meta.subarray, k, getattr(ramp.meta.subarray, k))
    out.save(path)
    log.info("Saved the subtracted dark to %s", path)


@step(
    "dark_current",
    "DarkCurrentStep",
    params=DarkCurrentParams,
    reftypes=("dark",),
    suffix="dark_current",
    cal_step="dark_sub",
)
def dark_current(model, refs, params):
    """Subtract the (frame-averaged) dark; ``data``, ``pixeldq`` and ``average_dark_current`` updated in place."""
    ramp = as_ramp(model)
    dark_ref = refs["dark"]
    set_average_dark_current(ramp, dark_ref, params.average_dark_current)
    ramp, status, dark = subtract_dark(ramp, dark_ref, keep_dark=bool(params.dark_output))
    if dark is not None and params.dark_output:
        path = params.dark_output
        if params.output_dir and not os.path.isabs(path):
            path = os.path.join(params.output_dir, path)
        _save_dark(dark, dark_ref, path, ramp)
    return ramp, status


# the dark's ERR array is never read: the flows open the reference without it
from .base import STEPS as _STEPS  # noqa: E402

_STEPS["dark_current"].extra["reference_arrays"] = {"dark": ("data", "dq", "dq_def", "average_dark_current")}
