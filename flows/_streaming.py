"""detector1 for exposures larger than memory: one integration at a time, then blocks of rows.

The in-memory flow holds the whole calibrated ramp (4 bytes of float32 data
and 1 byte of GROUPDQ per sample, 2.5 times the uncal file) and every
step's temporaries.  Here, instead:

1. **Ramp steps, one integration at a time.**  Each integration is read
   from the uncal file (uint16, by offset), converted to float32 and run
   through the ramp steps (group_scale ... dark_current / refpix) as a
   one-integration RampModel that shares the exposure's metadata and knows
   its place in the exposure (``_integration_offset``: the MIRI dark, reset
   and rscd steps pick their integration by it; rscd adds its counts up
   over the pieces).  References are opened once, with only the arrays the
   steps read.  The calibrated integration goes to a spill file on disk.
2. **jump, in blocks of rows.**  Jump detection pools all integrations of a
   pixel, so it reads all integrations of a block of rows back (with one
   more row on each side for the neighbour flagging), runs the compiled
   kernel and writes GROUPDQ back.  The counts that decide stcal's method
   (groups DO_NOT_USE everywhere) were kept in step 1.
3. **ramp_fit, in blocks of rows**, with the compiled OLS kernel; the
   exposure-wide choices (MIRI groups dropped, nothing to fit) come from
   statistics kept in step 2.
4. gain_scale and the products as in the in-memory flow.

Peak memory is then one integration, the references, one block of rows and
the rate products, whatever the number of integrations.  The answers are
those of the in-memory flow (``tests/test_streaming.py`` compares them array
for array).  When a configuration needs the whole exposure at once
(emicorr, picture_frame, clean_flicker_noise, persistence, charge_migration,
snowballs/showers/after-jump flagging in jump, LIKELY, optional results or
group limits in ramp_fit, intermediate products), the in-memory flow runs
instead.

``WEBBFLOW_STREAM``: ``auto`` (default) streams exposures whose calibrated
ramp would exceed ``WEBBFLOW_MEMORY_BUDGET`` (bytes, or with a K/M/G suffix;
default 2G); ``always`` streams whenever possible; ``never`` does not.  The
spill file goes to ``WEBBFLOW_SPILL_DIR`` (default: the system temporary
folder) and is removed afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import models
from ..models import dqflags

log = logging.getLogger("webbflow.flows")

BYTES_PER_SAMPLE = 5  # float32 data + uint8 groupdq
DEFAULT_BUDGET = 2 << 30
BLOCK_BYTES = 192 << 20  # rows read back at a time, all integrations and groups
WHOLE_EXPOSURE_STEPS = ("emicorr", "picture_frame", "clean_flicker_noise", "persistence", "charge_migration")
STREAMED_TAIL = ("jump", "ramp_fit", "gain_scale")


def memory_budget() -> int:
    """WEBBFLOW_MEMORY_BUDGET in bytes (K/M/G suffixes), else the default."""
    v = os.environ.get("WEBBFLOW_MEMORY_BUDGET", "").strip().upper()
    if not v:
        return DEFAULT_BUDGET
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(v[-1], 1)
    try:
        return int(float(v.rstrip("KMG")) * mult)
    except ValueError:
        return DEFAULT_BUDGET


# ---------------------------------------------------------------------------
# the uncal file, one integration at a time


class UncalFile:
    """The SCI array of an uncal FITS file, read one integration at a time (uint16)."""

    def __init__(self, path):
        from astropy.io import fits

        self.path = Path(path)
        with fits.open(self.path, memmap=False, lazy_load_hdus=True, do_not_scale_image_data=True) as hdul:
            hdu = hdul["SCI"]
            hdr = hdu.header
            info = hdul.fileinfo(hdul.index_of("SCI"))
            self.offset = int(info["datLoc"])
            naxis = int(hdr.get("NAXIS", 0))
            self.shape = tuple(int(hdr[f"NAXIS{i}"]) for i in range(naxis, 0, -1))
            self.bitpix = int(hdr["BITPIX"])
            self.bzero = hdr.get("BZERO", 0)
            self.bscale = hdr.get("BSCALE", 1)
            self.has_refout = "REFOUT" in hdul
            self.size = self.path.stat().st_size

    @property
    def readable(self) -> bool:
        return len(self.shape) == 4 and self.bitpix == 16 and self.bzero == 32768 and self.bscale == 1

    def read(self, i: int) -> np.ndarray:
        nints, ngroups, ny, nx = self.shape
        count = ngroups * ny * nx
        with open(self.path, "rb") as f:
            f.seek(self.offset + i * count * 2)
            arr = np.fromfile(f, dtype=">i2", count=count)
        if arr.size != count:
            from ..errors import InputFileError

            raise InputFileError(self.path, f"SCI is truncated in integration {i + 1}")
        arr = arr.byteswap(inplace=True).view(np.int16).view(np.uint16)
        arr ^= np.uint16(0x8000)  # stored signed with BZERO = 32768
        return arr.reshape(1, ngroups, ny, nx)


# ---------------------------------------------------------------------------
# the spill file: the calibrated ramp on disk


class Spill:
    """float32 data and uint8 GROUPDQ of shape (nints, ngroups, ny, nx) in two files, read back by rows."""

    def __init__(self, shape, directory=None):
        self.shape = shape
        self.dir = Path(tempfile.mkdtemp(prefix="webbflow-detector1-", dir=directory))
        self._fd = {}
        for name in ("data", "groupdq"):
            self._fd[name] = os.open(self.dir / f"{name}.raw", os.O_RDWR | os.O_CREAT, 0o600)

    def close(self) -> None:
        for fd in self._fd.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fd = {}
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def _pwrite(fd, buf: np.ndarray, offset: int) -> None:
        mv = memoryview(np.ascontiguousarray(buf)).cast("B")
        done = 0
        while done < len(mv):
            done += os.pwrite(fd, mv[done:], offset + done)

    @staticmethod
    def _pread(fd, buf: np.ndarray, offset: int) -> None:
        mv = memoryview(buf).cast("B")
        done = 0
        while done < len(mv):
            n = os.preadv(fd, [mv[done:]], offset + done)
            if n <= 0:
                raise OSError("short read from the spill file")
            done += n

    def write_integration(self, i: int, data: np.ndarray, groupdq: np.ndarray) -> None:
        _, ngroups, ny, nx = self.shape
        n = ngroups * ny * nx
        self._pwrite(self._fd["data"], data.astype(np.float32, copy=False), i * n * 4)
        self._pwrite(self._fd["groupdq"], groupdq.astype(np.uint8, copy=False), i * n)

    def _planes(self, r0: int, r1: int):
        nints, ngroups, ny, nx = self.shape
        for i in range(nints):
            for g in range(ngroups):
                yield i, g, ((i * ngroups + g) * ny + r0) * nx

    def read_rows(self, r0: int, r1: int, with_data: bool = True):
        nints, ngroups, _, nx = self.shape
        data = np.empty((nints, ngroups, r1 - r0, nx), np.float32) if with_data else None
        gdq = np.empty((nints, ngroups, r1 - r0, nx), np.uint8)
        for i, g, k in self._planes(r0, r1):
            if with_data:
                self._pread(self._fd["data"], data[i, g], k * 4)
            self._pread(self._fd["groupdq"], gdq[i, g], k)
        return data, gdq

    def write_groupdq_rows(self, r0: int, gdq: np.ndarray) -> None:
        r1 = r0 + gdq.shape[2]
        for i, g, k in self._planes(r0, r1):
            self._pwrite(self._fd["groupdq"], gdq[i, g], k)


def row_blocks(shape, halo: int = 0):
    """(r0, r1) blocks of rows whose samples, all integrations and groups, fit BLOCK_BYTES."""
    nints, ngroups, ny, nx = shape
    per_row = nints * ngroups * nx * BYTES_PER_SAMPLE
    rows = max(8, BLOCK_BYTES // max(per_row, 1) - 2 * halo)
    return [(r0, min(ny, r0 + rows)) for r0 in range(0, ny, rows)]


# ---------------------------------------------------------------------------
# when to stream


def stream_reason(input, head, names: list[str], params: dict, save_calibrated_ramp: bool) -> str | None:
    """None when this run streams; otherwise why it does not (for the log).

    ``head``: the exposure's metadata (a model opened without arrays).
    """
    mode = os.environ.get("WEBBFLOW_STREAM", "auto").strip().lower()
    if mode in ("never", "off", "0", "false", "no"):
        return "WEBBFLOW_STREAM=never"
    if not isinstance(input, (str, os.PathLike)) or str(input).lower().endswith(".asdf"):
        return "the input is not a FITS file"
    try:
        uncal = UncalFile(input)
    except Exception as exc:  # noqa: BLE001
        return f"cannot read the SCI layout ({exc})"
    if not uncal.readable or uncal.has_refout:
        return "the input is not a uint16 uncal ramp without REFOUT"
    nints, ngroups, ny, nx = uncal.shape
    if max(ny, nx) > 2048:
        return "NIRSpec IRS2 frames lose their interleaved reference rows in refpix"
    if mode not in ("always", "on", "1", "true", "yes"):
        need = nints * ngroups * ny * nx * BYTES_PER_SAMPLE
        if need <= memory_budget():
            return f"the calibrated ramp ({need / 2**20:.0f} MiB) fits WEBBFLOW_MEMORY_BUDGET"
    if save_calibrated_ramp:
        return "save_calibrated_ramp needs the whole ramp"
    for name in names:
        p = params[name]
        if name in WHOLE_EXPOSURE_STEPS and not p.skip:
            return f"step {name} needs the whole exposure"
        if p.save_results and name not in ("gain_scale",):
            return f"step {name} saves an intermediate product"
    for name in ("jump", "ramp_fit"):
        if name in params and params[name].skip:
            return f"step {name} is skipped"
    j, r = params.get("jump"), params.get("ramp_fit")
    from ..tasks.jump import kernel_applies

    exp = head.meta.exposure
    if getattr(exp, "read_times", None):
        return "unevenly spaced groups (ramp_fit uses LIKELY)"
    if exp.group_time is None or exp.frame_time is None or exp.nframes is None:
        return "the exposure lacks TGROUP, TFRAME or NFRAMES"
    if j is not None and ngroups > 2:
        if not kernel_applies(exp.group_time, j):
            return "jump options that need stcal on the whole exposure"
        if (nints if j.only_use_ints else nints * ngroups) >= j.minimum_sigclip_groups:
            return "jump's sigma clipping over many integrations"
    if r is not None:
        if r.algorithm.upper() != "OLS_C" or r.save_opt:
            return "ramp_fit LIKELY or optional results"
        if r.firstgroup is not None or r.lastgroup is not None:
            return "ramp_fit group limits"
        from ..tasks.ramp_fit import _kernel_usable

        if not _kernel_usable("OLS_C", False, np.zeros((1, 1, 1, 1), np.uint8)):
            return "no compiled ramp-fitting kernel"
    if "dark_current" in params and params["dark_current"].dark_output:
        return "dark_output"
    return None


# ---------------------------------------------------------------------------
# the run


def run(input, names: list[str], run, *, tracked: bool):
    """Run detector1's steps on ``input`` (an uncal path) integration by integration.

    Returns ``(ramp, rate, rateints)``: ``ramp`` is a RampModel without
    ``data`` carrying the exposure's metadata, PIXELDQ, ZEROFRAME and
    AVDRKCUR after the ramp steps; ``rate``/``rateints`` are ramp_fit's
    products (before gain_scale).  ``run.records`` gets one record per step.
    """
    uncal = UncalFile(input)
    nints, ngroups, ny, nx = uncal.shape
    template = as_ramp_template(models.open(input, arrays=("zeroframe", "int_times", "group")))
    ramp_steps = names[: names.index("jump")] if "jump" in names else [n for n in names if n not in STREAMED_TAIL]
    spill = Spill(uncal.shape, os.environ.get("WEBBFLOW_SPILL_DIR") or None)
    log.info("detector1: streaming %d integrations of %s through %s", nints, uncal.path.name, spill.dir)
    try:
        refs = _open_references(ramp_steps, run)
        last_piece, usable = _ramp_steps(uncal, template, ramp_steps, run, refs, spill, tracked)
        # the ramp steps' references (MIRI dark and reset: hundreds of MB) are not needed any more
        refs = _open_references(["jump", "ramp_fit"], run)
        plan_stats = _as_task("jump", _jump, tracked)(template, last_piece, spill, run, refs, usable)
        # the steps between jump and ramp_fit are skipped here (stream_reason): recorded as such
        for name in names[names.index("jump") + 1 : names.index("ramp_fit")]:
            res = _call_step(name, template, run, {}, tracked, "exposure")
            _add_record(run, name, res.status, res.seconds, res.references, res.reason, res.qa)
        rate, rateints = _as_task("ramp_fit", _ramp_fit, tracked)(template, last_piece, spill, run, refs, plan_stats)
    finally:
        spill.close()
    return template, rate, rateints


def as_ramp_template(level1b):
    """A RampModel with the exposure's metadata and small arrays, and no data (as_ramp's conversion)."""
    return models.RampModel(level1b)


def load_ramp(path):
    """The whole exposure as a float32 RampModel, read one integration at a time.

    The same model as ``as_ramp(models.open(path))``, without holding the
    uint16 array and a float32 copy at once: the float32 array is filled
    integration by integration.  None when the file is not a plain uint16 uncal.
    """
    try:
        uncal = UncalFile(path)
    except Exception:  # noqa: BLE001 - let the ordinary reader report what is wrong
        return None
    if not uncal.readable or uncal.has_refout:
        return None
    head = models.open(path, arrays=("zeroframe", "int_times", "group"))
    if not isinstance(head, models.Level1bModel):
        return None
    ramp = as_ramp_template(head)
    data = np.empty(uncal.shape, np.float32)
    for i in range(uncal.shape[0]):
        data[i] = uncal.read(i)[0]
    ramp.data = data
    return ramp


def _open_references(step_names, run) -> dict[str, dict]:
    """Every reference of the streamed steps, opened once (only the arrays a step reads, where it says)."""
    from ..refs import open_reference
    from ..tasks._lean_refs import open_step_references

    out: dict[str, dict] = {}
    for name in step_names:
        p = run.params.get(name)
        if p is None or p.skip:
            continue
        t0 = time.perf_counter()
        refs = open_step_references(name, dict(run.references.get(name, {})))
        for rt, v in list(refs.items()):
            if isinstance(v, (str, os.PathLike)) and str(v).upper() != "N/A" and Path(v).exists():
                m = open_reference(rt, v)
                m.meta.filename = str(v)  # recorded as run_step records a path
                refs[rt] = m
        out[name] = refs
        # the time to open them counts with the step, as when run_step opens them
        out.setdefault("__seconds__", {})[name] = time.perf_counter() - t0
    return out


def _piece(template, raw: np.ndarray, i: int, nints: int, state: dict):
    """Integration i as a one-integration RampModel sharing the exposure's metadata object."""
    m = models.RampModel()
    m.meta = template.meta  # shared: every step's cal_step and ref_file land on the exposure's metadata
    m._headers = template._headers
    m._asdf_extra = template._asdf_extra
    m._path = template._path
    m.data = raw  # uint16 -> float32, once
    if template.has("zeroframe"):
        m.zeroframe = template.zeroframe[i : i + 1].copy()
    if template.has("int_times"):
        m.int_times = template.int_times
    object.__setattr__(m, "_integration_offset", i)
    object.__setattr__(m, "_integration_total", nints)
    object.__setattr__(m, "_stream_state", state)
    return m


