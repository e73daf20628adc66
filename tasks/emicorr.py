"""emicorr: remove MIRI's electromagnetic-interference ripple from ramps (jwst 3.0's EmiCorrStep).

Skipped by default, as in jwst 3.0.  MIRI reads its four output channels at
once, one pixel every 10 microseconds (9 samples a pixel in SLOW mode), so an
EMI tone of frequency f adds to every pixel a wave whose phase follows from
the pixel's read time.  For each frequency listed in the EMICORR reference for
the exposure's subarray and read pattern (or given as ``onthefly_corr_freq``),
in turn, the wave is fitted and subtracted from all four channels:

``joint`` (jwst's default, needs the reference waveform)
    The ramps of quiet pixels (scatter below twice the median, PIXELDQ 0;
    channels 1 and 2 of the reference columns left out) are summed per phase
    bin of the reference waveform.  At 500 trial phase offsets the best
    amplitude is solved in closed form such that subtracting the phased,
    scaled waveform makes those ramps most nearly straight lines (least chi
    squared); a parabola through the best three trial phases refines the
    phase.  One phase and amplitude for the whole exposure, or one per
    integration with ``fit_ints_separately``.

``sequential`` (the original IDL method; used when there is no waveform)
    Each integration's ramp is flattened by a straight line and a
    median "self superbias", the four channels averaged, and the result binned
    by EMI phase into a phased amplitude wave (sigma-clipped mean per bin)
    over the first ``nints_to_phase`` integrations (by default enough for
    ``use_n_cycles`` EMI cycles).  If a reference waveform exists, it is
    shifted to best correlate with that wave (and scaled to it when
    ``scale_reference``) and used instead.  The wave is looked up at every
    pixel's phase and subtracted.

Read times: rows of ``rowclocks`` pixel times, plus ``(1024 - ny) * 7`` idle
row clocks a frame, plus ``frameclocks`` between integrations for the FASTR1
and SLOWR1 patterns.
"""

from __future__ import annotations

import datetime
import logging
import math
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import field_validator

from ..errors import ReferenceFileError
from .base import StepParams, _record_ref, step

log = logging.getLogger("webbflow.steps.emicorr")

ALLOWED_READPATTS = ("FAST", "FASTR1", "SLOW", "SLOWR1")

# Clocking of MIRI subarrays for corrections made on the fly (no reference file).
SUBARRAY_CLOCKS = {
    "SLITLESSPRISM": (28, 15904),
    "MASKLYOT": (90, 32400),
    "SUB64": (28, 8512),
    "SUB128": (44, 11904),
    "MASK1140": (82, 23968),
    "MASK1550": (82, 23968),
    "MASK1065": (82, 23968),
    "FULL_FAST": (271, 277504),
    "FULL_SLOW": (2333, 2388992),
    "BRIGHTSKY": (162, 86528),
    "SUB256": (96, 29952),
}  # name: (rowclocks, frameclocks)

PIXEL_TIME = 10.0e-6  # seconds per pixel sample
N_TRIAL_PHASES = 500


class EmiCorrParams(StepParams):
    skip: bool = True  # jwst 3.0 skips emicorr by default
    algorithm: Literal["sequential", "joint"] = "joint"  # fit all EMI frequencies at once (joint) or one after the other (sequential)
    nints_to_phase: int | None = None  # integrations to phase (sequential)
    nbins: int | None = None  # bins in one phased wave (sequential)
    scale_reference: bool = True  # scale the reference wave to the data's amplitude (sequential)
    onthefly_corr_freq: list[float] | None = None  # frequencies (Hz) to correct without a reference file
    use_n_cycles: int | None = 3  # EMI cycles used to find the phase (sequential); None: all integrations
    fit_ints_separately: bool = False  # joint: one phase and amplitude per integration
    user_supplied_reffile: str | None = None  # deprecated in jwst; same as override_emicorr
    save_intermediate_results: bool = False  # write the reference made on the fly (suffix emi_ref_waves)

    @field_validator("onthefly_corr_freq", mode="before")
    @classmethod
    def _split(cls, v):
        if isinstance(v, str):
            v = v.strip().strip("[]")
            return [float(x) for x in v.replace(",", " ").split()] if v else None
        return v


# ---------------------------------------------------------------------------
# reference file access


def _get(node, key):
    if node is None:
        return None
    if isinstance(node, dict):
        return node.get(key)
    return getattr(node, key, None)


