"""jump: flag cosmic-ray jumps in ramps with the two-point-difference method (jwst's JumpStep).

The detection itself is stcal's ``detect_jumps_data``, as in jwst: the ramp
and the read noise are scaled to electrons with the gain, the differences
between consecutive groups are compared with their median, and outliers
beyond ``rejection_threshold`` sigma (``three_``/``four_group_rejection_threshold``
for short ramps) get JUMP_DET in GROUPDQ, with their four neighbours when
``flag_4_neighbors``.  Optional passes flag groups after large jumps
(``after_jump_flag_*``), NIR snowballs (``expand_large_events``) and MIRI
showers (``find_showers``).

The science is :func:`detect_jumps`, a function of arrays, so that a faster
kernel can take stcal's place without changing the step.  ``maximum_cores``
is accepted for compatibility but the step always runs on one core:
webbflow parallelises across exposures, and nested process pools hang
(DESIGN.md section 7).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from ..models import dqflags
from .base import StepParams, report_qa, step

log = logging.getLogger("webbflow.steps.jump")


class JumpParams(StepParams):
    rejection_threshold: float = Field(4.0, ge=0, description="CR sigma rejection threshold")
    three_group_rejection_threshold: float = Field(6.0, ge=0, description="CR sigma rejection threshold for 3-group ramps")
    four_group_rejection_threshold: float = Field(5.0, ge=0, description="CR sigma rejection threshold for 4-group ramps")
    maximum_cores: str = Field("1", description="accepted for jwst compatibility; the step runs on one core")
    flag_4_neighbors: bool = Field(True, description="flag the four perpendicular neighbours of each CR")
    max_jump_to_flag_neighbors: float = Field(1000.0, description="maximum jump sigma that triggers neighbour flagging")
    min_jump_to_flag_neighbors: float = Field(10.0, description="minimum jump sigma that triggers neighbour flagging")
    after_jump_flag_dn1: float = Field(0.0, description="1st: flag groups after jumps above this many DN")
    after_jump_flag_time1: float = Field(0.0, description="1st: ... for this many seconds")
    after_jump_flag_dn2: float = Field(0.0, description="2nd: flag groups after jumps above this many DN")
    after_jump_flag_time2: float = Field(0.0, description="2nd: ... for this many seconds")
    expand_large_events: bool = Field(False, description="flag snowballs (NIR)")
    min_sat_area: float = Field(1.0, description="minimum area of a snowball's saturated core")
    min_jump_area: float = Field(5.0, description="minimum jump area that starts large-event processing")
    expand_factor: float = Field(2.0, description="expansion factor of the enclosing circles or ellipses")
    use_ellipses: bool = Field(False, description="deprecated in jwst; unused")
    sat_required_snowball: bool = Field(True, description="require a saturated core for a snowball")
    min_sat_radius_extend: float = Field(2.5, description="minimum saturated-core radius for extending the core")
    sat_expand: int = Field(2, description="pixels added to the radius of a snowball's saturated core")
    edge_size: int = Field(25, description="distance from the edge within which no saturated core is required")
    mask_snowball_core_next_int: bool = Field(True, description="flag snowball cores in the next integration")
    snowball_time_masked_next_int: int = Field(4000, description="seconds over which cores are flagged in the next integration")
    find_showers: bool = Field(False, description="flag MIRI showers")
    max_shower_amplitude: float = Field(4.0, description="maximum MIRI shower amplitude, DN/s (jwst 3.0 does not use it)")
    extend_snr_threshold: float = Field(1.2, description="SNR minimum for extended shower emission (MIRI)")
    extend_min_area: int = Field(90, description="minimum area of extended emission after convolution")
    extend_inner_radius: float = Field(1.0, description="inner radius of the ring kernel")
    extend_outer_radius: float = Field(2.6, description="outer radius of the ring kernel")
    extend_ellipse_expand_ratio: float = Field(1.1, description="expansion of the ellipse fit to extended emission")
    time_masked_after_shower: float = Field(15.0, description="seconds flagged as jump after a shower")
    min_diffs_single_pass: int = Field(10, description="minimum differences to flag all outliers in one pass")
    max_extended_radius: int = Field(200, description="maximum radius of a snowball or shower")
    minimum_groups: int = Field(3, description="minimum groups for jump detection")
    minimum_sigclip_groups: int = Field(100, description="minimum groups to switch to sigma clipping")
    only_use_ints: bool = Field(True, description="sigma clipping compares the same group across integrations only")


@dataclass
class JumpResult:
    groupdq: np.ndarray
    pixeldq: np.ndarray
    n_primary_crs: int
    n_extended_events: int


def _stcal_flags() -> dict[str, int]:
    return dict(dqflags.PIXEL)


def detect_jumps(
    data: np.ndarray,
    groupdq: np.ndarray,
    pixeldq: np.ndarray,
    gain: np.ndarray,
    readnoise: np.ndarray,
    *,
    nframes: int,
    group_time: float,
    params: JumpParams,
    engine: str = "auto",
) -> JumpResult:
    """Flag jumps in ``groupdq`` (updated in place) for a (nints, ngroups, ny, nx) ramp in DN.

    ``gain`` (e/DN) and ``readnoise`` (DN) are 2-D arrays matching the
    science pixels.  ``pixeldq`` gets NO_GAIN_VALUE and DO_NOT_USE where the
    gain is not positive or NaN.  ``data`` is not modified.

    ``engine``: "auto" uses the compiled kernel (``_jump_kernel``) where it
    reproduces stcal, the block-wise sigma clipping (``_jump_sigclip``) for
    many integrations, and stcal otherwise; "stcal" always uses stcal.
    """
    if params.maximum_cores not in ("1", "none", "one"):
        log.warning(
            "jump: maximum_cores=%s ignored; webbflow's kernel uses the process's threads (NUMBA_NUM_THREADS)",
            params.maximum_cores,
        )
    method = _kernel_method(groupdq, group_time, params) if engine != "stcal" else None
    if method is not None:
        return _detect_with_kernel(data, groupdq, pixeldq, gain, readnoise, nframes=nframes, params=params,
                                   single_pass=method == "single")
    if engine != "stcal" and sigclip_applies(groupdq, group_time, params):
        return _detect_with_sigclip(data, groupdq, pixeldq, gain, readnoise, nframes=nframes, params=params)
    return _detect_with_stcal(data, groupdq, pixeldq, gain, readnoise, nframes=nframes, group_time=group_time,
                              params=params)


def _usable_group_counts(groupdq: np.ndarray) -> tuple[int, int]:
    """(min usable groups in an integration, total usable groups): groups where every pixel is DO_NOT_USE do not count."""
    nints, ngroups = groupdq.shape[:2]
    dnu = np.uint8(dqflags.DO_NOT_USE)
    worst = 0
    total_flagged = 0
    for i in range(nints):
        n = sum(1 for g in range(ngroups) if (groupdq[i, g] & dnu).all())
        worst = max(worst, n)
        total_flagged += n
    return ngroups - worst, nints * ngroups - total_flagged


def _kernel_method(groupdq: np.ndarray, group_time: float, params: JumpParams) -> str | None:
    """"single" or "iterative" when the compiled kernel reproduces stcal for this input; None to use stcal.

    stcal's choice: the sigma-clipping method with many integrations, nothing when
    too few groups are usable, one pass with at least ``min_diffs_single_pass``
    usable differences per integration, the iterative search otherwise.  After-jump
    flagging, snowballs and showers are stcal's.
    """
    if not kernel_applies(group_time, params):
        return None
    min_usable, total = _usable_group_counts(groupdq)
    return kernel_method_for(groupdq.shape[0], min_usable, total, params)


def kernel_applies(group_time: float, params: JumpParams) -> bool:
    """Whether the parameters leave the detection to the two-point kernel (no snowballs, showers, after-jump flags)."""
    try:
        from . import _jump_kernel  # noqa: F401 - numba is optional
    except ImportError:
        return False
    return _detection_only(group_time, params)


def _detection_only(group_time: float, params: JumpParams) -> bool:
    """No snowballs, showers or after-jump flags: the jumps themselves (and their neighbours) only."""
    if params.expand_large_events or params.find_showers:
        return False
    if int(params.after_jump_flag_time1 // group_time) > 0 or int(params.after_jump_flag_time2 // group_time) > 0:
        return False
    return True


def sigclip_applies(groupdq: np.ndarray, group_time: float, params: JumpParams) -> bool:
    """Whether stcal would sigma-clip across integrations here and the block-wise version reproduces it.

    stcal clips when the integrations (or, with ``only_use_ints`` false, the usable groups)
    number at least ``minimum_sigclip_groups``, whatever the usable groups per integration.
    """
    if not _detection_only(group_time, params):
        return False
    if params.only_use_ints:
        return groupdq.shape[0] >= params.minimum_sigclip_groups
    return _usable_group_counts(groupdq)[1] >= params.minimum_sigclip_groups


def kernel_method_for(nints: int, min_usable: int, total: int, params: JumpParams) -> str | None:
    """stcal's method from the usable-group counts (see _usable_group_counts); None where the kernel does not apply."""
    sigclip_groups = nints if params.only_use_ints else total
    if sigclip_groups >= params.minimum_sigclip_groups:
        return None
    if min_usable < 3:  # stcal skips detection (and reports -99 CRs)
        return None
    return "single" if min_usable - 1 >= params.min_diffs_single_pass else "iterative"


