"""ramp_fit: fit each pixel's ramp to a count rate (jwst's RampFitStep).

Products, as jwst makes them:

- the **rate** (ImageModel): the slope over all integrations in DN/s, with DQ,
  ERR and the Poisson and read-noise variances;
- the **rateints** (CubeModel): one slope per integration, with INT_TIMES;
- on ``save_opt``, the **fitopt** product (RampFitOutputModel: per-segment
  slopes, intercepts, weights, pedestal and cosmic-ray magnitudes), written
  beside the step's output as ``<root>_fitopt.fits`` (or ``opt_name``), as
  jwst's step writes it.

The fit is stcal's: ordinary least squares with optimal weighting between
jumps (``OLS_C``, jwst 3.0's default, stcal's C fitter) or the likelihood
fitter (``LIKELY``, needs at least 4 groups).  The science is
:func:`fit_ramps`, a function of arrays and a few exposure numbers, so that
a faster kernel can replace stcal's without changing the step.
``maximum_cores`` is accepted but the step always runs on one core
(DESIGN.md section 7).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field

from .. import models
from ..models import dqflags
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.ramp_fit")

LIKELY_MIN_NGROUPS = 4  # stcal.ramp_fitting.likely_fit.LIKELY_MIN_NGROUPS


class RampFitParams(StepParams):
    algorithm: Literal["OLS_C", "LIKELY"] = Field("OLS_C", description="ramp fitting algorithm")
    int_name: str = Field("", description="jwst compatibility: name of the rateints product (unused by jwst 3.0)")
    save_opt: bool = Field(False, description="write the optional fit results (fitopt product)")
    opt_name: str = Field("", description="file name for the optional fit results")
    suppress_one_group: bool = Field(True, description="treat ramps whose only good group is the 0th as having none")
    firstgroup: int | None = Field(None, description="ignore groups before this one (0-based)")
    lastgroup: int | None = Field(None, description="ignore groups after this one (0-based)")
    maximum_cores: str = Field("1", description="accepted for jwst compatibility; the step runs on one core")


@dataclass
class RampFitResult:
    """stcal's output dictionaries: ``image`` (rate), ``integ`` (rateints), ``opt`` (optional results)."""

    image: dict | None
    integ: dict | None
    opt: dict | None = None
    algorithm: str = "OLS_C"
    extras: dict = field(default_factory=dict)


def _stcal_flags() -> dict[str, int]:
    return dict(dqflags.PIXEL)


def set_group_limits(groupdq: np.ndarray, firstgroup: int | None, lastgroup: int | None) -> None:
    """Flag groups before ``firstgroup`` and after ``lastgroup`` DO_NOT_USE, in place (jwst's rules)."""
    ngroups = groupdq.shape[1]
    first = 0 if firstgroup is None else firstgroup
    last = ngroups - 1 if lastgroup is None else lastgroup
    if first < 0:
        log.warning("first group < 0, reset to 0")
        first = 0
    if last >= ngroups:
        log.warning("Last group number >= #groups (%d), reset to %d", ngroups, ngroups - 1)
    if first >= last:
        log.warning("firstgroup (%d) cannot be >= lastgroup (%d); group selectors ignored", first, last)
        first, last = 0, ngroups - 1
    dnu = np.uint8(dqflags.DO_NOT_USE)
    if first > 0:
        groupdq[:, :first] |= dnu
    if last < ngroups - 1:
        groupdq[:, last + 1 :] |= dnu


