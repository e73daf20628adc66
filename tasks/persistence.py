"""persistence: flag groups inside a persistence window (jwst 3.0's PersistenceStep).

jwst 3.0 no longer models trapped charge (the trapdensity/trappars/persat
references of older versions are gone); the step flags instead.  When a
pixel first saturates, or (with ``dn_threshold``) first exceeds that many
DN, a window of ``persistence_time`` seconds opens for it; every group read
inside an open window gets PERSISTENCE in GROUPDQ (and DO_NOT_USE with
``persistence_dnu``).  Windows carry over between integrations and, through
an ASDF file (``save_persistence`` writes it, ``persistence_array_file``
reads it), from one exposure to the next of the same detector.

The step is skipped by default.  Without a positive ``persistence_time``
it cannot do anything and ends FAILED, as jwst's does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from pydantic import Field

from ..models import dqflags
from .base import StepParams, step

log = logging.getLogger("webbflow.steps.persistence")

UNIX_EPOCH_MJD = 40587.0


class PersistenceParams(StepParams):
    skip: bool = True  # jwst skips it by default
    save_persistence: str | None = Field(None, description="ASDF file to write the persistence windows to")
    persistence_time: int | None = Field(None, description="length of a persistence window, in seconds")
    dn_threshold: float | None = Field(None, description="also open a window where a group exceeds this many DN")
    persistence_array_file: str | None = Field(None, description="ASDF file of windows left open by earlier exposures")
    persistence_dnu: bool = Field(False, description="flag DO_NOT_USE together with PERSISTENCE")


def mjd_to_epoch(mjd: float) -> float:
    """Seconds since 1970-01-01 for a Modified Julian Date."""
    return (mjd - UNIX_EPOCH_MJD) * 86400.0


def group_times(nints: int, ngroups: int, start_mjd: float, integration_time: float, group_time: float,
                int_start_mjd=None) -> np.ndarray:
    """The (nints, ngroups) epoch times jwst assigns to each group's read.

    An integration starts at its INT_TIMES start when the table has it, else
    at the exposure start plus whole integration times; group ``g`` is read
    ``(g + 1)`` group times later.
    """
    t = np.empty((nints, ngroups), dtype=np.float64)
    start = mjd_to_epoch(start_mjd)
    for i in range(nints):
        if int_start_mjd is not None and len(int_start_mjd) > i:
            t0 = mjd_to_epoch(float(int_start_mjd[i]))
        else:
            t0 = start + i * integration_time
        cur = t0
        for g in range(ngroups):
            cur = cur + group_time  # accumulate as jwst does, for identical rounding
            t[i, g] = cur
    return t


def flag_persistence(
    data: np.ndarray,
    groupdq: np.ndarray,
    windows: np.ndarray,
    times: np.ndarray,
    persistence_time: float,
    dn_threshold: float | None = None,
    persistence_dnu: bool = False,
) -> np.ndarray:
    """Flag groups read inside an open window, in place.

    ``windows`` (ny, nx, float64) holds the epoch time at which each pixel's
    window closes (0: none) and is updated in place; ``times`` are the group
    read times from :func:`group_times`.
    """
    nints, ngroups = data.shape[:2]
    sat_flag = np.uint8(dqflags.SATURATED)
    flag = np.uint8(dqflags.PERSISTENCE | (dqflags.DO_NOT_USE if persistence_dnu else 0))
    sat_count = np.zeros(data.shape[2:], dtype=np.uint32)
    for i in range(nints):
        for g in range(ngroups):
            now = times[i, g]
            windows[windows < now] = 0.0
            window_end = now + persistence_time
            gdq = groupdq[i, g]
            sat_count[(gdq & sat_flag) > 0] += 1
            windows[sat_count == 1] = window_end  # first saturated group of the integration
            if dn_threshold is not None:
                opening = (data[i, g] > dn_threshold) & ~(windows > 0.0)
                windows[opening] = window_end
            # a window that closes after now + persistence_time would have opened in
            # the future: an invalid state, reset as jwst does
            late = (windows - window_end) > 0.0
            if late.any():
                log.info("Backwards flagging found. Resetting the window for those pixels")
                windows[late & (windows != 0.0)] = 0.0
            gdq[windows > 0.0] |= flag
        sat_count[:] = 0
    return windows


def read_windows(path, detector: str, persistence_time: int, shape) -> np.ndarray:
    """Windows left by earlier exposures of ``detector`` (zeros when none or when their length differs)."""
    import asdf

    windows = np.zeros(shape, dtype=np.float64)
    if not Path(path).exists():
        log.info("Persistence array file does not exist: %r; creating a new persistence array", str(path))
        return windows
    with asdf.open(path) as af:
        if detector not in af.tree:
            log.info("Detector %s not in persistence array file; creating a new persistence array", detector)
            return windows
        entry = af.tree[detector]
        if entry["pers_time"] != persistence_time:
            log.info("%s does not equal persistence_time :%s", entry["pers_time"], persistence_time)
            return windows
        windows[np.asarray(entry["rows"]), np.asarray(entry["cols"])] = np.asarray(entry["vals"])
    return windows


def write_windows(path, detector: str, filename: str | None, windows: np.ndarray, persistence_time: int) -> str:
    """Add (or replace) ``detector``'s open windows in an ASDF file; only non-zero pixels are stored."""
    import asdf

    p = Path(path)
    if p.suffix != ".asdf":
        p = p.with_suffix(".asdf") if p.suffix else Path(str(p) + ".asdf")
    rows, cols = np.nonzero(windows)
    tree = {}
    if p.exists():
        with asdf.open(p, lazy_load=False, memmap=False) as af:
            tree = {k: v for k, v in af.tree.items() if k not in ("asdf_library", "history")}
            tree = _materialise(tree)
    tree[detector] = {
        "filename": filename,
        "rows": rows,
        "cols": cols,
        "vals": windows[rows, cols],
        "pers_time": persistence_time,
    }
    from ..models.atomic import atomic_open

    with atomic_open(p, "wb") as f:
        asdf.AsdfFile(tree).write_to(f)
    return str(p)


