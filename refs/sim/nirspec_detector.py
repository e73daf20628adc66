"""NIRSpec detector-level exposures: full frames of NRS1/NRS2, traditional (NRSRAPID) or IRS2 readouts.

``simulate_nirspec_ramp(detector, readpatt, ngroups, nints, refs, seed)`` returns a
Level1bModel (uint16 SCI) and its truth.  What is put in, in the order the
detector sees it:

1. **Illumination: spectral-trace-like stripes, not a spectrograph.**  Until
   NIRSpec's optical model (the WCS of issue 19's spec2 part) lands, the scene
   is a set of horizontal stripes along the DMS x axis (NIRSpec's dispersion
   direction): Gaussian cross-dispersion profiles (sigma 1.2 px) of a few
   continuum rates, one of them bright enough to saturate part-way up the
   ramp.  The truth dict holds the rate image (DN/s) and the stripes' rows.
2. **Charge**: Poisson electrons frame by frame (frames averaged into groups
   for NRSIRS2's 5 frames), plus cosmic rays (3x3 footprint) that stay in all
   later reads; dark current from the dark reference.
3. **Detector**: the exact inverse of the linearity reference's polynomial,
   then the superbias (IRS2 layout for IRS2 readouts).
4. **Readout electronics**, in detector time order: each of the five outputs
   (the reference output and four science outputs, outputs read backwards
   mirrored) sees the same 1/f-like noise sequence in time plus its own
   offset drifting from group to group, plus white read noise.  In IRS2 frames
   the interleaved reference pixels (4 after every 8 normal pixels, then 8
   more normal ones) and the reference output carry bias and these drifts but
   no light, as the real readout does: that is what jwst's IRS2 refpix
   algorithm removes.  In NRSRAPID frames the 4-pixel border is the
   reference.

IRS2 frames are 3200 rows in DMS orientation (NRS1: rows in detector read
order; NRS2: reversed) with NRS_NORM=16, NRS_REF=4; SUBSIZE2 stays 2048.
Frame times are the flight values: 14.58889 s for IRS2 full frames, 10.73676 s
for traditional ones.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import numpy as np

from ...errors import ParameterError
from ..synthetic_nirspec import AXES, DETECTORS, IRS2_READPATTS, READPATTS, irs2_rows

TFRAME = {"IRS2": 14.58889, "TRADITIONAL": 10.73676}
NRS_NORM, NRS_REF = 16, 4
EXP_TYPES = ("NRS_FIXEDSLIT", "NRS_BRIGHTOBJ", "NRS_MSASPEC", "NRS_IFU")
STRIPES = ((300, 25.0), (700, 120.0), (1024, 4000.0), (1400, 60.0), (1800, 300.0))  # (DMS row, peak DN/s)
CORRELATED_NOISE_RMS = 4.0  # DN, the 1/f-like noise common to the five outputs
OUTPUT_DRIFT_RMS = 5.0  # DN per group


def frame_time(readpatt: str) -> float:
    return TFRAME["IRS2" if readpatt.upper() in IRS2_READPATTS else "TRADITIONAL"]


def stripe_rates(shape=(2048, 2048)) -> tuple[np.ndarray, list[int]]:
    ny, nx = shape
    y = np.arange(ny, dtype=np.float64)[:, None]
    x = np.linspace(0.0, 1.0, nx)[None, :]
    rate = np.full(shape, 0.2)  # a faint background
    for row, peak in STRIPES:
        profile = np.exp(-0.5 * ((y - row) / 1.2) ** 2)
        rate = rate + peak * profile * (0.6 + 0.4 * np.sin(np.pi * x))  # a continuum rising then falling
    rate[:4, :] = rate[-4:, :] = 0.0
    rate[:, :4] = rate[:, -4:] = 0.0
    return rate.astype(np.float32), [row for row, _ in STRIPES]


def _correlated(rng, n: int, rms: float) -> np.ndarray:
    """1/f-like noise: white noise smoothed over ~64 samples plus a slower random walk, scaled to ``rms``."""
    white = rng.standard_normal(n + 63)
    smooth = np.convolve(white, np.hanning(64) / 8.0, mode="valid")[:n]
    walk = np.cumsum(rng.standard_normal(n // 4096 + 2))
    slow = np.interp(np.arange(n), np.linspace(0, n, walk.size), walk - walk.mean())
    s = smooth + slow / max(1.0, float(np.std(slow))) * 0.5
    return (s * (rms / max(float(np.std(s)), 1e-9))).astype(np.float32)


def _dms_from_detector(det: np.ndarray, detector: str) -> np.ndarray:
    """Detector-oriented (..., 2048 slow, N fast) to DMS (..., N, 2048)."""
    if detector == "NRS2":
        det = det[..., ::-1, ::-1]
    return np.swapaxes(det, -2, -1)


def _electronics(rng, detector: str, nfast: int, irs2: bool) -> np.ndarray:
    """One group's readout pattern (DMS orientation): common 1/f noise in time plus per-output offsets."""
    nsect = 5 if irs2 else 4
    sector = nfast // nsect
    times = _correlated(rng, 2048 * sector, CORRELATED_NOISE_RMS).reshape(2048, sector)
    det = np.empty((2048, nfast), dtype=np.float32)
    for s in range(nsect):
        # outputs read in alternating directions
        seq = times[:, ::-1] if (s % 2 == (0 if irs2 else 1)) else times
        det[:, s * sector : (s + 1) * sector] = seq + np.float32(rng.normal(0.0, OUTPUT_DRIFT_RMS))
    return _dms_from_detector(det, detector)