def fit_ramps(
    data: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    gain: np.ndarray,
    readnoise: np.ndarray,
    *,
    instrument: str,
    frame_time: float,
    group_time: float,
    groupgap: int,
    nframes: int,
    drop_frames1: int | None = None,
    average_dark_current: np.ndarray | None = None,
    zeroframe: np.ndarray | None = None,
    read_times=None,
    algorithm: str = "OLS_C",
    save_opt: bool = False,
    suppress_one_group: bool = True,
    engine: str = "auto",
    release_ramp: bool = False,
) -> RampFitResult:
    """Fit the ramps of a (nints, ngroups, ny, nx) array in DN.

    ``groupdq`` may be modified (one-good-group suppression flags
    DO_NOT_USE) when stcal does the fit: pass a copy if the caller still
    needs it.  ``gain`` (e/DN) and ``readnoise`` (DN) are 2-D arrays on the
    science pixels; they are not modified.

    ``engine``: "auto" uses the compiled OLS kernel (``_ramp_kernel``, which
    reads ``groupdq`` without changing it) for OLS_C without optional results
    or CHARGELOSS flags, and stcal otherwise; "stcal" always uses stcal.

    ``release_ramp``: the caller will not read ``data`` and ``groupdq`` again.  The
    compiled fit then takes a few integrations at a time and gives each block's
    memory back once it is fitted (its values become zeros), so that the ramp and
    the rateints arrays are not held in full at once; the results are the same.
    """
    algorithm = algorithm.upper()
    if read_times is not None and len(read_times) > 0 and algorithm != "LIKELY":
        log.warning("Setting the algorithm to LIKELY for unevenly sampled exposure")
        algorithm = "LIKELY"
    ngroups = data.shape[1]
    if algorithm == "LIKELY" and ngroups < LIKELY_MIN_NGROUPS:
        log.info("LIKELY needs at least %d groups (got %d); using OLS_C", LIKELY_MIN_NGROUPS, ngroups)
        algorithm = "OLS_C"
    if suppress_one_group and ngroups == 1:
        suppress_one_group = False

    if engine != "stcal" and _kernel_usable(algorithm, save_opt, groupdq):
        return _fit_with_kernel(
            data, groupdq, pixeldq, gain, readnoise, instrument=instrument, frame_time=frame_time,
            group_time=group_time, nframes=nframes, average_dark_current=average_dark_current,
            zeroframe=zeroframe, suppress_one_group=suppress_one_group, release=release_ramp,
        )

    from stcal.ramp_fitting import ramp_fit_class
    from stcal.ramp_fitting.ramp_fit import ramp_fit_data

    flags = _stcal_flags()
    rd = ramp_fit_class.RampData()
    if average_dark_current is None:
        average_dark_current = np.zeros(pixeldq.shape, dtype=np.float32)
    orig_gdq = None
    if algorithm == "OLS_C" and np.any(groupdq & np.uint8(dqflags.CHARGELOSS)):
        orig_gdq = groupdq.copy()
    rd.set_arrays(data, groupdq, pixeldq, average_dark_current, orig_gdq=orig_gdq, zeroframe=zeroframe)
    rd.set_meta(
        name=instrument,
        frame_time=frame_time,
        group_time=group_time,
        groupgap=groupgap,
        nframes=nframes,
        drop_frames1=drop_frames1,
    )
    rd.algorithm = algorithm
    if read_times is not None and len(read_times) > 0:
        rd.read_pattern = list(read_times)
    rd.set_dqflags(flags)
    rd.start_row = 0
    rd.num_rows = data.shape[2]
    rd.suppress_one_group_ramps = suppress_one_group

    # stcal scales the read noise array in place: give it its own copy
    rn = np.array(readnoise, dtype=np.float32, copy=True)
    g = np.ascontiguousarray(gain, dtype=np.float32)
    image, integ, opt = ramp_fit_data(rd, save_opt, rn, g, algorithm, "optimal", "1")
    return RampFitResult(image, integ, opt, algorithm)


def _kernel_usable(algorithm: str, save_opt: bool, groupdq: np.ndarray) -> bool:
    if algorithm != "OLS_C" or save_opt:
        return False
    try:
        from . import _ramp_kernel  # noqa: F401 - numba is optional
    except ImportError:
        return False
    # CHARGELOSS ramps get stcal's read-noise recomputation
    return not _any_flag(groupdq, dqflags.CHARGELOSS)


def _any_flag(groupdq: np.ndarray, flag: int) -> bool:
    f = np.uint8(flag)
    return any(bool(np.any(groupdq[i] & f)) for i in range(groupdq.shape[0]))


def _all_flag(plane: np.ndarray, flag: int, also: np.ndarray | None = None) -> bool:
    """Whether every pixel of ``plane`` (nints, ny, nx) has ``flag`` (or is marked in ``also``)."""
    has = (plane & np.uint8(flag)) != 0
    if also is not None:
        has |= also
    return bool(has.all())


def kernel_plan(ngroups: int, instrument: str, all_dnu, all_sat) -> tuple[int, int] | None:
    """Groups [first, last) the fit uses, or None when there is nothing to fit (stcal's rules).

    ``all_dnu(g)``: every ramp has DO_NOT_USE in group g (one-good-group ramps
    counting as DO_NOT_USE when suppressed); ``all_sat(g)``: every ramp is
    SATURATED in group g.  MIRI drops leading groups and a last group that are
    DO_NOT_USE everywhere; nothing is fitted when every ramp saturates in its
    first group.
    """
    first, last = 0, ngroups
    if str(instrument).upper() == "MIRI" and ngroups > 1:
        while all_dnu(first):
            first += 1
            if first >= last:
                log.error("All groups have all pixels flagged as DO_NOT_USE; no rate products")
                return None
        if first:
            log.info("Number of leading groups that are flagged as DO_NOT_USE: %s", first)
        if all_dnu(last - 1):
            last -= 1
            if last <= first:
                return None
            log.info("MIRI dataset has all pixels in the final group flagged as DO_NOT_USE.")
        if last - first < 2:
            log.warning("MIRI datasets require at least 2 groups/integration; no rate products")
            return None
    if all_sat(first):
        return None
    return first, last