def _as_task(name: str, fn, tracked: bool):
    """fn itself, or (inside a flow run) fn as a Prefect task run named after the step."""
    if not tracked:
        return fn
    from prefect import task
    from prefect.cache_policies import NONE

    return task(name=name, task_run_name=f"{name} [blocks of rows]", cache_policy=NONE, persist_result=False)(fn)


def _call_step(name, model, run, refs, tracked: bool, label: str):
    from .stage import _execute, step_task

    p = run.params[name]
    if tracked:
        return step_task(name).with_options(task_run_name=f"{name} [{label}]")(name, model, p, refs)
    return _execute(name, model, p, refs)


def _add_record(run, name, status, seconds, references, reason: str = "", qa: dict | None = None):
    """Add a step's record, or fold one more integration's run into it.

    A step run once per integration keeps one record: its seconds add up, its
    counts (integer QA figures) add up, other figures keep the latest value, and
    a skip reason stays while the step never ran.
    """
    from .stage import StepRecord

    for r in run.records:
        if r.name == name:
            r.seconds += seconds
            if status == "COMPLETE":
                r.status = status
                r.reason = ""
            elif not r.reason and r.status != "COMPLETE":
                r.reason = reason
            for k, v in (qa or {}).items():
                old = r.qa.get(k)
                both_counts = isinstance(v, int) and isinstance(old, int) and not isinstance(v, bool)
                r.qa[k] = old + v if both_counts else v
            return
    run.records.append(StepRecord(name, status, seconds, dict(references), reason=reason, qa=dict(qa or {})))