def _check(detector: str, readpatt: str, exp_type: str, ngroups: int) -> None:
    """Refuse, in one line, what is not simulated (upper-case names)."""
    if detector not in DETECTORS:
        raise ParameterError(f"NIRSpec detectors are NRS1 and NRS2 (got {detector!r})")
    if readpatt not in READPATTS:
        raise ParameterError(f"readout pattern {readpatt!r} is not simulated for NIRSpec; choose {', '.join(READPATTS)}")
    if exp_type not in EXP_TYPES:
        raise ParameterError(f"exposure type {exp_type!r} is not simulated for NIRSpec; choose {', '.join(EXP_TYPES)}")
    if ngroups < 2:
        raise ParameterError("NIRSpec exposures need at least 2 groups")


def simulate_nirspec_ramp(detector: str = "NRS1", readpatt: str = "NRSIRS2RAPID", ngroups: int = 3, nints: int = 1,
                          refs: dict | None = None, seed: int = 0, exp_type: str = "NRS_FIXEDSLIT",
                          start_time: str = "2024-03-01T05:00:00", n_cosmic_rays: int = 40,
                          rate: np.ndarray | None = None, window: tuple[int, int] | None = None,
                          tframe: float | None = None):
    """A NIRSpec full-frame uncal exposure (Level1bModel) and its truth; see the module docstring.

    ``rate`` (full frame, DN/s; a callable of the integration for a time series) replaces the stripes;
    ``window`` = (first row 0-based, rows) reads only those rows (a traditional-readout subarray of full
    width, e.g. SUBS200A1), ``tframe`` its frame time (refs/sim/nirspec.py).
    """
    from ...models import Level1bModel
    from ..simulator import _polyval, invert_polynomial

    detector, readpatt, exp_type = detector.upper(), readpatt.upper(), exp_type.upper()
    _check(detector, readpatt, exp_type, ngroups)
    refs = refs or {}
    irs2 = readpatt in IRS2_READPATTS
    nframes, gap = READPATTS[readpatt]
    tframe = tframe or frame_time(readpatt)
    if window is not None and irs2:
        raise ParameterError("IRS2 readouts are full-frame only: no subarray")
    rows = irs2_rows(detector, NRS_NORM, NRS_REF) if irs2 else None
    nfast = 3200 if irs2 else 2048
    rng = np.random.default_rng([int(seed), DETECTORS[detector], 19])

    if rate is None:
        rate, stripe_rows = stripe_rates()
    else:
        stripe_rows = []
    rate_of = rate if callable(rate) else (lambda _i, r=rate: r)
    gain = np.asarray(refs["gain"].data, dtype=np.float32) if "gain" in refs else np.ones((2048, 2048), np.float32)
    coeffs = None
    if "linearity" in refs:
        coeffs = np.asarray(refs["linearity"].coeffs, dtype=np.float32).copy()
        bad = ~np.all(np.isfinite(coeffs), axis=0)
        coeffs[:, bad] = 0.0
        coeffs[1, bad] = 1.0
    sat = np.asarray(refs["saturation"].data, dtype=np.float32) if "saturation" in refs else np.full((2048, 2048), 60000.0, np.float32)
    bias = np.asarray(refs["superbias"].data, dtype=np.float32) if "superbias" in refs else np.full((nfast, 2048), 13000.0, np.float32)
    bias = np.where(np.isfinite(bias), bias, np.float32(13000.0))
    bias_normal = bias[rows] if irs2 else bias
    cap = np.where(np.isfinite(sat), sat, 65535.0) - bias_normal + 200.0  # the pixel's own full well (raw DN)
    # the same full well as linearised signal, where the pixel stops responding
    lin_cap = _polyval(coeffs, cap).astype(np.float32) if coeffs is not None else cap
    dark = np.asarray(refs["dark"].data, dtype=np.float32) if "dark" in refs else None
    rn = np.asarray(refs["readnoise"].data, dtype=np.float32) if "readnoise" in refs else np.full((2048, 2048), 10.0, np.float32)
    rn_full = np.full((nfast, 2048), np.float32(np.median(rn)))
    if irs2:
        rn_full[rows] = rn
    else:
        rn_full = rn
    read_sigma = rn_full / np.float32(math.sqrt(nframes))
    y0, ny = window if window is not None else (0, 2048)
    if window is not None:  # the subarray's rows of every full-frame plane
        cut = slice(y0, y0 + ny)
        gain, bias, cap, lin_cap, read_sigma = gain[cut], bias[cut], cap[cut], lin_cap[cut], read_sigma[cut]
        coeffs = coeffs[:, cut] if coeffs is not None else None
        dark = dark[:, cut] if dark is not None else None
        n_cosmic_rays = max(1, round(n_cosmic_rays * ny / 2048))

    data = np.empty((nints, ngroups, ny if window is not None else nfast, 2048), dtype=np.uint16)
    crs = []
    for i in range(nints):
        e_rate = np.asarray(rate_of(i), dtype=np.float32)[y0:y0 + ny] * gain
        cum = np.zeros(e_rate.shape, dtype=np.float32)
        nfr = ngroups * (nframes + gap)
        if window is None:
            hits = rng.integers(5, 2043, size=(n_cosmic_rays, 2))
        else:
            hits = np.stack([rng.integers(1, ny - 1, n_cosmic_rays), rng.integers(5, 2043, n_cosmic_rays)], axis=1)
        hit_frames = rng.integers(0, nfr, size=n_cosmic_rays)
        hit_e = rng.lognormal(math.log(800.0), 0.8, size=n_cosmic_rays).astype(np.float32)
        frame = 0
        for g in range(ngroups):
            acc = np.zeros_like(cum)
            for _ in range(nframes):
                cum += rng.poisson(e_rate * tframe).astype(np.float32)
                for (y, x), f, e in zip(hits, hit_frames, hit_e):
                    if f == frame:
                        cum[y - 1 : y + 2, x - 1 : x + 2] += e * np.array([[0.02, 0.05, 0.02], [0.05, 0.72, 0.05], [0.02, 0.05, 0.02]], np.float32)
                        crs.append((i + 1, g + 1, int(x), int(y), float(e)))
                frame += 1
                acc += cum
            frame += gap
            signal = acc / np.float32(nframes) / gain
            if dark is not None:
                signal = signal + dark[min(g, dark.shape[0] - 1)]
            full = signal >= lin_cap
            signal = np.minimum(signal, lin_cap)
            raw = invert_polynomial(coeffs, signal) if coeffs is not None else signal
            raw = np.where(full, cap, np.minimum(raw, cap))
            frame_dn = bias.copy()
            if irs2:
                frame_dn[rows] += raw
            else:
                frame_dn += raw
            frame_dn += _electronics(rng, detector, nfast, irs2)[y0:y0 + ny] if window is not None else \
                _electronics(rng, detector, nfast, irs2)
            frame_dn += rng.standard_normal(frame_dn.shape, dtype=np.float32) * read_sigma
            np.rint(frame_dn, out=frame_dn)
            np.clip(frame_dn, 0, 65535, out=frame_dn)
            data[i, g] = frame_dn.astype(np.uint16)

    model = Level1bModel(data=data)
    _fill_metadata(model, detector, readpatt, exp_type, ngroups, nints, nframes, gap, tframe, irs2, start_time)
    truth = {"rate": rate, "stripe_rows": stripe_rows, "cosmic_rays": crs}
    return model, truth