def scaled_readnoise(readnoise: np.ndarray, gain: np.ndarray, nframes: int) -> np.ndarray:
    """The read noise as stcal scales it for OLS, in the same numpy arithmetic (a new array)."""
    rn = np.array(readnoise, dtype=np.float32, copy=True)
    rn *= gain / np.sqrt(2.0 * nframes)
    return rn


def kernel_fit(data, groupdq, pixeldq, gain, rn_scaled, average_dark_current, zeroframe, *, first, last, one_good,
               group_time, frame_time, nframes, suppress_one_group, int_block=None, done=None):
    """The compiled fit of groups [first, last) (any block of rows); returns (image, integ) dictionaries.

    ``int_block``/``done``: integrations fitted at a time, and what to call once each block is
    (see ``_ramp_kernel.fit``)."""
    from . import _ramp_kernel as K

    flags = _stcal_flags()
    if average_dark_current is None:
        average_dark_current = np.zeros(pixeldq.shape, dtype=np.float32)
    return K.fit(
        data[:, first:last], groupdq[:, first:last], np.asarray(pixeldq, dtype=np.uint32),
        np.ascontiguousarray(gain, dtype=np.float32), rn_scaled, np.asarray(average_dark_current, dtype=np.float32),
        None if zeroframe is None else np.asarray(zeroframe, dtype=np.float32),
        group_time=group_time, frame_time=frame_time, nframes=nframes,
        suppress1g=suppress_one_group, one_good=one_good, clear_first_jump=first > 0,
        dnu=flags["DO_NOT_USE"], jump=flags["JUMP_DET"], sat=flags["SATURATED"],
        pers=flags["PERSISTENCE"], ngval=flags["NO_GAIN_VALUE"], int_block=int_block, done=done,
    )


# the ramp's float32 data fitted at a time when the fit releases the ramp as it goes (fit_model's release_ramp)
RELEASE_BLOCK_BYTES = 16 << 20


def release_pages(arr: np.ndarray, i0: int, i1: int) -> None:
    """Give the memory of ``arr[i0:i1]`` (whole pages inside it) back to the system: those values become zeros.

    For an array no one reads again (the ramp once it is fitted), so that the rateints arrays
    filled next take its place in memory instead of adding to it.  Linux only; elsewhere nothing.
    """
    import ctypes
    import mmap
    import sys

    if not sys.platform.startswith("linux") or not arr.flags.c_contiguous or i1 <= i0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    per = arr.strides[0]
    lo = arr.ctypes.data + i0 * per
    hi = arr.ctypes.data + i1 * per
    page = mmap.PAGESIZE
    lo = -(-lo // page) * page
    hi = hi // page * page
    if hi > lo:
        libc.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), 4)  # MADV_DONTNEED