def _detect_with_kernel(data, groupdq, pixeldq, gain, readnoise, *, nframes, params, single_pass) -> JumpResult:
    from ._jump_kernel import find_jumps

    flags = dqflags.PIXEL
    bad_gain = (gain <= 0.0) | np.isnan(gain)
    if bad_gain.any():
        pixeldq[bad_gain] |= np.uint32(flags["NO_GAIN_VALUE"] | flags["DO_NOT_USE"])
    log.info("Executing two-point difference method (%s pass, compiled kernel)", "single" if single_pass else "iterative")
    n_crs = find_jumps(
        data, groupdq, gain, readnoise,
        nframes=nframes,
        rejection_threshold=params.rejection_threshold,
        three_group_rejection_threshold=params.three_group_rejection_threshold,
        four_group_rejection_threshold=params.four_group_rejection_threshold,
        single_pass=single_pass,
        flag_4_neighbors=params.flag_4_neighbors,
        min_jump_to_flag_neighbors=params.min_jump_to_flag_neighbors,
        max_jump_to_flag_neighbors=params.max_jump_to_flag_neighbors,
        dnu=flags["DO_NOT_USE"], sat=flags["SATURATED"], jump=flags["JUMP_DET"],
    )
    return JumpResult(groupdq, pixeldq, n_crs, 0)