def _fill_metadata(model, detector, readpatt, exp_type, ngroups, nints, nframes, gap, tframe, irs2, start_time):
    m = model.meta
    start = _dt.datetime.fromisoformat(start_time)
    tgroup = (nframes + gap) * tframe
    effint = (ngroups * (nframes + gap) - gap) * tframe
    duration = nints * effint + (nints - 1) * tframe
    end = start + _dt.timedelta(seconds=duration)
    m.telescope, m.origin, m.filetype = "JWST", "STSCI", "uncalibrated"
    m.bunit_data = "DN"
    m.instrument.name, m.instrument.detector = "NIRSPEC", detector
    m.instrument.filter, m.instrument.grating = "F170LP", "G235M"
    e = m.exposure
    e.type, e.readpatt = exp_type, readpatt
    e.nints, e.ngroups, e.nframes, e.groupgap = nints, ngroups, nframes, gap
    e.frame_divisor = nframes
    e.drop_frames1, e.drop_frames3 = 0, 0
    e.nsamples, e.sample_time = 1, 10.0
    e.frame_time, e.group_time = tframe, round(tgroup, 8)
    e.integration_time = round(effint, 8)
    e.exposure_time = e.effective_exposure_time = round(effint * nints, 8)
    e.duration = e.elapsed_exposure_time = round(duration, 8)
    e.nresets_at_start = e.nresets_between_ints = 1
    e.noutputs = 4
    e.integration_start, e.integration_end = 1, nints
    e.zero_frame, e.data_problem = False, False
    e.sca_num = DETECTORS[detector]
    epoch = _dt.datetime(1858, 11, 17)
    mjd = lambda t: (t - epoch).total_seconds() / 86400.0  # noqa: E731
    e.start_time = e.start_time_mjd = mjd(start)
    e.end_time = e.end_time_mjd = mjd(end)
    e.mid_time = e.mid_time_mjd = mjd(start + (end - start) / 2)
    if irs2:
        e.nrs_normal, e.nrs_reference = NRS_NORM, NRS_REF
    s = m.subarray
    s.name, s.xstart, s.ystart, s.xsize, s.ysize = "FULL", 1, 1, 2048, 2048
    s.fastaxis, s.slowaxis = AXES[detector]
    o = m.observation
    o.date, o.time = start.strftime("%Y-%m-%d"), start.strftime("%H:%M:%S.000")
    o.date_beg, o.date_end = start.isoformat(timespec="milliseconds"), end.isoformat(timespec="milliseconds")
    o.program_number, o.observation_number, o.visit_number = "01234", "001", "001"
    o.visit_group, o.sequence_id, o.activity_id, o.exposure_number = "02", "1", "01", "00001"
    o.visit_id = "01234001001"
    o.obs_id = "V01234001001P0000000002101"
    m.date = end.isoformat(timespec="milliseconds")
    model.meta.filename = f"jw01234001001_02101_00001_{detector.lower()}_uncal.fits"