def _ramp_steps(uncal, template, ramp_steps, run, refs, spill, tracked):
    """Step 1: every integration through the ramp steps, into the spill file."""
    nints, ngroups, ny, nx = uncal.shape
    state: dict = {}
    pixeldq = None
    dnu = np.uint8(dqflags.DO_NOT_USE)
    all_dnu = np.zeros((nints, ngroups), bool)
    # saturation's figure counts pixels saturated in any integration (as on the whole exposure), not per integration
    sat_any = np.zeros((ny, nx), bool) if "saturation" in ramp_steps else None
    sat8 = np.uint8(dqflags.SATURATED)
    piece = None
    for i in range(nints):
        piece = _piece(template, uncal.read(i), i, nints, state)
        for name in ramp_steps:
            res = _call_step(name, piece, run, refs.get(name, {}), tracked, f"integration {i + 1}/{nints}")
            opened = refs.get("__seconds__", {}).get(name, 0.0) if i == 0 else 0.0
            _add_record(run, name, res.status, res.seconds + opened, res.references, res.reason, res.qa)
            piece = res.model
        spill.write_integration(i, piece.data, piece.groupdq)
        if sat_any is not None:
            sat_any |= (piece.groupdq[0, -1] & sat8) != 0
        for g in range(ngroups):
            all_dnu[i, g] = bool((piece.groupdq[0, g] & dnu).all())
        pixeldq = piece.pixeldq.copy() if pixeldq is None else (pixeldq | piece.pixeldq)
        if piece.has("zeroframe") and template.has("zeroframe"):
            template.zeroframe[i] = piece.zeroframe[0]
        if piece.has("average_dark_current"):
            template.average_dark_current = piece.average_dark_current
        # release before reading the next one; the last piece keeps only its shape (reference cut-outs use it)
        piece.data = np.broadcast_to(np.zeros((), np.float32), (1, ngroups, ny, nx))
        piece.groupdq = None
    template.pixeldq = pixeldq
    sat = next((r for r in run.records if r.name == "saturation"), None)
    if sat is not None and "saturated pixels" in sat.qa:
        sat.qa["saturated pixels"] = int(np.count_nonzero(sat_any))
    usable = (ngroups - int(all_dnu.sum(axis=1).max()), nints * ngroups - int(all_dnu.sum()))
    return piece, usable