def subarray_case(ref, subarray: str, readpatt: str, detector: str):
    """(rowclocks, frameclocks, [frequency names]) for this configuration from the EMICORR reference, or None."""
    readpatt = readpatt.upper()
    speed = "SLOW" if "SLOW" in readpatt else "FAST" if "FAST" in readpatt else None
    if speed is None:
        return None
    name = f"{subarray}_{speed}" if "FULL" in subarray else subarray
    case = _get(_get(ref, "subarray_cases"), name)
    if case is None:
        log.debug("emicorr: subarray %s not in the reference", name)
        return None
    rowclocks, frameclocks = _get(case, "rowclocks"), _get(case, "frameclocks")
    freqs = _get(_get(case, "freqs"), speed)
    if speed == "SLOW":
        freqs = _get(freqs, detector)
    if rowclocks is None or frameclocks is None or freqs is None:
        return None
    return int(rowclocks), int(frameclocks), [str(f) for f in freqs]


def frequency_info(ref, name: str) -> tuple[float, np.ndarray]:
    entry = _get(_get(ref, "frequencies"), name)
    if entry is None or _get(entry, "frequency") is None:
        raise ReferenceFileError("emicorr", getattr(ref.meta, "filename", None) or "<in memory>", f"has no frequency {name!r}")
    return float(_get(entry, "frequency")), np.asarray(_get(entry, "phase_amplitudes"), dtype=np.float64)


# ---------------------------------------------------------------------------
# shared helpers


def _spline(wave: np.ndarray):
    """Periodic lookup of a waveform sampled at bin centres, as a cubic (not-a-knot) spline over [0, 1)."""
    from scipy.interpolate import make_interp_spline

    n = len(wave)
    x = (np.arange(n + 2) - 0.5) / n
    y = np.concatenate(([wave[-1]], wave, [wave[0]]))
    return make_interp_spline(x, y, k=3)


def rebin_nearest(arr: np.ndarray, newlen: float) -> np.ndarray:
    """Resample a 1-D array to ``newlen`` (possibly fractional: ceil of it) samples, nearest lower index (IDL congrid)."""
    old = arr.shape[0]
    stride = float(old) / newlen
    n = math.ceil(old / stride)
    idx = (np.arange(n, dtype=np.float64) * stride).astype(np.int32)
    return arr[idx]


# ---------------------------------------------------------------------------
# joint algorithm