def _fit_with_kernel(data, groupdq, pixeldq, gain, readnoise, *, instrument, frame_time, group_time, nframes,
                     average_dark_current, zeroframe, suppress_one_group, release=False) -> RampFitResult:
    """stcal's OLS_C path (ramp_fit_data, ols_ramp_fit_multi, the C fitter) on the compiled kernel."""
    from . import _ramp_kernel as K

    flags = _stcal_flags()
    rn = scaled_readnoise(readnoise, gain, nframes)
    one_good = K.one_good_group(groupdq, flags["PERSISTENCE"]) if suppress_one_group else None
    plan = kernel_plan(
        data.shape[1], instrument,
        lambda g: _all_flag(groupdq[:, g], flags["DO_NOT_USE"], one_good),
        lambda g: _all_flag(groupdq[:, g], flags["SATURATED"]),
    )
    if plan is None:
        return RampFitResult(None, None, None, "OLS_C")
    first, last = plan
    int_block = done = None
    if release:
        int_block = max(1, RELEASE_BLOCK_BYTES // max(1, data[0].nbytes))

        def done(i0, i1):
            release_pages(data, i0, i1)
            release_pages(groupdq, i0, i1)

    image, integ = kernel_fit(
        data, groupdq, pixeldq, gain, rn, average_dark_current, zeroframe, first=first, last=last,
        one_good=one_good, group_time=group_time, frame_time=frame_time, nframes=nframes,
        suppress_one_group=suppress_one_group, int_block=int_block, done=done,
    )
    return RampFitResult(image, integ, None, "OLS_C")


# ---------------------------------------------------------------------------
# products


def _product(cls, ramp, **arrays):
    """A new ``cls`` carrying the ramp's metadata and headers, holding only ``arrays``."""
    out = cls(ramp)
    for name in out.array_names():
        setattr(out, name, None)
    for name, arr in arrays.items():
        if arr is not None:
            setattr(out, name, arr)
    return out


def _is_ifu(ramp) -> bool:
    """An IFU exposure (MIRI MRS, NIRSpec IFU, or a NIRSpec lamp through the IFU): its rate is an
    IFUImageModel, as jwst's ramp fitting makes it."""
    exp_type = (ramp.meta.exposure.type or "").upper()
    lamp_ifu = exp_type in ("NRS_AUTOWAVE", "NRS_LAMP") and (ramp.meta.instrument.lamp_mode or "").upper() == "IFU"
    return exp_type in ("NRS_IFU", "MIR_MRS") or lamp_ifu


def rate_products(ramp, result: RampFitResult):
    """(rate ImageModel, or IFUImageModel for an IFU, and rateints CubeModel) from a fit, with jwst's
    units and metadata."""
    if result.image is None or result.integ is None:
        return None, None
    im, it = result.image, result.integ
    rate = _product(
        models.IFUImageModel if _is_ifu(ramp) else models.ImageModel, ramp,
        data=im["slope"], dq=im["dq"], var_poisson=im["var_poisson"], var_rnoise=im["var_rnoise"], err=im["err"],
    )
    if _is_ifu(ramp):  # jwst writes an IFU rate's ERR before its DQ (the schema's order is SCI, DQ, ERR)
        rate._hdu_order = ["SCI", "ERR", "DQ", "VAR_POISSON", "VAR_RNOISE"]
    rateints = _product(
        models.CubeModel, ramp,
        data=it["slope"], dq=it["dq"], var_poisson=it["var_poisson"], var_rnoise=it["var_rnoise"], err=it["err"],
        int_times=ramp.int_times if ramp.has("int_times") else None,
    )
    for m in (rate, rateints):
        m.meta.bunit_data = "DN/s"
        m.meta.bunit_err = "DN/s"
    return rate, rateints


def fitopt_product(ramp, opt: dict):
    """The RampFitOutputModel of jwst's ``save_opt``."""
    cls = models.REGISTRY["RampFitOutputModel"]
    return _product(
        cls, ramp,
        slope=opt["slope"], sigslope=opt["sigslope"], var_poisson=opt["var_poisson"], var_rnoise=opt["var_rnoise"],
        yint=opt["yint"], sigyint=opt["sigyint"], pedestal=opt["pedestal"], weights=opt["weights"],
        crmag=opt["crmag"],
    )


def side_product_path(model, params: StepParams, suffix: str, name: str | None = None) -> str:
    """Where a step writes an extra product (jwst: ``<output_dir or cwd>/<root>_<suffix>.fits``)."""
    import re
    from pathlib import Path

    folder = Path(params.output_dir or os.getcwd())
    if name:
        p = Path(name)
        if not p.suffix:
            p = p.with_suffix(".fits")
        stem = re.sub(r"\.fits$", "", p.name)
        return str(folder / f"{stem}_{suffix}.fits") if not p.is_absolute() else str(p.with_name(f"{stem}_{suffix}.fits"))
    source = model.meta.filename or "webbflow"
    stem = re.sub(r"\.(fits|asdf)$", "", Path(source).name)
    # strip the input's own product suffix, as jwst does for known suffixes
    stem = re.sub(
        r"_(uncal|ramp|rate|rateints|dark_?current|jump|linearity|refpix|saturation|superbias|dq_?init|"
        r"charge_?migration|picture_?frame|clean_?flicker_?noise|persistence|gain_?scale|group_?scale|ipc|"
        r"firstframe|lastframe|reset|rscd|emicorr)$",
        "",
        stem,
    )
    return str(folder / f"{stem}_{suffix}.fits")


# ---------------------------------------------------------------------------
# the step


def reference_arrays(model, refs) -> tuple[np.ndarray, np.ndarray]:
    """(gain, readnoise) 2-D float32 arrays on the science pixels (views where possible)."""
    from ._subarray import ref_region

    gain = np.asarray(ref_region(model, refs["gain"], "data"), dtype=np.float32)
    rnoise = np.asarray(ref_region(model, refs["readnoise"], "data"), dtype=np.float32)
    return gain, rnoise


def fit_model(ramp, gain_ref, readnoise_ref, params: RampFitParams | None = None) -> tuple[object, object, RampFitResult]:
    """Fit a RampModel; returns (rate, rateints, fit result).

    The ramp is not modified, unless its owner has marked it ``_release_after_fit`` (a flow whose
    ramp is not read after ramp_fit): then its data and GROUPDQ are given back to the system as
    they are fitted (``fit_ramps``' ``release_ramp``) and read as zeros afterwards."""
    params = params or RampFitParams()
    if params.maximum_cores not in ("1", "none", "one"):
        log.warning("ramp_fit: maximum_cores=%s ignored; webbflow's kernel uses the process's threads", params.maximum_cores)
    gain, rnoise = reference_arrays(ramp, {"gain": gain_ref, "readnoise": readnoise_ref})
    limits = params.firstgroup is not None or params.lastgroup is not None
    gdq = ramp.groupdq
    uneven = bool(getattr(ramp.meta.exposure, "read_times", None))
    if limits or uneven or not _kernel_usable(params.algorithm.upper(), params.save_opt, gdq):
        gdq = gdq.copy()  # stcal and the group limits change the DQ they are given
    if limits:
        set_group_limits(gdq, params.firstgroup, params.lastgroup)
    exp = ramp.meta.exposure
    for what, v in (("NFRAMES", exp.nframes), ("TGROUP", exp.group_time), ("TFRAME", exp.frame_time)):
        if v is None:
            from ..errors import InputFileError

            raise InputFileError(ramp.meta.filename or "<input>", f"ramp_fit needs {what} in the exposure metadata")
    result = fit_ramps(
        ramp.data,
        gdq,
        ramp.pixeldq,
        gain,
        rnoise,
        instrument=str(ramp.meta.instrument.name or ""),
        frame_time=exp.frame_time,
        group_time=exp.group_time,
        groupgap=exp.groupgap or 0,
        nframes=exp.nframes,
        drop_frames1=exp.drop_frames1,
        average_dark_current=ramp.average_dark_current if ramp.has("average_dark_current") else None,
        zeroframe=ramp.zeroframe if ramp.has("zeroframe") else None,
        read_times=getattr(exp, "read_times", None),
        algorithm=params.algorithm,
        save_opt=params.save_opt,
        suppress_one_group=params.suppress_one_group,
        release_ramp=bool(getattr(ramp, "_release_after_fit", False)) and gdq is ramp.groupdq,
    )
    rate, rateints = rate_products(ramp, result)
    gain_factor = getattr(gain_ref.meta.exposure, "gain_factor", None)
    for m in (rate, rateints):
        if m is not None and gain_factor is not None:
            m.meta.exposure.gain_factor = gain_factor
    return rate, rateints, result


@step(
    "ramp_fit",
    "RampFitStep",
    params=RampFitParams,
    reftypes=("readnoise", "gain"),
    suffix="rate",
)
def ramp_fit(model, refs, params: RampFitParams):
    """Fit ramps to count rates: returns (rate ImageModel, rateints CubeModel)."""
    log.info("Using algorithm = %s, weighting = optimal", params.algorithm)
    rate, rateints, result = fit_model(model, refs["gain"], refs["readnoise"], params)
    if result.opt is not None:
        opt = fitopt_product(model, result.opt)
        path = side_product_path(model, params, "fitopt", params.opt_name or None)
        log.info("Saving optional fit results to %s", path)
        opt.save(path)
    if params.save_opt and result.algorithm == "LIKELY" and result.image is not None and "chisq" in result.image:
        chisq = _product(models.ImageModel, model, data=result.image["chisq"])
        path = side_product_path(model, params, "likely_chisq", params.opt_name or None)
        log.info("Saving LIKELY chi-square to %s", path)
        chisq.save(path)
    if rate is None:
        log.warning("ramp_fit: no usable data (every ramp saturated or flagged); no rate products")
    if gain_factor := getattr(refs["gain"].meta.exposure, "gain_factor", None):
        model.meta.exposure.gain_factor = gain_factor
    return rate, rateints


# flows/single.py writes one file per returned model with these suffixes
from .base import STEPS as _STEPS  # noqa: E402

_STEPS["ramp_fit"].extra["suffixes"] = ["rate", "rateints"]