# ---------------------------------------------------------------------------
# an observation on disk: uncal, references, CRDS cache, truth

# CRDS match keys of our NIRSpec rules: the IRS2 layouts and the darks differ by readout pattern
_DET, _RP = "META.INSTRUMENT.DETECTOR", "META.EXPOSURE.READPATT"
PARKEYS = {"mask": (_DET, _RP), "superbias": (_DET, _RP), "refpix": (_DET, _RP), "dark": (_DET, _RP),
           "saturation": (_DET,), "linearity": (_DET,), "gain": (_DET,), "readnoise": (_DET,)}


def write_reference_cache(root, refs: dict, detector: str, readpatt: str) -> str:
    """Add ``refs`` and rules selecting them (for this detector and readout) to the CRDS cache ``root``.

    Existing rules of the cache (other instruments, detectors or readouts) are kept; a new
    context becomes the default.  Returns its name.
    """
    import datetime

    from .. import context as ctxmod

    root = Path(root)
    with ctxmod.cache_lock(root):
        current = ctxmod.read_context(root)
        rules = {ins: {rt: ctxmod.Rmap(ins, rt, rm.parkeys, dict(rm.entries), rm.name) for rt, rm in rms.items()}
                 for ins, rms in current.rmaps.items()}
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        for rt, model in sorted(refs.items()):
            if rt not in PARKEYS:
                continue
            prefix = f"jwst_nirspec_{rt}_"
            serial = ctxmod._next_serial(ctxmod.references_dir(root, "NIRSPEC"), prefix, ".fits")
            name = f"{prefix}{serial:04d}.fits"
            path = ctxmod.reference_path(root, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            model.meta.date = now
            model.save(path)
            rm = rules.setdefault("NIRSPEC", {}).get(rt)
            if rm is None:
                rm = rules["NIRSPEC"][rt] = ctxmod.Rmap("NIRSPEC", rt, PARKEYS[rt])
            key = (detector,) if len(PARKEYS[rt]) == 1 else (detector, readpatt)
            rm.entries[key] = name
        return ctxmod.write_context(root, rules, f"webbflow synthetic NIRSpec detector references for {detector} {readpatt}").context


def simulate(output_dir, detector: str | None = None, readpatt: str | None = None, ngroups: int | None = None,
             nints: int | None = None, exp_type: str | None = None, seed: int = 0, build_refs: bool = True,
             reference_seed: int = 0, size: int | None = None, subarray: str | None = None, nexp: int = 1):
    """``webbflow simulate --instrument nirspec``: one full-frame exposure, its references and CRDS cache, truth."""
    from ..simulator import SimulationResult, _write_json
    from ..synthetic_nirspec import nirspec_detector_references

    detector = (detector or "NRS1").upper()
    readpatt = (readpatt or "NRSIRS2RAPID").upper()
    exp_type = (exp_type or "NRS_FIXEDSLIT").upper()
    ngroups = int(ngroups or 5)
    nints = int(nints or 1)
    _check(detector, readpatt, exp_type, ngroups)
    if size is not None or (subarray is not None and subarray.upper() != "FULL"):
        raise ParameterError("NIRSpec is simulated in full frame only for now (IRS2 readouts exist only in full frame)")
    if nexp != 1:
        raise ParameterError("NIRSpec is simulated one exposure at a time for now (no nods yet): use --nexp 1")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    refs = nirspec_detector_references(detector, readpatt, ngroups, frame_time(readpatt), seed=reference_seed)
    context = write_reference_cache(out, refs, detector, readpatt) if build_refs else None
    model, truth = simulate_nirspec_ramp(detector, readpatt, ngroups, nints, refs, seed=seed, exp_type=exp_type)
    path = out / model.meta.filename
    model.save(path)
    stem = path.name.replace("_uncal.fits", "")
    truth_path = out / f"{stem}_truth.json"
    _write_json(truth_path, {
        "illumination": "horizontal stripes (Gaussian profile, sigma 1.2 px) until the NIRSpec optical model lands",
        "stripes": [{"row": int(r), "peak_rate_dn_s": float(p)} for r, p in STRIPES],
        "readout": readpatt, "irs2": readpatt in IRS2_READPATTS,
    })
    cr_path = out / f"{stem}_cosmic_rays.json"
    _write_json(cr_path, [{"integration": i, "group": g, "x": x, "y": y, "electrons": e} for i, g, x, y, e in truth["cosmic_rays"]])
    result = SimulationResult(output_dir=out, uncal=[path], catalog=truth_path, cosmic_rays=cr_path)
    if build_refs:
        result.context, result.crds_path = context, out
    return result