def _materialise(node):
    if isinstance(node, dict):
        return {k: _materialise(v) for k, v in node.items()}
    if hasattr(node, "__array__") and not isinstance(node, np.ndarray):
        return np.array(node)
    return node


@step("persistence", "PersistenceStep", params=PersistenceParams, suffix="persistence")
def persistence(model, refs, params: PersistenceParams):
    """Flag groups read within persistence_time of a pixel's saturation as PERSISTENCE."""
    if params.persistence_time is None or params.persistence_time <= 0:
        log.info("Persistence step failed due to invalid persistence_time.")
        return model, "FAILED"
    if model.data.ndim != 4:
        log.warning("Don't understand shape %s of input data, skipping...", model.data.shape)
        return model, "SKIPPED"
    nints, ngroups, ny, nx = model.data.shape
    detector = str(model.meta.instrument.detector)
    if params.persistence_array_file is not None:
        windows = read_windows(params.persistence_array_file, detector, params.persistence_time, (ny, nx))
    else:
        windows = np.zeros((ny, nx), dtype=np.float64)
    exp = model.meta.exposure
    int_start = None
    if model.has("int_times") and model.int_times is not None and len(model.int_times) > 0:
        names = model.int_times.dtype.names or ()
        if "int_start_MJD_UTC" in names:
            int_start = np.asarray(model.int_times["int_start_MJD_UTC"], dtype=np.float64)
    needed = [("EXPSTART", exp.start_time), ("TGROUP", exp.group_time)]
    if int_start is None or len(int_start) < nints:
        needed.append(("EFFINTTM", exp.integration_time))
    for what, v in needed:
        if v is None:
            from ..errors import InputFileError

            raise InputFileError(model.meta.filename or "<input>", f"persistence needs {what} in the exposure metadata")
    times = group_times(nints, ngroups, exp.start_time, exp.integration_time, exp.group_time, int_start)
    flag_persistence(
        model.data, model.groupdq, windows, times, params.persistence_time, params.dn_threshold, params.persistence_dnu
    )
    if params.save_persistence is not None:
        path = write_windows(params.save_persistence, detector, model.meta.filename, windows, params.persistence_time)
        log.info("Persistence windows written to %s", path)
    return model