def _detect_with_sigclip(data, groupdq, pixeldq, gain, readnoise, *, nframes, params) -> JumpResult:
    from ._jump_sigclip import detect_sigclip

    flags = dqflags.PIXEL
    bad_gain = (gain <= 0.0) | np.isnan(gain)
    if bad_gain.any():
        pixeldq[bad_gain] |= np.uint32(flags["NO_GAIN_VALUE"] | flags["DO_NOT_USE"])
    log.info("Executing two-point difference method (sigma clipping over %d integrations, by blocks of rows)",
             groupdq.shape[0])
    n_crs = detect_sigclip(
        data, groupdq, gain, readnoise,
        nframes=nframes,
        rejection_threshold=params.rejection_threshold,
        only_use_ints=params.only_use_ints,
        flag_4_neighbors=params.flag_4_neighbors,
        min_jump_to_flag_neighbors=params.min_jump_to_flag_neighbors,
        max_jump_to_flag_neighbors=params.max_jump_to_flag_neighbors,
        dnu=flags["DO_NOT_USE"], sat=flags["SATURATED"], jump=flags["JUMP_DET"],
    )
    return JumpResult(groupdq, pixeldq, n_crs, 0)


def _detect_with_stcal(data, groupdq, pixeldq, gain, readnoise, *, nframes, group_time, params) -> JumpResult:
    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData

    jd = JumpData(gain2d=gain, rnoise2d=readnoise, dqflags=_stcal_flags())
    jd.init_arrays_from_arrays(data, groupdq, pixeldq)
    jd.nframes = int(nframes)
    # evenly sampled groups: unit time steps, 2*nframes reads per difference
    jd.dt_group = np.ones(1)
    jd.n_reads_groupdiff = np.ones(1) * 2 * jd.nframes
    jd.set_detection_settings(
        params.rejection_threshold,
        params.three_group_rejection_threshold,
        params.four_group_rejection_threshold,
        params.max_jump_to_flag_neighbors,
        params.min_jump_to_flag_neighbors,
        params.flag_4_neighbors,
    )
    # after-jump flagging is given in seconds; stcal counts groups
    jd.set_after_jump(
        params.after_jump_flag_dn1,
        int(params.after_jump_flag_time1 // group_time),
        params.after_jump_flag_dn2,
        int(params.after_jump_flag_time2 // group_time),
    )
    # jwst doubles the radius-like settings: stcal takes diameters
    jd.set_snowball_info(
        params.expand_large_events,
        params.min_jump_area,
        params.min_sat_area,
        params.expand_factor,
        params.sat_required_snowball,
        params.min_sat_radius_extend,
        params.sat_expand * 2,
        params.edge_size,
    )
    jd.set_shower_info(
        params.find_showers,
        params.extend_snr_threshold,
        params.extend_min_area,
        params.extend_inner_radius,
        params.extend_outer_radius,
        params.extend_ellipse_expand_ratio,
        params.min_diffs_single_pass,
        params.max_extended_radius * 2,
    )
    jd.set_sigma_clipping_info(params.minimum_groups, params.minimum_sigclip_groups, params.only_use_ints)
    jd.max_cores = "1"
    jd.grps_masked_after_shower = int(params.time_masked_after_shower // group_time)
    jd.mask_persist_grps_next_int = params.mask_snowball_core_next_int
    jd.persist_grps_flagged = int(params.snowball_time_masked_next_int // group_time)
    # jwst 3.0 scales stcal's own default amplitude (6 DN/s) by the group time and
    # never passes max_shower_amplitude on; we do the same so that results agree.
    jd.max_shower_amplitude = jd.max_shower_amplitude * group_time
    gdq, pdq, n_crs, n_ext = detect_jumps_data(jd)
    return JumpResult(gdq, pdq, int(n_crs), int(n_ext))


def _reference_arrays(model, refs):
    from ._subarray import ref_region

    gain = np.asarray(ref_region(model, refs["gain"], "data"), dtype=np.float32)
    rnoise = np.asarray(ref_region(model, refs["readnoise"], "data"), dtype=np.float32)
    return gain, rnoise


@step("jump", "JumpStep", params=JumpParams, reftypes=("gain", "readnoise"), suffix="jump")
def jump(model, refs, params: JumpParams):
    """Flag cosmic-ray jumps (two-point difference, stcal) in GROUPDQ."""
    nints, ngroups, nrows, ncols = model.data.shape
    if ngroups <= 2:
        log.warning("jump: cannot detect jumps with NGROUPS<=2; step skipped")
        return model, "SKIPPED"
    exp = model.meta.exposure
    if not exp.nframes:
        from ..errors import InputFileError

        raise InputFileError(model.meta.filename or "<input>", "jump needs NFRAMES (meta.exposure.nframes)")
    if not exp.group_time:
        from ..errors import InputFileError

        raise InputFileError(model.meta.filename or "<input>", "jump needs TGROUP (meta.exposure.group_time)")
    log.info("CR rejection threshold = %g sigma", params.rejection_threshold)
    gain, rnoise = _reference_arrays(model, refs)
    res = detect_jumps(
        model.data,
        model.groupdq,
        model.pixeldq,
        gain,
        rnoise,
        nframes=exp.nframes,
        group_time=exp.group_time,
        params=params,
    )
    model.groupdq = res.groupdq
    model.pixeldq = res.pixeldq

    # groups that are DO_NOT_USE in every pixel do not count (one plane at a time: no 4-D temporary)
    _, usable_total = _usable_group_counts(model.groupdq)
    record_event_rates(exp, res.n_primary_crs, res.n_extended_events, usable_total, nints, nrows * ncols)
    report_qa(**{"jumps flagged": int(res.n_primary_crs), "large events": int(res.n_extended_events)})
    return model


def record_event_rates(exp, n_crs: int, n_extended: int, usable_total: int, nints: int, npix: int) -> None:
    """Cosmic-ray and extended-event rates in the exposure metadata, as jwst records them."""
    usable_groups = usable_total - nints
    if usable_groups >= 1:
        total_time = exp.group_time * usable_groups
        exp.primary_cosmic_rays = 1000 * n_crs / (total_time * npix)
        exp.extended_emission_events = 1e6 * n_extended / (total_time * npix)