def _jump(template, piece, spill, run, refs, usable):
    """Step 2: jump on blocks of rows; returns the statistics ramp_fit's plan needs."""
    from ..tasks import _jump_kernel as JK
    from ..tasks import _ramp_kernel as RK
    from ..tasks.base import _mark, _record_ref
    from ..tasks.jump import _reference_arrays, kernel_method_for, record_event_rates

    nints, ngroups, ny, nx = spill.shape
    flags = dqflags.PIXEL
    p = run.params["jump"]
    rf = run.params["ramp_fit"]
    exp = template.meta.exposure
    t0 = time.perf_counter() - refs.get("__seconds__", {}).get("jump", 0.0)
    status = "COMPLETE"
    reason = ""
    method = None
    if p.skip:
        status, reason = "SKIPPED", "skip=True"
    elif ngroups <= 2:
        log.warning("jump: cannot detect jumps with NGROUPS<=2; step skipped")
        status, reason = "SKIPPED", "not applicable to this exposure"
    else:
        method = kernel_method_for(nints, usable[0], usable[1], p)
        if method is None:  # stcal would skip detection (too few usable groups)
            log.info("Jump Step was skipped because exposure has less than the minimum number of usable groups")
    gain = rnoise = None
    if status == "COMPLETE":
        gain, rnoise = _reference_arrays(piece, refs["jump"])
        bad_gain = (gain <= 0.0) | np.isnan(gain)
        if bad_gain.any():
            template.pixeldq[bad_gain] |= np.uint32(flags["NO_GAIN_VALUE"] | flags["DO_NOT_USE"])
    # statistics for ramp_fit's plan: per group, does every ramp have DO_NOT_USE (or one good group)?
    stats = {"all_dnu": np.ones(ngroups, bool), "all_sat": np.ones(ngroups, bool)}
    suppress = rf.suppress_one_group and ngroups > 1
    n_crs = 0
    dnu8, sat8, jump8 = np.uint8(flags["DO_NOT_USE"]), np.uint8(flags["SATURATED"]), np.uint8(flags["JUMP_DET"])
    for r0, r1 in row_blocks(spill.shape, halo=1):
        a0, a1 = max(0, r0 - 1), min(ny, r1 + 1)
        data, gdq = spill.read_rows(a0, a1, with_data=method is not None)
        if method is not None:
            rows = JK.find_jumps(
                data, gdq, gain[a0:a1], rnoise[a0:a1], nframes=exp.nframes,
                rejection_threshold=p.rejection_threshold,
                three_group_rejection_threshold=p.three_group_rejection_threshold,
                four_group_rejection_threshold=p.four_group_rejection_threshold,
                single_pass=method == "single", flag_4_neighbors=p.flag_4_neighbors,
                min_jump_to_flag_neighbors=p.min_jump_to_flag_neighbors,
                max_jump_to_flag_neighbors=p.max_jump_to_flag_neighbors,
                dnu=flags["DO_NOT_USE"], sat=flags["SATURATED"], jump=flags["JUMP_DET"], per_row=True,
            )
            n_crs += int(rows[r0 - a0 : r1 - a0].sum())
        elif status == "COMPLETE":
            # stcal leaves the flags, but drops JUMP_DET where DO_NOT_USE or SATURATED is set
            JK.finish_rows(gdq, np.zeros((nints, 1, 1, 1), np.uint8), False, dnu8, sat8, jump8)
        inner = gdq[:, :, r0 - a0 : r1 - a0]
        if status == "COMPLETE":
            spill.write_groupdq_rows(r0, inner)
        one_good = RK.one_good_group(inner, flags["PERSISTENCE"]) if suppress else None
        for g in range(ngroups):
            if stats["all_dnu"][g]:
                has = (inner[:, g] & dnu8) != 0
                if one_good is not None:
                    has |= one_good
                stats["all_dnu"][g] = bool(has.all())
            if stats["all_sat"][g]:
                stats["all_sat"][g] = bool(((inner[:, g] & sat8) != 0).all())
    if status == "COMPLETE":
        record_event_rates(exp, n_crs if method is not None else -99, 0, usable[1], nints, ny * nx)
        for rt in ("gain", "readnoise"):
            _record_ref(template, rt, refs["jump"][rt].meta.filename)
    _mark(template, "jump", status)
    used = {rt: refs["jump"][rt].meta.filename for rt in ("gain", "readnoise")} if status == "COMPLETE" else {}
    qa = {"jumps flagged": n_crs, "large events": 0} if method is not None else {}
    _add_record(run, "jump", status, time.perf_counter() - t0, used, reason, qa)
    return stats