def _phase_bins(data, pdq, nbins_wave, phase):
    """Sum the ramps of quiet pixels by the waveform bin of their first-group phase.

    Returns all_y (nints, nbins, ngroups) and all_n (nints, nbins).
    """
    nints, ngroups, ny, nx = data.shape
    nx4 = nx // 4
    std = np.std(data, axis=1)
    ok = (std < 2 * np.median(std)) & (pdq == 0)
    cols = np.arange(nx4 * 4)
    keep = (cols // 4 != 1) & (cols // 4 != 2)  # channel columns 1 and 2 are reference columns
    cols = cols[keep]
    bins = (phase[:, cols // 4] * nbins_wave).astype(np.int64)  # (ny, ncols), in row-major pixel order
    flat_bins = bins.ravel()
    all_y = np.zeros((nints, nbins_wave, ngroups))
    all_n = np.zeros((nints, nbins_wave))
    for i in range(nints):
        oki = ok[i][:, cols].ravel()
        all_n[i] = np.bincount(flat_bins, weights=oki.astype(np.float64), minlength=nbins_wave)
        di = data[i][:, :, cols].reshape(ngroups, -1)
        for g in range(ngroups):
            w = (di[g] * oki).astype(np.float64)
            all_y[i, :, g] = np.bincount(flat_bins, weights=w, minlength=nbins_wave)
    return all_y, all_n


class _JointFit:
    """Sums over groups and phases needed to get chi squared and the best amplitude at any trial phase."""

    def __init__(self, all_y, all_n, spline, template, trial, dphase_int):
        self.nints, self.nbins, self.ngroups = all_y.shape
        t = np.arange(self.ngroups)
        self.s_tt = float(np.sum(t**2))
        self.s_t = float(np.sum(t))
        self.delta = self.ngroups * self.s_tt - self.s_t**2
        self.trial = trial
        self.dphase_int = dphase_int
        s_y = np.sum(all_y, axis=2)  # (nints, nbins)
        s_ty = np.sum(all_y * t, axis=2)
        ntrial = len(trial)
        # per trial phase k and integration i: the quadratic (a) and linear (b) chi-squared terms
        self.a = np.empty((ntrial, self.nints))
        self.b = np.empty((ntrial, self.nints))
        chunk = max(1, int(2e6 // max(1, self.nbins * self.ngroups)))  # ~16 MB of trial waveforms at a time
        d = self.delta
        for k0 in range(0, ntrial, chunk):
            ks = trial[k0 : k0 + chunk]
            ph = (template[None, :, :] + ks[:, None, None]) % 1  # (k, nbins, ngroups)
            z = spline(ph)
            s_z = np.sum(z, axis=2)
            s_tz = np.sum(z * t, axis=2)
            s_zz = np.sum(z * z, axis=2)
            qa = (-self.s_tt * s_z**2 + 2 * self.s_t * s_z * s_tz - self.ngroups * s_tz**2 + s_zz * d) / d  # (k, nbins)
            self.a[k0 : k0 + chunk] = qa @ all_n.T
            lin_y = self.s_tt * s_z - self.s_t * s_tz
            lin_ty = self.ngroups * s_tz - self.s_t * s_z
            s_yz = np.einsum("kpg,ipg->ki", z, all_y)
            self.b[k0 : k0 + chunk] = (2 / d) * (lin_y @ s_y.T + lin_ty @ s_ty.T) - 2 * s_yz

    def trial_index(self, phases: np.ndarray, i: int) -> np.ndarray:
        """For each phase, the first trial phase at or after ``phase + i * dphase_int`` (cyclically)."""
        off = (self.trial[None, :] - np.asarray(phases)[:, None] - self.dphase_int * i) % 1
        return np.argmin(np.abs(off), axis=1)

    def chisq_amplitude(self, phases, ints=None):
        phases = np.atleast_1d(np.asarray(phases, dtype=np.float64))
        ints = range(self.nints) if ints is None else ints
        a = np.zeros(len(phases))
        b = np.zeros(len(phases))
        for i in ints:
            k = self.trial_index(phases, i)
            a += self.a[k, i]
            b += self.b[k, i]
        bad = np.isclose(a, 0, atol=1e-8) | ~np.isfinite(a) | ~np.isfinite(b)
        with np.errstate(divide="ignore", invalid="ignore"):
            c = np.where(bad, 0.0, -b / (2 * a))
            chi = np.where(bad, np.nan, a * c**2 + b * c)
        return chi, c


def best_phase(phases: np.ndarray, chisq: np.ndarray) -> float:
    """Vertex of the parabola through the lowest chi squared and its two (cyclic) neighbours."""
    if not np.isfinite(chisq).any():
        log.warning("emicorr: chi squared is NaN at every phase")
        return float(phases[0])
    ib = int(np.nanargmin(chisq))
    im, ip = ib - 1, (ib + 1) % len(chisq)
    y = np.array([chisq[im], chisq[ib], chisq[ip]])
    if not np.isfinite(y).all():
        return float(phases[ib])
    if np.nanstd(y) == 0:
        return float(phases[ib])
    x = [phases[im], phases[ib], phases[ip]]
    a, b, _ = np.polyfit(x, y, 2)
    return float(-b / (2 * a))


def correct_joint(data, pdq, wave, nsamples, rowclocks, frameclocks, period, fit_ints_separately=False):
    """Fit the EMI waveform (amplitude and phase) jointly with straight ramps and subtract it, in place."""
    nints, ngroups, ny, nx = data.shape
    nx4 = nx // 4
    frametime = ny * rowclocks + (1024.0 - ny) * 7.0
    t0 = (np.arange(ny)[:, None] * rowclocks + np.arange(nx4)[None, :] * nsamples).astype(np.float64)
    phase = (t0 / period) % 1
    dphase = (frametime / period) % 1  # phase step from one group to the next
    dphase_int = dphase * ngroups + frameclocks / period  # phase step from one integration to the next
    spline = _spline(np.asarray(wave, dtype=np.float64))
    nbins = len(wave)
    centres = (np.arange(nbins) + 0.5) / nbins
    template = (centres[:, None] + np.arange(ngroups)[None, :] * dphase) % 1  # (nbins, ngroups)
    all_y, all_n = _phase_bins(data, pdq, nbins, phase)
    trial = np.arange(N_TRIAL_PHASES) / N_TRIAL_PHASES
    fit = _JointFit(all_y, all_n, spline, template, trial, dphase_int)
    if fit_ints_separately:
        phases, amps = [], []
        for i in range(nints):
            chi, _ = fit.chisq_amplitude(trial, ints=[i])
            bp = best_phase(trial, chi)
            phases.append(bp + i * dphase_int)
            amps.append(float(fit.chisq_amplitude([bp], ints=[i])[1][0]))
    else:
        chi, _ = fit.chisq_amplitude(trial)
        bp = best_phase(trial, chi)
        amp = float(fit.chisq_amplitude([bp])[1][0])
        phases = list((bp + np.arange(nints) * dphase_int) % 1)
        amps = [amp] * nints
    log.info("emicorr (joint): amplitude %s DN at phase %s", np.round(amps[:3], 4).tolist(), np.round(phases[:3], 4).tolist())
    for i in range(nints):
        for j in range(ngroups):
            emi = amps[i] * spline((phase + dphase * j + phases[i]) % 1)
            for ch in range(4):
                data[i, j, :, ch::4] -= emi
    return data


# ---------------------------------------------------------------------------
# sequential algorithm


def _line_fit(ramp: np.ndarray):
    """Least-squares slope and intercept per pixel of ``ramp`` (n, ny, nx) against 0..n-1."""
    n = ramp.shape[0]
    t = np.arange(n, dtype=np.float64)
    st = float(t.sum())
    stt = float((t * t).sum())
    sy = np.zeros(ramp.shape[1:])
    sty = np.zeros(ramp.shape[1:])
    for g in range(n):
        sy = sy + ramp[g]
        sty = sty + t[g] * ramp[g]
    den = n * stt - st * st
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (n * sty - st * sy) / den
        icpt = (stt * sy - st * sty) / den
    return slope, icpt


def _flattened_channels(ramp: np.ndarray) -> np.ndarray:
    """Remove a linear signal and a median bias from one integration and average the 4 channels.

    Returns (ngroups, ny, nx // 4), each frame with its median removed.
    """
    ngroups, ny, nx = ramp.shape
    slope, _ = _line_fit(ramp[1 : ngroups - 1])
    flat = np.empty_like(ramp)
    for g in range(ngroups):
        flat[g] = ramp[g] - slope * g
    inner = flat[1 : ngroups - 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bias = np.nanmin(inner, axis=0) if inner.shape[0] <= 2 else np.nanmedian(inner, axis=0)
    out = np.empty((ngroups, ny, nx // 4))
    for g in range(ngroups):
        f = flat[g] - bias
        avg = (f[:, 0:nx:4] + f[:, 1:nx:4] + f[:, 2:nx:4] + f[:, 3:nx:4]) / 4.0
        avg[:, 1] = (avg[:, 0] + avg[:, 3]) / 2
        avg[:, 2] = (avg[:, 0] + avg[:, 3]) / 2
        out[g] = avg - np.median(avg)
    return out


def _read_phases(nints, ngroups, ny, nx4, nsamples, rowclocks, frameclocks_between, period, last_col_refpix):
    """Phase (0..1) of each pixel read, (nints, ngroups, ny, nx4), from the pixel clock since the first read."""
    frame = ny * rowclocks + int((1024 - ny) * 7)
    per_int = ngroups * frame + frameclocks_between
    cols = np.arange(nx4, dtype=np.uint64) * np.uint64(nsamples)
    if last_col_refpix:
        # the right-hand reference pixel of full-frame rows is read 3 samples late
        # (jwst adds 2**32 + 3 sample times there; kept for the same answer)
        cols[-1] += np.uint64(3 + 2**32)
    out = np.empty((nints, ngroups, ny, nx4))
    rows = np.arange(ny, dtype=np.uint64) * np.uint64(rowclocks)
    for i in range(nints):
        for g in range(ngroups):
            start = np.uint64(i * per_int + g * frame)
            t = (start + rows[:, None] + cols[None, :]) / period
            out[i, g] = t - t.astype(np.uint64)
    return out


def _phased_wave(dd, ph, nbins):
    """Sigma-clipped mean of ``dd`` in each of ``nbins`` phase bins (lower edge open, upper closed), median removed."""
    from astropy.stats import sigma_clipped_stats

    edges = np.array([nb / nbins for nb in range(nbins + 1)])
    b = np.searchsorted(edges, ph.ravel(), side="left") - 1
    vals = dd.ravel()
    order = np.argsort(b, kind="stable")
    b_sorted = b[order]
    starts = np.searchsorted(b_sorted, np.arange(nbins), side="left")
    stops = np.searchsorted(b_sorted, np.arange(nbins), side="right")
    pa = np.empty(nbins)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for nb in range(nbins):
            sel = vals[order[starts[nb] : stops[nb]]]
            pa[nb] = sigma_clipped_stats(sel)[0]
    return pa - np.median(pa)


def correct_sequential(model, names, freqs, waves, nsamples, rowclocks, frameclocks, *, nints_to_phase=None,
                       nbins=None, scale_reference=True, use_n_cycles=3):
    """Measure each EMI frequency's phased wave in the data and subtract it, in place.

    Returns {name: (frequency, phased wave)} for writing a reference made on the fly.
    """
    data = model.data
    nints, ngroups, ny, nx = data.shape
    nx4 = nx // 4
    readpatt = (model.meta.exposure.readpatt or "").upper()
    xsize = model.meta.subarray.xsize or nx
    xstart = model.meta.subarray.xstart or 1
    last_col_refpix = int(xsize / 4 + xstart - 1) == 258
    between = frameclocks if readpatt in ("FASTR1", "SLOWR1") else 0
    made = {}
    for fi, name in enumerate(names):
        freq = freqs[fi]
        period = (1.0 / freq) / PIXEL_TIME
        log.info("emicorr (sequential): %s Hz (%d of %d)", freq, fi + 1, len(names))
        # jwst carries nints_to_phase from one frequency to the next; so do we
        if nints_to_phase is None and use_n_cycles is None:
            nints_to_phase = nints
        elif nints_to_phase is None:
            nints_to_phase = int(np.ceil((use_n_cycles * period) / (frameclocks * ngroups)))
        elif use_n_cycles == 3 and nints_to_phase > nints:
            nints_to_phase = nints
        dd = np.empty((nints, ngroups, ny, nx4))
        for i in range(nints):
            dd[i] = _flattened_channels(data[i])
        phases = _read_phases(nints, ngroups, ny, nx4, nsamples, rowclocks, between, period, last_col_refpix)
        nb = int(period / 2.0) if nbins is None else nbins
        if nb > 501:
            nb = 500
        pa = _phased_wave(dd[:nints_to_phase], phases[:nints_to_phase], nb)
        lut = rebin_nearest(pa, period)
        if waves:
            ref = np.asarray(waves[fi], dtype=np.float64)
            n = ref.size
            pa_n = rebin_nearest(pa, n)
            rolled = np.stack([np.roll(ref, s) for s in range(n)])
            with np.errstate(divide="ignore", invalid="ignore"):
                rc = rolled - rolled.mean(axis=1, keepdims=True)
                pc = pa_n - pa_n.mean()
                cc = (rc @ pc) / np.sqrt((rc * rc).sum(axis=1) * (pc * pc).sum())
            shift = int(np.argmax(cc))
            lut_ref = rebin_nearest(np.roll(ref, shift), period)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m, _ = np.polyfit(lut_ref, lut, 1)
            lut = lut_ref * m if scale_reference else lut_ref
        made[name] = (freq, pa)
        noise = lut[(phases * period).astype(int)]
        noise[~np.isfinite(noise)] = 0.0
        for ch in range(4):
            data[..., ch::4] -= noise
    return made


def write_onthefly_reference(path, made, subarray, readpatt, detector, rowclocks, frameclocks):
    from ..models import EmiModel

    ref = EmiModel()
    names = list(made)
    ref.set_tree(
        frequencies={n: {"frequency": f, "phase_amplitudes": pa} for n, (f, pa) in made.items()},
        subarray_cases={
            subarray: {
                "rowclocks": rowclocks,
                "frameclocks": frameclocks,
                "freqs": {readpatt: names} if "FAST" in readpatt else {readpatt: {detector: names}},
            }
        },
    )
    ref.meta.reftype = "emicorr"
    ref.meta.instrument.name = "MIRI"
    ref.meta.author = "webbflow"
    ref.meta.description = "EMI correction file made on the fly"
    ref.meta.pedigree = "GROUND"
    ref.meta.useafter = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    path = Path(path).with_suffix(".asdf")
    ref.save(path)
    log.info("emicorr: reference made on the fly written to %s", path)
    return path


# ---------------------------------------------------------------------------
# the step


@step("emicorr", "EmiCorrStep", params=EmiCorrParams, optional_reftypes=("emicorr",), suffix="emicorr")
def emicorr(model, refs, params: EmiCorrParams):
    """Fit and subtract MIRI EMI noise from the ramps."""
    inst = (model.meta.instrument.name or "").upper()
    if inst != "MIRI":
        log.warning("emicorr is not implemented for instrument %s; skipped", inst or "?")
        return model, "SKIPPED"
    readpatt = (model.meta.exposure.readpatt or "").upper()
    if readpatt not in ALLOWED_READPATTS:
        log.warning("emicorr is not implemented for read pattern %s; skipped", readpatt or "?")
        return model, "SKIPPED"

    ref = None
    if params.onthefly_corr_freq is None:
        if params.user_supplied_reffile:
            from ..refs import open_reference

            log.warning("emicorr: 'user_supplied_reffile' is deprecated; use override_emicorr")
            ref = open_reference("emicorr", params.user_supplied_reffile)
            _record_ref(model, "emicorr", str(params.user_supplied_reffile))
        else:
            ref = refs.get("emicorr")
        if ref is None:
            log.warning("emicorr: no EMICORR reference file; skipped")
            return model, "SKIPPED"

    ngroups = model.data.shape[1]
    if ngroups < 3:
        log.warning("emicorr cannot run with %d groups; skipped", ngroups)
        return model, "SKIPPED"
    algorithm = params.algorithm
    if algorithm == "sequential" and ngroups < 10:
        log.warning("emicorr: 'sequential' with %d groups; 'joint' is recommended below 10 groups", ngroups)
    if algorithm == "joint" and ref is None:
        log.warning("emicorr: 'joint' needs an EMICORR reference waveform; using 'sequential'")
        algorithm = "sequential"

    subarray = model.meta.subarray.name or "FULL"
    detector = model.meta.instrument.detector or ""
    names: list[str] = []
    freqs: list[float] = []
    waves: list[np.ndarray] = []
    if ref is not None:
        case = subarray_case(ref, subarray, readpatt, detector)
        if case is None:
            log.warning("emicorr: no correction for subarray %s, %s, %s; skipped", subarray, readpatt, detector)
            return model, "SKIPPED"
        rowclocks, frameclocks, names = case
        for n in names:
            f, w = frequency_info(ref, n)
            freqs.append(f)
            waves.append(w)
    else:
        key = subarray
        if key == "FULL":
            key += "_FAST" if "FAST" in readpatt else "_SLOW"
        if key not in SUBARRAY_CLOCKS:
            log.warning("emicorr: no clocking known for subarray %s; skipped", key)
            return model, "SKIPPED"
        rowclocks, frameclocks = SUBARRAY_CLOCKS[key]
        freqs = [float(f) for f in params.onthefly_corr_freq]
        names = [repr(f) for f in freqs]
    if not freqs:
        log.warning("emicorr: no frequencies to correct for this configuration; skipped")
        return model, "SKIPPED"
    log.info("emicorr: correcting %d frequencies %s with the %s algorithm", len(names), names, algorithm)

    nsamples = model.meta.exposure.nsamples
    if nsamples is None:
        nsamples = 9 if "SLOW" in readpatt else 1
        log.warning("emicorr: NSAMPLES missing; assuming %d for %s", nsamples, readpatt)

    if model.data.dtype != np.float32:
        model.data = model.data.astype(np.float32)
    if algorithm == "joint":
        between = frameclocks if readpatt in ("FASTR1", "SLOWR1") else 0
        pdq = model.pixeldq
        for f, w in zip(freqs, waves):
            correct_joint(model.data, pdq, w, nsamples, rowclocks, between, (1.0 / f) / PIXEL_TIME,
                          fit_ints_separately=params.fit_ints_separately)
    else:
        made = correct_sequential(
            model, names, freqs, waves, nsamples, rowclocks, frameclocks,
            nints_to_phase=params.nints_to_phase, nbins=params.nbins,
            scale_reference=params.scale_reference, use_n_cycles=params.use_n_cycles,
        )
        if params.save_intermediate_results and ref is None:
            from ..models.naming import product_path

            path = product_path(params.output_dir or Path.cwd(), model.meta.filename or "emicorr.fits", "emi_ref_waves")
            write_onthefly_reference(path, made, subarray, readpatt, detector, rowclocks, frameclocks)
    return model


def _emicorr_refs_needed(model, params: EmiCorrParams):
    """No EMICORR lookup when the correction is made on the fly or the user names the file."""
    return () if params.onthefly_corr_freq is not None or params.user_supplied_reffile else ("emicorr",)


def _register_extras():
    from .base import STEPS

    STEPS["emicorr"].extra["optional_reftypes_needed"] = _emicorr_refs_needed


_register_extras()