def _ramp_fit(template, piece, spill, run, refs, stats):
    """Step 3: the OLS fit on blocks of rows; the rate and rateints products."""
    from ..tasks import _ramp_kernel as RK
    from ..tasks.base import _mark, _record_ref
    from ..tasks.ramp_fit import (
        RampFitResult, kernel_fit, kernel_plan, rate_products, reference_arrays, scaled_readnoise,
    )

    nints, ngroups, ny, nx = spill.shape
    p = run.params["ramp_fit"]
    exp = template.meta.exposure
    t0 = time.perf_counter() - refs.get("__seconds__", {}).get("ramp_fit", 0.0)
    flags = dqflags.PIXEL
    gref, rref = refs["ramp_fit"]["gain"], refs["ramp_fit"]["readnoise"]
    gain, rnoise = reference_arrays(piece, {"gain": gref, "readnoise": rref})
    rn = scaled_readnoise(rnoise, gain, exp.nframes)
    suppress = p.suppress_one_group and ngroups > 1
    plan = kernel_plan(ngroups, str(template.meta.instrument.name or ""), lambda g: bool(stats["all_dnu"][g]),
                       lambda g: bool(stats["all_sat"][g]))
    image = integ = None
    if plan is not None:
        first, last = plan
        image = {k: np.empty((ny, nx), np.uint32 if k == "dq" else np.float32)
                 for k in ("slope", "dq", "var_poisson", "var_rnoise", "err")}
        integ = {k: np.empty((nints, ny, nx), np.uint32 if k == "dq" else np.float32)
                 for k in ("slope", "dq", "var_poisson", "var_rnoise", "err")}
        dcur = template.average_dark_current if template.has("average_dark_current") else None
        zf = template.zeroframe if template.has("zeroframe") else None
        for r0, r1 in row_blocks(spill.shape):
            data, gdq = spill.read_rows(r0, r1)
            one_good = RK.one_good_group(gdq, flags["PERSISTENCE"]) if suppress else None
            im, it = kernel_fit(
                data, gdq, template.pixeldq[r0:r1], gain[r0:r1], rn[r0:r1],
                None if dcur is None else dcur[r0:r1], None if zf is None else zf[:, r0:r1],
                first=first, last=last, one_good=one_good, group_time=exp.group_time,
                frame_time=exp.frame_time, nframes=exp.nframes, suppress_one_group=suppress,
            )
            for k in image:
                image[k][r0:r1] = im[k]
                integ[k][:, r0:r1] = it[k]
    result = RampFitResult(image, integ, None, "OLS_C")
    rate, rateints = rate_products(template, result)
    gain_factor = getattr(gref.meta.exposure, "gain_factor", None)
    for m in (rate, rateints):
        if m is not None and gain_factor is not None:
            m.meta.exposure.gain_factor = gain_factor
    if gain_factor:
        template.meta.exposure.gain_factor = gain_factor
    used = {"readnoise": rref.meta.filename, "gain": gref.meta.filename}
    for m in (rate, rateints):
        if m is not None:
            _mark(m, "ramp_fit", "COMPLETE")
            for rt, path in used.items():
                _record_ref(m, rt, path)
    _add_record(run, "ramp_fit", "COMPLETE", time.perf_counter() - t0, used)
    if rate is None:
        log.warning("ramp_fit: no usable data (every ramp saturated or flagged); no rate products")
    return rate, rateints
